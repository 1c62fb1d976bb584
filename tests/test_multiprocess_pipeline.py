"""The whole tiny VOC pipeline in two CPU processes (gloo): under torchrun and through the plain launch's
``--nproc 2``; both give the same numbers, and a rerun under the other launcher finds everything up to date."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
TINY = ["--demo", "--preset", "tiny", "--device", "cpu", "--cam_num_epoches", "2", "--deeplab_iters", "2",
        "--export_deeplab_test_pass", "false"]


def _run(cmd, work):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd + TINY + ["--work_dir", str(work)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return (work / "sample_train_eval.log").read_text()


def test_torchrun_and_spawn_agree_and_share_fingerprints(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                "run_sample.py"]
    spawn = [sys.executable, "run_sample.py", "--nproc", "2"]
    log_a = _run(torchrun, tmp_path / "a")
    _run(spawn, tmp_path / "b")
    ma = json.loads((tmp_path / "a" / "result" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "b" / "result" / "metrics.json").read_text())
    for key in ("eval_cam", "eval_sem_seg"):
        assert ma[key]["miou"] == pytest.approx(mb[key]["miou"], abs=1e-6)
    assert ma["train_cam"]["epochs"][-1]["total"] == pytest.approx(mb["train_cam"]["epochs"][-1]["total"], rel=1e-5)
    assert "make_cam: " in log_a and log_a.count("step.train_cam: done") == 1
    # per-image outputs of both ranks are all there; masks also for DeepLab's list
    ids = (tmp_path / "a" / "data" / "demo_voc12" / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    assert all((tmp_path / "a" / "result" / "sem_seg" / f"{i}.png").is_file() for i in ids)
    # the other launcher on the same folder: nothing to redo
    log = _run(spawn, tmp_path / "a").split("crt run ")[-1]
    for step in ("train_cam", "train_irn", "train_deeplab"):
        assert f"{step}: up to date" in log
    assert "make_cam: 0 processed" in log and "make_sem_seg_labels: 0 processed" in log
