"""Building the COCO index from the annotation files, caching it, and opening it (:func:`open_coco`).

The two JSON files (≈ 450 MB and 220 MB) are read once: :func:`open_coco` writes ``<cache_dir>/coco_index.json``
(lists, labels, records, categories) and one line of annotations per image into
``<cache_dir>/coco_annotations/<split>.jsonl`` (with the byte offset of each line in the index), keyed on each
annotation file's size, mtime, ctime and a hash of its first and last MiB (:mod:`misc.core.index_cache`). Later
opens read only the index (seconds) and an image's annotations by one seek.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Iterable

from coco.annotations import read_annotation_file
from coco.facts import NUM_CLASSES
from coco.gt_masks import mask_folder, prepare_mask_dir
from coco.index import COCOIndex
from coco.layout import (ANNOTATION_FILES, GET_COCO, INDEX_NAME, SPLIT_DIRS, STORE_DIR, check_coco_root,
                         source_signature)
from misc.core.errors import DataError
from misc.core.index_cache import read_index_cache, write_index_cache
from misc.core.io import atomic_write

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: ctime in the annotation files' signature


def _categories_of(data: dict, path: Path) -> list[list]:
    cats = []
    for c in data["categories"]:
        try:
            cats.append([int(c["id"]), str(c["name"]), str(c.get("supercategory", ""))])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: category entry {c!r} has no integer 'id' and 'name'") from None
    cats.sort(key=lambda c: c[0])
    if len(cats) != NUM_CLASSES or len({c[0] for c in cats}) != NUM_CLASSES:
        raise DataError(f"{path} has {len(cats)} categories ({len({c[0] for c in cats})} distinct ids); the COCO 2014 "
                        f"instance annotations have {NUM_CLASSES}. {GET_COCO}")
    return cats


def _build(root: Path, cache_dir: Path) -> dict:
    """Read each annotation file once; write the per-image annotation store; return the index payload."""
    store_dir = cache_dir / STORE_DIR
    splits: dict[str, list[str]] = {}
    classes: dict[str, list[int]] = {}
    records: dict[str, list] = {}
    offsets: dict[str, list[int]] = {}
    categories: list[list] | None = None
    cat_source: Path | None = None
    for split, rel in ANNOTATION_FILES.items():
        path = root / rel
        if not path.is_file():
            continue
        log.info("reading %s (once; later runs read the index cache)", path)
        data = read_annotation_file(path)
        cats = _categories_of(data, path)
        if categories is None:
            categories, cat_source = cats, path
        elif [c[:2] for c in cats] != [c[:2] for c in categories]:
            raise DataError(f"{path} and {cat_source} list different categories; both must be the COCO 2014 ones")
        label_of = {c[0]: k + 1 for k, c in enumerate(categories)}
        by_image: dict[int, str] = {}
        for im in data["images"]:
            try:
                image_id, file_name = int(im["id"]), str(im["file_name"])
                width, height = int(im["width"]), int(im["height"])
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{path}: image entry {im!r} lacks an integer id, width, height or a file_name") from None
            stem = Path(file_name).stem
            if stem in records:
                raise DataError(f"{path}: image file name {file_name!r} appears twice (ids are file-name stems)")
            records[stem] = [image_id, width, height, split, Path(file_name).name]
            by_image[image_id] = stem
        anns: dict[str, list[dict]] = {}
        for a in data["annotations"]:
            try:
                image_id, category_id = int(a["image_id"]), int(a["category_id"])
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{path}: annotation {a.get('id')!r} lacks an integer image_id or category_id") from None
            if image_id not in by_image:
                raise DataError(f"{path}: annotation {a.get('id')!r} refers to image_id {image_id}, which is not in "
                                "its images list")
            if category_id not in label_of:
                raise DataError(f"{path}: annotation {a.get('id')!r} has category_id {category_id}, which is not in "
                                "its categories list")
            stem, label = by_image[image_id], label_of[category_id]
            if "segmentation" not in a:
                raise DataError(f"{path}: annotation {a.get('id')!r} has no segmentation")
            anns.setdefault(stem, []).append({
                "id": a.get("id"), "category_id": category_id, "label": label,
                "iscrowd": int(a.get("iscrowd", 0)), "segmentation": a["segmentation"], "bbox": a.get("bbox"),
                "area": a.get("area")})
        del data
        ordered = sorted(anns)
        splits[split] = ordered

        def write_store(tmp: str, ordered=ordered, anns=anns) -> None:
            pos = 0
            with open(tmp, "wb") as f:
                for stem in ordered:
                    line = (json.dumps({"id": stem, "anns": anns[stem]}, separators=(",", ":")) + "\n").encode()
                    offsets[stem] = [pos, len(line)]
                    f.write(line)
                    pos += len(line)

        atomic_write(store_dir / f"{SPLIT_DIRS[split]}.jsonl", write_store)
        for stem in ordered:
            classes[stem] = sorted({a["label"] - 1 for a in anns[stem]})
        log.info("%s: %d images, %d with annotations", rel, len(by_image), len(ordered))
    assert categories is not None  # check_coco_root saw at least one annotation file
    return {"splits": splits, "classes": classes, "records": records, "categories": categories, "offsets": offsets}


def _store_state(cache_dir: Path, splits: Iterable[str]) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for split in splits:
        try:
            out[split] = (cache_dir / STORE_DIR / f"{SPLIT_DIRS[split]}.jsonl").stat().st_size
        except OSError:
            out[split] = None
    return out


def _read_cache(cache: Path, root: Path, signature: dict) -> tuple[dict | None, str]:
    """The cached index when it and its annotation store are current, else ``(None, why not)``."""
    data, why = read_index_cache(cache, CACHE_VERSION, root, signature)
    if data is not None and data.get("store") != _store_state(cache.parent, data["splits"]):
        return None, f"its annotation store {cache.parent / STORE_DIR} is missing or changed"
    return data, why


def open_coco(root: str | os.PathLike, cache_dir: str | os.PathLike,
              mask_dir: str | os.PathLike | None = None) -> COCOIndex:
    """Validate ``root`` and return its index, read from ``<cache_dir>/coco_index.json`` when current, else
    built from the annotation files (and cached, atomically). ``mask_dir``: ``--coco_mask_dir``
    (:func:`coco.gt_masks.mask_folder`)."""
    root = check_coco_root(root).resolve()
    cache_dir = Path(cache_dir)
    cache = cache_dir / INDEX_NAME
    signature = source_signature(root)
    data, why = _read_cache(cache, root, signature)
    if why:
        log.info("rebuilding COCO index cache %s: %s", cache, why)
    if data is None:
        data = _build(root, cache_dir)
        write_index_cache(cache, CACHE_VERSION, root, signature, {"store": _store_state(cache_dir, data["splits"]),
                                                                   **data})
        log.info("built COCO lists/labels for %s: %s", root, {k: len(v) for k, v in data["splits"].items()})
    folder, given = mask_folder(cache_dir, mask_dir)
    index = COCOIndex(root=root, splits={k: list(v) for k, v in data["splits"].items()}, classes=data["classes"],
                      records=data["records"], categories=data["categories"], offsets=data["offsets"],
                      store_dir=cache_dir / STORE_DIR, mask_dir=folder, masks_given=given, signature=signature)
    prepare_mask_dir(index)
    return index


def open_coco_of_args(args) -> COCOIndex:
    """:func:`open_coco` of ``--coco_root``, ``--list_cache_dir`` and ``--coco_mask_dir``."""
    return open_coco(args.coco_root, args.list_cache_dir, getattr(args, "coco_mask_dir", None))
