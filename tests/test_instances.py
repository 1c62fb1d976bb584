"""Instance pseudo labels (centroids, clusters, detections) and the VOC instance-segmentation AP."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from misc.eval.instance_ap import (
    eval_instance_segmentation_voc,
    instances_from_maps,
    mask_iou,
    read_voc_instances,
)
from misc.method.instances import (
    cluster_centroids,
    detect_instance,
    find_centroids_with_refinement,
    ins_seg_from_cams,
    split_cams_by_instance,
    to_one_hot,
)


def _two_centre_field(h: int = 6, w: int = 16) -> np.ndarray:
    """dp = 0.5·(centre - position): left half (x < 8) points to (2, 1), right half to (3, 14). (2, h, w) float32."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    cy = np.where(xs < 8, 2, 3).astype(np.float32)
    cx = np.where(xs < 8, 1, 14).astype(np.float32)
    return np.stack([0.5 * (cy - ys), 0.5 * (cx - xs)]).astype(np.float32)


def test_to_one_hot():
    out = to_one_hot(np.array([[0, 2], [2, 1]]))
    assert out.dtype == bool and out.shape == (3, 2, 2)
    np.testing.assert_array_equal(out[2], [[False, True], [True, False]])
    assert to_one_hot(np.array([1, 1]), maximum_val=4).shape == (4, 2)


def test_centroids_and_clusters_on_a_two_centre_field():
    dp = _two_centre_field()
    centroids = find_centroids_with_refinement(dp, iterations=300)
    assert centroids.dtype == np.int32 and centroids.shape == (2, 6, 16)
    left = np.s_[:, :, :8]
    right = np.s_[:, :, 8:]
    assert np.all(centroids[0][left[1:]] == 2) and np.all(centroids[1][left[1:]] == 1)
    assert np.all(centroids[0][right[1:]] == 3) and np.all(centroids[1][right[1:]] == 14)
    instances = cluster_centroids(centroids, dp, thres=2.5)
    assert instances.shape == (2, 6, 16) and instances.dtype == bool
    np.testing.assert_array_equal(instances[0], np.arange(16)[None, :].repeat(6, 0) < 8)
    np.testing.assert_array_equal(instances[1], ~instances[0])


def test_centroids_clip_to_the_map():
    dp = np.zeros((2, 4, 5), dtype=np.float32)
    dp[0] = 10.0  # every step jumps 10 rows down: clipped to the last row
    dp[1] = -0.3
    centroids = find_centroids_with_refinement(dp, iterations=20)
    assert np.all(centroids[0] == 3) and np.all(centroids[1] == 0)


def test_cluster_outside_weak_region_is_own_instance():
    dp = np.full((2, 3, 4), 5.0, dtype=np.float32)  # strong everywhere ...
    dp[:, 0, 0] = 0.0  # ... except one pixel
    centroids = np.zeros((2, 3, 4), dtype=np.int32)
    centroids[1, :, 2:] = 3  # right half points to (0, 3): a strong pixel (component 0)
    instances = cluster_centroids(centroids, dp)
    assert instances.shape == (2, 3, 4)
    np.testing.assert_array_equal(instances[0], np.arange(4)[None].repeat(3, 0) >= 2)  # "outside" comes first
    np.testing.assert_array_equal(instances[1], np.arange(4)[None].repeat(3, 0) < 2)


def test_split_cams_by_instance_order():
    cams = torch.tensor([[[1.0, 2.0]], [[3.0, 4.0]]])  # (K=2, 1, 2)
    masks = np.array([[[True, False]], [[False, True]]])
    out = split_cams_by_instance(cams, masks)
    assert out.shape == (2, 2, 1, 2)
    np.testing.assert_array_equal(out.reshape(4, 2).numpy(), [[1, 0], [0, 2], [3, 0], [0, 4]])


def test_detect_instance_fragments_and_order():
    score = np.zeros((3, 4, 6), dtype=np.float32)
    score[0] = np.arange(24, dtype=np.float32).reshape(4, 6) / 24
    score[2] = 0.5
    mask = np.zeros((3, 4, 6), dtype=bool)
    mask[0, :, :3] = True  # 12 px component (left)
    mask[0, 0, 5] = True  # 1 px fragment
    mask[2, 2:, 2:4] = True
    det = detect_instance(score, mask, np.array([4, 9, 17]), max_fragment_size=2)
    # channel 0: components in raster order: the left block starts at (0,0), the fragment at (0,5)
    assert det["class"].tolist() == [4, 4, 17]
    assert det["score"].dtype == np.float32 and det["class"].dtype == np.int64 and det["mask"].dtype == bool
    np.testing.assert_allclose(det["score"], [score[0, 3, 2], 0.0, 0.5])
    assert det["mask"].shape == (3, 4, 6)
    assert det["mask"][1].sum() == 1 and det["mask"][1][0, 5]
    empty = detect_instance(score, np.zeros_like(mask), np.array([1, 2, 3]))
    assert empty["score"].shape == (0,) and empty["mask"].shape == (0, 4, 6) and empty["class"].shape == (0,)


def test_ins_seg_from_cams_end_to_end():
    dp = torch.from_numpy(_two_centre_field())
    cams = torch.zeros(1, 6, 16)
    cams[0, 1:4, 0:4] = 1.0
    cams[0, 2:5, 11:16] = 0.8
    edge = torch.zeros(1, 6, 16)
    edge[0, :, 8] = 1.0
    det = ins_seg_from_cams(cams, torch.tensor([11]), edge, dp, (22, 61))
    assert det["mask"].shape[1:] == (22, 61)
    assert det["class"].tolist() == [11, 11]  # one object per displacement cluster
    left, right = det["mask"]
    assert left[:, :30].any() and not left[:, 34:].any() and right[:, 34:].any() and not right[:, :30].any()
    assert det["score"].max() == pytest.approx(1.0)  # global max normalisation


