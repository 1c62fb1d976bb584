"""VOC instance-segmentation AP (chainercv ``eval_instance_segmentation_voc`` semantics) and the GT reader.

Per class: detections of all images are ranked by score; within an image a detection is a true positive when its
best-IoU ground-truth instance of that class has mask IoU >= ``iou_thresh`` and was not already taken by a
higher-scored detection. AP = area under the precision envelope (VOC 2010+, ``use_07_metric=False``), or the
11-point VOC2007 AP. A class without GT instances gets NaN AP and is dropped from the mean.
"""
from __future__ import annotations

import os
from collections import defaultdict
from typing import Sequence

import numpy as np
from PIL import Image

__all__ = [
    "InstanceAPMeter",
    "mask_iou",
    "calc_instance_segmentation_voc_prec_rec",
    "calc_instance_segmentation_voc_ap",
    "eval_instance_segmentation_voc",
    "instances_from_maps",
    "read_voc_instances",
]


def mask_iou(mask_a: np.ndarray, mask_b: np.ndarray) -> np.ndarray:
    """IoU of every pair of boolean masks: (n_a, H, W) × (n_b, H, W) → (n_a, n_b) float32."""
    a = np.asarray(mask_a, dtype=bool).reshape(len(mask_a), -1).astype(np.int64)
    b = np.asarray(mask_b, dtype=bool).reshape(len(mask_b), -1).astype(np.int64)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return (inter / union).astype(np.float32)


