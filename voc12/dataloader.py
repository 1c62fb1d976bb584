"""PASCAL VOC 2012 data layer (docs/data_voc.md): lists, image-level labels, and the datasets of the steps under the
original's names (``VOC12ImageDataset`` ...: the dataset-neutral classes of :mod:`dataset` with VOC's defaults).

Ids are strings everywhere (``"2007_000032"``). Nothing is read at import time: :func:`open_voc` validates the
user's folder, builds (or reads from its cache) the split lists and class labels, and returns a :class:`VOCIndex`.
"""
from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from dataset.images import read_image  # noqa: F401 (re-exported)
from dataset.listed_ids import check_listed_ids
from dataset.torch_datasets import AffinityDataset, ClassificationDataset, ImageDataset, SegmentationDataset
from misc.core.errors import DataError, UserError
from misc.core.index_cache import FILES, ReadFiles, file_state, folder_state, read_index_cache, write_index_cache
from misc.core import labels
from misc.core.labels import label_palette
from misc.method.imutils import TorchvisionNormalize, multiscale_flip_inputs  # noqa: F401 (re-exported)
from voc12.facts import CLASS_NAMES, NUM_CLASSES, NUM_LABELS
from voc12.layout import class_gt_path, image_path, object_gt_path  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "train_aug", "test", "trainval")
CACHE_VERSION = 3  # 3: the signature covers every annotation and mask the labels were read from
INDEX_FOLDERS = ("SegmentationClassAug", "SegmentationClass", "Annotations")  # what the lists / labels are read from
GT_FOLDERS = ("SegmentationClass", "SegmentationClassAug", "SegmentationClassRaw", "SegmentationObject")

GET_VOC = (
    "Get PASCAL VOC 2012 (VOCtrainval_11-May-2012.tar) from the official site and pass its VOC2012 folder "
    "(the one holding JPEGImages/) as --voc12_root. For train_aug also build SBD's SegmentationClassAug/ in it "
    "(python -m voc12.prepare_sbd, docs/data_voc.md)."
)


class VOCLayoutError(UserError, FileNotFoundError):
    """The VOC folder lacks something a step needs; the message lists all of it and how to get it."""


class VOCSplitError(UserError, ValueError):
    """A ``--*_list`` value is neither a list file nor a split the VOC folder provides; the message says what
    folder or file would provide it and how to get it."""


def _missing_split_message(list_arg: str, name: str, root: Path, available: Sequence[str]) -> str:
    """Why split ``name`` is unavailable under ``root`` and where its source comes from."""
    head = f"list {list_arg!r} is not a file"
    have = f"(available splits: {', '.join(available) or 'none'})"
    if name == "train_aug":
        aug = root / "SegmentationClassAug"
        state = "holds no masks outside val" if aug.is_dir() else "does not exist"
        return (
            f"{head}, and split 'train_aug' needs {aug}/, which {state} {have}. SegmentationClassAug/ holds the "
            f"augmented masks of SBD (Hariharan et al., 10,582 train_aug images; the 'SegmentationClassAug' "
            f"archive used by IRNet/DeepLab): build it from SBD's benchmark.tgz with python -m voc12.prepare_sbd "
            f"--sbd_root <benchmark_RELEASE> --voc12_root {root} (docs/data_voc.md), or unpack a ready "
            f"SegmentationClassAug/ into {root}, or pass a list file instead."
        )
    if name == "test":
        return (
            f"{head}, and split 'test' needs {root}/ImageSets/Segmentation/test.txt and the test images in "
            f"JPEGImages/ {have}. They come in the separate VOC2012 test archive (VOC2012test.tar, from the PASCAL "
            f"VOC evaluation server after registering), not in VOCtrainval_11-May-2012.tar: unpack it over {root}."
        )
    if name in ("train", "val", "trainval"):
        return (
            f"{head}, and split {name!r} needs {root}/ImageSets/Segmentation/{name}.txt {have}. It is part of "
            f"PASCAL VOC 2012 (VOCtrainval_11-May-2012.tar): is --voc12_root its VOC2012 folder? {GET_VOC}"
        )
    return f"list {list_arg!r} is neither a file nor a known split of {root} {have}"


