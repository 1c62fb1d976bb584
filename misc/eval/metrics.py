"""Segmentation metrics with the original code's semantics.

* :class:`ConfusionMeter` / :func:`semantic_confusion`: chainercv's ``calc_semantic_segmentation_confusion``
  (rows = GT, columns = prediction; GT < 0, i.e. VOC 255, skipped; the matrix grows to 1 + the largest label
  seen, it is not cut to 21 classes). Given ``num_labels`` (the evaluation steps pass the dataset's: VOC 21, COCO
  81), a label outside
  ``0..num_labels-1`` (GT 255 aside) is refused with a :class:`~misc.core.errors.DataError` instead of growing the
  matrix; a size mismatch names the image id when the caller gives it.
* :func:`iou_from_confusion`: TP / (GT + Pred - TP); classes absent from both GT and prediction are NaN and
  dropped by ``nanmean``.
* :func:`deeplab_scores`: deeplab-pytorch's ``scores`` (Pixel Acc, Mean Acc, FreqW IoU, Mean IoU over GT classes).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from misc.core.errors import DataError
from misc.core.labels import IGNORE_INDEX


def gt_to_chainer(gt: np.ndarray) -> np.ndarray:
    """VOC label map (uint8, 255 = ignore) -> int32 with ignore = -1, as chainercv reads it."""
    gt = np.asarray(gt).astype(np.int32)
    gt[gt == IGNORE_INDEX] = -1
    return gt


def _who(name: str | None) -> str:
    return f"image id {name!r}: " if name is not None else ""


def check_pair(pred: np.ndarray, gt: np.ndarray, name: str | None = None, num_labels: int | None = None,
               check_gt: bool = True) -> None:
    """:class:`DataError` (naming ``name``) when ``pred`` and ``gt`` differ in shape, ``pred`` has negative labels,
    or (given ``num_labels``) a label of ``pred`` (and of ``gt`` when ``check_gt``; GT values < 0, i.e. ignored, are
    allowed) is outside ``0..num_labels-1``."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise DataError(f"{_who(name)}prediction and ground truth differ in size: {pred.shape} vs {gt.shape} "
                        "(the ground-truth mask must have its image's size; is it the mask of another image?)")
    if pred.size and pred.min() < 0:
        raise DataError(f"{_who(name)}prediction has negative labels")
    if num_labels is None or not pred.size:
        return
    if pred.max() >= num_labels:
        bad = np.unique(pred[pred >= num_labels])[:10].tolist()
        raise DataError(f"{_who(name)}prediction has labels {bad} outside 0..{num_labels - 1}")
    if not check_gt:
        return
    bad_gt = gt >= num_labels
    if bad_gt.any():
        raise DataError(f"{_who(name)}ground truth has labels {np.unique(gt[bad_gt])[:10].tolist()} outside "
                        f"0..{num_labels - 1} and {IGNORE_INDEX}")


class ConfusionMeter:
    """Accumulates a growing confusion matrix over (pred, gt) pairs (chainercv semantics).

    ``num_labels``: labels must be below it (checked per pair; the matrix still grows only as far as the labels
    seen, as chainercv's does); ``None``: no limit."""

    def __init__(self, num_labels: int | None = None) -> None:
        self.confusion = np.zeros((0, 0), dtype=np.int64)
        self.num_labels = num_labels

    def add(self, pred: np.ndarray, gt: np.ndarray, name: str | None = None) -> None:
        """pred, gt: (H, W) integer maps; gt < 0 is ignored; prediction values are not masked. ``name``: the image
        id, named by the errors."""
        check_pair(pred, gt, name, self.num_labels)
        pred = np.asarray(pred).astype(np.int64).ravel()
        gt = np.asarray(gt).astype(np.int64).ravel()
        keep = gt >= 0
        pred, gt = pred[keep], gt[keep]
        n = int(max(pred.max(initial=-1), gt.max(initial=-1))) + 1
        if n > self.confusion.shape[0]:
            grown = np.zeros((n, n), dtype=np.int64)
            k = self.confusion.shape[0]
            grown[:k, :k] = self.confusion
            self.confusion = grown
        n = self.confusion.shape[0]
        self.confusion += np.bincount(n * gt + pred, minlength=n * n).reshape(n, n)


