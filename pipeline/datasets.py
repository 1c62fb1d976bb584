"""The one place that gives a step its dataset's facts, for ``--dataset voc`` and ``--dataset coco``
(docs/architecture.md).

A step calls :func:`open_dataset` (or :func:`open_for_eval`) and reads everything from the returned index, the same
for both datasets (:class:`DatasetIndex`): the number of classes, their names, the split lists, image-level labels,
the image of an id, its ground truth (class mask, instances), the palette of label PNGs and the dataset's entry of
an output's fingerprint. No step spells 20, 21 or a folder name of VOC. Model builders read the number of classes
from ``args.num_classes``, which ``run_sample.parse_args`` sets from :func:`num_classes_of` before anything runs
(the preflight builds the receiving models before the dataset is opened).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Protocol, Sequence

import numpy as np

from misc.core.errors import FlagValueError

SEGMENTATION_DATASETS = ("voc", "coco")


class DatasetIndex(Protocol):
    """What :func:`open_dataset` returns (:class:`voc12.dataloader.VOCIndex`, :class:`coco.dataset.COCOIndex`)."""

    name: str  # "voc" / "coco"
    root: Path
    num_classes: int  # foreground classes (20 / 80); class index k is label k + 1 in a label PNG
    num_labels: int  # values of a label PNG besides 255: background + the classes (21 / 81)
    class_names: Sequence[str]
    splits: Mapping[str, list[str]]
    labels: Mapping[str, np.ndarray]  # id → (num_classes,) float32 multi-hot

    def ids(self, list_arg: str) -> list[str]: ...

    def label(self, img_id: str, list_arg: str | None = None) -> np.ndarray: ...

    def check_ids(self, ids: Sequence[str], list_arg: str, labels: bool = True, images: bool = True) -> list[str]: ...

    def image_path(self, img_id: str) -> Path: ...

    def class_gt_path(self, img_id: str) -> Path: ...

    def has_class_gt(self, img_id: str) -> bool: ...

    def read_class_gt(self, img_id: str) -> np.ndarray: ...

    def gt_instances(self, img_id: str) -> tuple[np.ndarray, np.ndarray]: ...

    def gt_folders(self) -> list[Path]: ...

    def config_entry(self) -> dict: ...

    def palette(self) -> list[int]: ...


def num_classes_of(dataset: str) -> int:
    """Foreground classes of a segmentation dataset (VOC 20, COCO 80), known before its folder is read."""
    if dataset == "coco":
        from coco.dataset import NUM_CLASSES

        return NUM_CLASSES
    if dataset == "voc":
        from voc12.dataloader import NUM_CLASSES

        return NUM_CLASSES
    raise FlagValueError(f"--dataset {dataset}: the segmentation steps run on {' or '.join(SEGMENTATION_DATASETS)}")


def open_dataset(args) -> DatasetIndex:
    """The index of ``--dataset``'s folder (``--voc12_root`` / ``--coco_root``), its lists cached in
    ``args.list_cache_dir``."""
    if args.dataset == "coco":
        from coco.dataset import open_coco

        return open_coco(args.coco_root, args.list_cache_dir, getattr(args, "coco_mask_dir", None))
    if args.dataset == "voc":
        from voc12.dataloader import open_voc

        return open_voc(args.voc12_root, args.list_cache_dir)
    raise FlagValueError(f"--dataset {args.dataset}: the segmentation steps run on {' or '.join(SEGMENTATION_DATASETS)}")


def open_for_eval(args, instances: bool = False) -> DatasetIndex:
    """:func:`open_dataset` for a step that reads ground truth: VOC's folder must hold ``SegmentationClass/``
    (and ``SegmentationObject/`` for ``instances``), checked first; COCO builds its ground truth from the
    annotations (or reads a ``--coco_mask_dir`` of ready masks)."""
    if args.dataset == "voc":
        from voc12.dataloader import check_voc_root, open_voc

        need = ("JPEGImages", "ImageSets/Segmentation", "SegmentationClass") + (("SegmentationObject",) if instances
                                                                                else ())
        return open_voc(check_voc_root(args.voc12_root, need), args.list_cache_dir)
    return open_dataset(args)


def prepare_shared_state(args, step_names: Sequence[str]) -> DatasetIndex | None:
    """Once, in one process, before any step: the dataset index (or CUB held-out list) every process reads, and
    COCO's label → category mapping next to the outputs. Returns the index of a segmentation dataset."""
    if args.dataset == "cub":
        if {"train_wsol", "eval_wsol"} & set(step_names):
            from cub.dataset import CUBMetadata, load_or_make_heldout
            from misc.core.paths import wsol_heldout_ids

            load_or_make_heldout(CUBMetadata.load(args.cub_root), wsol_heldout_ids(args),
                                 args.wsol_heldout_per_class, leave_train=args.wsol_select_on == "heldout")
    elif step_names:
        index = open_dataset(args)
        if args.dataset == "coco":
            import logging

            from coco.dataset import write_category_map

            logging.getLogger("crt").info("COCO category mapping written to %s",
                                          write_category_map(index, args.result_dir))
        return index
    return None
