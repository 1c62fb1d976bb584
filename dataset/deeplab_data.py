"""Datasets of the DeepLab stage for every segmentation dataset (docs/deeplab.md#data-and-augmentation, deeplab-pytorch
``VOCAug`` / ``_BaseDataset``).

Images are read with OpenCV (BGR) as float32 and centred with the caffe mean (B, G, R) = (104.008, 116.669,
122.675), no std: ``float32(float64(img) - mean)``. Labels are class-index PNGs (palette indices), 255 = ignore.

Train augmentation, in the original's order (python ``random``: choice, randint, randint, random):
1. scale by a random factor from {0.5, 0.75, 1.0, 1.25, 1.5} to ``(int(h*s), int(w*s))``: image cv2 INTER_LINEAR
   (on the float32 image), label PIL NEAREST;
2. pad bottom/right up to ``crop_size``: image with the mean colour (as float32, before the mean subtraction, so
   padded pixels are float32(float32(mean) - mean), |x| < 4e-6, not exactly 0), label with 255;
3. random ``crop_size`` crop; 4. horizontal flip with p = 0.5; then the mean subtraction and HWC → CHW.

Items are dicts: ``name`` (id str), ``img`` (3, H, W) float32 BGR centred, ``label`` (H, W) int64 when a label
folder is given.
"""
from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from torch.utils.data import Dataset

from dataset.images import ImageFiles, check_same_size, read_image_bgr
from misc.core.labels import IGNORE_INDEX
from misc.core.labels import read_label_png

log = logging.getLogger(__name__)

MEAN_BGR: tuple[float, float, float] = (104.008, 116.669, 122.675)
TRAIN_SCALES: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5)
CROP_SIZE = 321


def read_label(path: str | os.PathLike, num_labels: int | None = None) -> np.ndarray:
    """Class-index map (H, W) int32 of a label PNG (palette indices, as ``np.asarray(Image.open(p), int32)``);
    the mode and, given ``num_labels``, the values (0..num_labels-1 or 255) are checked."""
    return read_label_png(path, num_labels).astype(np.int32)


def subtract_mean(image_bgr: np.ndarray, mean_bgr: Sequence[float] = MEAN_BGR) -> np.ndarray:
    """``float32(float64(image) - mean)`` (H, W, 3), as the original's in-place ``image -= mean`` on float32."""
    return (np.asarray(image_bgr, dtype=np.float64) - np.asarray(mean_bgr, dtype=np.float64)).astype(np.float32)


