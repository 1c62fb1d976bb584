"""A synthetic PASCAL VOC 2012 folder for demos, tests and benchmarks.

:func:`make_synthetic_voc` writes the layout a user passes as ``--voc12_root``::

    JPEGImages/<id>.jpg                every id (train, val, extra aug, test)
    Annotations/<id>.xml               every id; one <object> per instance
    SegmentationClass/<id>.png         train + val: palette PNG, 0 bg, 1..20 classes, 255 on object borders
    SegmentationObject/<id>.png        train + val: palette PNG, instances 1..R, same 255 borders
    SegmentationClassAug/<id>.png      train + extra + val (SBD-like): single-channel class indices, no 255
    ImageSets/Segmentation/{train,val,trainval}.txt (+ test.txt when num_test > 0)

Each image holds 1-3 objects of the 20 VOC classes. A class is a fixed combination of shape, colour and texture
(:data:`CLASS_STYLES`), drawn by :func:`misc.synth.render.render_image` with random size, position, aspect jitter
and rotation on a cluttered background (colour gradient, noise, low-contrast amorphous blobs and lines). Later
objects occlude earlier ones.

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
from misc.synth.render import boundary_band, render_image  # noqa: F401 (boundary_band re-exported)
from misc.synth.styles import DEMO_STYLES as CLASS_STYLES  # VOC class k is drawn as CLASS_STYLES[k]
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
    sample = render_image(rng, h, w, job.first_class, job.max_objects, CLASS_STYLES)
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
