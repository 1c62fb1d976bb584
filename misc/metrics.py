"""Segmentation metrics with the original code's semantics.

* :class:`ConfusionMeter` / :func:`semantic_confusion`: chainercv's ``calc_semantic_segmentation_confusion``
  (rows = GT, columns = prediction; GT < 0, i.e. VOC 255, skipped; the matrix grows to 1 + the largest label
  seen, it is not cut to 21 classes).
* :func:`iou_from_confusion`: TP / (GT + Pred - TP); classes absent from both GT and prediction are NaN and
  dropped by ``nanmean``.
* :func:`deeplab_scores`: deeplab-pytorch's ``scores`` (Pixel Acc, Mean Acc, FreqW IoU, Mean IoU over GT classes).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

IGNORE_LABEL = 255


def gt_to_chainer(gt: np.ndarray) -> np.ndarray:
    """VOC label map (uint8, 255 = ignore) -> int32 with ignore = -1, as chainercv reads it."""
    gt = np.asarray(gt).astype(np.int32)
    gt[gt == IGNORE_LABEL] = -1
    return gt


class ConfusionMeter:
    """Accumulates a growing confusion matrix over (pred, gt) pairs (chainercv semantics)."""

    def __init__(self) -> None:
        self.confusion = np.zeros((0, 0), dtype=np.int64)

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """pred, gt: (H, W) integer maps; gt < 0 is ignored; prediction values are not masked."""
        pred = np.asarray(pred).astype(np.int64).ravel()
        gt = np.asarray(gt).astype(np.int64).ravel()
        if pred.shape != gt.shape:
            raise ValueError(f"prediction and ground truth differ in size: {pred.shape} vs {gt.shape}")
        if pred.size and pred.min() < 0:
            raise ValueError("prediction has negative labels")
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


def semantic_confusion(preds: Iterable[np.ndarray], gts: Iterable[np.ndarray]) -> np.ndarray:
    """Confusion (n, n) int64 over all pairs; gt < 0 skipped; n = 1 + largest label seen."""
    meter = ConfusionMeter()
    for pred, gt in zip(preds, gts, strict=True):
        meter.add(pred, gt)
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


def deeplab_scores(gts: Iterable[np.ndarray], preds: Iterable[np.ndarray], num_classes: int = 21) -> tuple[dict, np.ndarray]:
    """deeplab-pytorch ``scores(label_trues, label_preds, n_class)``: returns (scores dict, hist)."""
    hist = np.zeros((num_classes, num_classes), dtype=np.float64)
    for gt, pred in zip(gts, preds, strict=True):
        hist += fast_hist(gt, pred, num_classes)
    return deeplab_scores_from_hist(hist), hist
