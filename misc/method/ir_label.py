"""Inter-pixel-relation labels from CAMs (docs/ir_labels_and_irnet.md#ir-labels): confident fg / bg via two CRFs."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from misc.core.labels import IGNORE_INDEX
from misc.method.crf import crf_inference_label

__all__ = ["confident_argmax", "padded_keys", "make_ir_label"]


def padded_keys(keys: Sequence[int] | np.ndarray) -> np.ndarray:
    """0-based class keys (K,) → [0, keys + 1] (K+1,): CRF / argmax label index → VOC class id."""
    return np.pad(np.asarray(keys).reshape(-1).astype(np.int64) + 1, (1, 0), mode="constant")


def confident_argmax(high_res: np.ndarray, threshold: float) -> np.ndarray:
    """argmax over [constant background plane ``threshold``] + high_res (K, H, W) → (H, W) int64 in 0..K."""
    padded = np.pad(high_res, ((1, 0), (0, 0), (0, 0)), mode="constant", constant_values=threshold)
    return np.argmax(padded, axis=0)


def make_ir_label(
    img: np.ndarray,
    high_res: np.ndarray,
    keys: Sequence[int] | np.ndarray,
    fg_thres: float = 0.35,
    bg_thres: float = 0.15,
) -> np.ndarray:
    """IR label of one image: 0 background, 1..C confident foreground (C = 20 on VOC, 80 on COCO), 255 uncertain.

    img: (H, W, 3) uint8 RGB; high_res: (K, H, W) float32 CAMs (per-class max-normalised); keys: (K,) 0-based.
    fg = CRF(argmax with bg ``fg_thres``), bg = CRF(argmax with bg ``bg_thres``) (class ids);
    label = fg; label[fg == 0] = 255; label[fg + bg == 0] = 0; an image without classes (K = 0) is all background.
    Returns (H, W) uint8.
    """
    class_ids = padded_keys(keys)
    n_labels = class_ids.shape[0]
    if n_labels == 1:  # no class in the image: all background
        return np.zeros(high_res.shape[1:], np.uint8)
    img = np.ascontiguousarray(img, dtype=np.uint8)
    fg_conf = class_ids[crf_inference_label(img, confident_argmax(high_res, fg_thres), n_labels=n_labels)]
    bg_conf = class_ids[crf_inference_label(img, confident_argmax(high_res, bg_thres), n_labels=n_labels)]
    conf = fg_conf.copy()
    conf[fg_conf == 0] = IGNORE_INDEX
    conf[bg_conf + fg_conf == 0] = 0
    return conf.astype(np.uint8)
