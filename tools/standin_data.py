"""The stand-in pretraining set: a synthetic single-label classification set of object kinds the demos do not have.

The real recipe starts every network from ImageNet, whose 1000 classes are not VOC's 20. Offline, the demo's
stand-in weights (``weights/standin/``, written by ``tools/pretrain_standin.py``) are pretrained on this set instead:
:data:`STANDIN_STYLES` are 32 classes (16 shapes × 2 colour/texture variants) whose shapes none of the VOC demo's
20 classes (:data:`misc.synth.styles.DEMO_STYLES`) nor the CUB demo's (:data:`cub.synthetic.SHAPES`) use, drawn by the
demos' renderer (:mod:`misc.synth.render`) on the same kind of cluttered background. Each image holds one object of
its class, sometimes (``distractor_prob``) above a smaller object of another stand-in class, so the label is that of
the large object (single label, as ImageNet's).

Colours and textures are shared across classes on purpose (each colour serves 2-4 classes of different shapes, the
two variants of a shape differ in colour and texture), so that no single cue gives the class away.

Images are generated in memory, each from its own generator seeded by ``(seed, split, index)``: deterministic for a
seed, whatever the order or the number of processes.
"""
from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from misc.synth.render import draw_background, draw_object
from misc.synth.shapes import EXTRA_SHAPES
from misc.synth.styles import ClassStyle

_C = {  # the palette (RGB)
    "red": (205, 40, 50), "orange": (240, 140, 30), "yellow": (235, 210, 55), "lime": (150, 205, 45),
    "green": (35, 125, 60), "teal": (25, 155, 145), "sky": (110, 180, 235), "blue": (40, 65, 185),
    "purple": (125, 55, 170), "pink": (235, 125, 185), "brown": (125, 75, 40), "white": (238, 236, 228),
    "black": (28, 28, 32), "grey": (135, 138, 142),
}


def _s(shape: str, aspect: tuple[float, float], colour: str, texture: str = "solid", colour2: str = "black",
       period: float = 8.0) -> ClassStyle:
    name = f"{shape}-{colour}" + (f"-{texture}-{colour2}" if texture != "solid" else "")
    return ClassStyle(name, shape, aspect, _C[colour], texture, _C[colour2] if texture != "solid" else (0, 0, 0),
                      period)


#: The 32 stand-in classes: 16 shapes × 2 variants (colour + texture).
STANDIN_STYLES: tuple[ClassStyle, ...] = (
    _s("heart", (1.0, 1.0), "red"),
    _s("heart", (1.0, 1.0), "sky", "dots", "white", 7),
    _s("trapezoid", (1.0, 0.75), "orange", "vstripes", "brown", 7),
    _s("trapezoid", (1.0, 0.75), "teal"),
    _s("pentagon", (1.0, 1.0), "purple"),
    _s("pentagon", (1.0, 1.0), "yellow", "grid", "black", 9),
    _s("keyhole", (0.8, 1.0), "black"),
    _s("keyhole", (0.8, 1.0), "lime", "hstripes", "green", 6),
    _s("tshape", (0.9, 1.0), "blue"),
    _s("tshape", (0.9, 1.0), "pink", "checks", "white", 8),
    _s("chevron", (1.0, 0.8), "green"),
    _s("chevron", (1.0, 0.8), "grey", "dstripes", "yellow", 7),
    _s("hourglass", (0.8, 1.0), "yellow"),
    _s("hourglass", (0.8, 1.0), "red", "band", "white"),
    _s("pacman", (1.0, 1.0), "sky"),
    _s("pacman", (1.0, 1.0), "brown", "rings", "orange", 7),
    _s("parallelogram", (1.0, 0.8), "white", "dots", "red", 8),
    _s("parallelogram", (1.0, 0.8), "purple", "waves", "lime", 8),
    _s("teardrop", (0.8, 1.0), "teal", "dots", "white", 6),
    _s("teardrop", (0.8, 1.0), "orange"),
    _s("cloud", (1.0, 0.75), "white"),
    _s("cloud", (1.0, 0.75), "blue", "waves", "sky", 8),
    _s("dumbbell", (1.0, 1.0), "grey"),
    _s("dumbbell", (1.0, 1.0), "pink", "vstripes", "purple", 6),
    _s("lightning", (0.9, 1.0), "yellow", "band", "black"),
    _s("lightning", (0.9, 1.0), "red"),
    _s("mushroom", (1.0, 1.0), "brown", "dots", "white", 8),
    _s("mushroom", (1.0, 1.0), "lime"),
    _s("lens", (0.75, 1.0), "green", "dstripes", "lime", 7),
    _s("lens", (0.75, 1.0), "pink"),
    _s("gear", (1.0, 1.0), "black", "grid", "orange", 8),
    _s("gear", (1.0, 1.0), "teal", "hstripes", "white", 7),
)
NUM_STANDIN_CLASSES = len(STANDIN_STYLES)
assert {s.shape for s in STANDIN_STYLES} == set(EXTRA_SHAPES)

