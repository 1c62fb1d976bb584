"""The index of a folder dataset (:class:`FolderIndex`): classes, split lists, image-level labels, the image and
the mask of each id (docs/data_folder.md). Built and cached by :func:`folder.build.open_folder`."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from dataset.images import check_same_size
from dataset.listed_ids import check_listed_ids
from dataset.multi_hot import MultiHotLabels
from folder.layout import (CLASSES_FILE, IMAGES_DIR, INDEX_NAME, LABELS_FILE, MASKS_DIR, SPLITS_DIR,
                           FolderSplitError, image_id, mask_path)
from misc.core.errors import DataError, MissingDataFileError, UserError

log = logging.getLogger(__name__)


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image from its header."""
    from PIL import Image

    from misc.core.errors import UnreadableFileError

    try:
        with Image.open(path) as im:
            return im.height, im.width
    except Exception as exc:
        raise UnreadableFileError(f"cannot read image {path} ({type(exc).__name__}: {exc}); replace the file with an "
                                  "intact copy or remove its line from labels.csv") from exc


def read_mask(path: Path, image_file: Path, img_id: str, num_classes: int) -> np.ndarray:
    """(H, W) uint8 mask of ``img_id``, checked: a palette or greyscale PNG of values 0..num_classes or 255, of its
    image's size; errors name the file."""
    from misc.core.labels import read_label_png

    try:
        mask = read_label_png(path, num_classes + 1)
    except DataError as exc:
        raise DataError(f"{exc} ({CLASSES_FILE} lists {num_classes} classes: a mask holds 0 background, "
                        f"1..{num_classes} the classes, 255 ignore)") from None
    check_same_size(img_id, mask, path, image_size(image_file), image_file)
    return mask


def numbered_ids(path: str | os.PathLike) -> list[tuple[int, str]]:
    """(line number, id) of a list file: one id per line, the first token; an image suffix is dropped."""
    out = []
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            tok = line.strip().split()
            if tok:
                out.append((lineno, image_id(Path(tok[0]).name)))
    return out


def read_id_list(path: str | os.PathLike) -> list[str]:
    """Ids of a list file (:func:`numbered_ids`)."""
    return [img_id for _, img_id in numbered_ids(path)]


