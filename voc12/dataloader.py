"""PASCAL VOC 2012 data layer (docs/data_voc.md): lists, image-level labels and the datasets of every step.

Ids are strings everywhere (``"2007_000032"``). Nothing is read at import time: :func:`open_voc` validates the
user's folder, builds (or reads from its cache) the split lists and class labels, and returns a :class:`VOCIndex`.
"""
from __future__ import annotations

import json
import logging
import os
import stat
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from misc.method import imutils
from misc.core.errors import DataError, MissingDataFileError, UnreadableFileError, UserError
from misc.core.fingerprint import index_cache_mismatch
from misc.method.imutils import VOC_CLASS_NAMES, TorchvisionNormalize, multiscale_flip_inputs, read_label_png  # noqa: F401
from misc.method.imutils import voc_palette
from misc.core.io import atomic_write
from voc12.layout import class_gt_path, image_path, object_gt_path  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

NUM_CLASSES = 20
NUM_LABELS = NUM_CLASSES + 1  # values of a label PNG: 0 background, 1..20 the classes (and 255 ignore)
IGNORE = 255
SPLITS = ("train", "val", "train_aug", "test", "trainval")
CACHE_VERSION = 2  # 2: the cache carries the signature of the files it was built from (``source``)
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


def labels_from_xml(xml_path: Path) -> np.ndarray:
    """Multi-hot (20,) float32 over every ``<name>`` in VOC_CLASS_NAMES (difficult/truncated included)."""
    vec = np.zeros(NUM_CLASSES, np.float32)
    for el in ET.parse(xml_path).getroot().iter("name"):
        name = (el.text or "").strip()
        if name in VOC_CLASS_NAMES:
            vec[VOC_CLASS_NAMES.index(name)] = 1.0
    return vec


