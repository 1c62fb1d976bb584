"""WSOL metrics against the original code's golden outputs (wsol_box, wsol_metrics, wsol_maxboxacc)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from misc.eval import wsol_metrics as W
from tests.conftest import load_fixture

pytestmark = pytest.mark.fixtures

WSOLEVAL_DEFAULT_INTERVAL = 0.001  # wsolevaluation's default cam_curve_interval (the *_fine arrays)


def test_wsol_box_matches_original():
    meta, a = load_fixture("wsol_box")
    cam_thr, size = meta["config"]["cam_thr"], meta["config"]["crop_size"]
    for i, cam in enumerate(a["cams"]):
        cam_u8 = W.cam_to_uint8(W.resize_cam(torch.from_numpy(cam)[None], size))
        np.testing.assert_array_equal(cam_u8, a["cam_u8"][i], err_msg=f"case {i}")
        thr, kept = W.threshold_uint8(cam_u8, cam_thr)
        assert thr == a["thr"][i]
        assert len(W.find_contours(kept)) == a["n_contours"][i]
        box = W.cam_to_box(cam, cam_thr, size)
        assert box.dtype == np.int64
        np.testing.assert_array_equal(box, a["pred_boxes"][i], err_msg=f"case {i}")
        gt = a["gt_boxes"][i]
        for method in ("iou", "iog", "iob"):
            np.testing.assert_allclose(W.box_iou(box, gt, method)[0, 0], a[method][i], rtol=1e-12, atol=0)


def test_wsol_metrics_matches_original():
    meta, a = load_fixture("wsol_metrics")
    cfg = meta["config"]
    meter = W.WSOLMeter(cam_thr=cfg["cam_thr"], size=cfg["crop_size"])
    start = 0
    batch_losses = []
    for bs in cfg["batches"]:
        s = slice(start, start + bs)
        batch_losses.append(meter.add(torch.from_numpy(a["logits"][s]), torch.from_numpy(a["cams"][s]),
                                      torch.from_numpy(a["labels"][s]), torch.from_numpy(a["gt_boxes"][s]),
                                      a["n_gt"][s]))
        start += bs
    assert start == cfg["n_images"]
    np.testing.assert_array_equal(meter.per_image(), a["per_image"])
    summary = meter.summary()
    for key in ("cls_top1", "cls_top5", "loc_top1", "loc_top5", "loc_gt_known"):
        assert summary[key] == float(a[key]), key
    np.testing.assert_array_equal([summary[k] for k in W.ERROR_KINDS], a["wrong_details"])
    np.testing.assert_allclose(summary["loss"], a["loss_avg"], rtol=1e-6)
    np.testing.assert_allclose(batch_losses, a["batch_scalars"][:, 0], rtol=1e-6)
    for j, rec in enumerate(meter.records):
        np.testing.assert_array_equal(rec["top_classes"], a["top5_idx"][j])
        np.testing.assert_array_equal(rec["top_boxes"], a["top5_boxes"][j])
        np.testing.assert_allclose(rec["top_ious"], a["top5_ious"][j], rtol=1e-12, atol=0)
        np.testing.assert_array_equal(rec["gtk_box"], a["gtk_box"][j])
        np.testing.assert_allclose(rec["gtk_iou"], a["gtk_iou"][j], rtol=1e-12, atol=0)


def test_wsol_metrics_numpy_inputs_and_padding_rows():
    """Same batch as numpy arrays, GT padding rows (-1) detected without n_gt."""
    meta, a = load_fixture("wsol_metrics")
    meter = W.WSOLMeter(cam_thr=meta["config"]["cam_thr"], size=meta["config"]["crop_size"])
    meter.add(a["logits"], a["cams"], a["labels"], a["gt_boxes"])
    np.testing.assert_array_equal(meter.per_image(), a["per_image"])


@pytest.mark.parametrize("multi_contour, tag", [(True, "v2"), (False, "v1")])
def test_wsol_maxboxacc_matches_wsolevaluation(multi_contour, tag):
    meta, a = load_fixture("wsol_maxboxacc")
    cfg = meta["config"]
    meter = W.MaxBoxAccMeter(cfg["iou_threshold_list"], cfg["cam_curve_interval"], multi_contour)
    np.testing.assert_array_equal(meter.cam_thresholds, a["cam_threshold_list"])
    gts = W._split_gt(a["gt_boxes"], a["n_gt"])
    best, n_boxes, checks = [], [], []
    coords = np.arange(1, 225, dtype=np.float64)
    for b, cam in enumerate(a["gt_cams"]):
        scoremap = W.cam_to_scoremap(cam, meter.size)
        checks.append([scoremap.sum(), (scoremap * coords[None, :]).sum(), (scoremap * coords[:, None]).sum()])
        bi, nb = meter.add_scoremap(scoremap, gts[b])
        best.append(bi)
        n_boxes.append(nb)
    np.testing.assert_allclose(checks, a["scoremap_checksum"], rtol=1e-9, atol=0)
    np.testing.assert_allclose(np.array(best), a[f"best_iou_{tag}"], rtol=1e-12, atol=0)
    np.testing.assert_array_equal(meter.num_correct, a[f"num_correct_{tag}"])
    np.testing.assert_array_equal(meter.max_box_acc(), a[f"max_box_acc_{tag}"])
    if tag == "v2":
        np.testing.assert_array_equal(np.array(n_boxes), a["n_boxes_v2"])
        assert meter.summary()["maxboxacc"] == float(a["maxboxacc_v2"])
        best_idx = meta["checks"].get("best_threshold_index_v2")
        if best_idx is not None:
            np.testing.assert_array_equal(meter.num_correct.argmax(axis=1), best_idx)
    else:
        assert 50 in cfg["iou_threshold_list"]  # the old MaxBoxAcc is the IoU-50 value
        assert meter.summary()["maxboxacc_iou50"] == float(a["maxboxacc_v1"])

    fine = W.MaxBoxAccMeter(cfg["iou_threshold_list"], WSOLEVAL_DEFAULT_INTERVAL, multi_contour)
    fine.add(torch.from_numpy(a["gt_cams"]), a["gt_boxes"], a["n_gt"])
    np.testing.assert_array_equal(fine.max_box_acc(), a[f"max_box_acc_{tag}_fine"])
