"""The COCO category mapping and image records as COCO-format files need them (docs/data_coco.md#export-hooks-coco-json).

The 80 categories sorted by their official id map to the contiguous labels 1..80 (0 background, 255 ignore); the
mapping is written to ``<result_dir>/coco_categories.json`` (:func:`write_category_map`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from coco.build import open_coco_of_args
from coco.index import COCOIndex
from coco.layout import ANNOTATION_FILES, CATEGORY_MAP_NAME
from misc.core.io import write_json
from misc.core.labels import IGNORE_INDEX


def coco_image_records(args, ids: Iterable[str]) -> list[dict]:
    """``[{"id": COCO image id (int), "file_name", "width", "height"}]`` of ``ids`` (file-name stems), in order."""
    return open_coco_of_args(args).image_records(ids)


def coco_categories(args) -> list[dict]:
    """``[{"id": official COCO category id, "name", "supercategory"}]``; entry k is the contiguous label k+1
    (class index k of the CAMs and instance outputs)."""
    return open_coco_of_args(args).category_records()


def category_map(index: COCOIndex) -> dict:
    """The contiguous ↔ official mapping as written to ``coco_categories.json``."""
    return {"background": 0, "ignore": IGNORE_INDEX,
            "annotations": [str(index.root / ANNOTATION_FILES[s]) for s in sorted(index.splits)],
            "categories": [{"label": k + 1, **c} for k, c in enumerate(index.category_records())]}


def write_category_map(index: COCOIndex, result_dir: str | os.PathLike) -> Path:
    """Write :func:`category_map` to ``<result_dir>/coco_categories.json`` (atomically); returns the path."""
    path = Path(result_dir) / CATEGORY_MAP_NAME
    write_json(path, category_map(index))
    return path
