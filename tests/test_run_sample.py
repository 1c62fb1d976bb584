"""Orchestrator: typed flags, presets, dry run, log tee, per-image runner."""
import subprocess
import sys
from pathlib import Path

import pytest

import run_sample
from misc.engine.per_image import PerImageTask, parse_shard, run_per_image
from pipeline.flags import IGNORED
from pipeline.presets import PRESETS
from tests.conftest import REPO_ROOT


@pytest.mark.parametrize("text,value", [("true", True), ("TRUE", True), ("1", True), ("Yes", True), ("false", False),
                                        ("0", False), ("NO", False), ("False", False)])
def test_step_flags_accept_bool_words(text, value):
    args = run_sample.parse_args(["--make_ins_seg_pass", text, "--train_cam_pass", text])
    assert args.make_ins_seg_pass is value and args.train_cam_pass is value


def test_bad_bool_is_an_error():
    with pytest.raises(SystemExit):
        run_sample.parse_args(["--train_cam_pass", "maybe"])


def test_defaults_match_the_original():
    a = run_sample.parse_args([])
    assert a.cam_scales == (1.0, 0.5, 1.5, 2.0, 0.75, 1.25, 1.75)
    assert (a.cam_batch_size, a.cam_num_epoches, a.cam_learning_rate, a.cam_weight_decay) == (16, 10, 0.1, 1e-4)
    assert (a.cam_eval_thres, a.cam_lambda, a.conf_fg_thres, a.conf_bg_thres) == (0.15, 0.1, 0.35, 0.15)
    assert (a.irn_crop_size, a.irn_batch_size, a.irn_num_epoches, a.irn_learning_rate) == (512, 32, 3, 0.1)
    assert (a.beta, a.exp_times, a.sem_seg_bg_thres, a.ins_seg_bg_thres) == (10, 8, 0.25, 0.25)
    assert a.log_name == "sample_train_eval" and a.chainer_eval_set == "train"
    assert a.cam2_weights_name == "sess/deits_cam.pth" and a.cam_out_dir == "result/cam"
    assert a.make_ins_seg_pass is False and a.eval_ins_seg_pass is False and a.train_cam_pass is True


def test_sess_dir_is_its_own_flag(tmp_path):
    """Resume/state files go to --sess_dir (default sess under --work_dir), not to the folder of a weights file."""
    a = run_sample.parse_args(["--work_dir", str(tmp_path)])
    assert a.sess_dir == str(tmp_path / "sess") == str(Path(a.cam2_weights_name).parent)
    moved = run_sample.parse_args(["--work_dir", str(tmp_path), "--cam2_weights_name", "elsewhere/deits.pth"])
    assert moved.sess_dir == str(tmp_path / "sess") and moved.cam2_weights_name == str(tmp_path / "elsewhere/deits.pth")
    assert run_sample.parse_args(["--work_dir", str(tmp_path), "--sess_dir", "s2"]).sess_dir == str(tmp_path / "s2")


def test_original_module_flags_are_accepted_and_dropped():
    a = run_sample.parse_args(["--cam_network_branch1", "net.resnet50_cam", "--cam_network_branch2", "net.deit_cam",
                               "--irn_network", "net.resnet50_irn"])
    assert not any(hasattr(a, f) for f in IGNORED)  # not in config.json nor any fingerprint
    assert not any(hasattr(run_sample.parse_args([]), f) for f in IGNORED)


def test_clearer_aliases_share_the_original_dest():
    assert run_sample.parse_args(["--cam_lr", "0.05"]).cam_learning_rate == 0.05
    assert run_sample.parse_args(["--cam_learning_rate", "0.05"]).cam_learning_rate == 0.05
    assert run_sample.parse_args(["--irn_lr", "0.2"]).irn_learning_rate == 0.2
    a = run_sample.parse_args(["--cam_num_epochs", "3", "--irn_num_epochs", "2"])
    assert (a.cam_num_epoches, a.irn_num_epoches) == (3, 2)
    assert not hasattr(a, "cam_lr") and not hasattr(a, "cam_num_epochs")


def test_float_lists():
    assert run_sample.parse_args(["--cam_scales", "1.0,0.5"]).cam_scales == (1.0, 0.5)
    assert run_sample.parse_args(["--cam_scales", "1.0", "2"]).cam_scales == (1.0, 2.0)
    assert run_sample.parse_args(["--cam_scales", "(1.0, 0.5, 1.5)"]).cam_scales == (1.0, 0.5, 1.5)


