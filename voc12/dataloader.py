"""PASCAL VOC 2012 data layer (SPEC §2): lists, image-level labels and the datasets of every step.

Ids are strings everywhere (``"2007_000032"``). Nothing is read at import time: :func:`open_voc` validates the
user's folder, builds (or reads from its cache) the split lists and class labels, and returns a :class:`VOCIndex`.
"""
from __future__ import annotations

import json
import logging
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from misc import imutils
from misc.imutils import VOC_CLASS_NAMES, TorchvisionNormalize

log = logging.getLogger(__name__)

NUM_CLASSES = 20
SPLITS = ("train", "val", "train_aug", "test", "trainval")
CACHE_VERSION = 1

GET_VOC = (
    "Get PASCAL VOC 2012 (VOCtrainval_11-May-2012.tar) from the official site and pass its VOC2012 folder "
    "(the one holding JPEGImages/) as --voc12_root. For train_aug also unpack SBD's SegmentationClassAug/ into it."
)


class VOCLayoutError(FileNotFoundError):
    """The VOC folder lacks something a step needs; the message lists all of it and how to get it."""


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
    """Multi-hot (20,) float32 from the class indices of a label PNG (0 and 255 ignored)."""
    vals = np.unique(np.asarray(Image.open(png_path)))
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

    def ids(self, list_arg: str) -> list[str]:
        """Ids for a ``--*_list`` value: an existing list file, or a split name (``train_aug`` or ``voc12/train_aug.txt``)."""
        if os.path.isfile(list_arg):
            return read_id_list(list_arg)
        name = Path(list_arg).stem
        if name not in self.splits:
            available = ", ".join(sorted(self.splits))
            raise ValueError(
                f"list {list_arg!r} is neither a file nor a known split of {self.root} (available: {available})"
            )
        return list(self.splits[name])

    def label(self, img_id: str) -> np.ndarray:
        try:
            return self.labels[img_id]
        except KeyError:
            raise KeyError(
                f"no class label for image id {img_id!r}: it has neither Annotations/{img_id}.xml nor a mask in "
                f"{self.root}/SegmentationClassAug or SegmentationClass"
            ) from None

    def image_path(self, img_id: str) -> Path:
        return self.root / "JPEGImages" / f"{img_id}.jpg"


def _build_index(root: Path) -> tuple[dict[str, list[str]], dict[str, np.ndarray]]:
    seg_sets = root / "ImageSets" / "Segmentation"
    splits: dict[str, list[str]] = {}
    for name in ("train", "val", "test", "trainval"):
        if (seg_sets / f"{name}.txt").is_file():
            splits[name] = read_id_list(seg_sets / f"{name}.txt")
    aug_dir = root / "SegmentationClassAug"
    if aug_dir.is_dir():
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


def open_voc(root: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> VOCIndex:
    """Validate ``root`` and return its lists and labels, cached as JSON in ``cache_dir`` (rebuilt when missing)."""
    root = check_voc_root(root).resolve()
    cache = Path(cache_dir) / "voc12_index.json" if cache_dir else None
    if cache is not None and cache.is_file():
        try:
            data = json.loads(cache.read_text())
            if data.get("root") == str(root) and data.get("version") == CACHE_VERSION:
                labels = {k: np.asarray(v, np.float32) for k, v in data["labels"].items()}
                return VOCIndex(root, data["splits"], labels)
        except (json.JSONDecodeError, KeyError):
            log.warning("ignoring unreadable label cache %s; rebuilding it", cache)
    splits, labels = _build_index(root)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "version": CACHE_VERSION,
            "root": str(root),
            "splits": splits,
            "labels": {k: v.astype(int).tolist() for k, v in labels.items()},
        }
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload))
        os.replace(tmp, cache)
        log.info("built VOC lists/labels for %s: %s", root, {k: len(v) for k, v in splits.items()})
    return VOCIndex(root, splits, labels)


