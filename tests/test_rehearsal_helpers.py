"""The log parsing, expectation checks and process-tree sampling of bench/rehearse_real_run.py (no run, no torch)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.rehearse_real_run import (OUTSIDE, VOC_STEPS, StepTracker, check_pass, expected_work, parse_log,
                                     process_tree, tree_memory, work_done)

COUNTS = {"train": 4, "val": 2, "test": 2}
WORK = expected_work("voc", COUNTS)


def _voc_log(kind: str, torchrun: bool = False) -> str:
    """A log as run_sample writes it for a VOC pass of ``kind`` (2 ranks under torchrun)."""
    ranks = 2 if torchrun else 1
    lines = [f"crt run 2025-01-01 00:00:00  argv: run_sample.py --rank{r}" for r in range(ranks)]

    def training(step: str, redo: bool) -> None:
        for _ in range(ranks):
            lines.append(f"00:00:01 INFO crt: step.{step}: start Mon")
            lines.append(f"00:00:01 INFO misc.engine.training: {step}: saved /w/sess/x.pth" if redo else
                         f"00:00:01 INFO misc.engine.training: {step}: up to date (same configuration abc, outputs in "
                         "place): skipped")
            lines.append(f"00:00:02 INFO crt: step.{step}: done in 3.5 s")

    def per_image(step: str, tasks: dict[str, int], redo: bool, split: bool = True) -> None:
        n = ranks if split else 1
        for r in range(ranks):
            lines.append(f"00:00:01 INFO crt: step.{step}: start Mon")
        for task, total in tasks.items():
            for r in range(n):
                share = total // n
                done = share if redo else 0
                lines.append(f"00:00:02 INFO misc.engine.per_image: {task}: {done} processed, {share - done} skipped in 1.0 s")
        for r in range(ranks):
            lines.append(f"00:00:03 INFO crt: step.{step}: done in {10 + r}.0 s")

    def metric(step: str) -> None:
        lines.append(f"00:00:01 INFO crt: step.{step}: start Mon")
        lines.append(f"00:00:01 INFO crt: step.{step}: done in 0.1 s")

    full = kind == "full"
    changed = kind == "changed"
    training("train_cam", full)
    per_image("make_cam", {"make_cam": 4}, full)
    metric("eval_cam")
    per_image("cam_to_ir_label", {"cam_to_ir_label": 4}, full)
    training("train_irn", full)
    per_image("make_sem_seg_labels", {"make_sem_seg_labels": 4}, full or changed)
    metric("eval_sem_seg")
    training("train_deeplab", full or changed)
    lines.append("00:00:01 INFO crt: step.eval_deeplab: start Mon")
    lines.append(f"00:00:02 INFO misc.engine.per_image: deeplab_logits: {2 if full or changed else 0} processed, "
                 f"{0 if full or changed else 2} skipped in 1.0 s")
    lines.append("progress 50%\rprogress 100%\r" + f"00:00:02 INFO misc.engine.per_image: deeplab_crf: "
                 f"{2 if full or changed else 0} processed, {0 if full or changed else 2} skipped in 1.0 s")
    lines.append("00:00:03 INFO crt: step.eval_deeplab: done in 4.0 s")
    per_image("export_deeplab_test", {"export_deeplab_test": 2}, full or changed)
    return "\n".join(lines) + "\n"


def test_parse_log_reads_steps_work_and_skips():
    parsed = parse_log(_voc_log("full", torchrun=True))
    assert parsed.headers == 2
    assert set(parsed.done) == set(VOC_STEPS)
    assert parsed.seconds["make_cam"] == 11.0  # the largest over the ranks
    assert parsed.work("make_cam") == (4, 4)
    assert parsed.work("deeplab_crf") == (2, 2)  # found after the progress bar's carriage returns
    assert parsed.saved["train_cam"] == 2 and not parsed.up_to_date
    assert not parsed.run_failed and not parsed.failed


def test_expectations_hold_for_correct_passes():
    for torchrun in (False, True):
        for kind in ("full", "rerun", "changed"):
            parsed = parse_log(_voc_log(kind, torchrun))
            assert check_pass(kind, parsed, 0, VOC_STEPS, WORK) == [], (kind, torchrun)


def test_expectations_catch_violations():
    # a rerun that retrained and recomputed everything
    bad = check_pass("rerun", parse_log(_voc_log("full")), 0, VOC_STEPS, WORK)
    assert any("train_cam: must be skipped" in v for v in bad)
    assert any("make_cam (make_cam): 4 images processed, none may be" in v for v in bad)
    # a changed pass where nothing recomputed
    bad = check_pass("changed", parse_log(_voc_log("rerun")), 0, VOC_STEPS, WORK)
    assert any("train_deeplab: logged 'up to date'" in v for v in bad)
    assert any("make_sem_seg_labels (make_sem_seg_labels): 0 of 4" in v for v in bad)
    assert not any(v.startswith("train_cam") for v in bad)
    # a failed run: exit status, failed step, missing steps
    text = _voc_log("full").split("step.train_irn: start")[0] + "step.train_irn: start\n" \
        "00:00:09 INFO crt: step.train_irn: failed in 2.0 s\nERROR crt: run failed\n"
    bad = check_pass("full", parse_log(text), 1, VOC_STEPS, WORK)
    assert "exit status 1" in bad and "step.train_irn: failed" in bad
    assert any("export_deeplab_test: no 'step.export_deeplab_test: done' line" in v for v in bad)
    # a task that covered the wrong number of images
    text = _voc_log("full").replace("make_cam: 4 processed", "make_cam: 3 processed")
    assert any("covered 3 images, expected 4" in v for v in check_pass("full", parse_log(text), 0, VOC_STEPS, WORK))


def test_work_done_notes():
    parsed = parse_log(_voc_log("changed"))
    assert work_done("train_cam", parsed) == "up to date"
    assert work_done("train_deeplab", parsed) == "trained"
    assert work_done("make_cam", parsed) == "0/4 processed"
    assert work_done("eval_deeplab", parsed) == "deeplab_logits 2/2 processed, deeplab_crf 2/2 processed"
    assert work_done("eval_sem_seg", parsed) == "ran"


def test_step_tracker_attributes_short_steps_and_gaps():
    t = StepTracker()
    assert t.steps_since_last() == {OUTSIDE}
    t.feed("x INFO crt: step.train_cam: start Mon")
    assert t.steps_since_last() == {"train_cam"}
    t.feed("x INFO crt: step.train_cam: done in 1.0 s")
    t.feed("x INFO crt: step.eval_cam: start Mon")
    t.feed("x INFO crt: step.eval_cam: done in 0.1 s")  # started and ended between two samples
    assert t.steps_since_last() == {"train_cam", "eval_cam"}
    assert t.steps_since_last() == {OUTSIDE}
    # two ranks: the step stays active until both are done
    t.feed("step.train_irn: start")
    t.feed("step.train_irn: start")
    t.feed("step.train_irn: done in 1.0 s")
    t.steps_since_last()
    assert t.steps_since_last() == {"train_irn"}


def test_process_tree_memory_includes_descendants():
    child = subprocess.Popen([sys.executable, "-c",
                              "import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', "
                              "'import time; x = bytearray(64 << 20); time.sleep(30)']); time.sleep(30)"])
    try:
        deadline = time.time() + 20
        while time.time() < deadline and len(process_tree(child.pid)) < 2:
            time.sleep(0.1)
        time.sleep(1.0)
        pids = process_tree(child.pid)
        assert len(pids) == 2 and pids[0] == child.pid
        rss, pss, n = tree_memory(child.pid)
        assert n == 2 and rss > 64 << 20 and 0 < pss <= rss
        assert tree_memory(child.pid, with_pss=False)[1] == 0
        assert os.getpid() not in pids
    finally:
        for pid in reversed(process_tree(child.pid)):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        child.wait()


def test_run_pass_times_and_attributes_memory(tmp_path):
    """A fake run that logs two steps, the first holding 96 MiB in a child process: seconds from the log, the
    child's memory in the first step's peak only, the expectations checked."""
    from bench.rehearse_real_run import run_pass

    log = tmp_path / "work" / "sample_train_eval.log"
    log.parent.mkdir()
    log.write_text("older run\nstep.alpha: start\nstep.alpha: done in 99.0 s\n")  # before the pass: ignored
    script = f"""
