"""One run, one cause, with two gloo processes on the CPU: a worker's user error, a bug, or a kill from outside ends
every process of the run, the run raises (or prints) the cause once, and a rerun after a kill resumes training with
the weights of an uninterrupted run."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from misc.core.errors import UserError
from misc.engine.failures import FailureRecord, WorkerBugError, WorkerKilledError, WorkerUserError, root_cause
from misc.engine.per_image import PerImageTask, run_per_image
from misc.engine.training import run_training
from tests.test_training_driver import ToyJob, _args, _weights

REPO = Path(__file__).resolve().parents[1]


class FailingToyJob(ToyJob):
    """ToyJob whose process ``TOY_FAIL_RANK`` fails after update ``TOY_FAIL_AT`` as ``TOY_FAIL`` says (once per
    ``TOY_FAIL_ONCE`` marker file, so that the rerun trains through)."""

    def after_update(self, update: int) -> None:
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        marker = Path(os.environ.get("TOY_FAIL_ONCE", "/nonexistent/marker"))
        if str(rank) != os.environ.get("TOY_FAIL_RANK") or str(update) != os.environ.get("TOY_FAIL_AT"):
            return
        if marker.exists():
            return
        marker.touch()
        kind = os.environ["TOY_FAIL"]
        if kind == "user":
            raise UserError(f"train_toy: image 'x{update}' is unreadable; replace it")
        if kind == "bug":
            raise ZeroDivisionError("toy bug")
        os.kill(os.getpid(), signal.SIGKILL)


def _fail(monkeypatch, tmp_path, kind: str, rank: int = 1, at: int = 3) -> None:
    monkeypatch.setenv("TOY_FAIL", kind)
    monkeypatch.setenv("TOY_FAIL_RANK", str(rank))
    monkeypatch.setenv("TOY_FAIL_AT", str(at))
    monkeypatch.setenv("TOY_FAIL_ONCE", str(tmp_path / f"failed_{kind}"))


@pytest.mark.slow
def test_a_worker_user_error_ends_the_run_with_its_message_once(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    _fail(monkeypatch, tmp_path, "user")
    start = time.monotonic()
    with pytest.raises(WorkerUserError) as info:
        run_training(FailingToyJob, _args(tmp_path / "w", nproc=2))
    assert str(info.value) == "train_toy: image 'x3' is unreadable; replace it"
    assert time.monotonic() - start < 60
    assert "train_toy process 0 stopped because process 1 failed" in caplog.text
    assert not (tmp_path / "w" / "sess" / "toy.pth").exists()


@pytest.mark.slow
def test_a_worker_bug_carries_its_own_traceback(tmp_path, monkeypatch):
    _fail(monkeypatch, tmp_path, "bug", rank=0)
    with pytest.raises(WorkerBugError) as info:
        run_training(FailingToyJob, _args(tmp_path / "w", nproc=2))
    assert str(info.value) == "train_toy process 0 failed: ZeroDivisionError: toy bug"
    assert "raise ZeroDivisionError(\"toy bug\")" in info.value.worker_traceback


@pytest.mark.slow
def test_a_killed_worker_ends_the_others_and_the_rerun_resumes_to_the_same_weights(tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    run_training(FailingToyJob, _args(reference, nproc=2))  # no TOY_FAIL: uninterrupted
    work = tmp_path / "work"
    _fail(monkeypatch, tmp_path, "kill", rank=1, at=6)  # after the checkpoint at update 4 (the end of epoch 1)
    start = time.monotonic()
    with pytest.raises(WorkerKilledError, match=r"train_toy process 1 of 2 was killed by SIGKILL .* run the same "
                                                r"command again to resume"):
        run_training(FailingToyJob, _args(work, nproc=2))
    assert time.monotonic() - start < 60
    assert (work / "sess" / "train_toy_last.pt").is_file() and not (work / "sess" / "toy.pth").exists()
    run_training(FailingToyJob, _args(work, nproc=2))  # the marker file stops a second kill
    assert torch.equal(_weights(work), _weights(reference))


class _OneBadImage(PerImageTask):
    name = "toy_images"

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir

    def output_path(self, img_id: str) -> Path:
        return self.out_dir / f"{img_id}.txt"

    def load(self, img_id: str):
        if img_id == "b3":
            raise UserError("cannot read image /data/b3.jpg (truncated); replace the file")
        return img_id

    def process(self, img_id: str, inputs) -> None:
        self.output_path(img_id).write_text(inputs)


@pytest.mark.slow
def test_a_per_image_worker_error_names_its_image_once(tmp_path):
    with pytest.raises(WorkerUserError, match=r"^cannot read image /data/b3.jpg \(truncated\); replace the file$"):
        run_per_image(_OneBadImage(tmp_path), [f"b{i}" for i in range(8)], processes=2)


def test_the_cause_is_the_first_failure_that_is_not_a_lost_peer(caplog):
    caplog.set_level(logging.INFO)
    peer = FailureRecord(0, "peer", "DistBackendError: Connection closed by peer", "tb0", 1.0)
    user = FailureRecord(1, "user", "bad image", "tb1", 2.0)
    error = root_cause([peer, user], None, 2, "train_cam")
    assert isinstance(error, WorkerUserError) and str(error) == "bad image"
    assert "train_cam process 0 stopped because process 1 failed" in caplog.text
    killed = root_cause([peer], (1, "SIGKILL"), 2, "train_cam")
    assert isinstance(killed, WorkerKilledError) and "process 1 of 2 was killed by SIGKILL" in str(killed)


def _truncate_one_train_image(work: Path) -> Path:
    """Write the tiny demo's data, then cut one train image short; returns its path."""
    from pipeline.config import parse_args
    from pipeline.demo import prepare_demo_data

    prepare_demo_data(parse_args(["--demo", "--preset", "tiny", "--work_dir", str(work)]))
    root = work / "data" / "demo_voc12"
    first = (root / "ImageSets" / "Segmentation" / "train.txt").read_text().split()[0]
    path = root / "JPEGImages" / f"{first}.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


TINY_TRAIN_CAM = ["--demo", "--preset", "tiny", "--device", "cpu", "--make_cam_pass", "false", "--eval_cam_pass",
                  "false", "--cam_to_ir_label_pass", "false", "--train_irn_pass", "false", "--make_sem_seg_pass",
                  "false", "--eval_sem_seg_pass", "false", "--train_deeplab_pass", "false", "--eval_deeplab_pass",
                  "false", "--export_deeplab_test_pass", "false", "--report_pass", "false"]


@pytest.mark.slow
def test_nproc_2_with_a_truncated_image_ends_as_one_process_does(tmp_path):
    work = tmp_path / "w"
    bad = _truncate_one_train_image(work)
    proc = subprocess.run([sys.executable, "run_sample.py", "--nproc", "2", *TINY_TRAIN_CAM, "--work_dir", str(work)],
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("crt: error: ") and str(bad) in last and "truncated" in last
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_torchrun_with_a_truncated_image_names_the_cause_in_its_summary(tmp_path):
    work = tmp_path / "w"
    bad = _truncate_one_train_image(work)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "run_sample.py", *TINY_TRAIN_CAM, "--work_dir", str(work)],
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "To enable traceback" not in out
    summary = out[out.index("Root Cause"):]  # torchrun's own closing (its traceback and summary) comes last
    assert "crt: error: " in summary and str(bad) in summary and "truncated" in summary
    ranks = out[: out.index("Traceback")] if "Traceback" in out else out
    assert "Traceback" not in ranks.split("crt: error:")[0] and ranks.count("crt: error:") == 1
    assert "stopped because process" in ranks