def read_image(path: str | os.PathLike, img_id: str | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3); grayscale/CMYK/RGBA converted. Errors name the id and the file."""
    path = Path(path)
    if not path.is_file():
        who = f"image id {img_id!r}: " if img_id else ""
        raise FileNotFoundError(f"{who}no image at {path}")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as exc:
        raise OSError(f"cannot read image {path}: {exc}") from exc


def read_label_png(path: str | os.PathLike) -> np.ndarray:
    """Class-index map (H, W) uint8 of a (palette) PNG: the indices, never the RGB colours."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no label PNG at {path}")
    with Image.open(path) as im:
        if im.mode not in ("P", "L", "I", "I;16"):
            raise ValueError(f"{path}: expected a palette or single-channel PNG of class indices, got mode {im.mode}")
        return np.asarray(im).astype(np.uint8)


def multiscale_flip_inputs(img: np.ndarray, scales: Sequence[float], normalize=None) -> list[np.ndarray]:
    """For each scale: bicubic rescale (none at 1.0), normalise, CHW, stacked with its W-flip -> (2, 3, Hs, Ws)."""
    normalize = normalize or TorchvisionNormalize()
    out = []
    for s in scales:
        im = img if s == 1.0 else imutils.pil_rescale(img, s, 3)
        chw = imutils.hwc_to_chw(normalize(im))
        out.append(np.stack([chw, np.flip(chw, -1)], axis=0).copy())
    return out


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
    ) -> None:
        self.ids = list(ids)
        self.root = Path(voc12_root)
        self.resize_long, self.rescale = resize_long, rescale
        self.img_normal, self.hor_flip = img_normal, hor_flip
        self.crop_size, self.crop_method, self.to_torch = crop_size, crop_method, to_torch

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, idx: int) -> tuple[str, np.ndarray]:
        img_id = self.ids[idx]
        return img_id, read_image(self.root / "JPEGImages" / f"{img_id}.jpg", img_id)

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
    """Adds ``label``: the (20,) multi-hot float tensor."""

    def __init__(self, ids: Sequence[str], voc12_root, labels: dict[str, np.ndarray], **kw) -> None:
        super().__init__(ids, voc12_root, **kw)
        self.labels = labels

    def __getitem__(self, idx: int) -> dict:
        out = super().__getitem__(idx)
        out["label"] = torch.from_numpy(np.asarray(self.labels[out["name"]], np.float32))
        return out


class VOC12ClassificationDatasetMSF(VOC12ClassificationDataset):
    """Multi-scale + flip: ``img`` is a list over scales of (2, 3, Hs, Ws) arrays; ``size`` is (H, W)."""

    def __init__(self, ids, voc12_root, labels, scales: Sequence[float] = (1.0,), img_normal=TorchvisionNormalize()):
        super().__init__(ids, voc12_root, labels, img_normal=img_normal)
        self.scales = tuple(scales)

    def __getitem__(self, idx: int) -> dict:
        img_id, img = self.load(idx)
        return {
            "name": img_id,
            "img": multiscale_flip_inputs(img, self.scales, self.img_normal),
            "size": (img.shape[0], img.shape[1]),
            "label": torch.from_numpy(np.asarray(self.labels[img_id], np.float32)),
        }


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
    ) -> None:
        self.ids, self.label_dir, self.root = list(ids), Path(label_dir), Path(voc12_root)
        self.crop_size, self.rescale, self.img_normal = crop_size, rescale, img_normal
        self.hor_flip, self.crop_method = hor_flip, crop_method

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, idx: int) -> dict:
        img_id = self.ids[idx]
        img = read_image(self.root / "JPEGImages" / f"{img_id}.jpg", img_id)
        label = read_label_png(self.label_dir / f"{img_id}.png")
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
    """Segmentation crop + the label reduced ×0.25 (PIL nearest) → affinity targets (bg_pos, fg_pos, neg), (D, N)."""

    def __init__(self, ids, label_dir, crop_size, voc12_root, indices_from, indices_to, **kw) -> None:
        super().__init__(ids, label_dir, crop_size, voc12_root, **kw)
        self.indices_from, self.indices_to = indices_from, indices_to

    def __getitem__(self, idx: int) -> dict:
        from misc.indexing import affinity_labels_from_indices

        out = super().__getitem__(idx)
        reduced = imutils.pil_rescale(out["label"], 0.25, 0)
        bg_pos, fg_pos, neg = affinity_labels_from_indices(reduced, self.indices_from, self.indices_to)
        out["aff_bg_pos_label"], out["aff_fg_pos_label"], out["aff_neg_label"] = bg_pos, fg_pos, neg
        return out
