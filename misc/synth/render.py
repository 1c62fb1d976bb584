"""Drawing one synthetic image: a cluttered background and objects of given styles, with their instance map.

Every draw takes a ``numpy.random.Generator``: the same generator state draws the same pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from misc.synth.shapes import shape_mask, texture_mask
from misc.synth.styles import DEMO_STYLES, ClassStyle


@dataclass
class RenderedObject:
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
        """(H, W) uint8 class indices (0 background, ``classes`` of the instances), no borders."""
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


def draw_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
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


def draw_object(rng: np.random.Generator, cls: int, h: int, w: int, styles: Sequence[ClassStyle] = DEMO_STYLES,
                 size_range: tuple[float, float] = (0.14, 0.42)) -> RenderedObject | None:
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
    mask = shape_mask(style.shape, u, v)
    if not mask.any():
        return None

    colour = np.asarray(style.colour, np.float32) + rng.uniform(-14, 14, size=3).astype(np.float32)
    gain = np.float32(rng.uniform(0.85, 1.12))
    shading = (gain + np.float32(0.12) * (u * np.float32(rng.uniform(-1, 1)) + v * np.float32(rng.uniform(-1, 1))))
    patch = colour * shading[..., None]
    period = style.period * max(side / 128.0, 1.0) * rng.uniform(0.85, 1.15)
    second = texture_mask(style.texture, x, y, v, period)
    if second is not None:
        colour2 = np.asarray(style.colour2, np.float32) + rng.uniform(-14, 14, size=3).astype(np.float32)
        patch = np.where(second[..., None], colour2 * shading[..., None], patch)
    return RenderedObject(cls, slice(r0, r1), slice(c0, c1), mask, patch.astype(np.float32))


def _visible_counts(instances: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(instances.ravel(), minlength=n + 1)[: n + 1]


def render_image(rng: np.random.Generator, h: int, w: int, first_class: int, max_objects: int = 3,
                 styles: Sequence[ClassStyle] = DEMO_STYLES) -> RenderedImage:
    """Draw one sample of size (h, w); the first object has class ``first_class`` (0-based index into ``styles``,
    default the 20 :data:`DEMO_STYLES`; ``classes`` of the result are 1-based indices into ``styles``).

    Objects are added one by one; an object is redrawn (up to 8 tries, then dropped) when it would leave itself or
    an earlier object with fewer than max(35 % of its own pixels, a minimum) visible pixels, or too few pixels
    outside the void border band, so every instance stays visible in the masks.
    """
    img = draw_background(rng, h, w)
    n_objects = int(rng.choice(np.arange(1, max_objects + 1), p=_object_count_probs(max_objects)))
    max_width = 3 if min(h, w) < 200 else 5
    border_width = int(rng.integers(2, max_width + 1))
    min_pixels = max(40, int(0.004 * h * w))
    instances = np.zeros((h, w), np.uint8)
    objects: list[RenderedObject] = []
    areas: list[int] = []
    for k in range(n_objects):
        if k == 0:
            cls = first_class
        elif rng.random() < 0.25:
            cls = objects[int(rng.integers(len(objects)))].cls  # a second instance of a present class
        else:
            cls = int(rng.integers(len(styles)))
        for _ in range(8):
            obj = draw_object(rng, cls, h, w, styles)
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
            obj = draw_object(rng, first_class, h, w, styles)
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

