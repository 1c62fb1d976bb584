"""Building a folder dataset's index from its files, caching it and opening it (:func:`open_folder`).

The index is cached in ``<cache_dir>/folder_index.json`` (:mod:`misc.core.index_cache`), keyed on classes.txt,
labels.csv, each ``splits/*.txt``, the entries of images/, masks/ and splits/, and every mask and masked image read
while building: an edit to any of them rebuilds it. Every check runs at the build, so a bad line or mask stops the
run before the first step, with the file and line named.
"""
from __future__ import annotations

import csv
import difflib
import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from folder.facts import is_background_name, read_class_names
from folder.index import FolderIndex, numbered_ids, read_mask
from folder.layout import (CLASSES_FILE, IMAGES_DIR, INDEX_NAME, LABELS_FILE, MASK_SUFFIX, MASKS_DIR, SPLITS_DIR,
                           check_folder_root, image_id, is_image_name, stated_signature)
from misc.core.errors import DataError, MissingDataFileError
from misc.core.index_cache import FILES, ReadFiles, read_index_cache, write_index_cache

log = logging.getLogger(__name__)

CACHE_VERSION = 1
HEADER = ["image", "labels"]


def list_images(root: Path) -> tuple[dict[str, str], list[str]]:
    """({id: file name} of images/, [names of other files]); two images of one id are a :class:`DataError`."""
    images: dict[str, str] = {}
    other = []
    for entry in sorted(os.scandir(root / IMAGES_DIR), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        if not is_image_name(entry.name):
            other.append(f"{IMAGES_DIR}/{entry.name}")
            continue
        img_id = Path(entry.name).stem
        if img_id in images:
            raise DataError(f"{root / IMAGES_DIR}: {images[img_id]} and {entry.name} have the same id {img_id!r}; keep "
                            "one of them")
        images[img_id] = entry.name
    return images, other


def _unknown_class_message(where: str, name: str, class_names: tuple[str, ...], classes_file: Path) -> str:
    if is_background_name(name):
        return (f"{where}: {name!r} is no class (value 0 is everything no class covers); leave the labels field empty "
                "for an image of background only")
    close = difflib.get_close_matches(name, class_names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    shown = ", ".join(class_names[:10]) + (f" and {len(class_names) - 10} more" if len(class_names) > 10 else "")
    return f"{where}: unknown class {name!r}{hint}; the classes are those of {classes_file}: {shown}"


def _rows(reader, path: Path):
    """The rows of a CSV reader; a line the csv module cannot parse is a :class:`DataError` naming it."""
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(f"{path}, line {reader.line_num}: not a CSV line ({exc})") from None


def read_labels_csv(root: Path, class_names: tuple[str, ...], images: dict[str, str]) -> dict[str, list[int]]:
    """{id: sorted 0-based classes} of labels.csv, in file order. Each line is checked (errors name the line): the
    header, two fields, an image name, known class names, one line per image, its image in images/ (every missing
    image is counted, the first ones named)."""
    path = root / LABELS_FILE
    index = {name: k for k, name in enumerate(class_names)}
    classes: dict[str, list[int]] = {}
    line_of: dict[str, int] = {}
    absent: list[str] = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc}); save it as UTF-8") from None
    reader = csv.reader(text.splitlines())
    for row in _rows(reader, path):
        lineno = reader.line_num
        where = f"{path}, line {lineno}"
        if lineno == 1:
            if [c.strip().lower() for c in row] != HEADER:
                raise DataError(f"{where}: the header must be 'image,labels', found {','.join(row)!r}; the first "
                                "line names the columns, the next lines are '<image>,<class>;<class>...'")
            continue
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) != 2:
            advice = ("separate the class names with ';', not ','" if len(row) > 2 else
                      "end the line with ',' for an image of background only")
            raise DataError(f"{where}: expected 2 fields (image,labels), found {len(row)}; {advice}")
        name, field = row[0].strip(), row[1].strip()
        if not name:
            raise DataError(f"{where}: no image name in the first field")
        img_id = image_id(name)
        if img_id in line_of:
            raise DataError(f"{where}: image {img_id!r} is also on line {line_of[img_id]}; give each image one line "
                            "with all its classes")
        line_of[img_id] = lineno
        found = set()
        for cls in (c.strip() for c in field.split(";")):
            if not cls:
                continue
            if cls not in index:
                raise DataError(_unknown_class_message(where, cls, class_names, root / CLASSES_FILE))
            found.add(index[cls])
        if img_id not in images or (is_image_name(name) and images[img_id] != Path(name).name):
            absent.append(f"line {lineno} {name!r}" + (f" ({IMAGES_DIR}/ has {images[img_id]})" if img_id in images
                                                       else ""))
        classes[img_id] = sorted(found)
    if not line_of and reader.line_num < 1:
        raise DataError(f"{path} is empty: write the header 'image,labels', then one line per image")
    if absent:
        shown = "; ".join(absent[:5]) + (f"; and {len(absent) - 5} more" if len(absent) > 5 else "")
        raise MissingDataFileError(f"{path}: {len(absent)} image(s) not in {root / IMAGES_DIR}: {shown}; add the "
                                   "images (.jpg, .jpeg or .png) or remove their lines")
    if not classes:
        raise DataError(f"{path} lists no image: after the header 'image,labels', write one line per image such as "
                        "'cat_01.jpg,cat;dog'")
    return classes


