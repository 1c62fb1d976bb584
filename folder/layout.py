"""Where a folder dataset (``--dataset folder --folder_root DIR``) keeps its files, the root check and the errors
that name what is missing (docs/data_folder.md)::

    DIR/classes.txt         one class name per line: line 1 is class 1 (value 1 in a mask); 0 is background
    DIR/images/<id>.jpg     (.jpeg and .png too)
    DIR/labels.csv          header "image,labels"; the labels are class names separated by ";"
    DIR/masks/<id>.png      optional: 0 background, k class k, 255 ignore; used only for evaluation
    DIR/splits/<name>.txt   optional id lists; by default train = every id of labels.csv, val = the ids with a mask
"""
from __future__ import annotations

import os
from pathlib import Path

from misc.core.errors import UserError
from misc.core.index_cache import file_state, folder_state

CLASSES_FILE = "classes.txt"
LABELS_FILE = "labels.csv"
IMAGES_DIR = "images"
MASKS_DIR = "masks"
SPLITS_DIR = "splits"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # any case
MASK_SUFFIX = ".png"
INDEX_NAME = "folder_index.json"  # under the list cache folder (``<work_dir>/result``)
SEE_DOCS = "(docs/data_folder.md)"


class FolderLayoutError(UserError, FileNotFoundError):
    """The dataset folder lacks something; the message names it and what to write."""


class FolderSplitError(UserError, ValueError):
    """A ``--*_list`` value is neither a list file nor a split of the folder."""


def check_folder_root(root: str | os.PathLike | None) -> Path:
    """``root`` as a Path when it holds classes.txt, labels.csv and images/; else one :class:`FolderLayoutError`
    naming everything missing."""
    if not root:
        raise FolderLayoutError(f"--dataset folder needs --folder_root DIR: a folder holding {CLASSES_FILE}, "
                                f"{IMAGES_DIR}/ and {LABELS_FILE} {SEE_DOCS}")
    root = Path(root)
    if not root.is_dir():
        raise FolderLayoutError(f"--folder_root {root} does not exist; it must hold {CLASSES_FILE}, {IMAGES_DIR}/ "
                                f"and {LABELS_FILE} {SEE_DOCS}")
    missing = [name for name, ok in ((CLASSES_FILE, (root / CLASSES_FILE).is_file()),
                                     (f"{IMAGES_DIR}/", (root / IMAGES_DIR).is_dir()),
                                     (LABELS_FILE, (root / LABELS_FILE).is_file())) if not ok]
    if missing:
        raise FolderLayoutError(f"--folder_root {root} is missing {', '.join(missing)}. {CLASSES_FILE}: one class "
                                f"name per line (line 1 is class 1); {IMAGES_DIR}/: the images <id>.jpg (.jpeg, "
                                f".png); {LABELS_FILE}: the header 'image,labels', then one line per image such as "
                                f"'cat_01.jpg,cat;dog' {SEE_DOCS}")
    return root


def is_image_name(name: str) -> bool:
    """Whether a file name has one of :data:`IMAGE_SUFFIXES` (any case)."""
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def image_id(name: str) -> str:
    """The id of an image given by id or file name: ``"cat_01.jpg"`` and ``"cat_01"`` are ``"cat_01"``."""
    return Path(name).stem if is_image_name(name) else name


def find_image(root: str | os.PathLike, img_id: str) -> Path:
    """``<root>/images/<id><suffix>`` for the first suffix that exists (``.jpg`` when none does)."""
    folder = Path(root) / IMAGES_DIR
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / f"{img_id}{suffix}", folder / f"{img_id}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return folder / f"{img_id}.jpg"


def mask_path(root: str | os.PathLike, img_id: str) -> Path:
    """``<root>/masks/<id>.png``."""
    return Path(root) / MASKS_DIR / f"{img_id}{MASK_SUFFIX}"


def stated_signature(root: Path) -> dict[str, dict[str, list | None]]:
    """What of ``root`` is stated afresh on every open (:mod:`misc.core.index_cache`): classes.txt, labels.csv and
    each ``splits/*.txt`` (``lists``), and the folders whose entries the index lists (``folders``); the masks and
    images read while building are the cache's ``files``."""
    lists = {name: file_state(root / name) for name in (CLASSES_FILE, LABELS_FILE)}
    splits = root / SPLITS_DIR
    if splits.is_dir():
        for path in sorted(splits.glob("*.txt")):
            lists[f"{SPLITS_DIR}/{path.name}"] = file_state(path)
    folders = {f"{name}/": folder_state(root / name) for name in (IMAGES_DIR, MASKS_DIR, SPLITS_DIR)}
    return {"lists": lists, "folders": folders}
