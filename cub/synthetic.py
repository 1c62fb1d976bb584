"""Synthetic CUB-like dataset in the official ``CUB_200_2011`` layout (for demos, smoke runs and tests).

Each image holds one object whose shape, colours and texture depend on its class, at a random size, position and
rotation on a cluttered background; ``bounding_boxes.txt`` holds the object's tight box (x, y, w, h with w, h the
pixel extents). Deterministic for a seed.
"""
from __future__ import annotations

import colorsys
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

log = logging.getLogger(__name__)

# Bumped whenever the same arguments draw other pixels (a demo folder written by an older version is rewritten).
GENERATOR_VERSION = 1

# Object height as a fraction of the image's shorter side, drawn uniformly. The boxes cover 19% of the image on
# average (2-3% score IoU >= 0.5 against the whole image): smaller than real CUB birds (40% and a third on the 24 real
# images of our test sample). CUB-sized objects, (0.55, 1.0), were tried for the demo: its small transformer's CAMs
# then cover only parts of the object (GT-known 0.39 against 0.34 for the whole-image box, one run).
OBJECT_SCALE = (0.3, 0.7)

SHAPES = ("ellipse", "rectangle", "triangle", "diamond", "star", "cross", "hexagon", "crescent")
TEXTURES = ("plain", "stripes", "checker", "dots")


@dataclass(frozen=True)
class ClassStyle:
    """Appearance of one synthetic class."""

    shape: str
    colour: tuple[int, int, int]
    accent: tuple[int, int, int]
    texture: str
    period: float
    angle: float
    aspect: float