def labels_from_mask(png_path: Path) -> np.ndarray:
    """Multi-hot (20,) float32 from the class indices of a label PNG (0 and 255 ignored); the PNG is checked as
    :func:`read_label_png` does (mode, values 0..20 or 255)."""
    vals = np.unique(read_label_png(png_path))
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
    class_names = VOC_CLASS_NAMES

    def config_entry(self) -> dict:
        """What of the dataset shapes a step's outputs (an entry of their fingerprints)."""
        return {"voc12_root": str(self.root)}

    def palette(self) -> list[int]:
        return voc_palette()

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
        if labels:
            unlabelled = [i for i in ids if i not in self.labels]
            if unlabelled:
                raise DataError(missing_labels_message(unlabelled, self.root, list_arg))
        if images:
            absent = [i for i in ids if not self.image_path(i).is_file()]
            if absent:
                shown = ", ".join(str(self.image_path(i)) for i in absent[:5])
                more = f" and {len(absent) - 5} more" if len(absent) > 5 else ""
                raise MissingDataFileError(
                    f"{len(absent)} image(s) listed in {list_arg} do not exist: {shown}{more}. Put the JPEGs of "
                    f"those ids into {self.root}/JPEGImages/ or remove the ids from the list."
                )
        return list(ids)

    def image_path(self, img_id: str) -> Path:
        return image_path(self.root, img_id)

    def class_gt_path(self, img_id: str) -> Path:
        """The semantic ground truth ``SegmentationClass/<id>.png``."""
        return class_gt_path(self.root, img_id)

    def has_class_gt(self, img_id: str) -> bool:
        return class_gt_path(self.root, img_id).is_file()

    def read_class_gt(self, img_id: str) -> np.ndarray:
        """(H, W) uint8 semantic ground truth, values 0..20 or 255 (checked, errors name the file)."""
        return read_label_png(class_gt_path(self.root, img_id), NUM_LABELS)

    def gt_instances(self, img_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(masks (R, H, W) bool, labels (R,) int32 0-based) from SegmentationObject + SegmentationClass."""
        from misc.eval.instance_ap import read_voc_instances

        return read_voc_instances(object_gt_path(self.root, img_id), class_gt_path(self.root, img_id))

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


def _build_index(root: Path) -> tuple[dict[str, list[str]], dict[str, np.ndarray]]:
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
    ann_dir = root / "Annotations"
    all_ids = sorted({i for k, v in splits.items() if k != "test" for i in v})
    for img_id in all_ids:
        xml = ann_dir / f"{img_id}.xml"
        if xml.is_file():
            labels[img_id] = labels_from_xml(xml)
            continue
        for folder in ("SegmentationClassAug", "SegmentationClass"):
            png = root / folder / f"{img_id}.png"
            if png.is_file():
                labels[img_id] = labels_from_mask(png)
                break
    return splits, labels


def _source_signature(root: Path) -> dict:
    """Cheap fingerprint of what :func:`_build_index` reads (JSON-native, so it compares equal after a round trip).

    Each ``ImageSets/Segmentation/*.txt``: [size, mtime_ns]; each of :data:`INDEX_FOLDERS`: ``None`` when absent,
    else [mtime_ns, number of entries]. Files edited in place inside those folders are not noticed (delete the
    cache then); files added, removed or renamed are.
    """
    lists: dict[str, list[int]] = {}
    with os.scandir(root / "ImageSets" / "Segmentation") as it:
        for entry in it:
            if entry.name.endswith(".txt") and entry.is_file():
                st = entry.stat()
                lists[entry.name] = [st.st_size, st.st_mtime_ns]
    folders: dict[str, list[int] | None] = {}
    for name in INDEX_FOLDERS:
        try:
            st = os.stat(root / name)
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(root / name)
            with os.scandir(root / name) as it:
                folders[name] = [st.st_mtime_ns, sum(1 for _ in it)]
        except OSError:
            folders[name] = None
    return {"lists": dict(sorted(lists.items())), "folders": folders}


def _signature_changes(old: object, new: dict) -> str:
    """Human-readable differences between two :func:`_source_signature` values."""
    if not isinstance(old, dict) or not isinstance(old.get("lists"), dict) or not isinstance(old.get("folders"), dict):
        return "it has no readable source signature"
    changes = []
    old_lists, new_lists = old["lists"], new["lists"]
    for name in sorted(set(old_lists) | set(new_lists)):
        a, b = old_lists.get(name), new_lists.get(name)
        what = "appeared" if a is None else "disappeared" if b is None else "changed" if a != b else None
        if what:
            changes.append(f"ImageSets/Segmentation/{name} {what}")
    for name in INDEX_FOLDERS:
        a, b = old["folders"].get(name), new["folders"].get(name)
        if a == b:
            continue
        if a is None or b is None:
            changes.append(f"{name}/ {'appeared' if a is None else 'disappeared'}")
        elif isinstance(a, list) and len(a) == 2 and a[1] != b[1]:
            changes.append(f"{name}/ changed ({a[1]} -> {b[1]} entries)")
        else:
            changes.append(f"{name}/ changed")
    return ", ".join(changes) or "its source signature differs"


def _read_cache(cache: Path, root: Path, signature: dict) -> tuple[VOCIndex | None, str]:
    """The cached index when it is current, else ``(None, why it is not)``."""
    try:
        data = json.loads(cache.read_text())
        why = index_cache_mismatch(data, CACHE_VERSION, root, signature, _signature_changes)
        if why:
            return None, why
        labels = {k: np.asarray(v, np.float32) for k, v in data["labels"].items()}
        return VOCIndex(root, {k: list(v) for k, v in data["splits"].items()}, labels), ""
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:  # JSON / Unicode errors are ValueErrors
        log.warning("ignoring unreadable VOC index cache %s (%s); rebuilding it", cache, e)
        return None, "it is unreadable"


def open_voc(root: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> VOCIndex:
    """Validate ``root`` and return its lists and labels, cached as JSON in ``cache_dir``.

    The cache records a signature of the files it was built from (:func:`_source_signature`) and is rebuilt,
    with an INFO line saying why, when the signature, the root or the cache format differ. It is written
    atomically (unique temp file + rename), so concurrent callers (e.g. torchrun ranks) never see a partial file.
    """
    root = check_voc_root(root).resolve()
    cache = Path(cache_dir) / "voc12_index.json" if cache_dir else None
    signature = _source_signature(root) if cache is not None else {}  # taken before building: changes made
    if cache is not None and cache.is_file():  # while building show up as stale next time
        index, why = _read_cache(cache, root, signature)
        if index is not None:
            return index
        log.info("rebuilding VOC index cache %s: %s", cache, why)
    splits, labels = _build_index(root)
    if cache is not None:
        payload = {
            "version": CACHE_VERSION,
            "root": str(root),
            "source": signature,
            "splits": splits,
            "labels": {k: v.astype(int).tolist() for k, v in labels.items()},
        }
        text = json.dumps(payload)
        atomic_write(cache, lambda tmp: Path(tmp).write_text(text))
        log.info("built VOC lists/labels for %s: %s", root, {k: len(v) for k, v in splits.items()})
    return VOCIndex(root, splits, labels)


def read_image(path: str | os.PathLike, img_id: str | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3); grayscale/CMYK/RGBA converted. Errors name the id and the file."""
    path = Path(path)
    who = f"image id {img_id!r}: " if img_id else ""
    if not path.is_file():
        raise MissingDataFileError(f"{who}no image at {path}; put the JPEG there or remove the id from the list")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as exc:
        raise UnreadableFileError(f"{who}cannot read image {path} ({type(exc).__name__}: {exc}); replace the file "
                                  "with an intact copy or remove the id from the list") from exc


def check_same_size(img_id: str, label: np.ndarray, label_path: Path, img_shape: Sequence[int], img_path: Path,
                    what: str = "mask") -> None:
    """:class:`~misc.core.errors.DataError` naming the id and both files when ``label`` is not ``img_shape[:2]``."""
    if tuple(label.shape[:2]) != tuple(img_shape[:2]):
        raise DataError(
            f"image id {img_id!r}: the {what} {label_path} is {label.shape[0]}x{label.shape[1]} (HxW) but the image "
            f"{img_path} is {img_shape[0]}x{img_shape[1]}; a {what} must have its image's size (is it the mask of "
            f"another image, or resized?)"
        )


class VOC12ImageDataset(Dataset):
    """Image only: resize_long → random_scale → normalise → flip → crop (fill 0 after normalising) → CHW."""

    def __init__(
        self,
        ids: Sequence[str],
        voc12_root: str | os.PathLike,
        resize_long: tuple[int, int] | None = None,
        rescale: tuple[float, float] | None = None,
        img_normal=TorchvisionNormalize(),
        hor_flip: bool = False,
        crop_size: int | None = None,
        crop_method: str | None = None,
        to_torch: bool = True,
        image_path: Callable[[str], Path] | None = None,
    ) -> None:
        self.ids = list(ids)
        self.root = Path(voc12_root)
        self.image_path = image_path  # the dataset's image of an id (COCO); None: <root>/JPEGImages/<id>.jpg
        self.resize_long, self.rescale = resize_long, rescale
        self.img_normal, self.hor_flip = img_normal, hor_flip
        self.crop_size, self.crop_method, self.to_torch = crop_size, crop_method, to_torch

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, idx: int) -> tuple[str, np.ndarray]:
        img_id = self.ids[idx]
        path = self.image_path(img_id) if self.image_path else self.root / "JPEGImages" / f"{img_id}.jpg"
        return img_id, read_image(path, img_id)

    def transform(self, img: np.ndarray) -> np.ndarray:
        if self.resize_long:
            img = imutils.random_resize_long(img, *self.resize_long)
        if self.rescale:
            img = imutils.random_scale(img, self.rescale, 3)
        if self.img_normal:
            img = self.img_normal(img)
        if self.hor_flip:
            img = imutils.random_lr_flip(img)
        if self.crop_size:
            if self.crop_method == "random":
                img = imutils.random_crop(img, self.crop_size, 0)
            else:
                img = imutils.top_left_crop(img, self.crop_size, 0)
        if self.to_torch:
            img = imutils.hwc_to_chw(img)
        return img

    def __getitem__(self, idx: int) -> dict:
        img_id, img = self.load(idx)
        return {"name": img_id, "img": self.transform(img)}


class VOC12ClassificationDataset(VOC12ImageDataset):
    """Adds ``label``: the (C,) multi-hot float tensor (C = 20 on VOC, 80 on COCO)."""

    def __init__(self, ids: Sequence[str], voc12_root, labels: dict[str, np.ndarray], **kw) -> None:
        super().__init__(ids, voc12_root, **kw)
        self.labels = labels

    def __getitem__(self, idx: int) -> dict:
        out = super().__getitem__(idx)
        out["label"] = torch.from_numpy(np.asarray(self.label_of(out["name"]), np.float32))
        return out

    def label_of(self, img_id: str) -> np.ndarray:
        try:
            return self.labels[img_id]
        except KeyError:
            raise DataError(missing_labels_message([img_id], self.root, None)) from None


class VOC12SegmentationDataset(Dataset):
    """Image + label PNG: joint random_scale → normalise → joint flip → joint crop (fills 0 / 255) → CHW."""

    def __init__(
        self,
        ids: Sequence[str],
        label_dir: str | os.PathLike,
        crop_size: int,
        voc12_root: str | os.PathLike,
        rescale: tuple[float, float] | None = None,
        img_normal=TorchvisionNormalize(),
        hor_flip: bool = False,
        crop_method: str = "random",
        image_path: Callable[[str], Path] | None = None,
        num_labels: int = NUM_LABELS,
    ) -> None:
        self.ids, self.label_dir, self.root = list(ids), Path(label_dir), Path(voc12_root)
        self.crop_size, self.rescale, self.img_normal = crop_size, rescale, img_normal
        self.hor_flip, self.crop_method = hor_flip, crop_method
        self.image_path, self.num_labels = image_path, num_labels  # COCO: its image paths and 81 labels

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, idx: int) -> dict:
        img_id = self.ids[idx]
        img_path = self.image_path(img_id) if self.image_path else self.root / "JPEGImages" / f"{img_id}.jpg"
        label_path = self.label_dir / f"{img_id}.png"
        img = read_image(img_path, img_id)
        label = read_label_png(label_path, self.num_labels)
        check_same_size(img_id, label, label_path, img.shape, img_path)
        if self.rescale:
            img, label = imutils.random_scale((img, label), self.rescale, (3, 0))
        if self.img_normal:
            img = self.img_normal(img)
        if self.hor_flip:
            img, label = imutils.random_lr_flip((img, label))
        if self.crop_method == "random":
            img, label = imutils.random_crop((img, label), self.crop_size, (0, 255))
        else:
            img = imutils.top_left_crop(img, self.crop_size, 0)
            label = imutils.top_left_crop(label, self.crop_size, 255)
        return {"name": img_id, "img": imutils.hwc_to_chw(img), "label": np.ascontiguousarray(label)}


class VOC12AffinityDataset(VOC12SegmentationDataset):
    """Segmentation crop + ``label_reduced``: the label reduced ×0.25 (PIL nearest), (h, w) uint8.

    train_irn turns it into the affinity targets on the device (:func:`misc.method.indexing.affinity_labels_batch`).
    """

    def __getitem__(self, idx: int) -> dict:
        out = super().__getitem__(idx)
        out["label_reduced"] = torch.from_numpy(np.array(imutils.pil_rescale(out.pop("label"), 0.25, 0)))
        return out
