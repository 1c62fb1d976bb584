"""WSOL localisation metrics (docs/wsol_cub.md#box-from-a-cam, fixtures README_wsol_deeplab.md).

Two evaluation protocols:

* TS-CAM / CRT (``lib/cams_deit.py``): one box per CAM channel (:func:`cam_to_box`), IoU with the +1 pixel
  convention (:func:`box_iou`), Cls@1/5, Top-1/Top-5 Loc, GT-known and the top-1 error breakdown, accumulated by
  :class:`WSOLMeter`. All values are FRACTIONS in [0, 1], as the original returns them.
* clovaai/wsolevaluation MaxBoxAcc / MaxBoxAccV2 (Choe et al., CVPR 2020): :class:`MaxBoxAccMeter`, in PERCENT
  as wsolevaluation reports it.

``box_rule="original"`` (default) keeps TS-CAM's quirks: boxes ``[x, y, x+w, y+h]`` may reach 224 (exclusive ends
scored as inclusive), the fallback box is ``[0, 0, 1, 1]`` and Top-1/Top-5 Loc need IoU > 0.5 (strict).
``box_rule="wsolevaluation"`` uses wsolevaluation's fairer rules: ends clipped to size-1, ``[0, 0, 0, 0]`` when
there is no contour, and IoU >= 0.5 everywhere.
"""
from __future__ import annotations

import logging
from typing import Literal, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

BoxRule = Literal["original", "wsolevaluation"]
BOX_RULES = ("original", "wsolevaluation")
ERROR_KINDS = ("right", "cls_wrong", "multi_instance", "part", "more", "wrong")
PER_IMAGE_COLUMNS = ("cls1", "cls5", "loc1", "loc5", "gt_known") + ERROR_KINDS
DEFAULT_IOU_THRESHOLDS = (30, 50, 70)


def _check_rule(box_rule: str) -> None:
    if box_rule not in BOX_RULES:
        raise ValueError(f"box_rule must be one of {BOX_RULES}, got {box_rule!r}")


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


# ---------------------------------------------------------------------------------------------------------------
# CAM -> box (TS-CAM get_topk_boxes / resize_cam / get_bboxes)
# ---------------------------------------------------------------------------------------------------------------

