"""A synthetic PASCAL VOC 2012 folder for demos, tests and benchmarks.

:func:`make_synthetic_voc` writes the layout a user passes as ``--voc12_root``::

    JPEGImages/<id>.jpg                every id (train, val, extra aug, test)
    Annotations/<id>.xml               every id; one <object> per instance
    SegmentationClass/<id>.png         train + val: palette PNG, 0 bg, 1..20 classes, 255 on object borders
    SegmentationObject/<id>.png        train + val: palette PNG, instances 1..R, same 255 borders
    SegmentationClassAug/<id>.png      train + extra + val (SBD-like): single-channel class indices, no 255
    ImageSets/Segmentation/{train,val,trainval}.txt (+ test.txt when num_test > 0)

Each image holds 1-3 objects of the 20 VOC classes. A class is a fixed combination of shape, colour and texture
(:data:`CLASS_STYLES`), drawn with random size, position, aspect jitter and rotation on a cluttered background
(colour gradient, noise, low-contrast amorphous blobs and lines). Later objects occlude earlier ones.

Every image is drawn from its own generator seeded by ``(seed, split, index)``, so the output is byte-identical
for the same call whatever ``num_workers`` is. CLI: ``python -m voc12.synthetic --out DIR [--preset voc] ...``.
"""
from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from misc.core.labels import IGNORE_INDEX, label_palette
from voc12.facts import CLASS_NAMES, NUM_CLASSES

log = logging.getLogger(__name__)

# Bumped whenever the same config draws other pixels (a demo folder written by an older version is rewritten).
# 2: thick chairs; dining-table stripes of period 10 (5 was the finest texture of the set: 2.5 px at the demo's
# 0.5 CAM scale, next to the 2-px limit of what that resolution can show).
GENERATOR_VERSION = 2

SizeRange = tuple[tuple[int, int], tuple[int, int]]


# --------------------------------------------------------------------------------------------------------------
# Configuration (all defaults live here)
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyntheticVOCConfig:
    """Everything that defines a synthetic VOC folder. ``image_size`` = ((h_lo, h_hi), (w_lo, w_hi)), inclusive."""

    num_train: int = 40
    num_val: int = 20
    num_extra_aug: int = 40
    num_test: int = 0
    image_size: SizeRange = ((112, 144), (144, 176))
    seed: int = 0
    jpeg_quality: int = 90
    max_objects: int = 3
    num_workers: int = 0


DEFAULTS = SyntheticVOCConfig()

#: Named configurations for the CLI. "voc" has VOC 2012's split sizes (1464 train + 9118 extra = 10582 train_aug,
#: 1449 val) and image sizes near 500x375.
PRESETS: dict[str, SyntheticVOCConfig] = {
    "demo": DEFAULTS,
    "small": replace(DEFAULTS, num_train=120, num_val=40, num_extra_aug=80),
    "voc": replace(DEFAULTS, num_train=1464, num_val=1449, num_extra_aug=9118, num_test=0,
                   image_size=((300, 500), (333, 500))),
}

# Year-like id prefixes per split: ids read "2090_000001" (and survive the original int32 id parsing).
SPLIT_YEARS = {"train": 2090, "val": 2091, "extra": 2092, "test": 2093}
_SPLIT_CODES = {"train": 0, "val": 1, "extra": 2, "test": 3}


# --------------------------------------------------------------------------------------------------------------
# Class appearance: shape + colour + texture
# --------------------------------------------------------------------------------------------------------------
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


