"""Appearances of synthetic object classes: shape, colour, texture.

:data:`DEMO_STYLES` are the 20 object kinds of the demos, named after the PASCAL VOC classes they stand in for
(the synthetic VOC draws class k as ``DEMO_STYLES[k]``; the synthetic COCO maps them to COCO categories).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClassStyle:
    """Appearance of one class. ``aspect`` = (half-width, half-height) relative to the object size."""

    name: str
    shape: str
    aspect: tuple[float, float]
    colour: tuple[int, int, int]
    texture: str = "solid"
    colour2: tuple[int, int, int] = (0, 0, 0)
    period: float = 8.0  # texture period in pixels at a 128-pixel image side


DEMO_STYLES: tuple[ClassStyle, ...] = (
    ClassStyle("aeroplane", "triangle", (1.0, 0.8), (175, 190, 230), "hstripes", (250, 250, 250), 7),
    ClassStyle("bicycle", "ring", (1.0, 1.0), (25, 135, 70)),
    ClassStyle("bird", "star", (1.0, 1.0), (240, 205, 35)),
    ClassStyle("boat", "halfdisc", (1.0, 0.55), (150, 85, 35), "vstripes", (235, 225, 200), 8),
    ClassStyle("bottle", "bottle", (0.4, 1.0), (20, 150, 150), "dots", (235, 250, 250), 7),
    ClassStyle("bus", "rectangle", (1.0, 0.55), (245, 165, 20), "checks", (40, 40, 40), 10),
    ClassStyle("car", "car", (1.0, 0.6), (215, 35, 35)),
    ClassStyle("cat", "diamond", (0.85, 1.0), (235, 125, 45), "dstripes", (90, 45, 15), 8),
    ClassStyle("chair", "lshape", (0.75, 1.0), (125, 60, 175)),
    ClassStyle("cow", "ellipse", (1.0, 0.65), (240, 240, 235), "dots", (25, 25, 25), 12),
    ClassStyle("diningtable", "table", (1.0, 0.6), (205, 165, 110), "hstripes", (140, 95, 55), 10),
    ClassStyle("dog", "hexagon", (1.0, 0.9), (170, 120, 60), "checks", (235, 205, 150), 6),
    ClassStyle("horse", "crescent", (1.0, 1.0), (95, 50, 25)),
    ClassStyle("motorbike", "plus", (1.0, 1.0), (70, 70, 85), "vstripes", (220, 40, 40), 6),
    ClassStyle("person", "person", (0.5, 1.0), (245, 185, 160), "split", (40, 80, 200)),
    ClassStyle("pottedplant", "flower", (1.0, 1.0), (60, 175, 50), "dots", (15, 75, 15), 7),
    ClassStyle("sheep", "octagon", (1.0, 0.9), (235, 230, 210), "rings", (165, 155, 135), 6),
    ClassStyle("sofa", "ushape", (1.0, 0.7), (200, 40, 140)),
    ClassStyle("train", "arrow", (1.0, 0.55), (35, 65, 205), "hstripes", (240, 220, 40), 9),
    ClassStyle("tvmonitor", "frame", (1.0, 0.8), (25, 25, 30)),
)