def check_voc_root(root: str | os.PathLike, need: Sequence[str] = ("JPEGImages", "ImageSets/Segmentation")) -> Path:
    """Raise one :class:`VOCLayoutError` naming every missing entry of ``need`` under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise VOCLayoutError(f"--voc12_root {root} does not exist. {GET_VOC} Or run with --demo for synthetic data.")
    missing = [n for n in need if not (root / n).exists()]
    if missing:
        hints = []
        if "SegmentationClassAug" in missing:
            hints.append("SegmentationClassAug/ comes from SBD (the 'SegmentationClassAug' archive used by IRNet/DeepLab)")
        if "SegmentationObject" in missing:
            hints.append("SegmentationObject/ is part of VOC2012 and needed by the instance steps")
        raise VOCLayoutError(
            f"--voc12_root {root} is missing: {', '.join(missing)}. {GET_VOC} " + " ".join(hints)
        )
    return root


def read_id_list(path: str | os.PathLike) -> list[str]:
    """One id per line (first whitespace token; ``.jpg`` and ``JPEGImages/`` decorations tolerated)."""
    ids = []
    with open(path) as f:
        for line in f:
            tok = line.strip().split()
            if tok:
                ids.append(Path(tok[0]).stem)
    return ids


def read_label_png(path: str | os.PathLike, num_classes: int | None = NUM_LABELS) -> np.ndarray:
    """:func:`misc.core.labels.read_label_png` checking VOC's values (0..20 or 255) unless told otherwise."""
    return labels.read_label_png(path, num_classes)


def labels_from_xml(xml_path: Path) -> np.ndarray:
    """Multi-hot (20,) float32 over every ``<name>`` in CLASS_NAMES (difficult/truncated included)."""
    vec = np.zeros(NUM_CLASSES, np.float32)
    for el in ET.parse(xml_path).getroot().iter("name"):
        name = (el.text or "").strip()
        if name in CLASS_NAMES:
            vec[CLASS_NAMES.index(name)] = 1.0
    return vec


def labels_from_mask(png_path: Path) -> np.ndarray:
    """Multi-hot (20,) float32 from the class indices of a label PNG (0 and 255 ignored); the PNG is checked as
    :func:`read_label_png` does (mode, values 0..20 or 255)."""
    vals = np.unique(read_label_png(png_path, NUM_LABELS))
    vec = np.zeros(NUM_CLASSES, np.float32)
    for v in vals:
        if 1 <= v <= NUM_CLASSES:
            vec[v - 1] = 1.0
    return vec