# ------------------------------------------------------------------------------------------------------------
# AP: a hand-computed case (H×W = 4×8)


def _box(rows, cols, shape=(4, 8)) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[rows[0]:rows[1], cols[0]:cols[1]] = True
    return m


def _hand_case():
    gt_a, gt_b, gt_c = _box((0, 2), (0, 2)), _box((0, 2), (4, 6)), _box((2, 4), (0, 4))
    gt_d = _box((0, 4), (0, 2))
    gt_masks = [np.stack([gt_a, gt_b, gt_c]), np.stack([gt_d])]
    gt_labels = [np.array([0, 0, 2]), np.array([2])]
    p_c_low = _box((2, 4), (0, 2)) | _box((0, 1), (6, 8))  # IoU with C = 4 / 10 = 0.4: a miss
    pred_masks = [
        np.stack([gt_a, _box((2, 4), (6, 8)), _box((0, 2), (4, 5)), p_c_low, _box((0, 1), (0, 1))]),
        np.stack([gt_d]),
    ]
    pred_labels = [np.array([0, 0, 0, 2, 5]), np.array([2])]
    pred_scores = [np.array([0.9, 0.8, 0.7, 0.5, 0.3]), np.array([0.6])]
    return pred_masks, pred_labels, pred_scores, gt_masks, gt_labels


def test_mask_iou_values():
    a = np.stack([_box((0, 2), (0, 2)), _box((0, 2), (4, 5))])
    b = np.stack([_box((0, 2), (0, 2)), _box((0, 2), (4, 6))])
    np.testing.assert_allclose(mask_iou(a, b), [[1.0, 0.0], [0.0, 0.5]])


def test_instance_ap_hand_computed():
    result = eval_instance_segmentation_voc(*_hand_case(), iou_thresh=0.5)
    ap = result["ap"]
    assert ap.shape == (6,)
    # class 0: ranked TP (A, IoU 1), FP (no overlap), TP (B, IoU exactly 0.5 >= 0.5); 2 GT
    #   precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> envelope 1 up to recall 1/2, 2/3 up to 1
    #   AP = 0.5·1 + 0.5·(2/3) = 5/6
    assert ap[0] == pytest.approx(5 / 6)
    # class 2: 0.6 TP (D, image 2), 0.5 FP (IoU 0.4 with C); 2 GT -> precision 1, 1/2 at recall 1/2, 1/2
    #   AP = 0.5·1 + 0.5·0 = 0.5
    assert ap[2] == pytest.approx(0.5)
    # classes 1, 3, 4 never seen; class 5 has a detection but no GT: NaN, dropped from the mean
    assert np.isnan(ap[[1, 3, 4, 5]]).all()
    assert result["map"] == pytest.approx((5 / 6 + 0.5) / 2)


def test_instance_ap_duplicates_and_misses():
    gt = np.stack([_box((0, 2), (0, 2))])
    # a duplicate of the same object: second detection is a false positive even with IoU 1
    result = eval_instance_segmentation_voc(
        [np.stack([gt[0], gt[0]]), np.zeros((0, 4, 8), bool)], [np.array([0, 0]), np.array([], int)],
        [np.array([0.9, 0.8]), np.array([])], [gt, np.stack([_box((2, 4), (2, 4))])], [np.array([0]), np.array([0])])
    # ranked TP, FP over 2 GT: precision 1, 1/2 at recall 1/2, 1/2 -> AP = 0.5
    assert result["ap"][0] == pytest.approx(0.5)
    # a class with GT but no detection has AP 0
    result = eval_instance_segmentation_voc([np.zeros((0, 4, 8), bool)], [np.array([], int)], [np.array([])],
                                            [gt], [np.array([1])])
    assert result["ap"][1] == 0.0 and np.isnan(result["ap"][0])


def test_instance_ap_07_metric():
    result = eval_instance_segmentation_voc(*_hand_case(), iou_thresh=0.5, use_07_metric=True)
    # class 0: max precision for recall >= t is 1 for t = 0..0.5 (6 points) and 2/3 for t = 0.6..1.0 (5 points)
    assert result["ap"][0] == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)


def test_read_voc_instances(tmp_path):
    inst = np.zeros((5, 6), dtype=np.uint8)
    cls = np.zeros((5, 6), dtype=np.uint8)
    inst[0:2, 0:3], cls[0:2, 0:3] = 1, 15  # person
    inst[3:5, 2:6], cls[3:5, 2:6] = 2, 7  # car
    inst[2, :], cls[2, :] = 255, 255  # boundary
    inst[0:2, 3], cls[0:2, 3] = 255, 255
    paths = []
    for name, arr in (("obj.png", inst), ("cls.png", cls)):
        img = Image.fromarray(arr, mode="P")
        img.putpalette([0, 0, 0] * 256)
        img.save(tmp_path / name)
        paths.append(tmp_path / name)
    masks, labels = read_voc_instances(*paths)
    assert masks.dtype == bool and masks.shape == (2, 5, 6)
    np.testing.assert_array_equal(labels, [14, 6])
    np.testing.assert_array_equal(masks[0], inst == 1)
    np.testing.assert_array_equal(masks[1], inst == 2)
    empty_masks, empty_labels = instances_from_maps(np.zeros((3, 3), np.uint8), np.zeros((3, 3), np.uint8))
    assert empty_masks.shape == (0, 3, 3) and empty_labels.shape == (0,)
