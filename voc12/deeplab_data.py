"""The DeepLab datasets (:mod:`dataset.deeplab_data`) under their earlier names, with VOC's defaults: images
``<root>/JPEGImages/<id>.jpg`` unless ``image_path`` is given, VOC's 21 label values checked unless ``num_labels``
is given."""
from __future__ import annotations

import os

import numpy as np

from dataset import deeplab_data
from dataset.deeplab_data import (CROP_SIZE, MEAN_BGR, TRAIN_SCALES, pad_image_label_with_mean_and_ignore,
                                  scale_image_label, subtract_mean)
from dataset.images import read_image_bgr
from voc12.dataloader import VOCDefaults
from voc12.facts import NUM_LABELS

__all__ = ["CROP_SIZE", "MEAN_BGR", "TRAIN_SCALES", "DeepLabDataset", "deeplab_eval_dataset", "deeplab_train_dataset",
           "pad_image_label_with_mean_and_ignore", "read_image_bgr", "read_label", "scale_image_label", "subtract_mean"]


def read_label(path: str | os.PathLike, num_labels: int | None = NUM_LABELS) -> np.ndarray:
    """:func:`dataset.deeplab_data.read_label` checking VOC's values (0..20 or 255) unless told otherwise."""
    return deeplab_data.read_label(path, num_labels)


class DeepLabDataset(VOCDefaults, deeplab_data.DeepLabDataset):
    """:class:`dataset.deeplab_data.DeepLabDataset` with :class:`voc12.dataloader.VOCDefaults`."""


deeplab_train_dataset = DeepLabDataset.for_training
deeplab_eval_dataset = DeepLabDataset.for_evaluation