CLASS_STYLES: tuple[ClassStyle, ...] = (
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


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of ``shape`` on normalised object coordinates u (right), v (down), both in [-1, 1]."""
    au, av = np.abs(u), np.abs(v)
    if shape == "ellipse":
        return u * u + v * v <= 1.0
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.55 ** 2)
    if shape == "triangle":  # apex up
        return (v <= 1.0) & (au <= (v + 1.0) * 0.5)
    if shape == "star":
        r = np.sqrt(u * u + v * v)
        t = np.arctan2(v, u) * (5.0 / (2.0 * np.pi)) + 0.25
        tri = np.abs(t - np.floor(t) - 0.5) * 2.0  # 1 at the 5 tips, 0 between them
        return r <= 0.42 + 0.58 * tri ** 2
    if shape == "halfdisc":  # hull: flat deck on top
        w = (v + 1.0) * 0.5
        return u * u + w * w <= 1.0
    if shape == "bottle":
        return ((au <= 1.0) & (v >= -0.35)) | ((au <= 0.4) & (v >= -1.0))
    if shape == "rectangle":
        return (au <= 1.0) & (av <= 1.0)
    if shape == "car":
        body = (au <= 1.0) & (v >= -0.35) & (v <= 0.55)
        cabin = (au <= 0.55) & (v >= -1.0)
        wheels = ((au - 0.6) ** 2 + (v - 0.62) ** 2) <= 0.38 ** 2
        return body | (cabin & (v <= -0.35)) | wheels
    if shape == "diamond":
        return au + av <= 1.0
    if shape == "lshape":
        # thick arms (0.45 of the box each): with the thin ones of earlier versions (0.33) the chairs were slivers
        # a few pixels wide at the demo's size, their CAMs found nothing and the demo's DeepLab never learned them
        return ((u <= -0.1) & (av <= 1.0) & (u >= -1.0)) | ((v >= 0.1) & (v <= 1.0) & (au <= 1.0))
    if shape == "table":
        # a thick top and legs: with the thin ones of earlier versions (top 0.25, legs 0.16 of the box) the
        # class's CAMs found only specks, and the demo's DeepLab never learned it
        top = (v >= -1.0) & (v <= -0.35) & (au <= 1.0)
        legs = (v >= -0.35) & (v <= 1.0) & (au >= 0.5) & (au <= 0.95)
        return top | legs
    if shape == "hexagon":
        return (av <= 0.866) & (0.866 * au + 0.5 * av <= 0.866)
    if shape == "crescent":
        return (u * u + v * v <= 1.0) & ((u - 0.45) ** 2 + v * v > 0.75 ** 2)
    if shape == "plus":
        return ((au <= 0.3) & (av <= 1.0)) | ((av <= 0.3) & (au <= 1.0))
    if shape == "person":
        head = u * u / 0.36 + (v + 0.72) ** 2 / 0.08 <= 1.0
        body = (v >= -0.42) & (v <= 1.0) & (au <= 0.55 + 0.45 * np.clip(v + 0.42, 0.0, 1.0))
        return head | body
    if shape == "flower":
        r = np.sqrt(u * u + v * v)
        return r <= 0.62 + 0.38 * np.cos(6.0 * np.arctan2(v, u))
    if shape == "octagon":
        return (au <= 1.0) & (av <= 1.0) & (au + av <= 1.45)
    if shape == "ushape":
        return (au <= 1.0) & (av <= 1.0) & ~((au < 0.6) & (v < 0.15))
    if shape == "arrow":
        shaft = (u >= -1.0) & (u <= 0.25) & (av <= 0.45)
        head = (u >= 0.25) & (av <= (1.0 - u) / 0.75)
        return shaft | head
    if shape == "frame":
        m = np.maximum(au, av)
        return (m <= 1.0) & (m >= 0.62)
    if shape in EXTRA_SHAPES:
        return _extra_shape_mask(shape, u, v)
    raise ValueError(f"unknown shape {shape!r}")


# Shapes no VOC demo class uses (nor the CUB demo's): the object kinds of the stand-in pretraining set
# (tools/standin_data.py), as ImageNet's classes are not VOC's.
EXTRA_SHAPES: tuple[str, ...] = ("heart", "trapezoid", "pentagon", "keyhole", "tshape", "chevron", "hourglass",
                                 "pacman", "parallelogram", "teardrop", "cloud", "dumbbell", "lightning", "mushroom",
                                 "lens", "gear")

_LIGHTNING = np.asarray([(0.15, -1.0), (-0.75, 0.15), (-0.1, 0.15), (-0.35, 1.0), (0.75, -0.25), (0.1, -0.25),
                         (0.55, -1.0)], np.float32)


def _polygon_mask(u: np.ndarray, v: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test of (u, v) against the closed polygon ``pts`` (N, 2) of (u, v) vertices."""
    inside = np.zeros(np.broadcast_shapes(u.shape, v.shape), bool)
    for (u0, v0), (u1, v1) in zip(pts, np.roll(pts, -1, axis=0)):
        if v0 == v1:
            continue
        crosses = (v0 > v) != (v1 > v)
        u_at = u0 + (v - v0) * (u1 - u0) / (v1 - v0)
        inside ^= crosses & (u < u_at)
    return inside


def _extra_shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of one of :data:`EXTRA_SHAPES` (same frame as :func:`_shape_mask`)."""
    au, av = np.abs(u), np.abs(v)
    r2 = u * u + v * v
    if shape == "heart":  # (x² + y² - 1)³ ≤ x² y³, y up, scaled into [-1, 1]²
        x, y = u * 1.15, -v * 1.2 + 0.15
        q = x * x + y * y - 1.0
        return q * q * q <= x * x * y * y * y
    if shape == "trapezoid":  # narrow side up
        return (av <= 0.8) & (au <= 0.5 + 0.5 * (v + 0.8) / 1.6)
    if shape == "pentagon":  # apex up
        ok = np.ones(np.broadcast_shapes(u.shape, v.shape), bool)
        for k in range(5):
            a = np.pi / 2 + 2 * np.pi * k / 5  # outward edge normals: one points down (flat base)
            ok &= u * np.float32(np.cos(a)) + v * np.float32(np.sin(a)) <= np.float32(np.cos(np.pi / 5))
        return ok
    if shape == "keyhole":
        return (u * u + (v + 0.42) ** 2 <= 0.55 ** 2) | ((v >= -0.2) & (v <= 1.0) & (au <= 0.22 + 0.3 * (v + 0.2)))
    if shape == "tshape":
        return ((v >= -1.0) & (v <= -0.45) & (au <= 1.0)) | ((au <= 0.28) & (av <= 1.0))
    if shape == "chevron":  # a thick V
        d = v + 0.95 * au
        return (d >= -0.75) & (d <= 0.1) & (au <= 1.0) & (av <= 1.0)
    if shape == "hourglass":
        return (av <= 1.0) & (au <= 0.12 + 0.88 * av)
    if shape == "pacman":  # a disc with a wedge cut out on the right
        return (r2 <= 1.0) & ~((u > 0) & (av < 0.75 * u))
    if shape == "parallelogram":
        return (av <= 0.75) & (np.abs(u + 0.5 * v) <= 0.62)
    if shape == "teardrop":  # round bottom, tip up
        return (u * u + (v - 0.35) ** 2 <= 0.65 ** 2) | ((v >= -1.0) & (v <= 0.35) & (au <= 0.6 * (v + 1.0) / 1.35))
    if shape == "cloud":
        puffs = (((u + 0.5) ** 2 + (v - 0.1) ** 2 <= 0.45 ** 2) | ((u - 0.5) ** 2 + (v - 0.1) ** 2 <= 0.45 ** 2)
                 | (u * u + (v + 0.2) ** 2 <= 0.6 ** 2))
        return puffs | ((au <= 0.75) & (v >= 0.0) & (v <= 0.55))
    if shape == "dumbbell":
        return ((au - 0.68) ** 2 + v * v <= 0.32 ** 2) | ((au <= 0.7) & (av <= 0.12))
    if shape == "lightning":
        return _polygon_mask(u, v, _LIGHTNING)
    if shape == "mushroom":
        cap = (u * u + ((v + 0.05) / 0.95) ** 2 <= 1.0) & (v <= -0.05)
        return cap | ((au <= 0.3) & (v >= -0.1) & (v <= 1.0))
    if shape == "lens":  # intersection of two discs: a vertical leaf
        return ((u - 0.75) ** 2 + v * v <= 1.25 ** 2) & ((u + 0.75) ** 2 + v * v <= 1.25 ** 2)
    if shape == "gear":  # 8 square teeth
        teeth = np.cos(8.0 * np.arctan2(v, u)) > 0
        return r2 <= np.where(teeth, 1.0, 0.72 ** 2)
    raise ValueError(f"unknown shape {shape!r}")


def _texture(kind: str, x: np.ndarray, y: np.ndarray, v: np.ndarray, period: float) -> np.ndarray | None:
    """Mixing weight (bool) of the second colour; x, y object-frame pixel offsets, v normalised height."""
    half = period / 2.0
    if kind == "solid":
        return None
    if kind == "hstripes":
        return (np.floor(y / half) % 2) == 1
    if kind == "vstripes":
        return (np.floor(x / half) % 2) == 1
    if kind == "dstripes":
        return (np.floor((x + y) / (half * 1.41)) % 2) == 1
    if kind == "checks":
        return ((np.floor(x / half) + np.floor(y / half)) % 2) == 1
    if kind == "dots":
        fx = x / period - np.floor(x / period) - 0.5
        fy = y / period - np.floor(y / period) - 0.5
        return fx * fx + fy * fy <= 0.3 ** 2
    if kind == "rings":
        return (np.floor(np.sqrt(x * x + y * y) / half) % 2) == 1
    if kind == "split":
        return np.broadcast_to(v >= -0.42, np.broadcast_shapes(x.shape, y.shape))
    if kind == "waves":  # wavy horizontal stripes
        return (np.floor((y + half * np.sin(x * (np.pi / period))) / half) % 2) == 1
    if kind == "grid":  # thin lines on the base colour
        return ((x / period - np.floor(x / period)) < 0.28) | ((y / period - np.floor(y / period)) < 0.28)
    if kind == "band":  # one horizontal band across the middle
        return np.broadcast_to(np.abs(v) <= 0.3, np.broadcast_shapes(x.shape, y.shape))
    raise ValueError(f"unknown texture {kind!r}")


# --------------------------------------------------------------------------------------------------------------
# Rendering one image
# --------------------------------------------------------------------------------------------------------------
@dataclass
class _Object:
    """A rasterised object: its class (0-based), bbox slices and its (h, w) mask / (h, w, 3) colour patch."""

    cls: int
    rows: slice
    cols: slice
    mask: np.ndarray
    patch: np.ndarray


@dataclass
class RenderedImage:
    """One synthetic sample. ``instances`` (H, W) uint8 before borders; ``classes[k]`` = 1-based class of instance k+1."""

    image: np.ndarray
    instances: np.ndarray
    classes: list[int]
    border_width: int

    def class_map(self) -> np.ndarray:
        """(H, W) uint8 class indices 0..20, no borders (SBD-like)."""
        lut = np.zeros(256, np.uint8)
        lut[1: len(self.classes) + 1] = self.classes
        return lut[self.instances]

    def border(self) -> np.ndarray:
        """(H, W) bool VOC-style void band of ``border_width`` pixels along every instance boundary."""
        return boundary_band(self.instances, self.border_width)


def boundary_band(labels: np.ndarray, width: int) -> np.ndarray:
    """(H, W) bool band about ``width`` px wide along every change of ``labels`` (not along the image edge)."""
    band = np.zeros(labels.shape, bool)
    dx = labels[:, 1:] != labels[:, :-1]
    dy = labels[1:, :] != labels[:-1, :]
    band[:, 1:] |= dx
    band[1:, :] |= dy
    if width % 2 == 0:  # both sides of the edge: width 2, grown by 1 px per side per step
        band[:, :-1] |= dx
        band[:-1, :] |= dy
        grow = (width - 2) // 2
    else:  # one side: width 1
        grow = (width - 1) // 2
    for _ in range(grow):
        g = band.copy()
        g[1:, :] |= band[:-1, :]
        g[:-1, :] |= band[1:, :]
        g[:, 1:] |= band[:, :-1]
        g[:, :-1] |= band[:, 1:]
        band = g
    return band


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(H, W, 3) float32 clutter: corner-colour gradient, amorphous low-contrast blobs and faint lines."""
    corners = rng.uniform(40, 215, size=(2, 2, 3)).astype(np.float32)
    ty = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    tx = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :, None]
    top = corners[0, 0] * (1 - tx) + corners[0, 1] * tx
    bottom = corners[1, 0] * (1 - tx) + corners[1, 1] * tx
    img = top * (1 - ty) + bottom * ty

    # Amorphous blobs: a coarse random field, upsampled and thresholded (never one of the class shapes).
    for _ in range(int(rng.integers(1, 4))):
        coarse = rng.random((int(rng.integers(3, 7)), int(rng.integers(3, 7)))).astype(np.float32)
        field = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC))
        blob = field > np.quantile(coarse, 0.7)
        shade = rng.uniform(-28, 28, size=3).astype(np.float32)
        img = img + blob[..., None] * shade

    # Faint straight lines (distance-to-line bands).
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    for _ in range(int(rng.integers(0, 4))):
        ang = rng.uniform(0, np.pi)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        dist = np.abs((xx - cx) * np.sin(ang) - (yy - cy) * np.cos(ang))
        line = dist <= rng.uniform(0.5, 2.0) * max(1.0, min(h, w) / 128.0)
        img = img + line[..., None] * rng.uniform(-30, 30, size=3).astype(np.float32)
    return img