import subprocess, sys, time
def say(line):
    with open({str(log)!r}, "a") as f:
        f.write(line + "\\n")
say("crt run 2025  argv: fake")
say("00:00 INFO crt: step.alpha: start Mon")
child = subprocess.Popen([sys.executable, "-c", "x = bytearray(96 << 20); x[::4096] = b'1' * len(x[::4096]); "
                          "import time; time.sleep(1.5)"])
child.wait()
say("00:01 INFO crt: step.alpha: done in 1.6 s")
time.sleep(0.5)
say("00:02 INFO crt: step.beta: start Mon")
time.sleep(0.5)
say("00:02 INFO crt: step.beta: done in 0.5 s")
"""
    r = run_pass("spawn", "voc", "full", [sys.executable, "-c", script], log.parent, tmp_path / "logs",
                 ("alpha", "beta"), {}, interval=0.05, timeout=60, pss_interval=0.2)
    assert r.violations == [] and r.rc == 0
    assert r.steps["alpha"]["seconds"] == 1.6 and r.steps["beta"]["seconds"] == 0.5
    assert r.steps["alpha"]["peak_rss_gib"] * 2**30 > 96 << 20
    assert r.steps["alpha"]["procs"] == 2 and r.steps["beta"]["procs"] == 1
    assert r.steps["beta"]["peak_rss_gib"] < r.steps["alpha"]["peak_rss_gib"]
    assert r.steps["alpha"]["pss_samples"] > 0 and r.whole["log_headers"] == 1
    bad = run_pass("spawn", "voc", "full", [sys.executable, "-c", "raise SystemExit(3)"], log.parent,
                   tmp_path / "logs", ("alpha",), {}, interval=0.05, timeout=60)
    assert "exit status 3" in bad.violations and "alpha: no 'step.alpha: done' line" in bad.violations