def test_preset_is_overridable():
    a = run_sample.parse_args(["--demo"])
    assert a.preset == "demo" and a.vit_embed_dim == PRESETS["demo"]["vit_embed_dim"]
    assert run_sample.parse_args(["--demo", "--vit_embed_dim", "64"]).vit_embed_dim == 64
    assert run_sample.parse_args(["--demo", "--preset", "tiny"]).vit_embed_dim == PRESETS["tiny"][
        "vit_embed_dim"]


def test_plan_order_and_toggles():
    a = run_sample.parse_args(["--train_cam_pass", "false", "--make_ins_seg_pass", "true", "--eval_sem_seg_pass", "0"])
    names = [s.name for s in run_sample.planned_steps(a)]
    assert names[:6] == ["make_cam", "eval_cam", "cam_to_ir_label", "train_irn", "make_ins_seg_labels",
                         "make_sem_seg_labels"]
    assert "train_cam" not in names and "eval_sem_seg" not in names
    assert names[-1] == "report" and names.count("report") == 1
    cub = run_sample.parse_args(["--dataset", "cub", "--eval_wsol_pass", "no"])
    assert [s.module for s in run_sample.planned_steps(cub)] == ["step.train_wsol", "step.report"]
    alone = run_sample.parse_args(["--dataset", "cub", "--train_wsol_pass", "0", "--eval_wsol_pass", "0"])
    assert [s.module for s in run_sample.planned_steps(alone)] == ["step.report"]
    assert not run_sample.parse_args(["--report_pass", "false"]).report_pass


def test_dry_run_writes_nothing(tmp_path):
    cmd = [sys.executable, str(REPO_ROOT / "run_sample.py"), "--demo", "--dry_run", "--train_cam_pass", "false",
           "--make_ins_seg_pass", "true", "--eval_sem_seg_pass", "0"]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    steps_line = [line for line in out.splitlines() if line.startswith("steps that would run")][0]
    assert "make_cam" in steps_line and "make_ins_seg" in steps_line
    assert "train_cam" not in out and "eval_sem_seg" not in out
    assert list(tmp_path.iterdir()) == []


def test_tee_captures_children_and_stderr(tmp_path):
    code = (
        "import os, subprocess, sys\n"
        "from misc.core.log import tee_output\n"
        "with tee_output(sys.argv[1], 'HEADER'):\n"
        "    print('from-stdout', flush=True)\n"
        "    print('from-stderr', file=sys.stderr, flush=True)\n"
        "    subprocess.run([sys.executable, '-c', 'print(\"from-child\")'], check=True)\n"
    )
    log = tmp_path / "x.log"
    for _ in range(2):
        subprocess.run([sys.executable, "-c", code, str(log)], cwd=REPO_ROOT, check=True, capture_output=True)
    text = log.read_text()
    assert text.count("HEADER") == 2  # appended, not overwritten
    for s in ("from-stdout", "from-stderr", "from-child"):
        assert text.count(s) == 2


class _Square(PerImageTask):
    name = "square"

    def __init__(self, out_dir, fail_on=None):
        self.out_dir, self.fail_on, self.calls = Path(out_dir), fail_on, []

    def output_path(self, img_id):
        return self.out_dir / f"{img_id}.txt"

    def load(self, img_id):
        return int(img_id) ** 2

    def process(self, img_id, inputs):
        if img_id == self.fail_on:
            raise ValueError("boom")
        self.calls.append(img_id)
        self.output_path(img_id).parent.mkdir(parents=True, exist_ok=True)
        self.output_path(img_id).write_text(str(inputs))


def test_runner_skips_done_shards_and_names_failures(tmp_path):
    ids = [str(i) for i in range(7)]
    task = _Square(tmp_path)
    s = run_per_image(task, ids, shard="1/3")
    assert task.calls == ["1", "4"] and s.processed == 2
    s = run_per_image(task, ids)
    assert sorted(task.calls) == sorted(ids) and s.skipped == 2 and s.processed == 5
    assert (tmp_path / "6.txt").read_text() == "36"
    s = run_per_image(task, ids)
    assert s.processed == 0 and s.skipped == 7
    run_per_image(task, ids, overwrite=True, shard="0/7")
    with pytest.raises(RuntimeError, match="'3'"):
        run_per_image(_Square(tmp_path / "f", fail_on="3"), ids)
    assert parse_shard(None) == (0, 1)
    with pytest.raises(ValueError):
        parse_shard("3/3")
