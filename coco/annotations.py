"""Reading COCO instance annotations: the annotation file, one segmentation as a mask, an image's class mask and
its instances.

**Class masks** (:func:`class_mask`): crowd regions (``iscrowd=1``) are 255 (ignored); every other instance is
painted in order of decreasing pixel area (ties: annotation order), so smaller objects stay on top of larger ones
they overlap and an instance covering part of a crowd region wins there.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from coco.layout import GET_COCO
from misc.core.errors import DataError
from misc.core.labels import IGNORE_INDEX

# What decides the pixels of a built mask (recorded in the mask folder's manifest; a change rebuilds the masks).
MASK_RULE = ("v1: iscrowd regions 255; other instances painted by decreasing decoded pixel area (ties: annotation "
             "order, later on top); polygons with fewer than 3 points skipped")


def read_annotation_file(path: Path) -> dict:
    """The parsed instances JSON, checked for its three lists; errors name the file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not a COCO annotation file (not valid JSON: {exc}). {GET_COCO}") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path} is not a COCO annotation file (a JSON object with images, annotations and "
                        f"categories is expected). {GET_COCO}")
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing:
        raise DataError(f"{path} has no list {', '.join(repr(k) for k in missing)}: it is not an instances_*.json "
                        f"file of COCO (captions or keypoints files do not carry the categories). {GET_COCO}")
    return data


def decode_segmentation(seg: Any, height: int, width: int, where: str = "") -> np.ndarray:
    """(H, W) bool mask of one COCO ``segmentation``: polygons (a list of flat [x0, y0, x1, y1, ...] lists),
    uncompressed RLE (``counts`` a list, as COCO's crowd regions) or compressed RLE (``counts`` a string).

    Polygons with fewer than 3 points (or an odd number of coordinates) have no area and are skipped.
    ``where`` names the annotation in errors."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        polys = [[float(v) for v in p] for p in seg if isinstance(p, (list, tuple)) and len(p) >= 6 and len(p) % 2 == 0]
        if not polys:
            return np.zeros((height, width), bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
        if [int(v) for v in seg["size"]] != [height, width]:
            raise DataError(f"{where}: RLE of size {list(seg['size'])} on an image of {height}x{width} (HxW)")
        counts = seg["counts"]
        if isinstance(counts, list):
            rle = mask_utils.frPyObjects(seg, height, width)
        else:
            rle = {"size": [height, width], "counts": counts.encode() if isinstance(counts, str) else counts}
    else:
        raise DataError(f"{where}: segmentation is neither a list of polygons nor an RLE dict (size, counts)")
    return np.asarray(mask_utils.decode(rle), dtype=bool).reshape(height, width)


def _decoded(anns: Sequence[dict], height: int, width: int, where: str) -> list[tuple[dict, np.ndarray]]:
    return [(a, decode_segmentation(a["segmentation"], height, width, f"{where}, annotation {a.get('id')}"))
            for a in anns]


def class_mask(anns: Sequence[dict], height: int, width: int, where: str = "") -> np.ndarray:
    """The semantic ground truth (H, W) uint8 of one image from its annotations (each with ``label`` 1..80,
    ``iscrowd``, ``segmentation``): 0 background; crowd regions 255; the other instances painted in order of
    decreasing decoded pixel area (ties: annotation order, the later on top), so smaller objects stay on top and
    an instance over a crowd region takes those pixels."""
    out = np.zeros((height, width), np.uint8)
    decoded = _decoded(anns, height, width, where)
    for ann, m in decoded:
        if ann.get("iscrowd"):
            out[m] = IGNORE_INDEX
    objects = [(ann, m) for ann, m in decoded if not ann.get("iscrowd")]
    order = sorted(range(len(objects)), key=lambda k: -int(objects[k][1].sum()))  # stable: ties keep their order
    for k in order:
        ann, m = objects[k]
        out[m] = int(ann["label"])
    return out


def instance_masks(anns: Sequence[dict], height: int, width: int, where: str = "") -> tuple[np.ndarray, np.ndarray]:
    """GT instances of one image for eval_ins_seg: (masks (R, H, W) bool, labels (R,) int32 0-based) of the
    non-crowd annotations with a non-empty mask, in annotation order (crowd regions are no instances)."""
    masks, labels = [], []
    for ann, m in _decoded([a for a in anns if not a.get("iscrowd")], height, width, where):
        if m.any():
            masks.append(m)
            labels.append(int(ann["label"]) - 1)
    if not masks:
        return np.zeros((0, height, width), bool), np.zeros((0,), np.int32)
    return np.stack(masks), np.asarray(labels, np.int32)