def scale_image_label(image: np.ndarray, label: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Resize to ``(int(h*scale), int(w*scale))``: image (H,W,3) float32 cv2 linear, label (H,W) PIL nearest → int64."""
    import cv2
    from PIL import Image

    h, w = label.shape
    h, w = int(h * scale), int(w * scale)
    image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    label = np.asarray(Image.fromarray(label).resize((w, h), resample=Image.NEAREST), dtype=np.int64)
    return image, label


def pad_image_label_with_mean_and_ignore(image: np.ndarray, label: np.ndarray, crop_size: int,
                                         mean_bgr: Sequence[float] = MEAN_BGR,
                                         ignore_label: int = IGNORE_INDEX) -> tuple[np.ndarray, np.ndarray]:
    """Pad bottom/right so both sides are >= ``crop_size``: image with the float32 mean colour, label with 255."""
    h, w = label.shape
    pad_h, pad_w = max(crop_size - h, 0), max(crop_size - w, 0)
    if pad_h == 0 and pad_w == 0:
        return image, label
    padded_img = np.empty((h + pad_h, w + pad_w, 3), dtype=image.dtype)
    padded_img[...] = np.asarray(mean_bgr, dtype=np.float64).astype(image.dtype)
    padded_img[:h, :w] = image
    padded_lab = np.full((h + pad_h, w + pad_w), ignore_label, dtype=label.dtype)
    padded_lab[:h, :w] = label
    return padded_img, padded_lab


class DeepLabDataset(ImageFiles, Dataset):
    """Images ``image_path(id)`` (the dataset's image of an id) + optional labels ``<label_dir>/<id>.png`` with
    values below ``num_labels`` or 255 (``num_labels`` None: not checked, unless the class gives a default).

    ``augment=True`` is the training pipeline of the module docstring (needs ``label_dir``); ``augment=False``
    gives the full image (val/test) with the label when ``label_dir`` is given. ``rng``: a ``random.Random``
    (default: the ``random`` module, which torch's DataLoader seeds per worker).
    """

    default_num_labels: int | None = None

    def __init__(self, ids: Sequence[str], root: str | os.PathLike, label_dir: str | os.PathLike | None = None,
                 *, augment: bool = False, crop_size: int = CROP_SIZE, scales: Sequence[float] = TRAIN_SCALES,
                 flip: bool = True, mean_bgr: Sequence[float] = MEAN_BGR, ignore_label: int = IGNORE_INDEX,
                 rng: random.Random | None = None, image_path: Callable[[str], Path] | None = None,
                 num_labels: int | None = None) -> None:
        if augment and label_dir is None:
            raise ValueError("the DeepLab training dataset needs a label folder (label_dir)")
        self.ids = [str(i) for i in ids]
        self.root = Path(root)
        self.label_dir = Path(label_dir) if label_dir is not None else None
        self.augment, self.crop_size, self.scales, self.flip = augment, int(crop_size), tuple(scales), flip
        self.mean_bgr, self.ignore_label = tuple(float(m) for m in mean_bgr), ignore_label
        self.rng = rng
        self.image_path = image_path
        self.num_labels = num_labels if num_labels is not None else self.default_num_labels

    @classmethod
    def for_training(cls, ids: Sequence[str], root: str | os.PathLike, label_dir: str | os.PathLike,
                     crop_size: int = CROP_SIZE, rng: random.Random | None = None, *,
                     image_path: Callable[[str], Path] | None = None, num_labels: int | None = None) -> DeepLabDataset:
        """Training set (docs/deeplab.md#data-and-augmentation): discrete scales {0.5..1.5}, pad, random
        ``crop_size`` crop, hflip."""
        return cls(ids, root, label_dir, augment=True, crop_size=crop_size, rng=rng, image_path=image_path,
                   num_labels=num_labels)

    @classmethod
    def for_evaluation(cls, ids: Sequence[str], root: str | os.PathLike, label_dir: str | os.PathLike | None = None,
                       *, image_path: Callable[[str], Path] | None = None,
                       num_labels: int | None = None) -> DeepLabDataset:
        """Full images without augmentation (val / test); ``label`` only when ``label_dir`` is given."""
        return cls(ids, root, label_dir, augment=False, image_path=image_path, num_labels=num_labels)

    def __len__(self) -> int:
        return len(self.ids)

    def _random(self):
        return self.rng if self.rng is not None else random

    def augmentation(self, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scale → pad → crop → flip on the raw float32 BGR image (H,W,3) and int label (H,W)."""
        r = self._random()
        image, label = scale_image_label(image, label, r.choice(self.scales))
        image, label = pad_image_label_with_mean_and_ignore(image, label, self.crop_size, self.mean_bgr,
                                                            self.ignore_label)
        h, w = label.shape
        top = r.randint(0, h - self.crop_size)
        left = r.randint(0, w - self.crop_size)
        image = image[top:top + self.crop_size, left:left + self.crop_size]
        label = label[top:top + self.crop_size, left:left + self.crop_size]
        if self.flip and r.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        return image, label

    def __getitem__(self, idx: int) -> dict:
        img_id = self.ids[idx]
        image = read_image_bgr(self.image_file(img_id))
        label = read_label(self.label_dir / f"{img_id}.png", self.num_labels) if self.label_dir is not None else None
        if label is not None:
            check_same_size(img_id, label, self.label_dir / f"{img_id}.png", image.shape, self.image_file(img_id))
        if self.augment:
            image, label = self.augmentation(image, label)
        item = {"name": img_id,
                "img": np.ascontiguousarray(subtract_mean(image, self.mean_bgr).transpose(2, 0, 1))}
        if label is not None:
            item["label"] = np.ascontiguousarray(label, dtype=np.int64)
        return item


deeplab_train_dataset = DeepLabDataset.for_training
deeplab_eval_dataset = DeepLabDataset.for_evaluation
