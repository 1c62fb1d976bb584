"""The torch datasets of the training steps, for every segmentation dataset (docs/data_voc.md#datasets).

Items are dicts: ``name`` (id str), ``img`` (3, H, W) float32 normalised (HWC without ``to_torch``), and per class
``label`` (C,) multi-hot, ``label`` (H, W) uint8 or ``label_reduced`` (h, w) uint8. Random draws use Python's
``random`` module, as the original. ``image_path(id)`` is the dataset's image of an id (its index's
``image_path``); a subclass may give a default through :meth:`ImageDataset.image_file` (the VOC names do).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from dataset.images import ImageFiles, check_same_size, read_image
from misc.core.errors import DataError
from misc.core.labels import IGNORE_INDEX
from misc.method import imutils
from misc.core.labels import read_label_png
from misc.method.imutils import TorchvisionNormalize


class ImageDataset(ImageFiles, Dataset):
    """Image only: resize_long → random_scale → normalise → flip → crop (fill 0 after normalising) → CHW."""

    def __init__(
        self,
        ids: Sequence[str],
        root: str | os.PathLike,
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
        self.root = Path(root)
        self.image_path = image_path
        self.resize_long, self.rescale = resize_long, rescale
        self.img_normal, self.hor_flip = img_normal, hor_flip
        self.crop_size, self.crop_method, self.to_torch = crop_size, crop_method, to_torch

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, idx: int) -> tuple[str, np.ndarray]:
        """(id, (H, W, 3) uint8 RGB image) of item ``idx``."""
        img_id = self.ids[idx]
        return img_id, read_image(self.image_file(img_id), img_id)

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


class ClassificationDataset(ImageDataset):
    """Adds ``label``: the (C,) multi-hot float tensor (C = 20 on VOC, 80 on COCO)."""

    def __init__(self, ids: Sequence[str], root: str | os.PathLike, labels: Mapping[str, np.ndarray], **kw) -> None:
        super().__init__(ids, root, **kw)
        self.labels = labels

    def __getitem__(self, idx: int) -> dict:
        out = super().__getitem__(idx)
        out["label"] = torch.from_numpy(np.asarray(self.label_of(out["name"]), np.float32))
        return out

    def label_of(self, img_id: str) -> np.ndarray:
        try:
            return self.labels[img_id]
        except KeyError:
            raise DataError(self.missing_label_message(img_id)) from None

    def missing_label_message(self, img_id: str) -> str:
        return (f"image id {img_id!r} has no image-level label among the {len(self.labels)} labels of {self.root}; "
                "remove it from the list")


class SegmentationDataset(ImageFiles, Dataset):
    """Image + label PNG: joint random_scale → normalise → joint flip → joint crop (fills 0 / 255) → CHW.

    ``num_labels``: the label values besides 255 (background + classes), checked on every PNG; None: not checked
    (unless the class gives a default)."""

    default_num_labels: int | None = None

    def __init__(
        self,
        ids: Sequence[str],
        label_dir: str | os.PathLike,
        crop_size: int,
        root: str | os.PathLike,
        rescale: tuple[float, float] | None = None,
        img_normal=TorchvisionNormalize(),
        hor_flip: bool = False,
        crop_method: str = "random",
        image_path: Callable[[str], Path] | None = None,
        num_labels: int | None = None,
    ) -> None:
        self.ids, self.label_dir, self.root = list(ids), Path(label_dir), Path(root)
        self.crop_size, self.rescale, self.img_normal = crop_size, rescale, img_normal
        self.hor_flip, self.crop_method = hor_flip, crop_method
        self.image_path = image_path
        self.num_labels = num_labels if num_labels is not None else self.default_num_labels

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, idx: int) -> dict:
        img_id = self.ids[idx]
        img_path = self.image_file(img_id)
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
            img, label = imutils.random_crop((img, label), self.crop_size, (0, IGNORE_INDEX))
        else:
            img = imutils.top_left_crop(img, self.crop_size, 0)
            label = imutils.top_left_crop(label, self.crop_size, IGNORE_INDEX)
        return {"name": img_id, "img": imutils.hwc_to_chw(img), "label": np.ascontiguousarray(label)}


class AffinityDataset(SegmentationDataset):
    """Segmentation crop + ``label_reduced``: the label reduced ×0.25 (PIL nearest), (h, w) uint8.

    train_irn turns it into the affinity targets on the device (:func:`misc.method.indexing.affinity_labels_batch`).
    """

    def __getitem__(self, idx: int) -> dict:
        out = super().__getitem__(idx)
        out["label_reduced"] = torch.from_numpy(np.array(imutils.pil_rescale(out.pop("label"), 0.25, 0)))
        return out
