"""Rehearsal of a real run at real shapes, on the CPU, and a FLOP-count projection of the full VOC run on GPUs.

Rehearsal (default): every default VOC step and the CUB steps at the real widths and default hyper-parameters
(DeiT-S TS-CAM with 3 passes over 224 tiles, ResNet-152 CAM branch, IRNet ResNet-50 at 512 crops, DeepLab-v2
ResNet-101 MSC at 321 crops, make_cam at 7 scales + flip, CUB DeiT-S + ResNet-50 at 224) on a handful of synthetic
500x375 images, a few iterations each, through ``run_sample.py`` as a subprocess with ``--device cpu`` and two
processes, in one or both launch modes:

* ``torchrun``: ``python -m torch.distributed.run --standalone --nproc_per_node 2 run_sample.py ...`` (gloo);
* ``spawn``:    ``python run_sample.py --nproc 2 ...`` (the plain launch's one-process-per-device path; on the CPU
  it spawns N gloo processes for the training steps and N worker processes for the per-image steps).

Pretrained weights are files named and laid out exactly like the official downloads, with random values
(:func:`bench.official_weights.write_official_weights`), loaded strictly through the real flags ``--deit_pretrained``,
``--cam_cnn_pretrained`` (ResNet-152 for VOC, ResNet-50 for CUB), ``--irn_pretrained`` and ``--deeplab_init``
(deeplab-pytorch's COCO init). One change to their values: the BatchNorm running statistics of the ResNet files
are set to the statistics of real activations (:func:`calibrate_weights`; with the random statistics the frozen-BN
CNN branches blow up and train_cam stops at its second update with a non-finite loss; ``--raw_weights`` keeps
them). Only schedule, batch and list flags are reduced (``--train_list train``,
``--deeplab_train_list train``, ``--cam_batch_size 2 --cam_num_epoches 2`` so that the L1 coupling epoch runs,
``--irn_batch_size 2 --irn_num_epoches 1``, ``--deeplab_iters 2 --deeplab_batch_size 1 --deeplab_iter_size 2
--deeplab_checkpoint_every 1``, ``--num_workers 2``; CUB: ``--wsol_epochs 2 --wsol_batch_size 4 --wsol_l1_window 1``
so that epoch 1 has the L1 term, and ``--wsol_num_classes`` = the synthetic class count, the one width that has to
follow the data).

Per mode and dataset, passes in the same work dir (``<out>/work_<mode>_<dataset>``, emptied before the first pass):

1. ``full``: the whole pipeline; every training step trains, every per-image step processes all its images;
2. ``rerun``: the identical command; every training step must log ``<step>: up to date`` and every per-image task
   ``0 processed``;
3. ``changed`` (VOC only): the same command plus ``--beta 8``; make_sem_seg_labels, eval_sem_seg, train_deeplab,
   eval_deeplab and export_deeplab_test must recompute; train_cam, make_cam, cam_to_ir_label and train_irn must not.

The expectations are checked on the part of ``<work>/sample_train_eval.log`` each pass appended (``step.X: start``,
``step.X: done in S s``, ``<task>: N processed, M skipped``, ``<step>: up to date``, ``<step>: saved``); a
violation is printed and the script exits with status 1 (after the remaining passes ran; ``--stop_on_violation``
stops at once). Per pass it measures the wall time, each step's seconds (its ``done in`` line, the largest over
ranks) and each step's peak memory: a thread samples every ``--interval`` s the resident memory of the whole process
tree (the launched process and all its descendants: ranks, spawned workers, DataLoader workers; VmRSS of
``/proc/<pid>/status`` summed at each instant, an upper bound: pages shared by forked DataLoader workers count once
per process; with ``--pss_interval S`` also the proportional set size of ``/proc/<pid>/smaps_rollup``, which does
not, every S seconds, as it costs 0.1-0.4 s of CPU per sample) and attributes each sample to every step that was
running at some time since the previous sample (it tails the log for ``step.X: start`` / ``done``); memory outside
any step (imports, data index, the weights preflight) goes to ``(outside steps)``. Markdown tables go to stdout,
everything to ``<out>/rehearsal.json`` (rewritten after each pass), each pass's console output to ``<out>/logs/``.

Projection (``--project``, about a minute): hours per stage of the full VOC run (train_aug 10,582 images for
train_cam / make_cam / cam_to_ir_label / train_irn and for the DeepLab masks, train 1,464 for eval and IRNet's
mean shift, DeepLab 20k iterations of 10 images, val 1,449, test 1,456) on 1 and 2 GPUs. **An estimate from FLOP
counts, not a measurement**: the FLOPs of one unit of work at the real shapes are counted with
``torch.utils.flop_counter.FlopCounterMode`` on the ``meta`` device (matmuls and convolutions, forward and backward;
no memory, no compute) and divided by an assumed sustained throughput (``--gpu NAME=PEAK_TFLOPS`` times
``--utilisation``). Work that FLOPs do not describe is modelled separately and named as such: the dense CRFs run on
the host CPU (one CRF measured here, spread over ``--cpu_workers`` processes), the random walk is bound by kernel
launches (their number follows from the code, ``--launch_us`` each), and every per-image GPU step pays
``--per_image_overhead_ms`` (decoding, transfers). Two GPUs halve the training steps (DDP, same global batch) and
the per-image GPU work (the ids are split); the CPU-side CRFs of cam_to_ir_label and eval_deeplab do not change.

Usage::

    python bench/rehearse_real_run.py --mode spawn --out /tmp/crt_rehearsal     # spawn mode, VOC and CUB
    python bench/rehearse_real_run.py --mode both --datasets voc                 # both launchers, VOC only
    python bench/rehearse_real_run.py --project --gpu A100=312 H100=989 --utilisation 0.35

Options:
    --out DIR               output folder (default /tmp/crt_rehearsal): data/, weights/, work_*/, logs/,
                            rehearsal.json (projection.json with --project)
    --mode M                spawn | torchrun | both (default spawn)
    --datasets D [D]        voc and/or cub (default both)
    --passes P [P ...]      full rerun changed (default all; CUB runs full and rerun)
    --nproc N               processes per run (default 2)
    --num_train/--num_val/--num_test/--num_extra_aug   synthetic VOC counts (default 4/2/2/0), images 375x500
    --cub_classes/--cub_train_per_class/--cub_test_per_class   synthetic CUB (default 3/4/2), sides 375..500
    --cam_epochs N          train_cam epochs (default 2: the second has the L1 coupling)
    --interval S            memory sampling period in seconds (default 0.2)
    --pss_interval S        also sample the PSS every S seconds (default 0: never)
    --timeout S             per-pass limit in seconds (default none); the pass's process group is then terminated
    --stop_on_violation     stop at the first violated expectation
    --no_snapshot           run run_sample.py in the repository itself; by default a copy of the working tree is
                            taken into <out>/src at the start (git-tracked and untracked non-ignored files), so that
                            edits made meanwhile cannot change the code between passes
    --raw_weights           keep the random BatchNorm statistics of the weight files (see calibrate_weights: the
                            frozen-BN ResNets then blow up and train_cam / train_wsol stop with a non-finite loss)
    --project               only the projection (no rehearsal): see above; --gpu NAME=TFLOPS [...] (default
                            A100=312 H100=989, bf16 dense), --utilisation (0.35), --cpu_workers (8), --launch_us
                            (6), --per_image_overhead_ms (10) set its assumptions; --units_from PROJECTION_JSON
                            reuses the counts of an earlier run
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

GiB = 2**30
OUTSIDE = "(outside steps)"

VOC_STEPS = ("train_cam", "make_cam", "eval_cam", "cam_to_ir_label", "train_irn", "make_sem_seg_labels",
             "eval_sem_seg", "train_deeplab", "eval_deeplab", "export_deeplab_test")
CUB_STEPS = ("train_wsol", "eval_wsol")
TRAINING_STEPS = {"train_cam", "train_irn", "train_deeplab", "train_wsol"}
# the per-image tasks of each step, by the name the runner logs ("<task>: N processed, M skipped in S s")
PER_IMAGE_TASKS = {"make_cam": ("make_cam",), "cam_to_ir_label": ("cam_to_ir_label",),
                   "make_sem_seg_labels": ("make_sem_seg_labels",), "eval_deeplab": ("deeplab_logits", "deeplab_crf"),
                   "export_deeplab_test": ("export_deeplab_test",)}
CHANGED_FLAG = ("--beta", "8")
CHANGED_AFFECTS = {"make_sem_seg_labels", "eval_sem_seg", "train_deeplab", "eval_deeplab", "export_deeplab_test"}

# ------------------------------------------------------------------------------------------------------ the log
_START = re.compile(r"step\.(\w+): start\b")
_END = re.compile(r"step\.(\w+): (done|failed) in ([0-9.]+) s")
_UP_TO_DATE = re.compile(r"\b(\w+): up to date\b")
_SAVED = re.compile(r"\b(train_\w+): saved ")
_PROCESSED = re.compile(r"\b(\w+): (\d+) processed, (\d+) skipped in")
_HEADER = "crt run "


@dataclass
class ParsedLog:
    """What one pass appended to the run log."""

    headers: int = 0
    started: dict[str, int] = field(default_factory=dict)
    done: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # the largest "done in" over ranks
    up_to_date: dict[str, int] = field(default_factory=dict)
    saved: dict[str, int] = field(default_factory=dict)
    per_image: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # task → [(processed, skipped)]
    run_failed: bool = False
    errors: list[str] = field(default_factory=list)  # lines of tracebacks / ERROR records (first 40)

    def work(self, task: str) -> tuple[int, int]:
        """(processed, processed + skipped) of a per-image task, summed over the lines (ranks)."""
        lines = self.per_image.get(task, [])
        return sum(p for p, _ in lines), sum(p + s for p, s in lines)


def log_lines(text: str) -> list[str]:
    """Lines of a log, progress bars' carriage returns treated as line ends."""
    return [line for line in re.split(r"[\r\n]+", text) if line.strip()]


