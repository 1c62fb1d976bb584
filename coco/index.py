"""The index of a COCO 2014 folder (:class:`COCOIndex`): split lists, image-level labels, image records, the
category mapping and the ground truth of each image.

**Ids** are the file-name stems (``"COCO_train2014_000000000009"``): unique over both splits, the form peers'
list files use, and the name of every per-image output. :meth:`COCOIndex.image_records` maps them back to the real
image id, file name, width and height; :meth:`COCOIndex.category_records` gives the official category ids.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from coco.annotations import class_mask, instance_masks
from coco.facts import NUM_CLASSES, NUM_LABELS
from coco.layout import ANNOTATION_FILES, GET_COCO, INDEX_NAME, SIGNATURE_GROUP, SPLIT_DIRS, COCOSplitError
from dataset.listed_ids import check_listed_ids
from dataset.multi_hot import MultiHotLabels
from misc.core.errors import DataError, MissingDataFileError


@dataclass
class COCOIndex:
    """A validated COCO 2014 folder: split lists, labels, image records and where each image's annotations are.

    ``records[id] = [image id, width, height, split, file name]``; ``offsets[id] = [byte offset, length]`` of the
    image's line in ``<store_dir>/<split>.jsonl`` (images without annotations have none)."""

    root: Path
    splits: dict[str, list[str]]
    classes: dict[str, list[int]] = field(repr=False)
    records: dict[str, list] = field(repr=False)
    categories: list[list] = field(repr=False)  # [official id, name, supercategory] in contiguous order
    offsets: dict[str, list[int]] = field(repr=False)
    store_dir: Path
    mask_dir: Path
    masks_given: bool
    signature: dict = field(repr=False)

    name = "coco"
    num_classes = NUM_CLASSES
    num_labels = NUM_LABELS
    gt_optional = False  # every annotated image has its mask

    def __post_init__(self) -> None:
        self.labels: Mapping[str, np.ndarray] = MultiHotLabels(self.classes, NUM_CLASSES)
        self._by_image_id: dict[int, str] | None = None

    # ---- facts
    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(str(c[1]) for c in self.categories)

    def content_signature(self) -> dict:
        """{split: [size, quick hash], None when absent} of the annotation files: their content, not their mtime or
        ctime (a copied folder keeps its outputs)."""
        states = self.signature[SIGNATURE_GROUP]
        return {split: None if states[rel] is None else [states[rel][0], states[rel][-1]]
                for split, rel in ANNOTATION_FILES.items()}

    def config_entry(self) -> dict:
        """What of the dataset shapes a step's outputs (an entry of their fingerprints)."""
        from misc.core.fingerprint import fingerprint

        return {"coco_root": str(self.root), "coco_annotations": fingerprint(self.content_signature())}

    def palette(self) -> list[int]:
        from misc.core.labels import label_palette

        return label_palette()

    # ---- lists and labels
    def _read_list(self, path: str) -> list[str]:
        """Ids of a list file: one per line, first token; ``.jpg`` and folder decorations tolerated; a bare number
        is a COCO image id."""
        ids = []
        with open(path) as f:
            for lineno, line in enumerate(f, 1):
                tok = line.strip().split()
                if not tok:
                    continue
                stem = Path(tok[0]).stem
                if stem.isdigit():
                    if self._by_image_id is None:
                        self._by_image_id = {int(r[0]): k for k, r in self.records.items()}
                    if int(stem) not in self._by_image_id:
                        raise DataError(f"{path}, line {lineno}: image id {stem} is in neither annotation file "
                                        f"under {self.root}/annotations")
                    stem = self._by_image_id[int(stem)]
                ids.append(stem)
        return ids

    def ids(self, list_arg: str) -> list[str]:
        """Ids of a ``--*_list`` value: an existing list file, or a split name (``train``, ``val``; also
        ``train2014`` / ``val2014`` or a path whose stem is one of them)."""
        if os.path.isfile(list_arg):
            return self._read_list(list_arg)
        name = Path(list_arg).stem
        name = {d: s for s, d in SPLIT_DIRS.items()}.get(name, name)
        if name in self.splits:
            return list(self.splits[name])
        have = ", ".join(sorted(self.splits)) or "none"
        if name in SPLIT_DIRS:
            raise COCOSplitError(f"list {list_arg!r} is not a file, and split {name!r} needs "
                                 f"{self.root / ANNOTATION_FILES[name]} (available splits: {have}). {GET_COCO}")
        extra = (" COCO 2014 has no test split with annotations (test2014 is scored by the evaluation server)."
                 if name.startswith("test") else "")
        raise COCOSplitError(f"list {list_arg!r} is neither a file nor a split of {self.root} (available splits: "
                             f"{have}: the train2014 / val2014 images with at least one annotation).{extra}")

    def label(self, img_id: str, list_arg: str | None = None) -> np.ndarray:
        """(80,) float32 multi-hot image-level label."""
        if img_id not in self.classes:
            raise DataError(self._missing_labels_message([img_id], list_arg))
        return self.labels[img_id]

    def _missing_labels_message(self, ids: Sequence[str], list_arg: str | None) -> str:
        where = f" listed in {list_arg}" if list_arg else ""
        unknown = [i for i in ids if i not in self.records]
        shown = ", ".join(repr(i) for i in ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        why = (f"{len(unknown)} of them are images of neither annotation file" if unknown else
               "they are images without any annotation (left out of the split lists)")
        return (f"{len(ids)} image id(s){where} have no class label: {shown}; {why}. Labels come from "
                f"{self.root}/annotations/instances_*2014.json; remove these ids from the list. (The index cache "
                f"{INDEX_NAME} is rebuilt when the annotation files change.)")

    def check_ids(self, ids: Sequence[str], list_arg: str, labels: bool = True, images: bool = True) -> list[str]:
        """``ids`` unchanged, after checking that each has a label (:class:`DataError`) and an image
        (:class:`MissingDataFileError`); offending ids are counted and the first ones named."""
        return check_listed_ids(ids, list_arg, self.classes, lambda bad: self._missing_labels_message(bad, list_arg),
                                self.image_path, f"Unzip train2014.zip / val2014.zip into {self.root}. {GET_COCO}",
                                labels, images)

    # ---- files
    def _record(self, img_id: str) -> list:
        try:
            return self.records[img_id]
        except KeyError:
            raise DataError(f"image id {img_id!r} is in neither annotation file under {self.root}/annotations") from None

    def image_path(self, img_id: str) -> Path:
        rec = self.records.get(img_id)
        if rec is None:  # not in the annotations: where the official naming would put it (check_ids names it)
            split = "val" if "_val2014_" in img_id else "train"
            return self.root / SPLIT_DIRS[split] / f"{img_id}.jpg"
        return self.root / SPLIT_DIRS[rec[3]] / rec[4]

    def image_size(self, img_id: str) -> tuple[int, int]:
        """(height, width) from the annotation file."""
        rec = self._record(img_id)
        return int(rec[2]), int(rec[1])

    def annotations(self, img_id: str) -> list[dict]:
        """The image's annotations (``id``, ``category_id``, ``label`` 1..80, ``iscrowd``, ``segmentation``,
        ``bbox``, ``area``), read from the store by one seek; [] for an image without annotations."""
        rec = self._record(img_id)
        span = self.offsets.get(img_id)
        if span is None:
            return []
        path = self.store_dir / f"{SPLIT_DIRS[rec[3]]}.jsonl"
        with open(path, "rb") as f:
            f.seek(span[0])
            line = f.read(span[1])
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict) or entry.get("id") != img_id:
            raise DataError(f"the annotation store {path} does not match the index {INDEX_NAME} at {img_id!r}; "
                            f"delete {self.store_dir} and the index so that they are rebuilt")
        return entry["anns"]

    def class_gt_path(self, img_id: str) -> Path:
        """The class mask of ``img_id``: in a ready folder ``<dir>/<id>.png`` or ``<dir>/<split folder>/<id>.png``,
        else the built one ``<mask_dir>/<id>.png`` (which may not exist yet: :meth:`read_class_gt` builds it)."""
        flat = self.mask_dir / f"{img_id}.png"
        if self.masks_given and not flat.is_file():
            rec = self.records.get(img_id)
            nested = self.mask_dir / SPLIT_DIRS[rec[3] if rec else "train"] / f"{img_id}.png"
            if nested.is_file():
                return nested
        return flat

    @property
    def class_gt_from_files(self) -> bool:
        """Whether the class masks are read from files (a given ``--coco_mask_dir``) rather than built."""
        return self.masks_given

    def has_class_gt(self, img_id: str) -> bool:
        """Whether :meth:`read_class_gt` can give a mask (built ones: every annotated image of the files)."""
        return self.class_gt_path(img_id).is_file() if self.masks_given else img_id in self.records

    def build_class_gt(self, img_id: str) -> Path:
        """Build (or rebuild) the class mask of ``img_id`` into the mask folder, atomically; returns its path."""
        from misc.core.io import save_png

        h, w = self.image_size(img_id)
        mask = class_mask(self.annotations(img_id), h, w, f"image {img_id!r}")
        path = self.mask_dir / f"{img_id}.png"
        save_png(path, mask, palette=self.palette())
        return path

    def read_class_gt(self, img_id: str) -> np.ndarray:
        """(H, W) uint8 class mask, values 0..80 or 255; built on first use unless the masks are a given folder."""
        from misc.core.labels import read_label_png
        from misc.core.outputs import output_problem

        path = self.class_gt_path(img_id)
        if self.masks_given:
            if not path.is_file():
                raise MissingDataFileError(f"image id {img_id!r}: no ground-truth mask at {path} (nor in "
                                           f"{self.mask_dir}/<split folder>/) in the --coco_mask_dir of ready masks; "
                                           "add it, or omit --coco_mask_dir to build the masks from the annotations")
        elif not path.is_file() or output_problem(path) is not None:
            path = self.build_class_gt(img_id)
        mask = read_label_png(path, NUM_LABELS)
        h, w = self.image_size(img_id)
        if mask.shape != (h, w):
            raise DataError(f"image id {img_id!r}: the mask {path} is {mask.shape[0]}x{mask.shape[1]} (HxW) but the "
                            f"annotation file gives the image {h}x{w}")
        return mask

    def gt_instances(self, img_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(masks (R, H, W) bool, labels (R,) int32 0-based): the non-crowd instances (:func:`instance_masks`)."""
        h, w = self.image_size(img_id)
        return instance_masks(self.annotations(img_id), h, w, f"image {img_id!r}")

    def gt_folders(self) -> list[Path]:
        """Folders of ground truth (train_deeplab refuses to train on them)."""
        return [self.mask_dir]

    # ---- records for exports (COCO JSON)
    def image_records(self, ids: Iterable[str]) -> list[dict]:
        """``[{"id": image id (int), "file_name", "width", "height"}]`` of ``ids``, in order (the ``images`` entries
        of a COCO results / annotation file)."""
        out = []
        for img_id in ids:
            rec = self._record(img_id)
            out.append({"id": int(rec[0]), "file_name": str(rec[4]), "width": int(rec[1]), "height": int(rec[2])})
        return out

    def category_records(self) -> list[dict]:
        """``[{"id": official category id, "name", "supercategory"}]`` in contiguous order: entry k is label k+1."""
        return [{"id": int(c[0]), "name": str(c[1]), "supercategory": str(c[2])} for c in self.categories]

    def label_to_category_id(self) -> dict[int, int]:
        """Contiguous label (1..80) → official COCO category id."""
        return {k + 1: int(c[0]) for k, c in enumerate(self.categories)}

