"""PASCAL VOC 2012's classes, spelled once (no torch: the run report and the synthetic writer read them)."""
from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
NUM_CLASSES = len(CLASS_NAMES)
NUM_LABELS = NUM_CLASSES + 1  # values of a label PNG: 0 background, 1..20 the classes (and 255 ignore)
