"""Where an MS COCO 2014 folder (``--coco_root``) and crt's files derived from it keep their files; the root check and
the errors that name what is missing.

``--coco_root`` holds the official layout::

    train2014/COCO_train2014_<image id:012d>.jpg      82,783 images
    val2014/COCO_val2014_<image id:012d>.jpg          40,504 images
    annotations/instances_train2014.json, annotations/instances_val2014.json
"""
from __future__ import annotations

import os
from pathlib import Path

from misc.core.errors import UserError
from misc.core.index_cache import file_state

SPLIT_DIRS: dict[str, str] = {"train": "train2014", "val": "val2014"}
ANNOTATION_FILES: dict[str, str] = {s: f"annotations/instances_{d}.json" for s, d in SPLIT_DIRS.items()}
# under the list cache folder (``<work_dir>/result``)
INDEX_NAME = "coco_index.json"
STORE_DIR = "coco_annotations"
MASK_DIR = "coco_gt_masks"
CATEGORY_MAP_NAME = "coco_categories.json"
SIGNATURE_GROUP = "annotations"  # the annotation files in the index cache's signature

GET_COCO = (
    "Get MS COCO 2014 from https://cocodataset.org/#download (train2014.zip, val2014.zip and "
    "annotations_trainval2014.zip), unzip them into one folder so that it holds train2014/, val2014/ and "
    "annotations/instances_train2014.json, annotations/instances_val2014.json, and pass that folder as --coco_root."
)


class COCOLayoutError(UserError, FileNotFoundError):
    """The COCO folder lacks something a step needs; the message names it and how to get it."""


class COCOSplitError(UserError, ValueError):
    """A ``--*_list`` value is neither a list file nor a split the COCO folder provides."""


def check_coco_root(root: str | os.PathLike) -> Path:
    """``root`` as a Path when it holds at least one of the instance annotation files; else one
    :class:`COCOLayoutError` naming what is missing."""
    root = Path(root)
    if not root.is_dir():
        raise COCOLayoutError(f"--coco_root {root} does not exist. {GET_COCO} Or run with --demo --dataset coco "
                              "for synthetic data.")
    if not any((root / f).is_file() for f in ANNOTATION_FILES.values()):
        hint = ""
        for sub in ("coco", "coco2014", "COCO"):
            if (root / sub / "annotations").is_dir():
                hint = f" (did you mean {root / sub}?)"
        raise COCOLayoutError(f"--coco_root {root}{hint} holds neither {ANNOTATION_FILES['train']} nor "
                              f"{ANNOTATION_FILES['val']}. {GET_COCO}")
    return root


def source_signature(root: Path) -> dict[str, dict[str, list | None]]:
    """``{"annotations": {annotation file: [size, mtime_ns, ctime_ns, quick hash], None when absent}}``: what the
    index cache is keyed on (:mod:`misc.core.index_cache`)."""
    return {SIGNATURE_GROUP: {rel: file_state(root / rel, quick_hash=True) for rel in ANNOTATION_FILES.values()}}