def semantic_confusion(preds: Iterable[np.ndarray], gts: Iterable[np.ndarray], ids: Sequence[str] | None = None,
                       num_labels: int | None = None) -> np.ndarray:
    """Confusion (n, n) int64 over all pairs; gt < 0 skipped; n = 1 + largest label seen. ``ids`` name the pairs
    in errors; ``num_labels``: see :class:`ConfusionMeter`."""
    meter = ConfusionMeter(num_labels)
    for k, (pred, gt) in enumerate(zip(preds, gts, strict=True)):
        meter.add(pred, gt, None if ids is None else ids[k])
    return meter.confusion


def iou_from_confusion(confusion: np.ndarray) -> np.ndarray:
    """Per-class IoU (n,) float64; NaN for classes absent from both GT and prediction."""
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    with np.errstate(divide="ignore", invalid="ignore"):
        return tp / (confusion.sum(axis=1) + confusion.sum(axis=0) - tp)


def miou(iou: np.ndarray) -> float:
    """nanmean of the per-class IoU (NaN classes dropped)."""
    iou = np.asarray(iou, dtype=np.float64)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def fp_fn_rates(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """eval_sem_seg's rates: fp = 1 - GT_c / union_c, fn = 1 - Pred_c / union_c (n,) each."""
    confusion = np.asarray(confusion, dtype=np.float64)
    gtj, resj, tp = confusion.sum(axis=1), confusion.sum(axis=0), np.diag(confusion)
    union = gtj + resj - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 - gtj / union, 1.0 - resj / union


def fast_hist(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """deeplab-pytorch ``_fast_hist``: (n, n) counts [gt, pred] over pixels with 0 <= gt < n."""
    gt = np.asarray(gt).astype(np.int64).ravel()
    pred = np.asarray(pred).astype(np.int64).ravel()
    keep = (gt >= 0) & (gt < num_classes)
    return np.bincount(num_classes * gt[keep] + pred[keep], minlength=num_classes**2).reshape(
        num_classes, num_classes
    ).astype(np.float64)


def deeplab_scores_from_hist(hist: np.ndarray) -> dict:
    """Pixel Accuracy, Mean Accuracy, Frequency Weighted IoU, Mean IoU (over GT classes), Class IoU."""
    hist = np.asarray(hist, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.diag(hist).sum() / hist.sum()
        acc_cls = np.nanmean(np.diag(hist) / hist.sum(axis=1))
        iu = np.diag(hist) / (hist.sum(axis=1) + hist.sum(axis=0) - np.diag(hist))
    valid = hist.sum(axis=1) > 0
    mean_iu = np.nanmean(iu[valid])
    freq = hist.sum(axis=1) / hist.sum()
    fw_iou = (freq[freq > 0] * iu[freq > 0]).sum()
    return {
        "Pixel Accuracy": float(acc),
        "Mean Accuracy": float(acc_cls),
        "Frequency Weighted IoU": float(fw_iou),
        "Mean IoU": float(mean_iu),
        "Class IoU": {i: float(v) for i, v in enumerate(iu)},
    }


def deeplab_scores(gts: Iterable[np.ndarray], preds: Iterable[np.ndarray], num_classes: int,
                   ids: Sequence[str] | None = None) -> tuple[dict, np.ndarray]:
    """deeplab-pytorch ``scores(label_trues, label_preds, n_class)``: returns (scores dict, hist).

    ``num_classes``: background + the dataset's classes (VOC 21, COCO 81). Streams: ``gts`` and ``preds`` are read
    once, pairwise (generators are fine). Pairs of different sizes and predictions outside ``0..num_classes-1`` are
    a :class:`DataError` (naming the id from ``ids``); GT values outside are ignored, as deeplab-pytorch does."""
    hist = np.zeros((num_classes, num_classes), dtype=np.float64)
    for k, (gt, pred) in enumerate(zip(gts, preds, strict=True)):
        check_pair(pred, gt, None if ids is None else ids[k], num_classes, check_gt=False)
        hist += fast_hist(gt, pred, num_classes)
    return deeplab_scores_from_hist(hist), hist