SPLIT_CODES = {"train": 10, "heldout": 11}  # distinct from voc12.synthetic's 0..3


@dataclass(frozen=True)
class StandinConfig:
    """How the stand-in images are drawn. ``main_size`` / ``distractor_size``: half-extent of the object's longer
    axis as a fraction of the image side (the VOC demo draws 0.14-0.42); ``min_visible``: the main object covers at
    least this fraction of the image (it may leave the frame partly)."""

    image_size: int = 128
    main_size: tuple[float, float] = (0.2, 0.45)
    distractor_size: tuple[float, float] = (0.08, 0.16)
    distractor_prob: float = 0.25
    min_visible: float = 0.04
    noise_std: float = 5.0


DEFAULT_CONFIG = StandinConfig()


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, SPLIT_CODES[split], index]))


def render_standin(rng: np.random.Generator, cls: int, cfg: StandinConfig = DEFAULT_CONFIG,
                   styles: Sequence[ClassStyle] = STANDIN_STYLES) -> np.ndarray:
    """One (S, S, 3) uint8 image of class ``cls`` (0-based index into ``styles``)."""
    h = w = cfg.image_size
    img = draw_background(rng, h, w)
    objects = []
    if rng.random() < cfg.distractor_prob:  # drawn first: the main object may occlude it
        other = int(rng.integers(len(styles) - 1))
        other += other >= cls
        obj = draw_object(rng, other, h, w, styles, cfg.distractor_size)
        if obj is not None:
            objects.append(obj)
    min_pixels = cfg.min_visible * h * w
    main = None
    for _ in range(16):
        main = draw_object(rng, cls, h, w, styles, cfg.main_size)
        if main is not None and main.mask.sum() >= min_pixels:
            break
    assert main is not None
    objects.append(main)
    for obj in objects:
        region = img[obj.rows, obj.cols]
        region[obj.mask] = obj.patch[obj.mask]
    img += rng.standard_normal(size=img.shape, dtype=np.float32) * np.float32(cfg.noise_std)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def class_of(seed: int, split: str, index: int) -> int:
    """Balanced labels: image ``index`` of a split takes its class from a seed- and split-dependent permutation."""
    order = np.random.default_rng(np.random.SeedSequence([seed, SPLIT_CODES[split], 99])).permutation(
        NUM_STANDIN_CLASSES)
    return int(order[index % NUM_STANDIN_CLASSES])


def _render_range(job: tuple[int, str, int, int, StandinConfig]) -> tuple[np.ndarray, np.ndarray]:
    seed, split, start, stop, cfg = job
    labels = np.asarray([class_of(seed, split, i) for i in range(start, stop)], np.int64)
    images = np.stack([render_standin(image_rng(seed, split, i), int(c), cfg) for i, c in zip(range(start, stop),
                                                                                            labels)])
    return images, labels


def make_standin_set(num_images: int, *, split: str = "train", seed: int = 0, cfg: StandinConfig = DEFAULT_CONFIG,
                     num_workers: int = 0, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, S, S, 3) uint8, labels (N,) int64) of a split ('train' / 'heldout'), in memory.

    ``num_workers`` > 1 renders in a process pool (spawn); the arrays are identical either way.
    """
    if split not in SPLIT_CODES:
        raise ValueError(f"split must be one of {sorted(SPLIT_CODES)}, got {split!r}")
    jobs = [(seed, split, a, min(a + chunk, num_images), cfg) for a in range(0, num_images, chunk)]
    if not jobs:
        s = cfg.image_size
        return np.zeros((0, s, s, 3), np.uint8), np.zeros((0,), np.int64)
    if num_workers > 1 and len(jobs) > 1:
        with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
            parts = pool.map(_render_range, jobs)
    else:
        parts = [_render_range(j) for j in jobs]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
