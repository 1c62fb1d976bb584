"""A synthetic MS COCO 2014 folder for demos and tests, in the official layout (docs/data_coco.md#synthetic-data).

:func:`make_synthetic_coco` writes what a user passes as ``--coco_root``::

    train2014/COCO_train2014_<image id:012d>.jpg, val2014/COCO_val2014_<image id:012d>.jpg
    annotations/instances_train2014.json, annotations/instances_val2014.json

Both JSON files list all 80 COCO 2014 categories with their official ids; the images use the first
``num_categories`` of :data:`CATEGORY_ORDER`, each drawn as one of the VOC demo's object kinds (shape, colour,
texture; :data:`misc.synth.styles.DEMO_STYLES`) on the same cluttered backgrounds. Every annotation is one visible
object: a polygon (outer contours), or compressed RLE for every ``rle_every``-th annotation and for shapes a polygon
cannot trace (IoU < 0.8, e.g. rings); in every ``crowd_every``-th image with two or more objects the last one is an
``iscrowd=1`` region in uncompressed RLE (as COCO's crowds); every ``empty_every``-th image (index 1, 1 + k·
``empty_every`` of each split) has no annotation at all. Image ids are not contiguous (train 1000 + 3i + 1, val
500000 + 3i + 2), so code that takes an id for an index fails.

Deterministic: every image is drawn from its own generator seeded by (seed, split, index).
CLI: ``python -m coco.synthetic --out DIR [--num_train N ...]``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from coco.facts import COCO_2014_CATEGORIES
from coco.layout import ANNOTATION_FILES, SPLIT_DIRS
from misc.synth.render import draw_background, render_image
from misc.synth.styles import DEMO_STYLES

log = logging.getLogger(__name__)

# Bumped whenever the same arguments draw other pixels or annotations (a demo folder written by an older version
# is rewritten).
GENERATOR_VERSION = 1

# VOC demo object kind → official COCO category id, in the order categories are taken for ``num_categories``.
CATEGORY_ORDER: tuple[tuple[str, int], ...] = (  # high ids early: small demos use labels beyond VOC's 20 too
    ("person", 1), ("car", 3), ("bottle", 44), ("cat", 17), ("tvmonitor", 72), ("bus", 6), ("dog", 18),
    ("horse", 19), ("bird", 16), ("boat", 9), ("pottedplant", 64), ("train", 7), ("bicycle", 2), ("aeroplane", 5),
    ("cow", 21), ("sheep", 20), ("motorbike", 4), ("sofa", 63), ("chair", 62), ("diningtable", 67),
)
SPLIT_CODES = {"train": 20, "val": 21}  # seeds distinct from voc12.synthetic's 0..3
IMAGE_ID_BASE = {"train": 1000, "val": 500000}
ANN_ID_BASE = {"train": 1, "val": 900000}
POLYGON_MIN_IOU = 0.8


def image_id_of(split: str, index: int) -> int:
    return IMAGE_ID_BASE[split] + 3 * index + (1 if split == "train" else 2)


def file_stem(split: str, image_id: int) -> str:
    """The official file-name stem, e.g. ``COCO_train2014_000000001001``."""
    return f"COCO_{SPLIT_DIRS[split]}_{image_id:012d}"


def _bbox(mask: np.ndarray) -> list[float]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]


def _polygons(mask: np.ndarray) -> list[list[float]]:
    """Outer contours of ``mask`` (through pixel centres) as COCO polygons."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [[round(float(v), 2) for v in (c.reshape(-1, 2).astype(np.float64) + 0.5).ravel()]
            for c in contours if len(c) >= 3]


def _compressed_rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's crowd format: run lengths of the column-major mask, starting with a run of zeros."""
    flat = mask.astype(np.uint8).ravel(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        runs = [0] + runs
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(r) for r in runs]}


def _polygon_iou(polys: list[list[float]], mask: np.ndarray) -> float:
    from pycocotools import mask as mask_utils

    if not polys:
        return 0.0
    h, w = mask.shape
    decoded = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, h, w))).astype(bool)
    return float((decoded & mask).sum() / max(1, (decoded | mask).sum()))