def read_splits(root: Path, classes: dict[str, list[int]]) -> dict[str, list[str]]:
    """{name: ids} of every ``splits/<name>.txt``; each id must have a labels.csv line (errors name the file and
    line)."""
    splits: dict[str, list[str]] = {}
    folder = root / SPLITS_DIR
    if not folder.is_dir():
        return splits
    for path in sorted(folder.glob("*.txt")):
        numbered = numbered_ids(path)
        for lineno, img_id in numbered:
            if img_id not in classes:
                raise DataError(f"{path}, line {lineno}: {img_id!r} has no line in {root / LABELS_FILE}; every id of "
                                "a split needs one")
        splits[path.stem] = [img_id for _, img_id in numbered]
    return splits


def check_masks(root: Path, class_names: tuple[str, ...], classes: dict[str, list[int]], images: dict[str, str],
                read: ReadFiles) -> tuple[set[str], dict[str, list[str]]]:
    """(ids with a mask, notes): every mask of a labelled image is read and checked (values, size: errors name the
    file); masks of unlisted images, other files and masks holding classes their line does not list are noted."""
    masks: set[str] = set()
    notes: dict[str, list[str]] = {"unlisted_masks": [], "other_files": [], "mask_label_mismatch": []}
    folder = root / MASKS_DIR
    if not folder.is_dir():
        return masks, notes
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        path = Path(entry.path)
        if path.suffix.lower() != MASK_SUFFIX:
            notes["other_files"].append(f"{MASKS_DIR}/{entry.name}")
            continue
        img_id = path.stem
        if img_id not in classes:
            notes["unlisted_masks"].append(f"{MASKS_DIR}/{entry.name}")
            continue
        image_file = root / IMAGES_DIR / images[img_id]
        read.stat(path)
        read.stat(image_file)
        values = np.unique(read_mask(path, image_file, img_id, len(class_names)))
        extra = sorted(int(v) for v in values if 0 < v < 255 and int(v) - 1 not in classes[img_id])
        if extra:
            notes["mask_label_mismatch"].append(f"{MASKS_DIR}/{entry.name} (values {', '.join(map(str, extra))})")
        masks.add(img_id)
    return masks, notes


def _content_digest(root: Path) -> str:
    h = hashlib.sha256()
    for name in (CLASSES_FILE, LABELS_FILE):
        h.update((root / name).read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:16]


def build_index(root: Path) -> tuple[dict, ReadFiles]:
    """(the index payload, the files read while building) of the folder ``root``."""
    class_names = read_class_names(root)
    images, other = list_images(root)
    classes = read_labels_csv(root, class_names, images)
    read = ReadFiles(root)
    masks, notes = check_masks(root, class_names, classes, images, read)
    notes["other_files"] = other + notes["other_files"]
    notes["unlisted_images"] = [name for img_id, name in images.items() if img_id not in classes]
    splits = {"train": list(classes), "val": [i for i in classes if i in masks]}
    splits.update(read_splits(root, classes))
    payload = {"class_names": list(class_names), "splits": splits, "classes": classes,
               "images": {i: images[i] for i in classes}, "masks": sorted(masks), "content": _content_digest(root),
               "notes": {k: v for k, v in notes.items() if v}}
    return payload, read


def open_folder(root: str | os.PathLike | None, cache_dir: str | os.PathLike | None = None) -> FolderIndex:
    """Validate ``root`` and return its index, read from ``<cache_dir>/folder_index.json`` when current, else built
    (and cached, atomically; an INFO line names what changed)."""
    root = check_folder_root(root).resolve()
    stated = stated_signature(root)  # before building: a change made while building shows up as stale next time
    data = None
    if cache_dir is not None:
        cache = Path(cache_dir) / INDEX_NAME
        data, why = read_index_cache(cache, CACHE_VERSION, root, stated)
        if why:
            log.info("rebuilding folder index cache %s: %s", cache, why)
    if data is None:
        data, read = build_index(root)
        if cache_dir is not None:
            write_index_cache(cache, CACHE_VERSION, root, {**stated, FILES: dict(read)}, data)
    return FolderIndex(root=root, class_names=tuple(data["class_names"]),
                       splits={k: list(v) for k, v in data["splits"].items()}, classes=data["classes"],
                       images=data["images"], masks=set(data["masks"]), content=data["content"],
                       notes=data["notes"])