@dataclass
class VOCIndex:
    """A validated VOC folder: split lists (string ids) and image-level labels."""

    root: Path
    splits: dict[str, list[str]]
    labels: dict[str, np.ndarray] = field(repr=False)

    # the dataset facts every step reads through ``pipeline.datasets`` (the same names on :class:`coco.dataset.COCOIndex`)
    name = "voc"
    num_classes = NUM_CLASSES
    num_labels = NUM_LABELS
    class_names = CLASS_NAMES
    gt_optional = False  # every image of the split lists has its mask

    def config_entry(self) -> dict:
        """What of the dataset shapes a step's outputs (an entry of their fingerprints)."""
        return {"voc12_root": str(self.root)}

    def palette(self) -> list[int]:
        return label_palette()

    def ids(self, list_arg: str) -> list[str]:
        """Ids for a ``--*_list`` value: an existing list file, or a split name (``train_aug`` or ``voc12/train_aug.txt``)."""
        if os.path.isfile(list_arg):
            return read_id_list(list_arg)
        name = Path(list_arg).stem
        if name not in self.splits or (name == "train_aug" and not self.splits[name]):
            available = sorted(k for k, v in self.splits.items() if v or k != "train_aug")
            raise VOCSplitError(_missing_split_message(list_arg, name, self.root, available))
        return list(self.splits[name])

    def label(self, img_id: str, list_arg: str | None = None) -> np.ndarray:
        try:
            return self.labels[img_id]
        except KeyError:
            raise DataError(missing_labels_message([img_id], self.root, list_arg)) from None

    def check_ids(self, ids: Sequence[str], list_arg: str, labels: bool = True, images: bool = True) -> list[str]:
        """``ids`` (of ``list_arg``) unchanged, after checking that each has an image-level label
        (:class:`~misc.core.errors.DataError`) and a JPEG (:class:`~misc.core.errors.MissingDataFileError`); every
        offending id is counted, the first ones named."""
        return check_listed_ids(ids, list_arg, self.labels,
                                lambda bad: missing_labels_message(bad, self.root, list_arg), self.image_path, f"Put the JPEGs of those ids into {self.root}/JPEGImages/ or remove "
                                "the ids from the list.", labels, images)

    def image_path(self, img_id: str) -> Path:
        return image_path(self.root, img_id)

    def class_gt_path(self, img_id: str) -> Path:
        """The semantic ground truth ``SegmentationClass/<id>.png``."""
        return class_gt_path(self.root, img_id)

    def has_class_gt(self, img_id: str) -> bool:
        return class_gt_path(self.root, img_id).is_file()

    def object_gt_path(self, img_id: str) -> Path:
        """The instance ground truth ``SegmentationObject/<id>.png``."""
        return object_gt_path(self.root, img_id)

    def read_class_gt(self, img_id: str) -> np.ndarray:
        """(H, W) uint8 semantic ground truth, values 0..20 or 255 (checked, errors name the file)."""
        return read_label_png(class_gt_path(self.root, img_id), NUM_LABELS)

    def gt_instances(self, img_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(masks (R, H, W) bool, labels (R,) int32 0-based) from SegmentationObject + SegmentationClass."""
        from misc.eval.instance_ap import read_voc_instances

        return read_voc_instances(self.object_gt_path(img_id), class_gt_path(self.root, img_id))

    def gt_folders(self) -> list[Path]:
        """Folders of ground truth (train_deeplab refuses to train on them)."""
        return [self.root / g for g in GT_FOLDERS]


def missing_labels_message(ids: Sequence[str], root: Path, list_arg: str | None) -> str:
    """Why ``ids`` have no image-level label, and where labels come from."""
    where = f" listed in {list_arg}" if list_arg else ""
    shown = ", ".join(repr(i) for i in ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
    return (
        f"{len(ids)} image id(s){where} have no class label: {shown}. Image-level labels come from "
        f"{root}/Annotations/<id>.xml, else from the mask {root}/SegmentationClassAug/<id>.png or "
        f"SegmentationClass/<id>.png, for the ids of the split lists (ImageSets/Segmentation/*.txt and "
        f"train_aug); add the annotation or mask of these ids, or remove them from the list. (A stale index "
        f"cache voc12_index.json in --list_cache_dir is rebuilt when those folders change; delete it if in doubt.)"
    )


def _build_index(root: Path) -> tuple[dict[str, list[str]], dict[str, np.ndarray], ReadFiles]:
    """(split lists, image-level labels, the files the labels were read from) of ``root``."""
    seg_sets = root / "ImageSets" / "Segmentation"
    splits: dict[str, list[str]] = {}
    for name in ("train", "val", "test", "trainval"):
        if (seg_sets / f"{name}.txt").is_file():
            splits[name] = read_id_list(seg_sets / f"{name}.txt")
    aug_dir = root / "SegmentationClassAug"
    if (seg_sets / "train_aug.txt").is_file():  # written by voc12.prepare_sbd
        splits["train_aug"] = read_id_list(seg_sets / "train_aug.txt")
    elif aug_dir.is_dir():
        val = set(splits.get("val", []))
        splits["train_aug"] = sorted(p.stem for p in aug_dir.glob("*.png") if p.stem not in val)
    labels: dict[str, np.ndarray] = {}
    read = ReadFiles(root)
    all_ids = sorted({i for k, v in splits.items() if k != "test" for i in v})
    for img_id in all_ids:
        xml = root / "Annotations" / f"{img_id}.xml"
        if read.stat(xml):
            labels[img_id] = labels_from_xml(xml)
            continue
        for folder in ("SegmentationClassAug", "SegmentationClass"):
            png = root / folder / f"{img_id}.png"
            if read.stat(png):
                labels[img_id] = labels_from_mask(png)
                break
    return splits, labels, read


def _stated_signature(root: Path) -> dict:
    """What of ``root`` is stated afresh on every open (:mod:`misc.core.index_cache`): each
    ``ImageSets/Segmentation/*.txt`` (``lists``) and each of :data:`INDEX_FOLDERS` (``folders``: entries added or
    removed); the annotations and masks the labels were read from are the cache's ``files``."""
    lists: dict[str, list | None] = {}
    with os.scandir(root / "ImageSets" / "Segmentation") as it:
        for entry in it:
            if entry.name.endswith(".txt"):
                state = file_state(entry.path)
                if state is not None:
                    lists[entry.name] = state
    folders = {f"{name}/": folder_state(root / name) for name in INDEX_FOLDERS}
    return {"lists": dict(sorted(lists.items())), "folders": folders}


def open_voc(root: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> VOCIndex:
    """Validate ``root`` and return its lists and labels, cached as JSON in ``cache_dir``.

    The cache records the state of every list, folder and annotation it was built from
    (:mod:`misc.core.index_cache`) and is rebuilt, with an INFO line naming what changed, when any of them, the root
    or the cache format differ. It is written atomically, so concurrent callers (e.g. torchrun ranks) never see a
    partial file.
    """
    root = check_voc_root(root).resolve()
    if cache_dir is None:
        splits, labels, _ = _build_index(root)
        return VOCIndex(root, splits, labels)
    cache = Path(cache_dir) / "voc12_index.json"
    stated = _stated_signature(root)  # taken before building: changes made while building show up as stale next time
    data, why = read_index_cache(cache, CACHE_VERSION, root, stated, {"lists": "ImageSets/Segmentation/"})
    if data is not None:
        labels = {k: np.asarray(v, np.float32) for k, v in data["labels"].items()}
        return VOCIndex(root, {k: list(v) for k, v in data["splits"].items()}, labels)
    if why:
        log.info("rebuilding VOC index cache %s: %s", cache, why)
    splits, labels, read = _build_index(root)
    write_index_cache(cache, CACHE_VERSION, root, {**stated, FILES: dict(read)},
                      {"splits": splits, "labels": {k: v.astype(int).tolist() for k, v in labels.items()}})
    log.info("built VOC lists/labels for %s: %s", root, {k: len(v) for k, v in splits.items()})
    return VOCIndex(root, splits, labels)


class VOCDefaults:
    """What the VOC names add to the dataset-neutral classes of :mod:`dataset`: images ``<root>/JPEGImages/<id>.jpg``
    unless ``image_path`` is given, VOC's 21 label values checked unless ``num_labels`` is given, and where VOC's
    image-level labels come from when an id has none."""

    root: Path
    image_path: Callable[[str], Path] | None
    default_num_labels = NUM_LABELS

    def image_file(self, img_id: str) -> Path:
        return self.image_path(img_id) if self.image_path else image_path(self.root, img_id)

    def missing_label_message(self, img_id: str) -> str:
        return missing_labels_message([img_id], self.root, None)


class VOC12ImageDataset(VOCDefaults, ImageDataset):
    """:class:`dataset.torch_datasets.ImageDataset` with :class:`VOCDefaults` (the original's name)."""


class VOC12ClassificationDataset(VOCDefaults, ClassificationDataset):
    """:class:`dataset.torch_datasets.ClassificationDataset` with :class:`VOCDefaults` (the original's name)."""


class VOC12SegmentationDataset(VOCDefaults, SegmentationDataset):
    """:class:`dataset.torch_datasets.SegmentationDataset` with :class:`VOCDefaults` (the original's name)."""


class VOC12AffinityDataset(VOCDefaults, AffinityDataset):
    """:class:`dataset.torch_datasets.AffinityDataset` with :class:`VOCDefaults` (the original's name)."""