def _draw_object(rng: np.random.Generator, cls: int, h: int, w: int, styles: Sequence[ClassStyle] = CLASS_STYLES,
                 size_range: tuple[float, float] = (0.14, 0.42)) -> _Object | None:
    """Rasterise one object of class ``cls`` (0-based index into ``styles``) with random size (half-extent of the
    longer axis, a fraction ``size_range`` of the shorter image side), position, aspect and rotation."""
    style = styles[cls]
    side = min(h, w)
    size = rng.uniform(*size_range) * side  # half-extent of the longer axis, pixels
    jitter = rng.uniform(0.85, 1.15)
    sx = size * style.aspect[0] * jitter
    sy = size * style.aspect[1] / jitter
    theta = rng.uniform(-0.35, 0.35)
    flip = -1.0 if rng.random() < 0.5 else 1.0
    cx = rng.uniform(0.08, 0.92) * w
    cy = rng.uniform(0.08, 0.92) * h
    reach = float(np.hypot(sx, sy)) + 1.0
    r0, r1 = max(0, int(cy - reach)), min(h, int(np.ceil(cy + reach)) + 1)
    c0, c1 = max(0, int(cx - reach)), min(w, int(np.ceil(cx + reach)) + 1)
    if r1 - r0 < 2 or c1 - c0 < 2:
        return None
    dy = np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5 - cy
    dx = np.arange(c0, c1, dtype=np.float32)[None, :] + 0.5 - cx
    cos, sin = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    x = (cos * dx + sin * dy) * flip  # object frame, pixels
    y = -sin * dx + cos * dy
    u, v = x / np.float32(sx), y / np.float32(sy)
    mask = _shape_mask(style.shape, u, v)
    if not mask.any():
        return None

    colour = np.asarray(style.colour, np.float32) + rng.uniform(-14, 14, size=3).astype(np.float32)
    gain = np.float32(rng.uniform(0.85, 1.12))
    shading = (gain + np.float32(0.12) * (u * np.float32(rng.uniform(-1, 1)) + v * np.float32(rng.uniform(-1, 1))))
    patch = colour * shading[..., None]
    period = style.period * max(side / 128.0, 1.0) * rng.uniform(0.85, 1.15)
    second = _texture(style.texture, x, y, v, period)
    if second is not None:
        colour2 = np.asarray(style.colour2, np.float32) + rng.uniform(-14, 14, size=3).astype(np.float32)
        patch = np.where(second[..., None], colour2 * shading[..., None], patch)
    return _Object(cls, slice(r0, r1), slice(c0, c1), mask, patch.astype(np.float32))


