"""Where a VOC 2012 folder keeps its files, spelled once (no torch: the run report reads images without the data
layer of :mod:`voc12.dataloader`, which re-exports these)."""
from __future__ import annotations

import os
from pathlib import Path


def image_path(root: str | os.PathLike, img_id: str) -> Path:
    """``<root>/JPEGImages/<id>.jpg``."""
    return Path(root) / "JPEGImages" / f"{img_id}.jpg"


def class_gt_path(root: str | os.PathLike, img_id: str) -> Path:
    """``<root>/SegmentationClass/<id>.png``: VOC's semantic ground truth (class indices, 255 on borders)."""
    return Path(root) / "SegmentationClass" / f"{img_id}.png"


def object_gt_path(root: str | os.PathLike, img_id: str) -> Path:
    """``<root>/SegmentationObject/<id>.png``: VOC's instance ground truth."""
    return Path(root) / "SegmentationObject" / f"{img_id}.png"