class InstanceAPMeter:
    """Accumulates the per-class scores and matches of :func:`calc_instance_segmentation_voc_prec_rec` one image at
    a time (so an evaluation never holds more than one image's masks), then gives precision / recall and AP."""

    def __init__(self, iou_thresh: float = 0.5) -> None:
        self.iou_thresh = iou_thresh
        self.n_pos: dict[int, int] = defaultdict(int)
        self.score: dict[int, list[float]] = defaultdict(list)
        self.match: dict[int, list[int]] = defaultdict(list)

    def add(self, pred_mask: np.ndarray, pred_label: np.ndarray, pred_score: np.ndarray, gt_mask: np.ndarray,
            gt_label: np.ndarray) -> None:
        """One image: pred masks (R, H, W) bool, labels (R,) 0-based, scores (R,); GT masks (R', H, W), labels (R',)."""
        pred_label = np.asarray(pred_label).reshape(-1)
        gt_label = np.asarray(gt_label).reshape(-1)
        pred_score = np.asarray(pred_score).reshape(-1)
        for label in np.unique(np.concatenate((pred_label, gt_label)).astype(int)):
            keep = pred_label == label
            mask_l = np.asarray(pred_mask)[keep]
            score_l = pred_score[keep]
            order = score_l.argsort()[::-1]
            mask_l, score_l = mask_l[order], score_l[order]

            gt_keep = gt_label == label
            gt_mask_l = np.asarray(gt_mask)[gt_keep]
            self.n_pos[label] += int(gt_keep.sum())
            self.score[label].extend(score_l.tolist())

            if len(mask_l) == 0:
                continue
            if len(gt_mask_l) == 0:
                self.match[label].extend([0] * len(mask_l))
                continue

            iou = mask_iou(mask_l, gt_mask_l)
            gt_index = iou.argmax(axis=1)
            gt_index[iou.max(axis=1) < self.iou_thresh] = -1
            taken = np.zeros(len(gt_mask_l), dtype=bool)
            for gt_idx in gt_index:
                if gt_idx >= 0:
                    self.match[label].append(0 if taken[gt_idx] else 1)
                    taken[gt_idx] = True
                else:
                    self.match[label].append(0)

    def prec_rec(self) -> tuple[list[np.ndarray | None], list[np.ndarray | None]]:
        """Per-class precision / recall (see :func:`calc_instance_segmentation_voc_prec_rec`)."""
        if not self.n_pos:
            return [], []
        n_fg_class = max(self.n_pos.keys()) + 1
        prec: list[np.ndarray | None] = [None] * n_fg_class
        rec: list[np.ndarray | None] = [None] * n_fg_class
        for label in self.n_pos:
            score_l = np.array(self.score[label])
            match_l = np.array(self.match[label], dtype=np.int8)
            match_l = match_l[score_l.argsort()[::-1]]
            tp = np.cumsum(match_l == 1)
            fp = np.cumsum(match_l == 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                prec[label] = tp / (fp + tp)
            if self.n_pos[label] > 0:
                rec[label] = tp / self.n_pos[label]
        return prec, rec

    def result(self, use_07_metric: bool = False) -> dict[str, np.ndarray | float]:
        """{"ap": per class, NaN for classes without GT; "map": their nanmean} (see
        :func:`eval_instance_segmentation_voc`)."""
        ap = calc_instance_segmentation_voc_ap(*self.prec_rec(), use_07_metric=use_07_metric)
        with np.errstate(all="ignore"):
            mean_ap = float(np.nanmean(ap)) if ap.size and not np.all(np.isnan(ap)) else float("nan")
        return {"ap": ap, "map": mean_ap}


def calc_instance_segmentation_voc_prec_rec(
    pred_masks: Sequence[np.ndarray],
    pred_labels: Sequence[np.ndarray],
    pred_scores: Sequence[np.ndarray],
    gt_masks: Sequence[np.ndarray],
    gt_labels: Sequence[np.ndarray],
    iou_thresh: float = 0.5,
) -> tuple[list[np.ndarray | None], list[np.ndarray | None]]:
    """Per-class precision / recall arrays over the score-ranked detections (None for classes never seen,
    recall None for classes without GT). Lists have length 1 + the largest class seen."""
    meter = InstanceAPMeter(iou_thresh)
    for pred_mask, pred_label, pred_score, gt_mask, gt_label in zip(
            pred_masks, pred_labels, pred_scores, gt_masks, gt_labels, strict=True):
        meter.add(pred_mask, pred_label, pred_score, gt_mask, gt_label)
    return meter.prec_rec()


def calc_instance_segmentation_voc_ap(
    prec: Sequence[np.ndarray | None], rec: Sequence[np.ndarray | None], use_07_metric: bool = False
) -> np.ndarray:
    """AP per class (NaN where precision or recall is undefined)."""
    ap = np.empty(len(prec))
    for label in range(len(prec)):
        p, r = prec[label], rec[label]
        if p is None or r is None:
            ap[label] = np.nan
            continue
        if use_07_metric:
            ap[label] = 0
            for t in np.arange(0.0, 1.1, 0.1):
                pt = 0 if np.sum(r >= t) == 0 else np.max(np.nan_to_num(p)[r >= t])
                ap[label] += pt / 11
        else:
            mpre = np.concatenate(([0], np.nan_to_num(p), [0]))
            mrec = np.concatenate(([0], r, [1]))
            mpre = np.maximum.accumulate(mpre[::-1])[::-1]
            i = np.where(mrec[1:] != mrec[:-1])[0]
            ap[label] = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
    return ap


def eval_instance_segmentation_voc(
    pred_masks: Sequence[np.ndarray],
    pred_labels: Sequence[np.ndarray],
    pred_scores: Sequence[np.ndarray],
    gt_masks: Sequence[np.ndarray],
    gt_labels: Sequence[np.ndarray],
    iou_thresh: float = 0.5,
    use_07_metric: bool = False,
) -> dict[str, np.ndarray | float]:
    """Per image: pred masks (R, H, W) bool, labels (R,) 0-based, scores (R,); GT masks (R', H, W), labels (R',).

    Returns {"ap": (n_classes,) float64 with NaN for classes without GT, "map": nanmean of ap}.
    """
    prec, rec = calc_instance_segmentation_voc_prec_rec(
        pred_masks, pred_labels, pred_scores, gt_masks, gt_labels, iou_thresh)
    ap = calc_instance_segmentation_voc_ap(prec, rec, use_07_metric=use_07_metric)
    with np.errstate(all="ignore"):
        mean_ap = float(np.nanmean(ap)) if ap.size and not np.all(np.isnan(ap)) else float("nan")
    return {"ap": ap, "map": mean_ap}


def instances_from_maps(instance_map: np.ndarray, class_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """VOC SegmentationObject ids + SegmentationClass ids (H, W) → (masks (R, H, W) bool, labels (R,) int32 0-based).

    Instance ids 0 (background) and 255 (boundary / ignore) are not instances; instances come in increasing id order
    and take the (smallest non-ignored) class id under their pixels, minus 1.
    """
    inst = np.asarray(instance_map).astype(np.int32)
    cls = np.asarray(class_map).astype(np.int32)
    if inst.shape != cls.shape:
        raise ValueError(f"instance and class maps differ in size: {inst.shape} vs {cls.shape}")
    cls = np.where(cls == 255, -1, cls)
    masks, labels = [], []
    for inst_id in np.unique(inst):
        if inst_id in (0, 255):
            continue
        msk = inst == inst_id
        classes = np.unique(cls[msk])
        classes = classes[classes >= 0]
        if classes.size == 0 or classes[0] < 1:
            raise ValueError(f"instance {inst_id} lies on background / ignored class pixels")
        label = int(classes[0]) - 1
        masks.append(msk)
        labels.append(label)
    if not masks:
        return np.zeros((0,) + inst.shape, dtype=bool), np.zeros((0,), dtype=np.int32)
    return np.stack(masks).astype(bool), np.asarray(labels, dtype=np.int32)


def _read_png_indices(path: str | os.PathLike | np.ndarray) -> np.ndarray:
    if isinstance(path, np.ndarray):
        return path
    with Image.open(path) as img:
        if img.mode not in ("P", "L"):
            raise ValueError(f"{path}: expected a palette or grey PNG, got mode {img.mode}")
        return np.asarray(img)


def read_voc_instances(
    obj_png: str | os.PathLike | np.ndarray, cls_png: str | os.PathLike | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Read VOC ``SegmentationObject/<id>.png`` and ``SegmentationClass/<id>.png`` (palette indices) → GT instances
    (masks (R, H, W) bool, labels (R,) int32 0-based), as chainercv's VOCInstanceSegmentationDataset."""
    return instances_from_maps(_read_png_indices(obj_png), _read_png_indices(cls_png))