def _visible_counts(instances: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(instances.ravel(), minlength=n + 1)[: n + 1]


def render_image(rng: np.random.Generator, h: int, w: int, first_class: int, max_objects: int = 3,
                 styles: Sequence[ClassStyle] = CLASS_STYLES) -> RenderedImage:
    """Draw one sample of size (h, w); the first object has class ``first_class`` (0-based index into ``styles``,
    default the 20 VOC classes; ``classes`` of the result are 1-based indices into ``styles``).

    Objects are added one by one; an object is redrawn (up to 8 tries, then dropped) when it would leave itself or
    an earlier object with fewer than max(35 % of its own pixels, a minimum) visible pixels, or too few pixels
    outside the void border band, so every instance stays visible in the masks.
    """
    img = _background(rng, h, w)
    n_objects = int(rng.choice(np.arange(1, max_objects + 1), p=_object_count_probs(max_objects)))
    max_width = 3 if min(h, w) < 200 else 5
    border_width = int(rng.integers(2, max_width + 1))
    min_pixels = max(40, int(0.004 * h * w))
    instances = np.zeros((h, w), np.uint8)
    objects: list[_Object] = []
    areas: list[int] = []
    for k in range(n_objects):
        if k == 0:
            cls = first_class
        elif rng.random() < 0.25:
            cls = objects[int(rng.integers(len(objects)))].cls  # a second instance of a present class
        else:
            cls = int(rng.integers(len(styles)))
        for _ in range(8):
            obj = _draw_object(rng, cls, h, w, styles)
            if obj is None or int(obj.mask.sum()) < min_pixels * 2:
                continue
            trial = instances.copy()
            trial[obj.rows, obj.cols][obj.mask] = len(objects) + 1
            trial_areas = areas + [int(obj.mask.sum())]
            n = len(trial_areas)
            visible = _visible_counts(trial, n)
            if not all(visible[i + 1] >= max(min_pixels, 0.35 * a) for i, a in enumerate(trial_areas)):
                continue
            inner = _visible_counts(np.where(boundary_band(trial, border_width), 0, trial), n)
            if all(inner[i + 1] >= max(min_pixels // 2, 0.15 * a) for i, a in enumerate(trial_areas)):
                instances = trial
                objects.append(obj)
                areas = trial_areas
                break
    if not objects:  # practically unreachable; keep the contract of >= 1 object
        obj = None
        while obj is None or int(obj.mask.sum()) < min_pixels * 2:
            obj = _draw_object(rng, first_class, h, w, styles)
        instances[obj.rows, obj.cols][obj.mask] = 1
        objects.append(obj)
        border_width = 2

    for obj in objects:  # paint in order: later objects occlude
        region = img[obj.rows, obj.cols]
        region[obj.mask] = obj.patch[obj.mask]
    img += rng.normal(0.0, 5.0, size=img.shape).astype(np.float32)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return RenderedImage(image, instances, [o.cls + 1 for o in objects], border_width)


def _object_count_probs(max_objects: int) -> np.ndarray:
    p = np.asarray([0.45, 0.35, 0.2] + [0.1] * max(0, max_objects - 3), np.float64)[:max_objects]
    return p / p.sum()


# --------------------------------------------------------------------------------------------------------------
# Writing files
# --------------------------------------------------------------------------------------------------------------
def annotation_xml(img_id: str, height: int, width: int, classes: Sequence[int],
                   boxes: Sequence[tuple[int, int, int, int]], segmented: bool) -> bytes:
    """VOC XML bytes; ``classes`` 1-based, ``boxes`` 1-based inclusive (xmin, ymin, xmax, ymax)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2012"
    ET.SubElement(root, "filename").text = f"{img_id}.jpg"
    source = ET.SubElement(root, "source")
    ET.SubElement(source, "database").text = "crt synthetic VOC"
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(width)
    ET.SubElement(size, "height").text = str(height)
    ET.SubElement(size, "depth").text = "3"
    ET.SubElement(root, "segmented").text = "1" if segmented else "0"
    for cls, (x0, y0, x1, y1) in zip(classes, boxes):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = CLASS_NAMES[cls - 1]
        ET.SubElement(obj, "pose").text = "Unspecified"
        truncated = x0 == 1 or y0 == 1 or x1 == width or y1 == height
        ET.SubElement(obj, "truncated").text = "1" if truncated else "0"
        ET.SubElement(obj, "difficult").text = "0"
        box = ET.SubElement(obj, "bndbox")
        for tag, val in zip(("xmin", "ymin", "xmax", "ymax"), (x0, y0, x1, y1)):
            ET.SubElement(box, tag).text = str(val)
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="utf-8") + b"\n"


def instance_boxes(instances: np.ndarray, n: int) -> list[tuple[int, int, int, int]]:
    """1-based inclusive (xmin, ymin, xmax, ymax) of the visible pixels of instances 1..n."""
    boxes = []
    for k in range(1, n + 1):
        rows = np.flatnonzero((instances == k).any(axis=1))
        cols = np.flatnonzero((instances == k).any(axis=0))
        boxes.append((int(cols[0]) + 1, int(rows[0]) + 1, int(cols[-1]) + 1, int(rows[-1]) + 1))
    return boxes


def _save_palette_png(path: Path, label: np.ndarray, palette: list[int]) -> None:
    label = np.ascontiguousarray(label, dtype=np.uint8)
    im = Image.frombytes("P", (label.shape[1], label.shape[0]), label.tobytes())
    im.putpalette(palette)
    im.save(path, format="PNG")


@dataclass(frozen=True)
class _Job:
    root: str
    img_id: str
    split: str
    index: int  # within the split
    first_class: int
    seed: int
    image_size: SizeRange
    jpeg_quality: int
    max_objects: int


def _image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_CODES[split], index]))


def _write_one(job: _Job) -> list[int]:
    """Render and write every file of one id; returns its 1-based classes."""
    rng = _image_rng(job.seed, job.split, job.index)
    (h_lo, h_hi), (w_lo, w_hi) = job.image_size
    h, w = int(rng.integers(h_lo, h_hi + 1)), int(rng.integers(w_lo, w_hi + 1))
    sample = render_image(rng, h, w, job.first_class, job.max_objects)
    root = Path(job.root)
    Image.fromarray(sample.image).save(root / "JPEGImages" / f"{job.img_id}.jpg", format="JPEG",
                                       quality=job.jpeg_quality)
    has_seg = job.split in ("train", "val")
    boxes = instance_boxes(sample.instances, len(sample.classes))
    xml = annotation_xml(job.img_id, h, w, sample.classes, boxes, segmented=has_seg)
    (root / "Annotations" / f"{job.img_id}.xml").write_bytes(xml)
    if job.split == "test":
        return sample.classes
    class_map = sample.class_map()
    Image.fromarray(class_map).save(root / "SegmentationClassAug" / f"{job.img_id}.png", format="PNG")
    if has_seg:
        palette = label_palette()
        border = sample.border()
        _save_palette_png(root / "SegmentationClass" / f"{job.img_id}.png",
                          np.where(border, IGNORE_INDEX, class_map), palette)
        _save_palette_png(root / "SegmentationObject" / f"{job.img_id}.png",
                          np.where(border, IGNORE_INDEX, sample.instances), palette)
    return sample.classes


def split_ids(split: str, count: int) -> list[str]:
    """VOC-like ids of a split: ``f"{year}_{n:06d}"`` for n = 1..count."""
    year = SPLIT_YEARS[split]
    return [f"{year}_{n:06d}" for n in range(1, count + 1)]


def make_synthetic_voc(
    root: str | os.PathLike,
    num_train: int = DEFAULTS.num_train,
    num_val: int = DEFAULTS.num_val,
    num_extra_aug: int = DEFAULTS.num_extra_aug,
    image_size: SizeRange = DEFAULTS.image_size,
    seed: int = DEFAULTS.seed,
    num_test: int = DEFAULTS.num_test,
    *,
    num_workers: int = DEFAULTS.num_workers,
    jpeg_quality: int = DEFAULTS.jpeg_quality,
    max_objects: int = DEFAULTS.max_objects,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a synthetic VOC 2012 folder at ``root`` (see the module docstring) and return it as a Path.

    ``num_workers`` > 1 renders in a process pool; the files are identical either way. ``progress(done, total)``
    is called after each image when given. Existing files of the same names are overwritten.
    """
    (h_lo, h_hi), (w_lo, w_hi) = image_size
    if not (0 < h_lo <= h_hi and 0 < w_lo <= w_hi):
        raise ValueError(f"image_size must be ((h_lo, h_hi), (w_lo, w_hi)) with 0 < lo <= hi, got {image_size}")
    if min(h_lo, w_lo) < 32:
        raise ValueError(f"images must be at least 32 px on a side, got {image_size}")
    if num_train < 0 or num_val < 0 or num_extra_aug < 0 or num_test < 0:
        raise ValueError("image counts must be >= 0")
    if not 1 <= max_objects <= 255:
        raise ValueError("max_objects must be in 1..255")
    root = Path(root)
    for sub in ("JPEGImages", "Annotations", "SegmentationClass", "SegmentationObject", "SegmentationClassAug",
                "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)

    # The first object's class cycles through a seed-dependent permutation of the 20 classes: uniform balance.
    order = np.random.default_rng(np.random.SeedSequence([seed, 99])).permutation(NUM_CLASSES)
    counts = {"train": num_train, "val": num_val, "extra": num_extra_aug, "test": num_test}
    ids = {split: split_ids(split, n) for split, n in counts.items()}
    jobs: list[_Job] = []
    g = 0
    for split in ("train", "val", "extra", "test"):
        for i, img_id in enumerate(ids[split]):
            jobs.append(_Job(str(root), img_id, split, i, int(order[g % NUM_CLASSES]), seed, image_size,
                             jpeg_quality, max_objects))
            g += 1

    total = len(jobs)
    if num_workers > 1 and total > 1:
        # spawn: safe even when the caller has started threads (torch, OpenMP); the output does not depend on it.
        with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
            for done, _ in enumerate(pool.imap_unordered(_write_one, jobs, chunksize=8), 1):
                if progress is not None:
                    progress(done, total)
    else:
        for done, job in enumerate(jobs, 1):
            _write_one(job)
            if progress is not None:
                progress(done, total)

    seg_sets = root / "ImageSets" / "Segmentation"
    lists = {"train": ids["train"], "val": ids["val"], "trainval": sorted(ids["train"] + ids["val"])}
    if num_test > 0:
        lists["test"] = ids["test"]
    for name, lst in lists.items():
        (seg_sets / f"{name}.txt").write_text("".join(f"{i}\n" for i in lst))
    log.info("synthetic VOC at %s: %d train, %d val, %d extra aug, %d test images", root, num_train, num_val,
             num_extra_aug, num_test)
    return root


# --------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    presets = "; ".join(
        f"{name}: {c.num_train} train, {c.num_val} val, {c.num_extra_aug} extra, {c.num_test} test, "
        f"h {c.image_size[0][0]}-{c.image_size[0][1]}, w {c.image_size[1][0]}-{c.image_size[1][1]}"
        for name, c in PRESETS.items())
    p = argparse.ArgumentParser(prog="python -m voc12.synthetic", description=(__doc__ or "").split("\n\n")[0],
                                epilog=f"Options left out take the preset's value. Presets: {presets}.")
    p.add_argument("--out", required=True, help="folder to write (pass it as --voc12_root)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="demo",
                   help="base configuration; the options below override it")
    p.add_argument("--num_train", type=int, default=None, help="train ids (with masks)")
    p.add_argument("--num_val", type=int, default=None, help="val ids (with masks)")
    p.add_argument("--num_extra_aug", type=int, default=None, help="extra train_aug ids (SegmentationClassAug only)")
    p.add_argument("--num_test", type=int, default=None, help="test ids (JPEG + XML only)")
    p.add_argument("--height", type=int, nargs=2, metavar=("LO", "HI"), default=None, help="image height range")
    p.add_argument("--width", type=int, nargs=2, metavar=("LO", "HI"), default=None, help="image width range")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--num_workers", type=int, default=None, help="processes (0 or 1: in-process)")
    p.add_argument("--jpeg_quality", type=int, default=None)
    return p


def config_from_args(args: argparse.Namespace) -> SyntheticVOCConfig:
    """The preset with every given option applied."""
    cfg = PRESETS[args.preset]
    overrides = {k: getattr(args, k) for k in ("num_train", "num_val", "num_extra_aug", "num_test", "seed",
                                               "num_workers", "jpeg_quality") if getattr(args, k) is not None}
    hs = tuple(args.height) if args.height is not None else cfg.image_size[0]
    ws = tuple(args.width) if args.width is not None else cfg.image_size[1]
    return replace(cfg, image_size=(hs, ws), **overrides)


def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = config_from_args(args)
    log.info("config: %s", asdict(cfg))
    total = cfg.num_train + cfg.num_val + cfg.num_extra_aug + cfg.num_test
    step = max(1, total // 20)

    def progress(done: int, total_: int) -> None:
        if done % step == 0 or done == total_:
            log.info("%d / %d images", done, total_)

    return make_synthetic_voc(args.out, num_train=cfg.num_train, num_val=cfg.num_val,
                              num_extra_aug=cfg.num_extra_aug, image_size=cfg.image_size, seed=cfg.seed,
                              num_test=cfg.num_test, num_workers=cfg.num_workers, jpeg_quality=cfg.jpeg_quality,
                              max_objects=cfg.max_objects, progress=progress)


if __name__ == "__main__":
    main()
