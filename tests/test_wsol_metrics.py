"""Hand-made checks of the WSOL box, IoU and metric rules (boxes worked out by hand)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from misc.eval import wsol_metrics as W

S = 224


def blob_map(*blobs, value: float = 1.0, size: int = S) -> np.ndarray:
    """(size, size) float32 map with rectangles ``(x0, y0, x1, y1)`` (inclusive pixels) set to ``value``."""
    cam = np.zeros((size, size), dtype=np.float32)
    for blob in blobs:
        x0, y0, x1, y1 = blob[:4]
        cam[y0: y1 + 1, x0: x1 + 1] = blob[4] if len(blob) > 4 else value
    return cam


# --- boxes ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule", W.BOX_RULES)
def test_one_blob_box_has_exclusive_ends(rule):
    # pixels x 30..119, y 50..99 -> boundingRect (30, 50, 90, 50) -> [30, 50, 120, 100]
    box = W.cam_to_box(blob_map((30, 50, 119, 99)), box_rule=rule)
    assert box.tolist() == [30, 50, 120, 100]
    assert box.dtype == np.int64


def test_two_blobs_largest_wins():
    cam = blob_map((10, 10, 39, 39), (100, 120, 199, 179))  # 30x30 vs 100x60
    assert W.cam_to_box(cam).tolist() == [100, 120, 200, 180]


def test_two_equal_blobs_lower_one_wins():
    # OpenCV lists outer contours in reverse raster order; max() keeps the first of equal areas
    cam = blob_map((10, 10, 49, 49), (150, 160, 189, 199))
    assert W.cam_to_box(cam).tolist() == [150, 160, 190, 200]
    cam = blob_map((150, 10, 189, 49), (10, 160, 49, 199))
    assert W.cam_to_box(cam).tolist() == [10, 160, 50, 200]


@pytest.mark.parametrize("rule, expected", [("original", [0, 0, 1, 1]), ("wsolevaluation", [0, 0, 0, 0])])
@pytest.mark.parametrize("cam", [np.zeros((14, 14), np.float32), np.full((14, 14), 3.5, np.float32)])
def test_empty_or_constant_map_gives_fallback(cam, rule, expected):
    assert W.cam_to_box(cam, box_rule=rule).tolist() == expected


def test_border_blob_reaches_224_unless_clipped():
    cam = blob_map((200, 180, 223, 223))
    assert W.cam_to_box(cam).tolist() == [200, 180, 224, 224]
    assert W.cam_to_box(cam, box_rule="wsolevaluation").tolist() == [200, 180, 223, 223]


def test_threshold_is_strict():
    # peak 1.0 -> uint8 255, thr = int(0.1*255) = 25; a big plateau at 0.1 -> uint8 int(25.5) = 25 is dropped
    cam = blob_map((0, 0, 149, 149), value=0.1)
    cam[180:190, 180:200] = 1.0
    u8 = W.cam_to_uint8(W.resize_cam(cam))
    assert u8[0, 0] == 25 and u8.max() == 255
    assert W.threshold_uint8(u8)[0] == 25
    assert W.cam_to_box(cam).tolist() == [180, 180, 200, 190]
    cam[:150, :150] = 0.11  # uint8 28 > 25: now the plateau is the largest contour
    assert W.cam_to_box(cam).tolist() == [0, 0, 150, 150]


def test_ring_hole_contour_does_not_win():
    cam = blob_map((40, 40, 159, 159))
    cam[70:130, 70:130] = 0
    assert W.cam_to_box(cam).tolist() == [40, 40, 160, 160]


def test_single_cell_14x14_cam_box_is_centred_on_the_cell():
    # bilinear x16 of one cell (row 5, col 9): weight(x) = 1 - |(x + .5)/16 - .5 - c|, peak normalised to 1;
    # kept where int(255 * wx * wy / wmax^2) > 25 -> the box is symmetric around the cell centre 16c + 8.
    cam = np.zeros((14, 14), np.float32)
    cam[5, 9] = 2.0
    box = W.cam_to_box(torch.from_numpy(cam))
    x = np.arange(S) + 0.5
    wx = np.clip(1 - np.abs(x / 16 - 0.5 - 9), 0, None)
    wy = np.clip(1 - np.abs(x / 16 - 0.5 - 5), 0, None)
    wmax = wx.max()
    kept = np.floor(255 * np.outer(wy, wx) / wmax ** 2) > 25
    ys, xs = np.nonzero(kept)
    assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert box[0] + box[2] == 2 * (16 * 9 + 8) and box[1] + box[3] == 2 * (16 * 5 + 8)


# --- IoU ----------------------------------------------------------------------------------------------------------

def test_iou_plus_one_convention():
    a = [0, 0, 9, 9]  # 10 x 10 = 100 pixels
    assert W.box_iou(a, a)[0, 0] == 1.0
    assert W.box_iou(a, [5, 0, 14, 9])[0, 0] == pytest.approx(50 / 150, rel=1e-15)
    assert W.box_iou(a, [9, 0, 18, 9])[0, 0] == pytest.approx(10 / 190, rel=1e-15)  # one shared column
    assert W.box_iou(a, [10, 0, 19, 9])[0, 0] == 0.0
    assert W.box_iou([0, 0, 0, 0], [0, 0, 0, 0])[0, 0] == 1.0  # a point box has area 1
    assert W.box_iou([2, 2, 5, 5], a, "iog")[0, 0] == pytest.approx(16 / 100)
    assert W.box_iou([2, 2, 5, 5], a, "iob")[0, 0] == 1.0
    m = W.box_iou(np.array([a, [100, 100, 109, 109]]), np.array([a, [5, 0, 14, 9], [0, 0, 4, 9]]))
    assert m.shape == (2, 3) and m[1].max() == 0 and m[0, 2] == 0.5


def test_best_gt_iou_keeps_first_maximum():
    gts = np.array([[50, 50, 60, 60], [0, 0, 9, 9], [0, 0, 9, 9]])
    assert W.best_gt_iou([0, 0, 9, 9], gts) == (1.0, 1)
    assert W.best_gt_iou([200, 200, 210, 210], gts) == (0.0, 0)


# --- TS-CAM metrics on a hand-made batch --------------------------------------------------------------------------

C = 6


def make_batch():
    """7 images, 6 classes, CAMs at 224 (boxes by hand). Returns logits, cams, labels, gt (B, 2, 4), expectations."""
    gt_main = [20, 30, 119, 129]  # 100 x 100
    rows = []  # (label, class ranking, {class: blob}, gt boxes, expected flags, error kind)
    good = (20, 30, 118, 128)  # box [20,30,119,129] -> IoU 1
    rows.append((2, [2, 0, 1, 3, 4, 5], {2: good}, [gt_main], [1, 1, 1, 1, 1], "right"))
    rows.append((1, [3, 1, 0, 2, 4, 5], {1: good, 3: (150, 150, 200, 200)}, [gt_main], [0, 1, 0, 1, 1], "cls_wrong"))
    # part: blob inside the GT: box [40,50,70,80] -> IoB 1, IoU 961/10000
    rows.append((0, [0, 1, 2, 3, 4, 5], {0: (40, 50, 69, 79)}, [gt_main], [1, 1, 0, 0, 0], "part"))
    # more: blob contains the GT: box [0,0,200,200] -> IoG 1, IoB 10000/40401
    rows.append((4, [4, 0, 1, 2, 3, 5], {4: (0, 0, 199, 199)}, [gt_main], [1, 1, 0, 0, 0], "more"))
    # label ranked 6th: not in the top 5, GT-known still right
    rows.append((5, [0, 1, 2, 3, 4, 5], {5: good}, [gt_main], [0, 0, 0, 0, 1], "cls_wrong"))
    # IoU exactly 0.5: pixels x 0..48, y 0..98 -> box [0,0,49,99] (50 x 100 with +1) vs GT [0,0,99,99]
    rows.append((3, [3, 0, 1, 2, 4, 5], {3: (0, 0, 48, 98)}, [[0, 0, 99, 99]], [1, 1, 0, 0, 1], "part"))
    # multi-instance: box [0,0,150,50] covers both GT boxes (IoG 1 each), IoU 2550/7701 with each
    rows.append((1, [1, 0, 2, 3, 4, 5], {1: (0, 0, 149, 49)}, [[0, 0, 49, 49], [100, 0, 149, 49]],
                 [1, 1, 0, 0, 0], "multi_instance"))
    # wrong: disjoint
    rows.append((2, [2, 0, 1, 3, 4, 5], {2: (150, 150, 199, 199)}, [gt_main], [1, 1, 0, 0, 0], "wrong"))
    n = len(rows)
    logits = torch.zeros(n, C)
    cams = torch.zeros(n, C, S, S)
    labels = torch.zeros(n, dtype=torch.long)
    gt = -torch.ones(n, 2, 4, dtype=torch.long)
    for b, (label, ranking, blobs, gts, _, _) in enumerate(rows):
        labels[b] = label
        for r, c in enumerate(ranking):
            logits[b, c] = 10.0 - r
        for c, blob in blobs.items():
            cams[b, c] = torch.from_numpy(blob_map(blob))
        gt[b, : len(gts)] = torch.tensor(gts)
    flags = np.array([r[4] for r in rows])
    errors = [r[5] for r in rows]
    return logits, cams, labels, gt, flags, errors


def test_meter_on_hand_made_batch():
    logits, cams, labels, gt, flags, errors = make_batch()
    meter = W.WSOLMeter()
    loss = meter.add(logits[:3], cams[:3], labels[:3], gt[:3])
    assert loss == pytest.approx(float(F.cross_entropy(logits[:3], labels[:3])), rel=1e-6)
    meter.add(logits[3:], cams[3:], labels[3:], gt[3:])
    rows = meter.per_image()
    np.testing.assert_array_equal(rows[:, :5], flags)
    assert [W.ERROR_KINDS[j] for j in rows[:, 5:].argmax(axis=1)] == errors
    assert (rows[:, 5:].sum(axis=1) == 1).all()
    s = meter.summary()
    n = len(flags)
    assert s["n_images"] == n
    assert s["cls_top1"] == flags[:, 0].sum() / n == 6 / 8
    assert s["cls_top5"] == 7 / 8
    assert s["loc_top1"] == 1 / 8
    assert s["loc_top5"] == 2 / 8
    assert s["loc_gt_known"] == 4 / 8
    assert {k: s[k] for k in W.ERROR_KINDS} == {"right": 1, "cls_wrong": 2, "multi_instance": 1, "part": 2,
                                                "more": 1, "wrong": 1}
    weighted = (3 * F.cross_entropy(logits[:3], labels[:3]) + 5 * F.cross_entropy(logits[3:], labels[3:])) / 8
    assert s["loss"] == pytest.approx(float(weighted), rel=1e-6)
    rec = meter.records[5]
    assert rec["gtk_box"].tolist() == [0, 0, 49, 99] and rec["gtk_iou"] == 0.5


def test_meter_wsolevaluation_rule_uses_geq():
    logits, cams, labels, gt, flags, _ = make_batch()
    meter = W.WSOLMeter(box_rule="wsolevaluation")
    meter.add(logits, cams, labels, gt)
    rows = meter.per_image()
    expected = flags.copy()
    expected[5, 2:4] = 1  # IoU exactly 0.5 now counts for Top-1 / Top-5
    np.testing.assert_array_equal(rows[:, :5], expected)
    assert rows[5, 5] == 1  # "right"


def test_meter_rejects_unknown_rule_and_empty_gt():
    with pytest.raises(ValueError):
        W.WSOLMeter(box_rule="fair")
    logits, cams, labels, gt, _, _ = make_batch()
    with pytest.raises(ValueError, match="no GT box"):
        W.WSOLMeter().add(logits[:1], cams[:1], labels[:1], -torch.ones(1, 4, dtype=torch.long))


# --- MaxBoxAcc ----------------------------------------------------------------------------------------------------

def test_boxes_at_thresholds_clip_and_empty():
    scoremap = blob_map((200, 180, 223, 223)).astype(np.float64)
    boxes = W.boxes_at_thresholds(scoremap, [0.0, 0.5])
    assert [b.tolist() for b in boxes] == [[[200, 180, 223, 223]]] * 2
    empty = W.boxes_at_thresholds(np.zeros((S, S)), [0.0, 0.3])
    assert [b.tolist() for b in empty] == [[[0, 0, 0, 0]]] * 2


def test_maxboxacc_multi_contour_vs_largest():
    # exact object (value 1) plus a larger faint distractor (0.2 -> uint8 51): with all contours the object box is
    # always scored; with the largest only, the distractor wins while int(t*255) < 51, i.e. for t < 0.2.
    gt = [20, 30, 70, 80]  # the box [x, y, x+w, y+h] of pixels 20..69 x 30..79 (exclusive ends, not clipped)
    scoremap = blob_map((20, 30, 69, 79), (100, 100, 219, 219, 0.2)).astype(np.float64)
    v2 = W.MaxBoxAccMeter(multi_contour_eval=True)
    best, n_boxes = v2.add_scoremap(scoremap, gt)
    assert (best == 1.0).all()
    assert n_boxes[:20].tolist() == [2] * 20 and n_boxes[20:].tolist() == [1] * 80
    v1 = W.MaxBoxAccMeter(multi_contour_eval=False)
    best1, _ = v1.add_scoremap(scoremap, gt)
    assert (best1[:20] == 0).all() and (best1[20:] == 1).all()
    # a second image whose CAM is empty: never correct
    v1.add_scoremap(np.zeros((S, S)), gt)
    assert v1.num_correct[:, :20].sum() == 0 and (v1.num_correct[:, 20:] == 1).all()
    s = v1.summary()
    assert s["maxboxacc_iou50"] == 50.0 and s["maxboxacc"] == 50.0
    assert s["best_cam_threshold_iou30"] == pytest.approx(0.2)


def test_maxboxacc_iou_threshold_is_geq():
    # box [0,0,49,99] vs GT [0,0,99,99]: IoU exactly 0.5 -> correct for delta 30 and 50, not 70
    meter = W.MaxBoxAccMeter()
    meter.add_scoremap(blob_map((0, 0, 49, 99)).astype(np.float64), [0, 0, 99, 99])
    np.testing.assert_array_equal(meter.max_box_acc(), [100.0, 100.0, 0.0])


def test_cam_to_scoremap_normalises_and_handles_constant():
    cam = np.zeros((14, 14), np.float32)
    cam[3:6, 4:9] = 5.0
    sm = W.cam_to_scoremap(torch.from_numpy(cam))
    assert sm.shape == (S, S) and sm.dtype == np.float64
    assert sm.min() == 0.0 and sm.max() == 1.0
    assert (W.cam_to_scoremap(np.ones((14, 14))) == 0).all()