def parse_log(text: str) -> ParsedLog:
    out = ParsedLog()
    in_traceback = False
    for line in log_lines(text):
        if _HEADER in line and "argv:" in line:
            out.headers += 1
        if m := _START.search(line):
            out.started[m[1]] = out.started.get(m[1], 0) + 1
        if m := _END.search(line):
            if m[2] == "done":
                out.done[m[1]] = out.done.get(m[1], 0) + 1
            else:
                out.failed.append(m[1])
            out.seconds[m[1]] = max(out.seconds.get(m[1], 0.0), float(m[3]))
        if m := _UP_TO_DATE.search(line):
            out.up_to_date[m[1]] = out.up_to_date.get(m[1], 0) + 1
        if m := _SAVED.search(line):
            out.saved[m[1]] = out.saved.get(m[1], 0) + 1
        if m := _PROCESSED.search(line):
            out.per_image.setdefault(m[1], []).append((int(m[2]), int(m[3])))
        if "run failed" in line:
            out.run_failed = True
        if line.startswith("Traceback"):
            in_traceback = True
        if (in_traceback or " ERROR " in line) and len(out.errors) < 40:
            out.errors.append(line.rstrip())
        if in_traceback and re.match(r"^\w[\w.]*(Error|Exception)\b", line):
            in_traceback = False
    return out


def expected_work(dataset: str, counts: dict[str, int]) -> dict[str, int]:
    """Images each per-image task covers in these runs (lists: train for make_cam / IR labels / masks, val, test)."""
    if dataset != "voc":
        return {}
    return {"make_cam": counts["train"], "cam_to_ir_label": counts["train"], "make_sem_seg_labels": counts["train"],
            "deeplab_logits": counts["val"], "deeplab_crf": counts["val"], "export_deeplab_test": counts["test"]}


def must_recompute(kind: str, step: str) -> bool:
    """Whether ``step`` has to do its work in a pass of ``kind`` (full / rerun / changed)."""
    return kind == "full" or (kind == "changed" and step in CHANGED_AFFECTS)


