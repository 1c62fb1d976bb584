"""Bad input and faults (#13): every user error ends the run with one line ``crt: error: ...`` naming the flag or
file, exit code 2, no traceback on the console (it is in the log file, and on the console with ``--debug``); a bad
value of a typed flag is argparse's usage error (rc 2); anything else is a bug (rc 1, traceback kept)."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch

import pipeline.preflight
import run_sample
from misc.core.errors import OutputWriteError, UserError
from pipeline.steps import SEGMENTATION_STEPS

SEGMENTATION_SWITCHES = [s.switch for s in SEGMENTATION_STEPS]

VOC_FLAGS = [flag for flag in SEGMENTATION_SWITCHES]


def only(*steps: str) -> list[str]:
    """Step flags that plan exactly ``steps`` (VOC)."""
    out: list[str] = []
    for flag in VOC_FLAGS:
        out += [f"--{flag}", "true" if flag.removesuffix("_pass") in steps else "false"]
    return out


def tiny(work: Path, *extra: str) -> list[str]:
    return ["--preset", "tiny", "--work_dir", str(work), "--device", "cpu", *extra]


def call(argv: list[str], capfd) -> tuple[int, str, str]:
    """``run_sample.main(argv)`` in this process → (exit code, stdout, stderr)."""
    try:
        rc = run_sample.main(argv)
    except SystemExit as exc:  # argparse's usage errors
        rc = exc.code
    out, err = capfd.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str, *names: str) -> str:
    """rc 2, ``crt: error:`` naming every ``names``, no traceback; returns the message."""
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    start = [i for i, line in enumerate(lines) if line.startswith("crt: error: ")]
    assert len(start) == 1, err
    message = "\n".join(lines[start[0]:])
    for name in names:
        assert name in message, (name, message)
    return message


# ------------------------------------------------------------------------------------------------ usage errors
@pytest.mark.parametrize("flags,name", [
    (["--cam_scales", "1.0", "x"], "--cam_scales"),
    (["--deeplab_scales", "0.5,y"], "--deeplab_scales"),
    (["--cam_eval_sweep"], "--cam_eval_sweep"),
    (["--amp", "maybe"], "--amp"),
    (["--shard", "3"], "--shard"),
    (["--shard", "2/2"], "--shard"),
    (["--shard", "a/b"], "--shard"),
    (["--device", "gpu0"], "--device"),
    (["--cam_batch_size", "x"], "--cam_batch_size"),
    (["--conf_fg_thres", "high"], "--conf_fg_thres"),
    (["--train_cam_pass", "maybe"], "--train_cam_pass"),
    (["--no_pretrained", "perhaps"], "--no_pretrained"),
    (["--deeplab_depth", "34"], "--deeplab_depth"),
])
def test_bad_typed_value_is_a_usage_error(flags, name, tmp_path, capfd):
    rc, _, err = call(tiny(tmp_path / "w", *flags), capfd)
    assert rc == 2
    assert f"argument {name}" in err and "usage:" in err and "Traceback" not in err
    assert not (tmp_path / "w").exists()


def test_good_shard_and_device_values_still_parse():
    args = run_sample.parse_args(["--shard", "1/4", "--device", "cuda:1"])
    assert args.shard == "1/4" and args.device == "cuda:1"
    assert run_sample.parse_args([]).device == "auto" and run_sample.parse_args([]).shard is None


# ------------------------------------------------------------------------------------------------ ranges
@pytest.mark.parametrize("flags,names", [
    (["--cam_scales", "1.0", "0"], ["--cam_scales", "> 0"]),
    (["--deeplab_scales", "0.5", "-1"], ["--deeplab_scales", "> 0"]),
    (["--cam_batch_size", "0"], ["--cam_batch_size", ">= 1"]),
    (["--irn_num_epoches", "-2"], ["--irn_num_epoches", ">= 1"]),
    (["--deeplab_iters", "0"], ["--deeplab_iters", ">= 1"]),
    (["--cam_crop_size", "0"], ["--cam_crop_size", ">= 1"]),
    (["--num_workers", "-1"], ["--num_workers", ">= 0"]),
    (["--conf_fg_thres", "1.5"], ["--conf_fg_thres", "[0, 1]"]),
    (["--conf_bg_thres", "nan"], ["--conf_bg_thres", "[0, 1]"]),
    (["--sem_seg_bg_thres", "-0.1"], ["--sem_seg_bg_thres", "[0, 1]"]),
    (["--cam_eval_sweep", "0.1", "2"], ["--cam_eval_sweep", "[0, 1]"]),
    (["--cam_learning_rate", "0"], ["--cam_learning_rate", "> 0"]),
    (["--nproc", "0"], ["--nproc", ">= 1"]),
    (["--cam_resize_long", "128", "64"], ["--cam_resize_long 128 64", "<= the second"]),
    (["--vit_embed_dim", "30", "--vit_num_heads", "4"], ["--vit_embed_dim 30", "multiple of --vit_num_heads 4"]),
    (["--vit_tile_size", "48"], ["--vit_tile_size 48", "even multiple of --vit_patch_size 16"]),
])
def test_out_of_range_value_is_one_line_and_writes_nothing(flags, names, tmp_path, capfd):
    rc, _, err = call(tiny(tmp_path / "w", *flags), capfd)
    message = assert_one_line_error(rc, err, *names)
    assert "\n" not in message
    assert not (tmp_path / "w").exists()  # checked before the work dir, the log or any data is made


def test_range_errors_under_dry_run_and_all_listed(tmp_path, capfd):
    rc, out, err = call(tiny(tmp_path, "--dry_run", "--cam_scales", "1.0", "0", "--conf_fg_thres", "2",
                             "--irn_batch_size", "0"), capfd)
    message = assert_one_line_error(rc, err, "--cam_scales", "--conf_fg_thres", "--irn_batch_size")
    assert message.splitlines()[0] == "crt: error: 3 flag values cannot be used; nothing was run:"
    assert "resolved configuration" not in out
    rc, out, err = call(tiny(tmp_path, "--demo", "--dry_run"), capfd)
    assert rc == 0 and "steps that would run" in out and list(tmp_path.iterdir()) == []


def test_dry_run_checks_the_inputs_and_writes_nothing(tmp_path, capfd, real_voc_root):
    """Under --dry_run the inputs are checked too (the index is built in a temporary folder)."""
    rc, out, err = call(tiny(tmp_path, "--dry_run", "--voc12_root", str(real_voc_root)), capfd)
    message = assert_one_line_error(rc, err, "--train_list voc12/train_aug.txt", "--deeplab_train_list")
    assert message.startswith("crt: error: 2 problems with the inputs of the planned steps; nothing was run:")
    assert "python -m voc12.prepare_sbd" in message and list(tmp_path.iterdir()) == []
    rc, out, err = call(tiny(tmp_path, "--dry_run", "--voc12_root", str(real_voc_root), "--train_list", "train",
                             "--deeplab_train_list", "train"), capfd)
    assert rc == 0 and out.strip().endswith("the planned steps read is there") and list(tmp_path.iterdir()) == []


def test_device_cuda_without_a_gpu(tmp_path, capfd):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible here")
    for device in ("cuda", "cuda:1"):
        rc, _, err = call(tiny(tmp_path / "w", "--device", device), capfd)
        assert_one_line_error(rc, err, f"--device {device}: no CUDA device is visible", "use --device cpu")
    assert not (tmp_path / "w").exists()


def test_heldout_per_class_too_large_for_the_cub_demo(tmp_path, capfd):
    rc, _, err = call(tiny(tmp_path / "w", "--dataset", "cub", "--demo", "--wsol_heldout_per_class", "8",
                           "--cub_demo_train_per_class", "8", "--dry_run"), capfd)
    assert_one_line_error(rc, err, "--wsol_heldout_per_class 8", "[1, 7]")
    rc, _, err = call(tiny(tmp_path / "w", "--dataset", "cub", "--demo", "--wsol_heldout_per_class", "8",
                           "--cub_demo_train_per_class", "8", "--wsol_select_on", "test", "--dry_run"), capfd)
    assert rc == 0, err


def test_heldout_per_class_checked_where_the_list_is_made(tmp_path):
    from cub.dataset import CUBDatasetError, CUBMetadata, load_or_make_heldout
    from cub.synthetic import make_synthetic_cub

    root = make_synthetic_cub(tmp_path, num_classes=2, train_per_class=3, test_per_class=1, image_size=(32, 40))
    meta = CUBMetadata.load(root)
    with pytest.raises(CUBDatasetError, match=r"--wsol_heldout_per_class 3: must be in \[1, 2\]") as err:
        load_or_make_heldout(meta, tmp_path / "heldout.txt", 3, leave_train=True)
    assert isinstance(err.value, UserError) and not (tmp_path / "heldout.txt").exists()
    assert len(load_or_make_heldout(meta, tmp_path / "heldout.txt", 2, leave_train=True)) == 4
    assert len(load_or_make_heldout(meta, tmp_path / "all.txt", 3)) == 6  # not held out of training: no limit


# ------------------------------------------------------------------------------------------------ folders
def _read_only(folder: Path, monkeypatch) -> None:
    """Make ``folder`` unwritable: chmod 0555, or (as root, who writes anyway) a probe that fails there."""
    folder.chmod(0o555)
    if os.geteuid() != 0:
        return
    real = pipeline.preflight.probe_write

    def probe(path):
        if Path(path).absolute() == folder.absolute() or folder.absolute() in Path(path).absolute().parents:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        real(path)

    monkeypatch.setattr(pipeline.preflight, "probe_write", probe)


def test_read_only_work_dir(tmp_path, capfd, monkeypatch):
    ro = tmp_path / "ro"
    (ro / "result").mkdir(parents=True)
    metrics = ro / "result" / "metrics.json"
    metrics.write_text('{"eval_cam": {"miou": 0.5}}\n')
    _read_only(ro, monkeypatch)
    try:
        rc, _, err = call(tiny(ro, "--demo"), capfd)
        assert_one_line_error(rc, err, "--work_dir", str(ro), "permission denied")
        rc, _, err = call(tiny(tmp_path / "ok", "--result_dir", str(ro / "other"), "--dry_run"), capfd)
        assert_one_line_error(rc, err, "--result_dir", str(ro / "other"), f"cannot create files in {ro}")
    finally:
        ro.chmod(0o755)
    assert metrics.read_text() == '{"eval_cam": {"miou": 0.5}}\n'
    assert sorted(p.name for p in ro.iterdir()) == ["result"]  # no log, no data, no temp file


# ------------------------------------------------------------------------------------------------ weights
IRN_ONLY = only("train_irn")


def test_missing_weights_file_fails_before_the_demo_data(tmp_path, capfd):
    missing = tmp_path / "nope" / "resnet18.pth"
    work = tmp_path / "w"
    rc, _, err = call(tiny(work, "--demo", "--no_pretrained", "false", "--irn_pretrained", str(missing),
                           *IRN_ONLY), capfd)
    message = assert_one_line_error(rc, err, "--irn_pretrained", str(missing), "file not found", "--no_pretrained")
    assert message.splitlines()[0] == "crt: error: 1 pretrained weight source(s) cannot be used; nothing was run:"
    assert len(message.splitlines()) == 2  # one line per problem
    assert not (work / "data").exists()  # checked before the demo data is written
    log_text = (work / "sample_train_eval.log").read_text()
    assert "Traceback" in log_text and "crt: error: 1 pretrained weight source(s)" in log_text


def test_debug_shows_the_traceback(tmp_path, capfd):
    rc, _, err = call(tiny(tmp_path / "w", "--demo", "--no_pretrained", "false", "--irn_pretrained",
                           str(tmp_path / "nope.pth"), "--debug", *IRN_ONLY), capfd)
    assert rc == 2 and "Traceback" in err and "PretrainedWeightsError" in err
    assert err.strip().splitlines()[-2].startswith("crt: error: ")


def test_text_file_as_weights(tmp_path, capfd):
    text = tmp_path / "weights.pth"
    text.write_text("these are not weights\n")
    readme = tmp_path / "README"
    readme.write_text("not weights either\n")
    rc, _, err = call(tiny(tmp_path / "w", "--demo", "--no_pretrained", "false", "--irn_pretrained", str(text),
                           "--deit_pretrained", str(readme), "--cam_cnn_pretrained", str(text),
                           *only("train_cam", "train_irn")), capfd)
    message = assert_one_line_error(rc, err, "--irn_pretrained", "--deit_pretrained", "--cam_cnn_pretrained",
                                    "cannot be read: it is a text file, not a checkpoint", str(readme))
    assert message.splitlines()[0].startswith("crt: error: 3 pretrained weight source(s) cannot be used")
    assert len(message.splitlines()) == 4


def test_resnet_file_as_deit_weights(tmp_path, capfd):
    from net.resnet import build_resnet

    resnet = tmp_path / "resnet18.pth"
    torch.save(build_resnet(18, base_width=8).state_dict(), resnet)
    rc, _, err = call(tiny(tmp_path / "w", "--demo", "--no_pretrained", "false", "--deit_pretrained", str(resnet),
                           "--cam_cnn_pretrained", str(resnet), "--cam_cnn_width", "8", *only("train_cam")), capfd)
    message = assert_one_line_error(rc, err, "--deit_pretrained", str(resnet), "not a DeiT state dict")
    assert "--cam_cnn_pretrained" not in message  # the ResNet file fits the CNN branch
    assert not (tmp_path / "w" / "data").exists()


# ------------------------------------------------------------------------------------------------ writes
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_save_state_dict_disk_full_keeps_the_old_file(tmp_path, monkeypatch):
    from misc.core.checkpoint import save_state_dict

    path = tmp_path / "model.pth"
    save_state_dict({"w": torch.ones(2)}, path)
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", _enospc)
    with pytest.raises(OutputWriteError) as err:
        save_state_dict({"w": torch.zeros(2)}, path)
    assert str(err.value) == f"no space left on device while writing {path}: free space or choose another --work_dir"
    assert isinstance(err.value, UserError) and isinstance(err.value, OSError) and err.value.errno == errno.ENOSPC
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["model.pth"]


def test_atomic_write_read_only_is_a_user_error(tmp_path):
    from misc.core.io import write_json

    def denied(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    import misc.core.io

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(misc.core.io.os, "replace", denied)
        with pytest.raises(UserError, match=r"read-only file system while writing .*x\.json"):
            write_json(tmp_path / "x.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_disk_full_during_a_checkpoint_save(tmp_path, capfd, monkeypatch):
    """A finished train_cam run, then a rerun of another configuration whose checkpoint save hits a full disk:
    one line, rc 2, no temp file, the earlier metrics.json and weights unchanged."""
    work = tmp_path / "w"
    argv = tiny(work, "--demo", "--cam_num_epoches", "1", "--cam_cnn_width", "8", "--cam_batch_size", "9",
                "--cam_crop_size", "64", *only("train_cam"))
    rc, _, err = call(argv, capfd)
    assert rc == 0, err
    metrics, weights = work / "result" / "metrics.json", work / "sess" / "deits_cam.pth"
    before = {p: p.read_bytes() for p in (metrics, weights)}
    files_before = sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.name != "sample_train_eval.log")
    monkeypatch.setattr(torch, "save", _enospc)
    rc, _, err = call(argv + ["--cam_learning_rate", "0.05"], capfd)
    message = assert_one_line_error(rc, err, "no space left on device while writing", str(work / "sess"),
                                    "--work_dir")
    assert "\n" not in message
    assert {p: p.read_bytes() for p in before} == before
    files_after = sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.name != "sample_train_eval.log")
    assert not [f for f in files_after if ".tmp" in f or Path(f).name.startswith(".")]
    assert set(files_after) - set(files_before) <= {"result/logs", "result/logs/train_cam.jsonl"}
    assert "Traceback" in (work / "sample_train_eval.log").read_text()
    assert json.loads(metrics.read_text())  # still valid JSON


def test_per_image_write_failure_names_the_image(tmp_path):
    from misc.engine.per_image import PerImageTask, run_per_image

    class Full(PerImageTask):
        name = "full"

        def output_path(self, img_id):
            return tmp_path / f"{img_id}.npz"

        def process(self, img_id, inputs):
            from misc.core.io import save_npz

            save_npz(self.output_path(img_id), x=torch.zeros(1).numpy())

    import misc.core.io

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(misc.core.io.Path, "write_bytes", _enospc)
        with pytest.raises(UserError, match=r"full: image '7': no space left on device while writing .*7\.npz"):
            run_per_image(Full(), ["7"])
    assert list(tmp_path.iterdir()) == []


def test_batch_larger_than_the_data(tmp_path, capfd):
    rc, _, err = call(tiny(tmp_path / "w", "--demo", "--cam_batch_size", "500", *only("train_cam")), capfd)
    assert_one_line_error(rc, err, "--cam_batch_size 500", "choose a smaller --cam_batch_size")


# ------------------------------------------------------------------------------------------------ the rest
def test_missing_dataset_is_one_line(tmp_path, capfd):
    rc, _, err = call(tiny(tmp_path / "w", "--voc12_root", str(tmp_path / "VOC2012"), *only("eval_cam")), capfd)
    assert_one_line_error(rc, err, str(tmp_path / "VOC2012"))


def test_a_bug_keeps_its_traceback(tmp_path, capfd, monkeypatch):
    def bug(args, modules):
        raise KeyError("not a user error")

    monkeypatch.setattr(run_sample, "prepare_shared_state", bug)
    rc, out, err = call(tiny(tmp_path / "w", *only("eval_cam")), capfd)
    assert rc == 1 and "Traceback" in out + err and "KeyError" in out + err and "crt: error" not in out + err


def test_user_error_classes():
    from cub.dataset import CUBDatasetError
    from misc.engine.training import NonFiniteLossError
    from misc.core.weights import PretrainedWeightsError
    from voc12.dataloader import VOCLayoutError, VOCSplitError

    for cls, other in ((PretrainedWeightsError, RuntimeError), (CUBDatasetError, FileNotFoundError),
                       (VOCLayoutError, FileNotFoundError), (VOCSplitError, ValueError),
                       (NonFiniteLossError, RuntimeError)):
        assert issubclass(cls, UserError) and issubclass(cls, other)
        assert str(cls("message")) == "message"
