"""MS COCO 2014 data layer (docs/data_coco.md): the names every user of the COCO index imports, and its CLI
``python -m coco.dataset --coco_root DIR [--build_masks [SPLIT ...]] [--shard K/N]``.

One job per module: :mod:`coco.facts` (the 80 categories), :mod:`coco.layout` (the folder, the root check, the
errors), :mod:`coco.annotations` (annotation files, segmentations, class masks, instances), :mod:`coco.index`
(:class:`COCOIndex`), :mod:`coco.build` (building, caching and opening the index: :func:`open_coco`),
:mod:`coco.gt_masks` (the folder of ground-truth masks), :mod:`coco.exports` (category map and image records for
COCO-format files), :mod:`coco.cli` (the CLI).
"""
from __future__ import annotations

from coco.annotations import MASK_RULE, class_mask, decode_segmentation, instance_masks, read_annotation_file
from coco.build import CACHE_VERSION, open_coco, open_coco_of_args
from coco.cli import main
from coco.exports import category_map, coco_categories, coco_image_records, write_category_map
from coco.facts import COCO_2014_CATEGORIES, NUM_CLASSES, NUM_LABELS
from coco.gt_masks import build_masks, prepare_mask_dir
from coco.index import COCOIndex
from coco.layout import (ANNOTATION_FILES, CATEGORY_MAP_NAME, GET_COCO, INDEX_NAME, MASK_DIR, SPLIT_DIRS, STORE_DIR,
                         COCOLayoutError, COCOSplitError, check_coco_root, source_signature)

__all__ = [
    "ANNOTATION_FILES", "CACHE_VERSION", "CATEGORY_MAP_NAME", "COCO_2014_CATEGORIES", "COCOIndex", "COCOLayoutError",
    "COCOSplitError", "GET_COCO", "INDEX_NAME", "MASK_DIR", "MASK_RULE", "NUM_CLASSES", "NUM_LABELS", "SPLIT_DIRS",
    "STORE_DIR", "build_masks", "category_map", "check_coco_root", "class_mask", "coco_categories",
    "coco_image_records", "decode_segmentation", "instance_masks", "main", "open_coco", "open_coco_of_args",
    "prepare_mask_dir", "read_annotation_file", "source_signature", "write_category_map",
]

if __name__ == "__main__":
    raise SystemExit(main())
