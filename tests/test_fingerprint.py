"""Fingerprints, manifests and the per-image runner's recompute rule; stale metrics; on-device affinity targets."""
from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from misc.core.fingerprint import Manifest, config_diff, fingerprint, identity, prepare_output_dir, write_sidecar
from misc.core.io import save_npz
from misc.core.results import prune_stale_metrics, update_metrics
from misc.engine.per_image import PerImageTask, run_per_image
from pipeline.flags import build_parser


def test_fingerprint_and_diff():
    a = {"beta": 10, "scales": (1.0, 0.5), "vit": {"dim": 384}}
    assert fingerprint(a) == fingerprint({"vit": {"dim": 384}, "scales": [1.0, 0.5], "beta": 10})
    b = {**a, "beta": 8, "vit": {"dim": 64}}
    assert fingerprint(a) != fingerprint(b)
    assert config_diff(a, b) == ["beta: 10 -> 8", "vit.dim: 384 -> 64"]


def test_identity_of_files_and_folders(tmp_path):
    f = tmp_path / "w.pth"
    f.write_bytes(b"abc")
    plain = identity(f)
    assert plain.startswith("sha256:")
    write_sidecar(f, "train_x", "0123456789abcdef")
    assert identity(f) == "run:0123456789abcdef"
    f.write_bytes(b"abcd")  # replaced by another file: the sidecar no longer vouches for it
    assert identity(f).startswith("sha256:") and identity(f) != plain
    assert identity(tmp_path / "nope") == "missing"
    assert identity(tmp_path) == "unrecorded"
    fp = Manifest.write(tmp_path, "make_x", {"k": 1})
    assert identity(tmp_path) == f"run:{fp}"


class _Square(PerImageTask):
    name = "square"
    suffix = ".npz"

    def __init__(self, out_dir: Path, power: int) -> None:
        self.out_dir, self.power = out_dir, power

    def output_path(self, img_id: str) -> Path:
        return self.out_dir / f"{img_id}.npz"

    def config(self) -> dict:
        return {"power": self.power}

    def process(self, img_id: str, inputs) -> None:
        save_npz(self.output_path(img_id), v=np.asarray(int(img_id) ** self.power))


def test_runner_reuses_same_config_and_recomputes_changed_config(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    out = tmp_path / "out"
    ids = ["1", "2", "3"]
    assert run_per_image(_Square(out, 2), ids[:2]).processed == 2
    assert run_per_image(_Square(out, 2), ids).processed == 1  # same config: only the new id
    (out / "unrelated.txt").write_text("kept")
    s = run_per_image(_Square(out, 3), ids[:1])  # another config: nothing of the old one may stay
    assert s.processed == 1 and "power: 2 -> 3" in caplog.text
    assert sorted(p.name for p in out.glob("*.npz")) == ["1.npz"]
    assert (out / "unrelated.txt").read_text() == "kept"
    assert json.loads((out / ".crt_manifest.json").read_text())["config"] == {"power": 3}
    mode = stat.S_IMODE((out / "1.npz").stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # atomic writes honour the umask (shared folders for --shard)


def test_folder_without_manifest_is_recomputed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    save_npz(out / "1.npz", v=np.asarray(-1))  # written by something that did not record its configuration
    assert run_per_image(_Square(out, 2), ["1"]).processed == 1
    assert int(np.load(out / "1.npz")["v"]) == 1


def test_shard_overwrite_redoes_only_its_ids(tmp_path):
    out = tmp_path / "out"
    run_per_image(_Square(out, 2), ["1", "2", "3", "4"])
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npz")}
    s = run_per_image(_Square(out, 2), ["1", "2", "3", "4"], shard="0/2", overwrite=True)
    assert s.processed == 2
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npz")}
    assert set(after) == set(before) and after["2.npz"] == before["2.npz"]


def test_stale_metrics_are_dropped(tmp_path):
    cams = tmp_path / "cam"
    Manifest.write(cams, "make_cam", {"w": 1})
    update_metrics(tmp_path, "eval_cam", {"miou": 0.5}, inputs=[str(cams)])
    update_metrics(tmp_path, "other", {"x": 1})
    assert prune_stale_metrics(tmp_path) == []
    Manifest.write(cams, "make_cam", {"w": 2})  # make_cam recomputed, eval_cam not rerun
    assert prune_stale_metrics(tmp_path) == ["eval_cam"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == {"other"}
    history = [json.loads(x) for x in (tmp_path / "metrics_history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == ["eval_cam", "other"]


def test_affinity_targets_on_device_equal_the_per_image_ones():
    from misc.method.indexing import PathIndex, affinity_labels_batch, affinity_labels_from_indices

    rng = np.random.default_rng(0)
    pi = PathIndex(radius=5, default_size=(12, 12))
    labels = rng.choice([0, 0, 3, 7, 255], size=(3, 12, 12)).astype(np.uint8)
    got = affinity_labels_batch(torch.from_numpy(labels), torch.as_tensor(pi.src_indices),
                                torch.as_tensor(pi.dst_indices))
    for b in range(3):
        want = affinity_labels_from_indices(labels[b], pi.src_indices, pi.dst_indices)
        for g, w in zip(got, want):
            assert g.dtype == torch.float32 and np.array_equal(g[b].numpy(), w)


def test_amp_and_list_flags():
    import run_sample

    args = run_sample.parse_args(["--amp", "true"])
    assert args.amp == "bf16" and run_sample.parse_args(["--amp", "fp16"]).amp == "fp16"
    assert run_sample.parse_args([]).amp == "off" and args.deeplab_train_list.endswith("train_aug.txt")
    with pytest.raises(SystemExit):
        run_sample.parse_args(["--amp", "fp8"])


def test_masks_cover_deeplab_list(tmp_path):
    import run_sample
    from step.make_sem_seg_labels import mask_ids
    from voc12.dataloader import open_voc
    from voc12.synthetic import make_synthetic_voc

    root = tmp_path / "voc"
    make_synthetic_voc(root, num_train=3, num_val=2, num_extra_aug=2, num_test=0, image_size=((32, 32), (32, 32)),
                       seed=0)
    voc = open_voc(root, tmp_path)
    args = run_sample.parse_args(["--voc12_root", str(root), "--work_dir", str(tmp_path)])
    ids = mask_ids(args, voc)
    assert ids[:3] == voc.ids("train") and set(ids) == set(voc.ids("train")) | set(voc.ids("train_aug"))
    args.train_deeplab_pass = False
    assert mask_ids(args, voc) == voc.ids("train")


def test_float_flags_have_float_defaults():
    """``--beta 10`` on the command line must fingerprint like the default (10 and 10.0 differ in JSON)."""
    import run_sample

    for action in build_parser()._actions:
        if action.type is float and action.default is not None:
            assert isinstance(action.default, float), action.dest
    assert run_sample.parse_args(["--beta", "10"]).beta == run_sample.parse_args([]).beta