def _background_only(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = draw_background(rng, h, w) + rng.normal(0.0, 5.0, size=(h, w, 3)).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _split(root: Path, split: str, count: int, *, seed: int, styles: Sequence, category_ids: Sequence[int],
           image_size, max_objects: int, empty_every: int, rle_every: int, crowd_every: int, jpeg_quality: int,
           order: np.ndarray) -> dict:
    """Write the images of one split; return its instances JSON (without categories)."""
    (h_lo, h_hi), (w_lo, w_hi) = image_size
    folder = root / SPLIT_DIRS[split]
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    ann_id = ANN_ID_BASE[split]
    drawn = 0
    for index in range(count):
        rng = np.random.default_rng(np.random.SeedSequence([seed, SPLIT_CODES[split], index]))
        h, w = int(rng.integers(h_lo, h_hi + 1)), int(rng.integers(w_lo, w_hi + 1))
        image_id = image_id_of(split, index)
        file_name = f"{file_stem(split, image_id)}.jpg"
        images.append({"id": image_id, "file_name": file_name, "width": w, "height": h})
        if empty_every and index % empty_every == 1:
            Image.fromarray(_background_only(rng, h, w)).save(folder / file_name, format="JPEG", quality=jpeg_quality)
            continue
        sample = render_image(rng, h, w, int(order[drawn % len(order)]), max_objects, styles)
        drawn += 1
        Image.fromarray(sample.image).save(folder / file_name, format="JPEG", quality=jpeg_quality)
        n = len(sample.classes)
        crowd_last = bool(crowd_every) and n >= 2 and index % crowd_every == crowd_every - 1
        for k, cls in enumerate(sample.classes):
            mask = sample.instances == k + 1
            if not mask.any():
                continue
            crowd = crowd_last and k == n - 1
            if crowd:
                seg = _uncompressed_rle(mask)
            else:
                polys = _polygons(mask)
                use_rle = (rle_every and ann_id % rle_every == 0) or _polygon_iou(polys, mask) < POLYGON_MIN_IOU
                seg = _compressed_rle(mask) if use_rle else polys
            annotations.append({"id": ann_id, "image_id": image_id, "category_id": int(category_ids[cls - 1]),
                                "segmentation": seg, "area": float(mask.sum()), "bbox": _bbox(mask),
                                "iscrowd": int(crowd)})
            ann_id += 1
    return {"info": {"description": "crt synthetic COCO 2014", "version": str(GENERATOR_VERSION)},
            "licenses": [], "images": images, "annotations": annotations}


def make_synthetic_coco(root: str | os.PathLike, num_train: int = 40, num_val: int = 20,
                        image_size=((112, 144), (144, 176)), seed: int = 0, *, num_categories: int = 12,
                        max_objects: int = 3, empty_every: int = 25, rle_every: int = 5, crowd_every: int = 7,
                        jpeg_quality: int = 90) -> Path:
    """Write a synthetic COCO 2014 folder at ``root`` (see the module docstring); returns it as a Path."""
    (h_lo, h_hi), (w_lo, w_hi) = image_size
    if not (32 <= h_lo <= h_hi and 32 <= w_lo <= w_hi):
        raise ValueError(f"image_size must be ((h_lo, h_hi), (w_lo, w_hi)) with 32 <= lo <= hi, got {image_size}")
    if not 1 <= num_categories <= len(CATEGORY_ORDER):
        raise ValueError(f"num_categories must be in 1..{len(CATEGORY_ORDER)}, got {num_categories}")
    if num_train < 0 or num_val < 0:
        raise ValueError("image counts must be >= 0")
    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    by_name = {s.name: s for s in DEMO_STYLES}
    used = CATEGORY_ORDER[:num_categories]
    styles = [by_name[name] for name, _ in used]
    category_ids = [cid for _, cid in used]
    categories = [{"supercategory": "", "id": cid, "name": name} for cid, name in COCO_2014_CATEGORIES]
    order = np.random.default_rng(np.random.SeedSequence([seed, 98])).permutation(num_categories)
    for split, count in (("train", num_train), ("val", num_val)):
        data = _split(root, split, count, seed=seed, styles=styles, category_ids=category_ids,
                      image_size=image_size, max_objects=max_objects, empty_every=empty_every, rle_every=rle_every,
                      crowd_every=crowd_every, jpeg_quality=jpeg_quality, order=order)
        data["categories"] = categories
        (root / ANNOTATION_FILES[split]).write_text(json.dumps(data, separators=(",", ":")))
    log.info("synthetic COCO at %s: %d train, %d val images, %d categories used", root, num_train, num_val,
             num_categories)
    return root


def main(argv: Sequence[str] | None = None) -> Path:
    p = argparse.ArgumentParser(prog="python -m coco.synthetic", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder to write (pass it as --coco_root)")
    p.add_argument("--num_train", type=int, default=40)
    p.add_argument("--num_val", type=int, default=20)
    p.add_argument("--num_categories", type=int, default=12)
    p.add_argument("--height", type=int, nargs=2, default=(112, 144))
    p.add_argument("--width", type=int, nargs=2, default=(144, 176))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return make_synthetic_coco(args.out, args.num_train, args.num_val, (tuple(args.height), tuple(args.width)),
                               args.seed, num_categories=args.num_categories)


if __name__ == "__main__":
    main()