def resize_cam(cam, size: int = 224, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """(h, w) CAM -> (size, size) min-max normalised map, in the CAM's float dtype (float32 for TS-CAM).

    cv2.resize (half-pixel centres), then ``(cam - min) / max``; a constant map gives zeros (the original's
    0/0 = NaN, which its uint8 cast turns into 0 on x86-64).
    """
    cam = _to_numpy(cam)
    if cam.ndim == 3 and cam.shape[0] == 1:
        cam = cam[0]
    if cam.ndim != 2:
        raise ValueError(f"expected a (h, w) CAM, got shape {cam.shape}")
    if cam.dtype not in (np.float32, np.float64):
        cam = cam.astype(np.float32)
    cam = cv2.resize(np.ascontiguousarray(cam), (size, size), interpolation=interpolation)
    cam = cam - cam.min()
    peak = cam.max()
    if not np.isfinite(peak) or peak <= 0:
        return np.zeros_like(cam)
    cam = cam / peak
    return np.where(np.isfinite(cam), cam, 0).astype(cam.dtype, copy=False)


def cam_to_uint8(cam_norm: np.ndarray) -> np.ndarray:
    """Normalised map in [0, 1] -> uint8 by ``(cam * 255).astype(uint8)`` (truncation), (H, W)."""
    return (cam_norm * 255.0).astype(np.uint8)


def find_contours(mask_u8: np.ndarray) -> Sequence[np.ndarray]:
    """cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE) of every non-zero pixel, in OpenCV's order."""
    return cv2.findContours(mask_u8, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]


def largest_contour(contours: Sequence[np.ndarray]) -> np.ndarray:
    """``max(contours, key=cv2.contourArea)``: the FIRST of equal areas in OpenCV's order wins."""
    return max(contours, key=cv2.contourArea)


def contour_box(contour: np.ndarray, box_rule: BoxRule = "original", size: int = 224) -> list[int]:
    """boundingRect -> [x, y, x+w, y+h]; with ``box_rule="wsolevaluation"`` the ends are clipped to size-1."""
    x, y, w, h = cv2.boundingRect(contour)
    box = [x, y, x + w, y + h]
    if box_rule == "wsolevaluation":
        box[2] = min(box[2], size - 1)
        box[3] = min(box[3], size - 1)
    return box


def threshold_uint8(cam_u8: np.ndarray, cam_thr: float = 0.1) -> tuple[int, np.ndarray]:
    """thr = int(cam_thr·max(cam_u8)) and cv2.threshold(TOZERO): pixels <= thr set to 0 -> (thr, (H, W) uint8)."""
    thr = int(cam_thr * float(cam_u8.max()))
    return thr, cv2.threshold(cam_u8, thr, 255, cv2.THRESH_TOZERO)[1]


def box_from_uint8(cam_u8: np.ndarray, cam_thr: float = 0.1, box_rule: BoxRule = "original") -> np.ndarray:
    """TS-CAM get_bboxes on a uint8 map (H, W): keep pixels STRICTLY above int(cam_thr·max), largest contour's box.

    Returns (4,) int64 [x1, y1, x2, y2]; no contour -> [0,0,1,1] ("original") or [0,0,0,0] ("wsolevaluation").
    """
    _check_rule(box_rule)
    _, kept = threshold_uint8(cam_u8, cam_thr)
    contours = find_contours(kept)
    if len(contours) == 0:
        return np.array([0, 0, 1, 1] if box_rule == "original" else [0, 0, 0, 0], dtype=np.int64)
    return np.array(contour_box(largest_contour(contours), box_rule, cam_u8.shape[1]), dtype=np.int64)


def cam_to_box(cam, cam_thr: float = 0.1, size: int = 224, box_rule: BoxRule = "original") -> np.ndarray:
    """One CAM channel (h, w) (numpy or torch, any size) -> (4,) int64 box [x1, y1, x2, y2] in the size frame.

    bilinear cv2 resize to size x size, min-max, x255 uint8, threshold int(cam_thr·max) (strict), largest contour.
    """
    return box_from_uint8(cam_to_uint8(resize_cam(cam, size)), cam_thr, box_rule)


# ---------------------------------------------------------------------------------------------------------------
# IoU (+1 pixel convention, TS-CAM cal_iou / wsolevaluation calculate_multiple_iou)
# ---------------------------------------------------------------------------------------------------------------

def box_iou(boxes_a, boxes_b, method: Literal["iou", "iog", "iob"] = "iou") -> np.ndarray:
    """Pairwise overlap of inclusive boxes [x1, y1, x2, y2]: (N, 4) x (M, 4) -> (N, M) float64.

    Areas are (x2-x1+1)(y2-y1+1). ``"iog"`` divides the intersection by the area of ``boxes_b`` (the GT),
    ``"iob"`` by the area of ``boxes_a`` (the prediction). 1-D inputs are treated as a single box.
    """
    a = np.atleast_2d(np.asarray(boxes_a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(boxes_b, dtype=np.float64))
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    area_a = ((a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1))[:, None]
    area_b = ((b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1))[None, :]
    if method == "iog":
        return inter / area_b
    if method == "iob":
        return inter / area_a
    if method != "iou":
        raise ValueError(f"method must be 'iou', 'iog' or 'iob', got {method!r}")
    return inter / (area_a + area_b - inter)


def best_gt_iou(box, gt_boxes: np.ndarray) -> tuple[float, int]:
    """Max IoU of one box over GT boxes (G, 4) and the index of the FIRST maximum (0 when all IoUs are 0)."""
    ious = box_iou(box, gt_boxes)[0]
    best_id, best = 0, 0.0
    for i, v in enumerate(ious):
        if v > best:
            best, best_id = float(v), i
    return best, best_id


# ---------------------------------------------------------------------------------------------------------------
# TS-CAM evaluate_cls_loc
# ---------------------------------------------------------------------------------------------------------------

def _split_gt(gt_boxes, n_gt=None) -> list[np.ndarray]:
    """(B, 4) or (B, G, 4) GT boxes -> list of (G_b, 4) int64; rows past n_gt[b] (or with negatives) dropped."""
    gt = _to_numpy(gt_boxes).astype(np.int64)
    if gt.ndim == 2:
        gt = gt[:, None, :]
    if gt.ndim != 3 or gt.shape[2] != 4:
        raise ValueError(f"GT boxes must be (B, 4) or (B, G, 4), got {gt.shape}")
    out = []
    for b in range(gt.shape[0]):
        rows = gt[b, : int(n_gt[b])] if n_gt is not None else gt[b][(gt[b] >= 0).all(axis=1)]
        if len(rows) == 0:
            raise ValueError(f"image {b} of the batch has no GT box")
        out.append(rows)
    return out


def evaluate_image(logits_row, cams, label: int, gt_boxes: np.ndarray, cam_thr: float = 0.1, size: int = 224,
                   box_rule: BoxRule = "original", topk: int = 5) -> dict:
    """TS-CAM evaluate_cls_loc for one image.

    logits_row (C,), cams (C, h, w) (torch or numpy), gt_boxes (G, 4) inclusive boxes in the size frame.
    Returns flags ``cls1, cls5, loc1, loc5, gt_known`` (0/1), ``error`` (one of ERROR_KINDS) and the boxes/IoUs
    ``top_classes (k,)``, ``top_boxes (k, 4)``, ``top_ious (k,)``, ``gtk_box (4,)``, ``gtk_iou``.
    """
    _check_rule(box_rule)
    logits_row = torch.as_tensor(logits_row)
    top_classes = logits_row.topk(topk, 0, True, True)[1].tolist()
    gt_boxes = np.asarray(gt_boxes, dtype=np.int64).reshape(-1, 4)
    label = int(label)

    def box_of(cls: int) -> np.ndarray:
        return cam_to_box(cams[cls], cam_thr, size, box_rule)

    top_boxes = [box_of(c) for c in top_classes]
    top_fits = [best_gt_iou(bx, gt_boxes) for bx in top_boxes]
    gtk_box = box_of(label)
    gtk_iou, _ = best_gt_iou(gtk_box, gt_boxes)

    def loc_ok(iou: float) -> bool:
        return iou > 0.5 if box_rule == "original" else iou >= 0.5

    cls1 = int(top_classes[0] == label)
    cls5 = int(label in top_classes)
    loc1 = int(cls1 == 1 and loc_ok(top_fits[0][0]))
    loc5 = 0
    for c, (iou, _) in zip(top_classes, top_fits):
        if c == label and loc_ok(iou):
            loc5 = 1
            break
    gt_known = int(gtk_iou >= 0.5)

    if not cls1:
        error = "cls_wrong"
    else:
        iou1, best_id = top_fits[0]
        iog = box_iou(top_boxes[0], gt_boxes, "iog")[0]
        if loc_ok(iou1):
            error = "right"
        elif len(gt_boxes) > 1 and int((iog > 0.3).sum()) > 1:
            error = "multi_instance"
        elif box_iou(top_boxes[0], gt_boxes[best_id], "iob")[0, 0] > 0.5:
            error = "part"
        elif iog[best_id] >= 0.7:
            error = "more"
        else:
            error = "wrong"
    return {
        "cls1": cls1, "cls5": cls5, "loc1": loc1, "loc5": loc5, "gt_known": gt_known, "error": error,
        "top_classes": np.array(top_classes, dtype=np.int64), "top_boxes": np.stack(top_boxes),
        "top_ious": np.array([f[0] for f in top_fits]), "gtk_box": gtk_box, "gtk_iou": gtk_iou,
    }


class WSOLMeter:
    """Accumulates TS-CAM localisation metrics over batches (val_loc_one_epoch + evaluate_cls_loc).

    ``add(logits (B, C), cams (B, C, h, w), labels (B,), gt_boxes (B, 4) or (B, G, 4), n_gt=None)``;
    ``summary()`` gives fractions ``cls_top1, cls_top5, loc_top1, loc_top5, loc_gt_known``, the batch-size weighted
    mean cross-entropy ``loss``, ``n_images`` and the top-1 error counts (keys of ERROR_KINDS).
    """

    def __init__(self, cam_thr: float = 0.1, size: int = 224, box_rule: BoxRule = "original", topk: int = 5) -> None:
        _check_rule(box_rule)
        self.cam_thr, self.size, self.box_rule, self.topk = cam_thr, size, box_rule, topk
        self.rows: list[list[int]] = []
        self.records: list[dict] = []
        self._loss_sum = 0.0
        self._loss_n = 0

    def add(self, logits, cams, labels, gt_boxes, n_gt=None) -> float:
        """Score a batch; returns its mean cross-entropy (the value the original logs per batch)."""
        logits_t = torch.as_tensor(logits).detach()
        labels_t = torch.as_tensor(labels).detach().to(logits_t.device).long()
        loss = F.cross_entropy(logits_t.float(), labels_t)
        self._loss_sum += float(loss) * len(labels_t)
        self._loss_n += len(labels_t)
        gts = _split_gt(gt_boxes, None if n_gt is None else _to_numpy(n_gt))
        logits_cpu = logits_t.cpu()
        labels_list = labels_t.cpu().tolist()
        for b, label in enumerate(labels_list):
            rec = evaluate_image(logits_cpu[b], _ImageCams(cams, b), label, gts[b], self.cam_thr, self.size,
                                 self.box_rule, self.topk)
            self.records.append(rec)
            self.rows.append([rec[k] for k in PER_IMAGE_COLUMNS[:5]] + [int(rec["error"] == e) for e in ERROR_KINDS])
        return float(loss)

    def per_image(self) -> np.ndarray:
        """(N, 11) int64 flags in PER_IMAGE_COLUMNS order."""
        return np.array(self.rows, dtype=np.int64).reshape(-1, len(PER_IMAGE_COLUMNS))

    def summary(self) -> dict:
        rows = self.per_image()
        n = len(rows)
        frac = (lambda j: float(rows[:, j].sum()) / n) if n else (lambda j: float("nan"))
        out = {"n_images": n, "cls_top1": frac(0), "cls_top5": frac(1), "loc_top1": frac(2), "loc_top5": frac(3),
               "loc_gt_known": frac(4), "loss": self._loss_sum / self._loss_n if self._loss_n else float("nan")}
        for j, kind in enumerate(ERROR_KINDS):
            out[kind] = int(rows[:, 5 + j].sum()) if n else 0
        return out


class _ImageCams:
    """Lazy view cams[b, cls] -> (h, w) numpy, moving only the channels actually read off the device."""

    def __init__(self, cams, b: int) -> None:
        self.cams, self.b = cams, b

    def __getitem__(self, cls: int) -> np.ndarray:
        return _to_numpy(self.cams[self.b][cls])


# ---------------------------------------------------------------------------------------------------------------
# wsolevaluation MaxBoxAcc / MaxBoxAccV2
# ---------------------------------------------------------------------------------------------------------------

def cam_threshold_list(cam_curve_interval: float = 0.01) -> np.ndarray:
    """``np.arange(0, 1, interval)`` float64 (not k·interval)."""
    return np.arange(0, 1, cam_curve_interval)


def normalize_scoremap(cam: np.ndarray) -> np.ndarray:
    """wsolevaluation normalize_scoremap: min-max to [0, 1]; zeros for a constant or NaN-containing map."""
    cam = np.array(cam, dtype=np.float64)
    if np.isnan(cam).any() or cam.min() == cam.max():
        return np.zeros_like(cam)
    cam -= cam.min()
    cam /= cam.max()
    return cam


def cam_to_scoremap(cam, size: int = 224, interpolation: int = cv2.INTER_CUBIC) -> np.ndarray:
    """CAM (h, w) -> float64 (size, size) scoremap: cv2.resize in float64 (bicubic), then normalize_scoremap."""
    cam = np.ascontiguousarray(_to_numpy(cam).astype(np.float64))
    return normalize_scoremap(cv2.resize(cam, (size, size), interpolation=interpolation))


def boxes_at_thresholds(scoremap: np.ndarray, thresholds: Sequence[float],
                        multi_contour_eval: bool = True) -> list[np.ndarray]:
    """wsolevaluation compute_bboxes_from_scoremaps: per threshold an (n, 4) int64 array of boxes.

    uint8(scoremap·255) > int(t·max) (THRESH_BINARY) -> contours (all of them, holes included, or the largest);
    boxes [x, y, min(x+w, W-1), min(y+h, H-1)]; no contour -> one box [0, 0, 0, 0].
    """
    height, width = scoremap.shape
    cam_u8 = cam_to_uint8(scoremap)
    peak = float(cam_u8.max())
    cache: dict[int, np.ndarray] = {}
    out = []
    for t in thresholds:
        thr = int(t * peak)
        if thr not in cache:
            _, binary = cv2.threshold(cam_u8, thr, 255, cv2.THRESH_BINARY)
            contours = find_contours(binary)
            if len(contours) == 0:
                boxes = np.zeros((1, 4), dtype=np.int64)
            else:
                if not multi_contour_eval:
                    contours = [largest_contour(contours)]
                boxes = np.array([contour_box(c) for c in contours], dtype=np.int64)
                boxes[:, 2] = np.minimum(boxes[:, 2], width - 1)
                boxes[:, 3] = np.minimum(boxes[:, 3], height - 1)
            cache[thr] = boxes
        out.append(cache[thr])
    return out


class MaxBoxAccMeter:
    """wsolevaluation BoxEvaluator: MaxBoxAcc per IoU threshold and their mean (MaxBoxAccV2), in PERCENT.

    ``add(cams (B, h, w) GT-class CAMs, gt_boxes (B, 4) or (B, G, 4), n_gt=None)`` resizes (bicubic, float64)
    and normalises each CAM; ``add_scoremap(scoremap (H, W) in [0, 1], gt_boxes (G, 4))`` takes a ready map.
    An image counts at a CAM threshold when its best IoU over boxes and GT boxes is >= delta/100.
    ``multi_contour_eval=True`` is MaxBoxAccV2's rule; False (largest contour) with delta 50 is the old MaxBoxAcc.
    """

    def __init__(self, iou_thresholds: Sequence[int] = DEFAULT_IOU_THRESHOLDS, cam_curve_interval: float = 0.01,
                 multi_contour_eval: bool = True, size: int = 224) -> None:
        self.iou_thresholds = tuple(int(t) for t in iou_thresholds)
        self.cam_thresholds = cam_threshold_list(cam_curve_interval)
        self.multi_contour_eval = multi_contour_eval
        self.size = size
        self.num_correct = np.zeros((len(self.iou_thresholds), len(self.cam_thresholds)), dtype=np.float64)
        self.count = 0

    def add_scoremap(self, scoremap: np.ndarray, gt_boxes) -> tuple[np.ndarray, np.ndarray]:
        """Score one normalised map; returns (best IoU per CAM threshold (T,) float64, boxes per threshold (T,))."""
        gt = np.asarray(gt_boxes, dtype=np.int64).reshape(-1, 4)
        per_thr = boxes_at_thresholds(scoremap, self.cam_thresholds, self.multi_contour_eval)
        best_iou = np.array([box_iou(boxes, gt).max() for boxes in per_thr], dtype=np.float64)
        n_boxes = np.array([len(boxes) for boxes in per_thr], dtype=np.int64)
        for i, delta in enumerate(self.iou_thresholds):
            self.num_correct[i][best_iou >= delta / 100] += 1
        self.count += 1
        return best_iou, n_boxes

    def add(self, cams, gt_boxes, n_gt=None) -> None:
        gts = _split_gt(gt_boxes, None if n_gt is None else _to_numpy(n_gt))
        for b, gt in enumerate(gts):
            self.add_scoremap(cam_to_scoremap(cams[b], self.size), gt)

    def max_box_acc(self) -> np.ndarray:
        """(len(iou_thresholds),) float64 percent: max over CAM thresholds of 100·correct/count."""
        if self.count == 0:
            return np.full(len(self.iou_thresholds), np.nan)
        return (self.num_correct * 100.0 / float(self.count)).max(axis=1)

    def summary(self) -> dict:
        """``maxboxacc_iou<delta>`` per delta, ``maxboxacc`` (their mean: MaxBoxAccV2 with multi-contour),
        ``best_cam_threshold_iou<delta>`` and ``n_images``; accuracies in percent."""
        acc = self.max_box_acc()
        out: dict = {"n_images": self.count, "maxboxacc": float(np.average(acc))}
        best = (self.num_correct.argmax(axis=1) if self.count else [0] * len(acc))
        for delta, a, k in zip(self.iou_thresholds, acc, best):
            out[f"maxboxacc_iou{delta}"] = float(a)
            out[f"best_cam_threshold_iou{delta}"] = float(self.cam_thresholds[k])
        return out
