"""Class-index label maps of every dataset: the ignore value, reading label PNGs and their colours.

A label map is (H, W) uint8: 0 background, 1..C the classes, :data:`IGNORE_INDEX` where a pixel is left out
(object borders, crowd regions, uncertain pixels).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from misc.core.errors import DataError, MissingDataFileError, UnreadableFileError

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


def read_label_png(path: str | os.PathLike, num_classes: int | None) -> np.ndarray:
    """Class-index map (H, W) uint8 of a (palette) PNG: the indices, never the RGB colours.

    Errors name the file: missing (:class:`~misc.core.errors.MissingDataFileError`), undecodable
    (:class:`~misc.core.errors.UnreadableFileError`), a colour (RGB) or other multi-channel mode, or values outside
    ``0..num_classes-1`` and 255 (:class:`~misc.core.errors.DataError`; ``num_classes=None`` skips the value check).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataFileError(f"no label PNG at {path}")
    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode in ("P", "L", "I", "I;16"):
                arr = np.asarray(im)
    except Exception as exc:
        raise UnreadableFileError(f"cannot read label PNG {path} ({type(exc).__name__}: {exc})") from exc
    if mode not in ("P", "L", "I", "I;16"):
        raise DataError(
            f"{path}: a label mask must be a palette ('P') or greyscale ('L') PNG of class indices, this one has mode "
            f"{mode}{' (colours, not indices)' if mode.startswith('RGB') else ''}. Use the palette PNGs of VOC's "
            f"SegmentationClass/ (or SBD's SegmentationClassAug/) as they come, not a re-saved colour copy."
        )
    if num_classes is not None:
        bad = (arr >= num_classes) & (arr != IGNORE_INDEX) | (arr < 0)
        if bad.any():
            vals = np.unique(arr[bad])
            shown = ", ".join(str(int(v)) for v in vals[:10]) + (" ..." if len(vals) > 10 else "")
            raise DataError(
                f"{path}: label values must be 0..{num_classes - 1} or {IGNORE_INDEX} (ignore), found {shown} "
                f"in {int(bad.sum())} pixel(s). Is it a mask of this dataset (a palette PNG of class indices)?"
            )
    return arr.astype(np.uint8)
