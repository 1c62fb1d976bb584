"""Class-index label maps of every dataset: the ignore value and the colours of label PNGs.

A label map is (H, W) uint8: 0 background, 1..C the classes, :data:`IGNORE_INDEX` where a pixel is left out
(object borders, crowd regions, uncertain pixels).
"""
from __future__ import annotations

import numpy as np

IGNORE_INDEX = 255


def label_palette() -> list[int]:
    """The 256-entry PASCAL VOC colour map, used for the label PNGs of every dataset, as a flat [r, g, b, ...] list
    (0 = black, 255 = (224, 224, 192))."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def colorize_label(label: np.ndarray) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 colours of :func:`label_palette`."""
    pal = np.asarray(label_palette(), dtype=np.uint8).reshape(256, 3)
    return pal[np.asarray(label, dtype=np.uint8)]
