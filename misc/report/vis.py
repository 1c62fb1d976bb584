"""PNGs a person looks at: CAM overlays, coloured label maps, side-by-side panels (dataset-agnostic; the VOC panels
of the steps are in :mod:`dataset.vis`)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image


def heatmap(cam: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] → (H, W, 3) uint8 jet-like colours."""
    x = np.clip(np.asarray(cam, np.float32), 0.0, 1.0)
    r = np.clip(1.5 - np.abs(4 * x - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * x - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * x - 1), 0, 1)
    return (np.stack([r, g, b], -1) * 255).astype(np.uint8)


def overlay(img: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    return (img.astype(np.float32) * (1 - alpha) + heatmap(cam).astype(np.float32) * alpha).astype(np.uint8)


def hstack(panels: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Side by side (padded to the tallest), white gaps."""
    h = max(p.shape[0] for p in panels)
    cols = []
    for i, p in enumerate(panels):
        p = p if p.ndim == 3 else np.repeat(p[..., None], 3, -1)
        pad = np.full((h, p.shape[1], 3), 255, np.uint8)
        pad[: p.shape[0]] = p
        cols.append(pad)
        if i < len(panels) - 1:
            cols.append(np.full((h, gap, 3), 255, np.uint8))
    return np.concatenate(cols, axis=1)


def save_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
