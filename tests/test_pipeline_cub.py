"""End to end: the CUB WSOL pipeline on synthetic data (tiny preset): losses fall, checkpoints reload, metrics."""
import json

import numpy as np
import pytest
import torch

import run_sample

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cub_run(tiny_cub_run):
    """The session's tiny CUB run (tests/conftest.py): 3 epochs at lr 1e-3."""
    return tiny_cub_run


def test_wsol_training_and_reload(cub_run):
    work, argv = cub_run
    m = json.loads((work / "result" / "metrics.json").read_text())
    epochs = m["train_wsol"]["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    first, last = epochs[0], epochs[-1]
    assert last["ce_vit"] + last["ce_cnn"] < first["ce_vit"] + first["ce_cnn"]
    assert m["train_wsol"]["select_on"] == "heldout"
    held = (work / "result" / "wsol" / "heldout_ids.txt").read_text().split()
    assert len(held) == 3  # one per class in the tiny preset
    args = run_sample.parse_args(argv)
    from pipeline.models import build_wsol_cnn, build_wsol_vit

    vit = build_wsol_vit(args, pretrained=False)
    vit.load_state_dict(torch.load(args.wsol_weights_name, weights_only=True), strict=True)
    cnn = build_wsol_cnn(args, pretrained=False)
    cnn.load_state_dict(torch.load(args.wsol_cnn_weights_name, weights_only=True), strict=True)


def test_wsol_metrics(cub_run):
    work, _ = cub_run
    m = json.loads((work / "result" / "metrics.json").read_text())["eval_wsol"]
    for k in ("cls_top1", "cls_top5", "loc_top1", "loc_top5", "loc_gt_known", "whole_image_gt_known"):
        assert 0.0 <= m[k] <= 1.0
    assert 0.0 <= m["maxboxacc"] <= 100.0
    assert m["loc_top1"] <= m["cls_top1"] and m["loc_top1"] <= m["loc_gt_known"] + 1e-12
    assert m["n_images"] == 12  # 3 classes x 4 test images
    assert len(list((work / "result" / "vis" / "wsol").glob("*.png"))) == 8


def test_wsol_schedule_rules():
    from step.train_wsol import l1_on, vit_lr

    assert [e for e in range(1, 61) if l1_on(e, 5)][:6] == [5, 6, 7, 8, 9, 15]
    assert vit_lr(5e-5, 29, 30) == 5e-5 and np.isclose(vit_lr(5e-5, 30, 30), 5e-6)
    assert np.isclose(vit_lr(5e-5, 60, 30), 5e-7)