def check_pass(kind: str, parsed: ParsedLog, rc: int, steps: Sequence[str], work: dict[str, int]) -> list[str]:
    """The violated expectations of one pass (empty: all held)."""
    bad: list[str] = []
    if rc != 0:
        bad.append(f"exit status {rc}")
    if parsed.run_failed:
        bad.append("the log says 'run failed'")
    for step in parsed.failed:
        bad.append(f"step.{step}: failed")
    for step in steps:
        if not parsed.done.get(step):
            bad.append(f"{step}: no 'step.{step}: done' line")
            continue
        redo = must_recompute(kind, step)
        if step in TRAINING_STEPS:
            skipped = parsed.up_to_date.get(step, 0) > 0
            if redo and skipped:
                bad.append(f"{step}: logged 'up to date' but must train in a {kind} pass")
            elif redo and not parsed.saved.get(step):
                bad.append(f"{step}: must train in a {kind} pass, but no '{step}: saved' line")
            elif not redo and not skipped:
                bad.append(f"{step}: must be skipped ('{step}: up to date') in a {kind} pass")
            elif not redo and parsed.saved.get(step):
                bad.append(f"{step}: skipped but also saved weights")
        for task in PER_IMAGE_TASKS.get(step, ()):
            if task not in parsed.per_image:
                bad.append(f"{task} ({step}): no '{task}: N processed, M skipped' line")
                continue
            processed, total = parsed.work(task)
            want = work.get(task)
            if want is not None and total != want:
                bad.append(f"{task} ({step}): covered {total} images, expected {want}")
            if redo and processed != total:
                bad.append(f"{task} ({step}): {processed} of {total} images processed, all must be in a {kind} pass")
            if not redo and processed:
                bad.append(f"{task} ({step}): {processed} images processed, none may be in a {kind} pass")
    return bad


def work_done(step: str, parsed: ParsedLog) -> str:
    """A short note of what a step did in a pass: 'trained', 'up to date', '4 processed', 'ran'."""
    notes = []
    if step in TRAINING_STEPS:
        notes.append("up to date" if parsed.up_to_date.get(step) else "trained" if parsed.saved.get(step) else "?")
    for task in PER_IMAGE_TASKS.get(step, ()):
        processed, total = parsed.work(task)
        label = f"{task} " if len(PER_IMAGE_TASKS[step]) > 1 else ""
        notes.append(f"{label}{processed}/{total} processed")
    return ", ".join(notes) or "ran"