@dataclass
class FolderIndex:
    """A validated folder dataset. ``classes[id]``: the 0-based classes of its labels.csv line (empty: background
    only); ``images[id]``: its file name in images/; ``masks``: the ids with a mask; ``notes``: what the build left
    out or found odd (logged once per run, :meth:`problems`)."""

    root: Path
    class_names: tuple[str, ...]
    splits: dict[str, list[str]]
    classes: dict[str, list[int]] = field(repr=False)
    images: dict[str, str] = field(repr=False)
    masks: set[str] = field(repr=False)
    content: str = ""  # digest of classes.txt and labels.csv
    notes: dict[str, list[str]] = field(default_factory=dict, repr=False)

    name = "folder"
    gt_optional = True  # some images have a mask: the evaluations score those

    def __post_init__(self) -> None:
        self.labels: Mapping[str, np.ndarray] = MultiHotLabels(self.classes, self.num_classes)

    # ---- facts
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_labels(self) -> int:
        return self.num_classes + 1

    def config_entry(self) -> dict:
        """What of the dataset shapes a step's outputs (an entry of their fingerprints): the folder and the content of
        classes.txt and labels.csv."""
        return {"folder_root": str(self.root), "folder_labels": self.content}

    def palette(self) -> list[int]:
        from misc.core.labels import label_palette

        return label_palette()

    def summary(self) -> str:
        """One line: classes, images, background-only images, masks, splits."""
        no_class = sum(1 for c in self.classes.values() if not c)
        splits = ", ".join(f"{k} {len(v)}" for k, v in self.splits.items())
        return (f"folder dataset {self.root}: {self.num_classes} classes, {len(self.classes)} images in {LABELS_FILE} "
                f"({no_class} with no class: background only), {len(self.masks)} with a mask; splits: {splits}")

    def problems(self) -> list[str]:
        """What the build left out or found odd, one line each (warnings: nothing is dropped silently)."""
        out = []
        for key, what in (("unlisted_images", f"image(s) in {IMAGES_DIR}/ without a line in {LABELS_FILE}, left out "
                                              f"(add a line '<file name>,<classes>' to use them)"),
                          ("unlisted_masks", f"mask(s) in {MASKS_DIR}/ of images without a line in {LABELS_FILE}, "
                                             "not used"),
                          ("other_files", f"file(s) in {IMAGES_DIR}/ or {MASKS_DIR}/ that are no image or mask "
                                          "(.jpg, .jpeg, .png; masks .png), ignored"),
                          ("mask_label_mismatch", f"mask(s) holding classes their {LABELS_FILE} line does not list "
                                                  "(the labels train; the masks only score)")):
            names = self.notes.get(key, [])
            if names:
                shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                out.append(f"{self.root}: {len(names)} {what}: {shown}")
        return out

    # ---- lists and labels
    def ids(self, list_arg: str) -> list[str]:
        """Ids of a ``--*_list`` value: an existing list file, or a split name (``train``, ``val`` or the name of a
        ``splits/<name>.txt``; a path whose stem is one of them)."""
        if os.path.isfile(list_arg):
            return read_id_list(list_arg)
        name = Path(list_arg).stem
        if name in self.splits:
            return list(self.splits[name])
        raise FolderSplitError(f"list {list_arg!r} is neither a file nor a split of {self.root} (splits: "
                               f"{', '.join(self.splits)}); a split <name> is the id list {SPLITS_DIR}/<name>.txt "
                               "under --folder_root")

    def _unlabelled_message(self, ids: Sequence[str], list_arg: str | None) -> str:
        where = f" listed in {list_arg}" if list_arg else ""
        shown = ", ".join(repr(i) for i in ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        return (f"{len(ids)} image id(s){where} have no line in {self.root / LABELS_FILE}: {shown}; add a line "
                "'<image>,<classes>' for each (an empty labels field: background only) or remove them from the list")

    def label(self, img_id: str, list_arg: str | None = None) -> np.ndarray:
        """(num_classes,) float32 multi-hot image-level label."""
        if img_id not in self.classes:
            raise DataError(self._unlabelled_message([img_id], list_arg))
        return self.labels[img_id]

    def check_ids(self, ids: Sequence[str], list_arg: str, labels: bool = True, images: bool = True) -> list[str]:
        """``ids`` unchanged, after checking that each has a labels.csv line (:class:`DataError`) and an image
        (:class:`MissingDataFileError`); offending ids are counted and the first ones named."""
        return check_listed_ids(ids, list_arg, self.classes, lambda bad: self._unlabelled_message(bad, list_arg),
                                self.image_path, f"Put them into {self.root / IMAGES_DIR} or remove the ids from the "
                                "list.", labels, images)

    # ---- files
    def image_path(self, img_id: str) -> Path:
        name = self.images.get(img_id)
        return self.root / IMAGES_DIR / (name if name else f"{img_id}.jpg")

    def class_gt_path(self, img_id: str) -> Path:
        """``masks/<id>.png`` (which may not exist: :meth:`has_class_gt`)."""
        return mask_path(self.root, img_id)

    def has_class_gt(self, img_id: str) -> bool:
        return img_id in self.masks

    def read_class_gt(self, img_id: str) -> np.ndarray:
        """(H, W) uint8 mask, values 0..num_classes or 255, of the image's size (checked, errors name the file)."""
        path = self.class_gt_path(img_id)
        if not path.is_file():
            raise MissingDataFileError(f"image id {img_id!r} has no mask at {path}; the evaluations score only the "
                                       f"images with a mask (a stale index cache {INDEX_NAME} is rebuilt when "
                                       f"{MASKS_DIR}/ changes)")
        return read_mask(path, self.image_path(img_id), img_id, self.num_classes)

    def gt_instances(self, img_id: str) -> tuple[np.ndarray, np.ndarray]:
        raise UserError(f"a folder dataset has no instance ground truth ({self.root}): eval_ins_seg and make_cocoann "
                        "need VOC or COCO; switch them off (--eval_ins_seg_pass false --make_cocoann_pass false)")

    def gt_folders(self) -> list[Path]:
        """Folders of ground truth (train_deeplab refuses to train on them)."""
        return [self.root / MASKS_DIR]