def class_style(class_index: int) -> ClassStyle:
    """Deterministic style of class ``class_index`` (0-based): shape cycles fastest, then texture; hue by a
    golden-ratio walk so neighbouring classes differ in colour too."""
    c = int(class_index)
    hue = (c * 0.618033988749895) % 1.0
    sat = 0.85 if (c // 3) % 2 == 0 else 0.6
    rgb = colorsys.hsv_to_rgb(hue, sat, 0.95)
    acc = colorsys.hsv_to_rgb((hue + 0.5) % 1.0, 0.9, 0.45)
    return ClassStyle(
        shape=SHAPES[c % len(SHAPES)],
        colour=tuple(int(round(255 * v)) for v in rgb),  # type: ignore[arg-type]
        accent=tuple(int(round(255 * v)) for v in acc),  # type: ignore[arg-type]
        texture=TEXTURES[(c // len(SHAPES)) % len(TEXTURES)] if c >= len(SHAPES) else TEXTURES[(c % 3) + 1],
        period=5.0 + 2.0 * ((c * 7) % 4),
        angle=math.pi * ((c * 5) % 8) / 8.0,
        aspect=(0.6, 1.0, 1.4)[(c // 2) % 3],
    )


def _polygon(shape: str, w: int, h: int) -> list[tuple[float, float]]:
    cx, cy, rx, ry = w / 2, h / 2, w / 2, h / 2

    def ring(n: int, radii: list[float], phase: float = -math.pi / 2) -> list[tuple[float, float]]:
        pts = []
        for k in range(n):
            t = phase + 2 * math.pi * k / n
            r = radii[k % len(radii)]
            pts.append((cx + r * rx * math.cos(t), cy + r * ry * math.sin(t)))
        return pts

    if shape == "triangle":
        return ring(3, [1.0])
    if shape == "diamond":
        return ring(4, [1.0])
    if shape == "star":
        return ring(10, [1.0, 0.45])
    if shape == "hexagon":
        return ring(6, [1.0], 0.0)
    if shape == "cross":
        a, b = 0.32, 0.68
        return [(a * w, 0), (b * w, 0), (b * w, a * h), (w, a * h), (w, b * h), (b * w, b * h), (b * w, h),
                (a * w, h), (a * w, b * h), (0, b * h), (0, a * h), (a * w, a * h)]
    raise ValueError(shape)


def _object_mask(shape: str, w: int, h: int, rotation: float) -> np.ndarray:
    """(h', w') bool mask of the shape drawn in a w x h box and rotated by ``rotation`` degrees (expanded)."""
    im = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(im)
    if shape == "ellipse":
        draw.ellipse([0, 0, w - 1, h - 1], fill=255)
    elif shape == "rectangle":
        draw.rectangle([0, 0, w - 1, h - 1], fill=255)
    elif shape == "crescent":
        draw.ellipse([0, 0, w - 1, h - 1], fill=255)
        draw.ellipse([int(0.35 * w), int(-0.1 * h), int(1.25 * w), int(0.9 * h)], fill=0)
    else:
        draw.polygon(_polygon(shape, w, h), fill=255)
    im = im.rotate(rotation, resample=Image.NEAREST, expand=True)
    return np.asarray(im) > 127


def _texture(style: ClassStyle, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """(h, w) bool pattern: True pixels take the accent colour."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = rng.uniform(0, style.period)
    p = style.period
    if style.texture == "stripes":
        u = xx * math.cos(style.angle) + yy * math.sin(style.angle) + phase
        return (u % p) < p / 2
    if style.texture == "checker":
        return ((np.floor((xx + phase) / p) + np.floor((yy + phase) / p)) % 2) == 1
    if style.texture == "dots":
        dx = (xx + phase) % p - p / 2
        dy = (yy + phase) % p - p / 2
        return dx * dx + dy * dy < (0.3 * p) ** 2
    return np.zeros((h, w), dtype=bool)


def _background(h: int, w: int, rng: np.random.Generator) -> Image.Image:
    """Muted colour gradient + random clutter (rectangles, ellipses, lines) + pixel noise."""
    c0, c1 = rng.uniform(60, 200, size=(2, 3))
    t = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    s = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    mix = (t + s) / 2
    base = (1 - mix) * c0 + mix * c1
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(6, 14))):
        grey = rng.uniform(40, 220)
        col = tuple(int(np.clip(grey + d, 0, 255)) for d in rng.uniform(-25, 25, size=3))
        x0, x1 = sorted(rng.integers(0, w, size=2).tolist())
        y0, y1 = sorted(rng.integers(0, h, size=2).tolist())
        kind = int(rng.integers(0, 3))
        if kind == 0:
            draw.rectangle([x0, y0, x1, y1], fill=col)
        elif kind == 1:
            draw.ellipse([x0, y0, x1, y1], fill=col)
        else:
            draw.line([x0, y0, x1, y1], fill=col, width=int(rng.integers(1, 4)))
    arr = np.asarray(img).astype(np.float32) + rng.normal(0, 6, size=(h, w, 3)).astype(np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight box (x, y, w, h) of the True pixels of a (H, W) mask; w, h count pixels."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def render_image(class_index: int, rng: np.random.Generator, image_size: tuple[int, int] = (96, 192),
                 object_scale: tuple[float, float] = OBJECT_SCALE) -> tuple[Image.Image, np.ndarray]:
    """One synthetic image of class ``class_index`` -> (RGB PIL image, (H, W) bool object mask); the object's height
    is ``object_scale`` (lo, hi) of the shorter side."""
    style = class_style(class_index)
    lo, hi = image_size
    width, height = (int(v) for v in rng.integers(lo, hi + 1, size=2))
    img = _background(height, width, rng)
    side = min(width, height)
    obj_h = max(8, int(side * rng.uniform(*object_scale)))
    obj_w = max(8, int(obj_h * style.aspect * rng.uniform(0.85, 1.15)))
    obj_w = min(obj_w, width - 2)
    mask = _object_mask(style.shape, obj_w, obj_h, float(rng.uniform(-25, 25)))
    ys, xs = np.nonzero(mask)
    mask = mask[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    mh, mw = mask.shape
    if mh > height or mw > width:  # rotation grew it past the image: shrink by cropping the mask
        mask = mask[:height, :width]
        ys, xs = np.nonzero(mask)
        mask = mask[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
        mh, mw = mask.shape
    x0 = int(rng.integers(0, width - mw + 1))
    y0 = int(rng.integers(0, height - mh + 1))
    pattern = _texture(style, mh, mw, rng)
    colour = np.array(style.colour, dtype=np.float32) * rng.uniform(0.85, 1.1)
    accent = np.array(style.accent, dtype=np.float32)
    obj = np.where(pattern[..., None], accent, colour) + rng.normal(0, 5, size=(mh, mw, 3)).astype(np.float32)
    arr = np.array(img)
    region = arr[y0: y0 + mh, x0: x0 + mw]
    region[mask] = np.clip(obj[mask], 0, 255).astype(np.uint8)
    full_mask = np.zeros((height, width), dtype=bool)
    full_mask[y0: y0 + mh, x0: x0 + mw] = mask
    return Image.fromarray(arr, "RGB"), full_mask


def make_synthetic_cub(root: str | os.PathLike, num_classes: int = 10, train_per_class: int = 8,
                       test_per_class: int = 4, image_size: tuple[int, int] = (96, 192), seed: int = 0,
                       grayscale_fraction: float = 0.0, jpeg_quality: int = 90) -> Path:
    """Write ``<root>/CUB_200_2011`` in the official layout and return that folder.

    Ids run 1..N class by class; within a class the train/test flags are a seeded permutation. Image sides are
    drawn in ``image_size`` = (min, max) pixels; ``grayscale_fraction`` of the images are saved as mode-L JPEGs
    (as a few real CUB images are).
    """
    if num_classes < 1 or train_per_class < 0 or test_per_class < 0:
        raise ValueError("num_classes must be >= 1 and the per-class counts >= 0")
    out = Path(root) / "CUB_200_2011"
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, labels, splits, boxes, classes = [], [], [], [], []
    image_id = 0
    per_class = train_per_class + test_per_class
    for c in range(num_classes):
        style = class_style(c)
        folder = f"{c + 1:03d}.Synthetic_{style.shape}_{c + 1:03d}"
        classes.append(f"{c + 1} {folder}")
        (out / "images" / folder).mkdir(exist_ok=True)
        split_rng = np.random.default_rng([seed, c, 0])
        flags = np.array([1] * train_per_class + [0] * test_per_class)[split_rng.permutation(per_class)]
        for k in range(per_class):
            image_id += 1
            rng = np.random.default_rng([seed, c, k + 1])
            img, mask = render_image(c, rng, image_size)
            x, y, w, h = mask_box(mask)
            if rng.uniform() < grayscale_fraction:
                img = img.convert("L")
            rel = f"{folder}/Synthetic_{c + 1:03d}_{k + 1:04d}.jpg"
            img.save(out / "images" / rel, quality=jpeg_quality)
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {c + 1}")
            splits.append(f"{image_id} {int(flags[k])}")
            boxes.append(f"{image_id} {float(x):.1f} {float(y):.1f} {float(w):.1f} {float(h):.1f}")
    for name, lines in (("images.txt", images), ("image_class_labels.txt", labels),
                        ("train_test_split.txt", splits), ("bounding_boxes.txt", boxes), ("classes.txt", classes)):
        (out / name).write_text("".join(line + "\n" for line in lines))
    log.info("synthetic CUB: %d images, %d classes in %s", image_id, num_classes, out)
    return out