# --------------------------------------------------------------------------------------------- memory sampling
def _read_kb(path: str, key: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants (from the ppid field of every ``/proc/<pid>/stat``)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out, stack = [root], [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            out.append(child)
            stack.append(child)
    return out


def tree_memory(root: int, with_pss: bool = True) -> tuple[int, int, int]:
    """(sum of VmRSS, sum of Pss (0 unless ``with_pss``), number of processes) of ``root``'s process tree, in bytes.

    VmRSS is cheap to read; Pss (``smaps_rollup``) walks the page tables: ~0.1-0.4 s for a tree of a few GiB."""
    rss = pss = n = 0
    for pid in process_tree(root):
        r = _read_kb(f"/proc/{pid}/status", "VmRSS:")
        if r:
            rss += r * 1024
            if with_pss:
                pss += _read_kb(f"/proc/{pid}/smaps_rollup", "Pss:") * 1024
            n += 1
    return rss, pss, n


class StepTracker:
    """Which steps ran since the last call, from the log lines fed to it (``step.X: start`` / ``done|failed``)."""

    def __init__(self) -> None:
        self.active: dict[str, int] = {}  # step → ranks inside it
        self.touched: set[str] = set()

    def feed(self, line: str) -> None:
        if m := _START.search(line):
            self.active[m[1]] = self.active.get(m[1], 0) + 1
            self.touched.add(m[1])
        elif m := _END.search(line):
            self.active[m[1]] = max(0, self.active.get(m[1], 0) - 1)
            self.touched.add(m[1])

    def steps_since_last(self) -> set[str]:
        """Steps running now or at some time since the previous call; ``{OUTSIDE}`` when none."""
        steps = self.touched | {s for s, n in self.active.items() if n > 0}
        self.touched = set()
        return steps or {OUTSIDE}


@dataclass
class Peak:
    rss: int = 0
    pss: int = 0
    procs: int = 0
    samples: int = 0

    pss_samples: int = 0

    def add(self, rss: int, pss: int | None, procs: int) -> None:
        self.rss, self.procs = max(self.rss, rss), max(self.procs, procs)
        self.samples += 1
        if pss is not None:
            self.pss = max(self.pss, pss)
            self.pss_samples += 1


class TreeSampler(threading.Thread):
    """Samples ``root``'s process-tree memory every ``interval`` s (Pss every ``pss_interval`` s, never when 0),
    attributed to the steps of the tailed log."""

    def __init__(self, root: int, log_path: Path, offset: int, interval: float, pss_interval: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.root, self.log_path, self.offset, self.interval = root, log_path, offset, interval
        self.pss_interval, self._last_pss = pss_interval, -float("inf")
        self.tracker = StepTracker()
        self.peaks: dict[str, Peak] = {}
        self.total = Peak()
        self._stop_event = threading.Event()
        self._file = None
        self._partial = ""

    def _tail(self) -> None:
        if self._file is None:
            if not self.log_path.is_file():
                return
            self._file = open(self.log_path, "rb")
            self._file.seek(self.offset)
        chunk = self._file.read()
        if not chunk:
            return
        text = self._partial + chunk.decode("utf-8", "replace")
        parts = re.split(r"[\r\n]", text)
        self._partial = parts.pop()
        for line in parts:
            self.tracker.feed(line)

    def tick(self) -> None:
        self._tail()
        with_pss = self.pss_interval > 0 and time.monotonic() - self._last_pss >= self.pss_interval
        if with_pss:
            self._last_pss = time.monotonic()
        rss, pss, n = tree_memory(self.root, with_pss)
        if n == 0:
            return
        pss = pss if with_pss else None
        self.total.add(rss, pss, n)
        for step in self.tracker.steps_since_last():
            self.peaks.setdefault(step, Peak()).add(rss, pss, n)

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.tick()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self._tail()
        if self._partial:
            self.tracker.feed(self._partial)
        if self._file is not None:
            self._file.close()


# ------------------------------------------------------------------------------------------------------ passes
@dataclass
class PassResult:
    mode: str
    dataset: str
    kind: str
    command: list[str]
    rc: int
    wall_s: float
    steps: dict[str, dict]  # step → {seconds, peak_rss_gib, peak_pss_gib, procs, samples, work}
    whole: dict
    violations: list[str]
    errors: list[str]


def run_pass(mode: str, dataset: str, kind: str, cmd: list[str], work_dir: Path, logs_dir: Path, steps: Sequence[str],
             work: dict[str, int], interval: float, timeout: float | None, pss_interval: float = 0.0,
             cwd: Path = REPO) -> PassResult:
    """Run one pass (a subprocess) while sampling its memory; parse and check what it appended to the log."""
    log_path = work_dir / "sample_train_eval.log"
    offset = log_path.stat().st_size if log_path.is_file() else 0
    logs_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    print(f"\n### {mode} / {dataset} / {kind}\n$ {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    with open(logs_dir / f"{mode}_{dataset}_{kind}.console.txt", "wb") as console:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=console, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        sampler = TreeSampler(proc.pid, log_path, offset, interval, pss_interval)
        sampler.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)  # the group of the process started here (its own session)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            rc = 124
    wall = time.perf_counter() - t0
    sampler.stop()
    with open(log_path, "rb") as f:
        f.seek(offset)
        parsed = parse_log(f.read().decode("utf-8", "replace"))
    violations = check_pass(kind, parsed, rc, steps, work)
    if rc == 124:
        violations.insert(0, f"timed out after {timeout} s")
    rows: dict[str, dict] = {}
    for step in [*steps, OUTSIDE]:
        peak = sampler.peaks.get(step, Peak())
        rows[step] = {"seconds": parsed.seconds.get(step), "peak_rss_gib": round(peak.rss / GiB, 2),
                      "peak_pss_gib": round(peak.pss / GiB, 2) if peak.pss_samples else None, "procs": peak.procs,
                      "samples": peak.samples, "pss_samples": peak.pss_samples,
                      "work": work_done(step, parsed) if step != OUTSIDE else ""}
    whole = {"seconds": round(wall, 1), "peak_rss_gib": round(sampler.total.rss / GiB, 2),
             "peak_pss_gib": round(sampler.total.pss / GiB, 2) if sampler.total.pss_samples else None,
             "procs": sampler.total.procs, "samples": sampler.total.samples, "log_headers": parsed.headers}
    return PassResult(mode, dataset, kind, cmd, rc, round(wall, 1), rows, whole, violations, parsed.errors)


def pass_table(r: PassResult) -> str:
    def gib(v) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    pss = r.whole["peak_pss_gib"] is not None  # the PSS column only when it was sampled
    lines = [f"{r.mode} / {r.dataset} / {r.kind}: wall {r.wall_s:.1f} s, exit {r.rc}", "",
             "| step | seconds | peak RSS GiB |" + (" peak PSS GiB |" if pss else "") + " processes | work |",
             "|---|---|---|" + ("---|" if pss else "") + "---|---|"]
    for step, row in r.steps.items():
        secs = "" if row["seconds"] is None else f"{row['seconds']:.1f}"
        cells = [gib(row["peak_rss_gib"]) if row["samples"] else "n/a"]
        if pss:
            cells.append(gib(row["peak_pss_gib"]))
        cells.append(str(row["procs"]) if row["samples"] else "n/a")
        lines.append(f"| {step} | {secs} | " + " | ".join(cells) + f" | {row['work']} |")
    w = r.whole
    cells = [f"**{gib(w['peak_rss_gib'])}**"] + ([f"**{gib(w['peak_pss_gib'])}**"] if pss else []) + [str(w["procs"])]
    lines.append(f"| **whole pass** | **{w['seconds']:.1f}** | " + " | ".join(cells) + " | |")
    lines.append("")
    lines.append("expectations: " + ("held" if not r.violations else "VIOLATED:\n  - " + "\n  - ".join(r.violations)))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- commands
def launcher(mode: str, nproc: int) -> list[str]:
    if mode == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
                "run_sample.py"]
    return [sys.executable, "run_sample.py", "--nproc", str(nproc)]


def voc_flags(voc_root: Path, work: Path, weights: dict[str, Path], cam_epochs: int) -> list[str]:
    return ["--voc12_root", str(voc_root), "--work_dir", str(work), "--device", "cpu",
            "--deit_pretrained", str(weights["deit_small"]), "--cam_cnn_pretrained", str(weights["resnet152"]),
            "--irn_pretrained", str(weights["resnet50"]), "--deeplab_init", str(weights["deeplab_coco"]),
            "--train_list", "train", "--deeplab_train_list", "train",
            "--cam_batch_size", "2", "--cam_num_epoches", str(cam_epochs),
            "--irn_batch_size", "2", "--irn_num_epoches", "1",
            "--deeplab_iters", "2", "--deeplab_batch_size", "1", "--deeplab_iter_size", "2",
            "--deeplab_checkpoint_every", "1", "--num_workers", "2"]


def cub_flags(cub_root: Path, work: Path, weights: dict[str, Path], num_classes: int) -> list[str]:
    return ["--dataset", "cub", "--cub_root", str(cub_root), "--work_dir", str(work), "--device", "cpu",
            "--deit_pretrained", str(weights["deit_small"]), "--cam_cnn_pretrained", str(weights["resnet50"]),
            "--wsol_cnn_depth", "50", "--wsol_num_classes", str(num_classes), "--wsol_epochs", "2",
            "--wsol_batch_size", "4", "--wsol_l1_window", "1", "--num_workers", "2"]


def prepare_data(out: Path, a: argparse.Namespace) -> tuple[Path, Path]:
    """The synthetic VOC root and CUB folder (written once; a marker records the parameters)."""
    from cub.synthetic import make_synthetic_cub
    from voc12.synthetic import make_synthetic_voc

    voc_root, cub_parent = out / "data" / "VOC2012", out / "data" / "cub"
    spec = {"voc": [a.num_train, a.num_val, a.num_extra_aug, a.num_test], "cub": [a.cub_classes, a.cub_train_per_class,
                                                                                 a.cub_test_per_class]}
    marker = out / "data" / "spec.json"
    if not marker.is_file() or json.loads(marker.read_text()) != spec:
        shutil.rmtree(out / "data", ignore_errors=True)
        make_synthetic_voc(voc_root, num_train=a.num_train, num_val=a.num_val, num_extra_aug=a.num_extra_aug,
                           num_test=a.num_test, image_size=((375, 375), (500, 500)), seed=0)
        make_synthetic_cub(cub_parent, num_classes=a.cub_classes, train_per_class=a.cub_train_per_class,
                           test_per_class=a.cub_test_per_class, image_size=(375, 500), seed=0)
        marker.write_text(json.dumps(spec))
    return voc_root, cub_parent / "CUB_200_2011"


def _calibration_images(voc_root: Path, size: int = 224, count: int = 8) -> list:
    """A few synthetic VOC images as float32 RGB (size, size, 3) arrays in 0..255 (centre crops)."""
    import numpy as np
    from PIL import Image

    out = []
    for path in sorted((voc_root / "JPEGImages").glob("*.jpg"))[:count]:
        img = Image.open(path).convert("RGB")
        w, h = img.size
        s = size / min(w, h)
        img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
        w, h = img.size
        left, top = (w - size) // 2, (h - size) // 2
        out.append(np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.float32))
    return out


def _recalibrate_bn(model, batch) -> None:
    """Running statistics of every BatchNorm := the statistics of ``batch`` at that layer (train-mode forward)."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one batch → exactly its statistics
        m.train()
    with torch.no_grad():
        model(batch)
    for m in bns:
        m.eval()


def calibrate_weights(weights: dict[str, Path], voc_root: Path) -> dict[str, Path]:
    """Set the BatchNorm running statistics of the random-valued ResNet files to the statistics of real activations.

    The files of :mod:`bench.official_weights` hold random convolutions with random running statistics; the CAM
    branches, IRNet and DeepLab freeze BatchNorm (eval mode, running statistics), so their activations grow by many
    orders of magnitude through the residual stages (the ResNet-152 CAM score map reaches ~1e9), and train_cam /
    train_wsol stop at their second or third update with a non-finite loss. Real ImageNet/COCO files have statistics
    that fit their convolutions; this gives the random ones the same property: one train-mode forward of 8 synthetic
    images per file (ImageNet normalisation for the torchvision files, deeplab-pytorch's BGR mean subtraction for
    the COCO file), then the file is rewritten with the same keys, key order, dtypes and serialisation format.
    Only running_mean / running_var change. Done once (``<weights>/calibrated.json``).
    """
    import numpy as np
    import torch
    import torchvision

    marker = Path(next(iter(weights.values()))).parent / "calibrated.json"
    done = json.loads(marker.read_text()) if marker.is_file() else {}
    images = np.stack(_calibration_images(voc_root))
    rgb = torch.from_numpy(((images / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).astype(np.float32))
    rgb = rgb.permute(0, 3, 1, 2).contiguous()
    bgr = torch.from_numpy((images[..., ::-1] - np.array([104.008, 116.669, 122.675])).astype(np.float32))
    bgr = bgr.permute(0, 3, 1, 2).contiguous()
    for name, path in weights.items():
        if name == "deit_small" or done.get(name) == path.stat().st_size:
            continue
        state = torch.load(path, map_location="cpu", weights_only=True)
        if name.startswith("resnet"):
            model = getattr(torchvision.models, name)(weights=None)
            model.load_state_dict(state, strict=True)
            _recalibrate_bn(model, rgb)
        else:  # deeplab-pytorch's DeepLabV1_ResNet101 layout: layer1..5 of our DeepLabV2 base, plus a 91-class fc
            from net.deeplab_v2 import build_deeplab_v2

            model = build_deeplab_v2(n_classes=21, depth=101, scales=None)
            missing, unexpected = model.load_state_dict(state, strict=False)
            assert all(k.startswith("aspp.") for k in missing) and set(unexpected) <= {"fc.weight", "fc.bias"}
            _recalibrate_bn(model, bgr)
        new = model.state_dict()
        for key in state:
            if key.endswith(("running_mean", "running_var")):
                state[key] = new[key].to(state[key].dtype).clone()
        torch.save(state, path, _use_new_zipfile_serialization=False)  # the legacy format of these official files
        done[name] = path.stat().st_size
        print(f"calibrated the BatchNorm statistics of {path.name}", flush=True)
    marker.write_text(json.dumps(done))
    return weights


def snapshot_source(dest: Path) -> dict:
    """Copy the working tree (tracked and untracked files git does not ignore) to ``dest``, so that edits made to the
    repository while the rehearsal runs (it takes an hour) cannot change the code between its passes; returns the
    git HEAD and the files that differ from it."""
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=REPO, check=True, capture_output=True, text=True).stdout

    files = [f for f in git("ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0") if f]
    shutil.rmtree(dest, ignore_errors=True)
    for rel in files:
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return {"path": str(dest), "head": git("rev-parse", "HEAD").strip(),
            "changed": [line[3:] for line in git("status", "--porcelain").splitlines()]}


def rehearse(a: argparse.Namespace) -> int:
    from bench.official_weights import write_official_weights

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    voc_root, cub_root = prepare_data(out, a)
    weights = write_official_weights(out / ("weights_raw" if a.raw_weights else "weights"), seed=0)
    if not a.raw_weights:
        calibrate_weights(weights, voc_root)
    print(f"data and weights ready in {time.perf_counter() - t0:.1f} s: {voc_root}, {cub_root}, {out / 'weights'}")
    source = {"path": str(REPO)} if a.no_snapshot else snapshot_source(out / "src")
    cwd = Path(source["path"])
    print(f"running {cwd / 'run_sample.py'}" + (f" (snapshot of {REPO} at {source['head'][:10]}, "
                                                f"{len(source['changed'])} files differing from it)"
                                                if not a.no_snapshot else ""), flush=True)
    counts = {"train": a.num_train, "val": a.num_val, "test": a.num_test}
    modes = ["spawn", "torchrun"] if a.mode == "both" else [a.mode]
    report: dict = {"settings": {k: v for k, v in vars(a).items()}, "weights": {k: str(v) for k, v in weights.items()},
                    "source": source, "passes": []}
    results: list[PassResult] = []
    status = 0
    for mode in modes:
        for dataset in a.datasets:
            work = out / f"work_{mode}_{dataset}"
            shutil.rmtree(work, ignore_errors=True)
            if dataset == "voc":
                base = launcher(mode, a.nproc) + voc_flags(voc_root, work, weights, a.cam_epochs)
                steps, kinds = VOC_STEPS, [k for k in a.passes]
            else:
                base = launcher(mode, a.nproc) + cub_flags(cub_root, work, weights, a.cub_classes)
                steps, kinds = CUB_STEPS, [k for k in a.passes if k != "changed"]
            for kind in kinds:
                cmd = base + list(CHANGED_FLAG) if kind == "changed" else base
                r = run_pass(mode, dataset, kind, cmd, work, out / "logs", steps, expected_work(dataset, counts),
                             a.interval, a.timeout, a.pss_interval, cwd)
                results.append(r)
                print(pass_table(r), flush=True)
                if r.errors:
                    print("errors in the log:\n  " + "\n  ".join(r.errors[:20]))
                report["passes"].append(asdict(r))
                (out / "rehearsal.json").write_text(json.dumps(report, indent=1))
                if r.violations:
                    status = 1
                    if a.stop_on_violation or r.rc != 0:  # a failed run leaves nothing for the next passes to check
                        break
            if status and a.stop_on_violation:
                break
        if status and a.stop_on_violation:
            break
    print("\n## summary")
    for r in results:
        verdict = "expectations held" if not r.violations else f"{len(r.violations)} VIOLATIONS"
        print(f"- {r.mode} / {r.dataset} / {r.kind}: {r.wall_s:.1f} s, peak RSS {r.whole['peak_rss_gib']:.2f} GiB: "
              f"{verdict}")
    print(f"report: {out / 'rehearsal.json'}")
    return status


# ------------------------------------------------------------------------------------------------- projection
FULL_VOC = {"train_aug": 10582, "train": 1464, "val": 1449, "test": 1456}


def _flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def count_units(image_hw: tuple[int, int] = (375, 500)) -> dict:
    """FLOPs of one unit of work of each stage at the default shapes (meta device), the random walk's launch count,
    and the seconds of one CRF of each kind on this CPU."""
    import numpy as np
    import torch

    import run_sample
    from misc.method.indexing import PathIndex
    from net.resnet_cam import freeze_lower_stages
    from pipeline.models import build_cam_cnn, build_cam_vit, build_deeplab, build_irn, build_irn_inference
    from step.train_irn import TRAIN_RADIUS
    from pipeline.tasks import WALK_RADIUS
    from misc.method.imutils import multiscale_flip_inputs

    args = run_sample.parse_args(["--no_pretrained"])  # every default, random init (values are irrelevant on meta)
    meta = torch.device("meta")
    h, w = image_hw
    units: dict = {"defaults": {"cam_batch_size": args.cam_batch_size, "cam_crop_size": args.cam_crop_size,
                                "cam_num_epoches": args.cam_num_epoches, "cam_scales": list(args.cam_scales),
                                "irn_batch_size": args.irn_batch_size, "irn_crop_size": args.irn_crop_size,
                                "irn_num_epoches": args.irn_num_epoches, "deeplab_iters": args.deeplab_iters,
                                "deeplab_batch": args.deeplab_batch_size * args.deeplab_iter_size,
                                "deeplab_crop_size": args.deeplab_crop_size, "exp_times": args.exp_times,
                                "image_hw": [h, w]}}
    t0 = time.perf_counter()

    # train_cam: both branches, fwd + bwd, counted at batch 2 and scaled to the global batch
    cnn = build_cam_cnn(args, pretrained=False)
    freeze_lower_stages(cnn)
    cnn = cnn.to(meta).train()
    vit = build_cam_vit(args, pretrained=False).to(meta).train()
    b, crop = 2, args.cam_crop_size

    def cam_update():
        x = torch.empty(b, 3, crop, crop, device=meta)
        (cnn(x).sum() + vit(x).sum()).backward()

    def cam_val():
        with torch.no_grad():
            x = torch.empty(b, 3, crop, crop, device=meta)
            cnn.eval(), vit.eval()
            cnn(x), vit(x)
            cnn.train(), vit.train()

    units["train_cam_update"] = _flops(cam_update) * args.cam_batch_size // b
    units["train_cam_val_image"] = _flops(cam_val) // b
    # make_cam: the [img, flip] pair at every scale, the shapes make_cam feeds
    vit.eval()
    shapes = [p.shape for p in multiscale_flip_inputs(np.zeros((h, w, 3), np.uint8), args.cam_scales)]

    def make_cam():
        with torch.no_grad():
            for s in shapes:
                vit.forward_cam(torch.empty(*s, device=meta))

    units["make_cam_image"] = _flops(make_cam)
    # train_irn: batch 2 at the IRNet crop, scaled to the global batch; the mean shift: one forward per image
    crop = args.irn_crop_size
    irn = build_irn(args, PathIndex(radius=TRAIN_RADIUS, default_size=(crop // 4, crop // 4)))
    irn = irn.to(meta).train()

    def irn_update():
        x = torch.empty(b, 3, crop, crop, device=meta)
        sum(t.sum() for t in irn(x, True)).backward()

    def irn_mean_shift():
        with torch.no_grad():
            irn.eval()
            irn(torch.empty(1, 3, crop, crop, device=meta), return_loss=False)
            irn.train()

    units["train_irn_update"] = _flops(irn_update) * args.irn_batch_size // b
    units["train_irn_mean_shift_image"] = _flops(irn_mean_shift)
    # make_sem_seg_labels: IRNet on the [img, flip] pair (padded to the crop), then the random walk
    edge_net = build_irn_inference(args).to(meta).eval()

    def sem_seg():
        with torch.no_grad():
            edge_net(torch.empty(2, 3, h, w, device=meta))

    units["make_sem_seg_irnet_image"] = _flops(sem_seg)
    fh, fw = -(-h // 4), -(-w // 4)
    directions = PathIndex(radius=WALK_RADIUS, default_size=(fh, fw)).num_directions
    offsets = 1 + 2 * directions  # misc.method.random_walk.BandedTransition: self loop + each direction and its mirror
    steps = 2 ** args.exp_times
    planes = 2  # classes per image in the walk (VOC: about 1.5 on average; 2 is generous)
    units["random_walk"] = {"steps": steps, "offsets": offsets, "flops_fp64": 2 * planes * fh * fw * offsets * steps,
                            "kernel_launches": steps * (offsets + 1)}  # mul + addcmul per offset + copy, per step
    # DeepLab: one iteration (global batch, fwd + bwd, MSC), counted at batch 2; eval: the MSC max of one image
    dl = build_deeplab(args).to(meta).train()
    crop = args.deeplab_crop_size

    def dl_iter():
        outs = dl(torch.empty(b, 3, crop, crop, device=meta))
        sum(o.sum() for o in outs).backward()

    def dl_eval():
        with torch.no_grad():
            dl.eval()
            dl(torch.empty(1, 3, h, w, device=meta))
            dl.train()

    units["train_deeplab_iteration"] = _flops(dl_iter) * args.deeplab_batch_size * args.deeplab_iter_size // b
    units["deeplab_eval_image"] = _flops(dl_eval)
    units["count_seconds"] = round(time.perf_counter() - t0, 1)

    # CPU: one IR-label CRF pair and one DeepLab CRF on this machine (1 thread)
    from misc.method.crf import crf_inference_softmax, deeplab_crf_guide
    from misc.method.ir_label import make_ir_label

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    img = np.ascontiguousarray(np.repeat(np.linspace(0, 255, w, dtype=np.uint8)[None, :, None], h, 0).repeat(3, 2))
    high = rng.random((2, h, w), dtype=np.float32)
    units["cpu_ir_label_s"] = round(_timed(lambda: make_ir_label(img, high, np.array([0, 5]), 0.35, 0.15), 2), 3)
    logits = rng.standard_normal((21, h, w)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(0, keepdims=True)
    guide = deeplab_crf_guide(img[..., ::-1].copy(), quirk=True)
    units["cpu_deeplab_crf_s"] = round(_timed(lambda: crf_inference_softmax(guide, probs), 2), 3)
    return units


def project(units: dict, gpus: dict[str, float], utilisation: float, cpu_workers: int, launch_us: float,
            overhead_ms: float) -> dict:
    """Hours per stage on 1 and 2 of each GPU kind, from the unit FLOPs and the stated assumptions."""
    d = units["defaults"]
    n_aug, n_train, n_val, n_test = (FULL_VOC[k] for k in ("train_aug", "train", "val", "test"))
    cam_updates = (n_aug // d["cam_batch_size"]) * d["cam_num_epoches"]
    irn_updates = (n_aug // d["irn_batch_size"]) * d["irn_num_epoches"]
    walk = units["random_walk"]
    ov = overhead_ms / 1000
    # stage → (GPU FLOPs, GPU fixed seconds that split over GPUs, CPU seconds that do not, description)
    stages = {
        "train_cam": (cam_updates * units["train_cam_update"]
                      + d["cam_num_epoches"] * n_val * units["train_cam_val_image"], 0.0, 0.0,
                      f"{cam_updates} updates of {d['cam_batch_size']} at {d['cam_crop_size']}² (DeiT-S + ResNet-152, "
                      f"fwd+bwd) + {d['cam_num_epoches']}×{n_val} val images"),
        "make_cam": (n_aug * units["make_cam_image"], n_aug * ov, 0.0,
                     f"{n_aug} images × {len(d['cam_scales'])} scales × [img, flip]"),
        "cam_to_ir_label": (0, 0.0, n_aug * units["cpu_ir_label_s"] / cpu_workers,
                            f"{n_aug} × 2 CRFs on the CPU over {cpu_workers} processes"),
        "train_irn": (irn_updates * units["train_irn_update"] + n_train * units["train_irn_mean_shift_image"], 0.0,
                      0.0, f"{irn_updates} updates of {d['irn_batch_size']} at {d['irn_crop_size']}² + mean shift "
                           f"over {n_train}"),
        "make_sem_seg_labels": (n_aug * units["make_sem_seg_irnet_image"],
                                n_aug * (walk["kernel_launches"] * launch_us * 1e-6 + ov), 0.0,
                                f"{n_aug} masks (train_aug for DeepLab): IRNet pair + walk of "
                                f"{walk['kernel_launches']} kernel launches"),
        "train_deeplab": (d["deeplab_iters"] * units["train_deeplab_iteration"], 0.0, 0.0,
                          f"{d['deeplab_iters']} iterations of {d['deeplab_batch']} at {d['deeplab_crop_size']}² "
                          "(MSC, fwd+bwd)"),
        "eval_deeplab": (n_val * units["deeplab_eval_image"], n_val * ov,
                         n_val * units["cpu_deeplab_crf_s"] / cpu_workers,
                         f"{n_val} val images (MSC) + CRF on the CPU over {cpu_workers} processes"),
        "export_deeplab_test": (n_test * units["deeplab_eval_image"], n_test * (ov + units["cpu_deeplab_crf_s"]),
                                0.0, f"{n_test} test images (MSC) + CRF inside each GPU process"),
    }
    table = {}
    for name, (flops, gpu_fixed_s, cpu_s, what) in stages.items():
        row = {"what": what, "tflop": round(flops / 1e12, 1), "hours": {}}
        for gpu, peak in gpus.items():
            rate = peak * 1e12 * utilisation
            for n in (1, 2):
                row["hours"][f"{n}x {gpu}"] = round((flops / rate + gpu_fixed_s) / n / 3600 + cpu_s / 3600, 3)
        table[name] = row
    columns = next(iter(table.values()))["hours"]
    totals = {col: round(sum(r["hours"][col] for r in table.values()), 2) for col in columns}
    return {"stages": table, "total_hours": totals,
            "assumptions": {"gpus_peak_tflops": gpus, "utilisation": utilisation, "cpu_workers": cpu_workers,
                            "launch_us": launch_us, "per_image_overhead_ms": overhead_ms,
                            "cpu_ir_label_s": units["cpu_ir_label_s"], "cpu_deeplab_crf_s": units["cpu_deeplab_crf_s"],
                            "random_walk": walk, "image_hw": units["defaults"]["image_hw"]}}


def projection_markdown(units: dict, proj: dict) -> str:
    cols = list(proj["total_hours"])
    a = proj["assumptions"]
    out = ["**Estimate from FLOP counts, not a measurement.** Full VOC run (train_aug 10,582, train 1,464, val 1,449,"
           " test 1,456; every default flag), all images taken as 500×375.",
           f"Assumed sustained throughput: peak × {a['utilisation']:.0%} utilisation, peaks "
           + ", ".join(f"{g} {p:g} TFLOPS" for g, p in a["gpus_peak_tflops"].items())
           + " (--gpu; the defaults A100=312, H100=989 are bf16 dense peaks, i.e. a run with --amp bf16; the "
             "default --amp off runs TF32 matmuls at half those peaks: --gpu A100-tf32=156 H100-tf32=495).",
           f"CPU work: IR-label CRF pair {a['cpu_ir_label_s']:.2f} s and DeepLab CRF {a['cpu_deeplab_crf_s']:.2f} s "
           f"per image measured on this CPU, spread over {a['cpu_workers']} host processes (--num_workers); "
           f"random walk: {a['random_walk']['kernel_launches']} kernel launches per image at {a['launch_us']:g} µs "
           f"({a['random_walk']['flops_fp64'] / 1e9:.1f} GFLOP fp64, negligible); "
           f"{a['per_image_overhead_ms']:g} ms per image of every per-image GPU step for decoding and transfers; "
           "data loading of the training steps assumed to keep up. eval_cam and eval_sem_seg (CPU, minutes) are "
           "not included.", "",
           "| stage | work | TFLOP | " + " | ".join(f"h, {c}" for c in cols) + " |",
           "|---|---|---|" + "---|" * len(cols)]
    for name, row in proj["stages"].items():
        out.append(f"| {name} | {row['what']} | {row['tflop']:,.0f} | "
                   + " | ".join(f"{row['hours'][c]:.2f}" for c in cols) + " |")
    out.append("| **total** | | | " + " | ".join(f"**{proj['total_hours'][c]:.1f}**" for c in cols) + " |")
    unit_lines = [f"{k}: {v / 1e12:.3f} TFLOP" for k, v in units.items() if isinstance(v, int)]
    out += ["", "unit FLOPs (meta device, FlopCounterMode; matmul/conv only): " + "; ".join(unit_lines)]
    return "\n".join(out)


def parse_gpus(values: Iterable[str]) -> dict[str, float]:
    gpus = {}
    for v in values:
        name, _, peak = v.partition("=")
        if not peak:
            raise argparse.ArgumentTypeError(f"--gpu takes NAME=PEAK_TFLOPS, got {v!r}")
        gpus[name] = float(peak)
    return gpus


def run_projection(a: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    units = json.loads(Path(a.units_from).read_text())["units"] if a.units_from else count_units()
    proj = project(units, parse_gpus(a.gpu), a.utilisation, a.cpu_workers, a.launch_us, a.per_image_overhead_ms)
    print(projection_markdown(units, proj))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "projection.json").write_text(json.dumps({"units": units, "projection": proj}, indent=1))
    print(f"\n(projection in {time.perf_counter() - t0:.0f} s; written to {out / 'projection.json'})")
    return 0


# ------------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="/tmp/crt_rehearsal")
    p.add_argument("--mode", choices=("spawn", "torchrun", "both"), default="spawn")
    p.add_argument("--datasets", nargs="+", choices=("voc", "cub"), default=["voc", "cub"])
    p.add_argument("--passes", nargs="+", choices=("full", "rerun", "changed"), default=["full", "rerun", "changed"])
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--num_train", type=int, default=4)
    p.add_argument("--num_val", type=int, default=2)
    p.add_argument("--num_test", type=int, default=2)
    p.add_argument("--num_extra_aug", type=int, default=0)
    p.add_argument("--cub_classes", type=int, default=3)
    p.add_argument("--cub_train_per_class", type=int, default=4)
    p.add_argument("--cub_test_per_class", type=int, default=2)
    p.add_argument("--cam_epochs", type=int, default=2)
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("--pss_interval", type=float, default=0.0,
                   help="also sample the proportional set size every this many seconds (0: never; it costs "
                        "0.1-0.4 s of CPU per sample)")
    p.add_argument("--timeout", type=float, default=None)
    p.add_argument("--stop_on_violation", action="store_true")
    p.add_argument("--no_snapshot", action="store_true",
                   help="run the repository's run_sample.py in place instead of a copy taken at the start")
    p.add_argument("--raw_weights", action="store_true",
                   help="use the weight files as bench.official_weights writes them (BatchNorm statistics not "
                        "calibrated: the frozen-BN CNN branches diverge at once), in <out>/weights_raw")
    g = p.add_argument_group("projection")
    g.add_argument("--project", action="store_true", help="only the FLOP-count projection of the full VOC run")
    g.add_argument("--gpu", nargs="+", default=["A100=312", "H100=989"], help="NAME=PEAK_TFLOPS (bf16 dense)")
    g.add_argument("--utilisation", type=float, default=0.35)
    g.add_argument("--cpu_workers", type=int, default=8, help="host processes for the CPU CRFs (--num_workers)")
    g.add_argument("--launch_us", type=float, default=6.0, help="seconds per kernel launch of the random walk, in µs")
    g.add_argument("--per_image_overhead_ms", type=float, default=10.0)
    g.add_argument("--units_from", default=None,
                   help="reuse the unit counts of a projection.json written before (other assumptions, no recount)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if a.project:
        return run_projection(a)
    return rehearse(a)


if __name__ == "__main__":
    sys.exit(main())
