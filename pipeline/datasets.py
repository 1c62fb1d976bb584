"""The one place that gives a step its dataset's facts, for ``--dataset voc``, ``coco`` and ``folder``
(docs/architecture.md).

A step calls :func:`open_dataset` (or :func:`open_for_eval`) and reads everything from the returned index, the same
for every dataset (:class:`DatasetIndex`): the number of classes, their names, the split lists, image-level labels,
the image of an id, its ground truth (class mask, instances), the palette of label PNGs and the dataset's entry of
an output's fingerprint. No step spells 20, 21 or a folder name of VOC. Model builders read the number of classes
from ``args.num_classes``, which ``run_sample.parse_args`` sets from :func:`num_classes_of` before anything runs
(the preflight builds the receiving models before the dataset is opened). The evaluations score the ids of their
list that have ground truth (:func:`scored_ids`): all of them on VOC and COCO, the ones with a mask in a folder.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Protocol, Sequence

import numpy as np

from misc.core.errors import FlagValueError

SEGMENTATION_DATASETS = ("voc", "coco", "folder")
log = logging.getLogger("crt")


class DatasetIndex(Protocol):
    """What :func:`open_dataset` returns (:class:`voc12.dataloader.VOCIndex`, :class:`coco.dataset.COCOIndex`,
    :class:`folder.index.FolderIndex`)."""

    name: str  # "voc" / "coco" / "folder"
    root: Path
    num_classes: int  # foreground classes (20 / 80 / classes.txt's); class index k is label k + 1 in a label PNG
    num_labels: int  # values of a label PNG besides 255: background + the classes (21 / 81 / classes + 1)
    gt_optional: bool  # whether only some images have ground truth (a folder's masks): evaluations score those
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


def _unknown_dataset(dataset: str) -> FlagValueError:
    return FlagValueError(f"--dataset {dataset}: the segmentation steps run on {', '.join(SEGMENTATION_DATASETS)}")


def num_classes_of(dataset: str, folder_root: str | None = None) -> int:
    """Foreground classes of a segmentation dataset (VOC 20, COCO 80, a folder's classes.txt), known before its
    index is built."""
    if dataset == "coco":
        from coco.dataset import NUM_CLASSES

        return NUM_CLASSES
    if dataset == "voc":
        from voc12.dataloader import NUM_CLASSES

        return NUM_CLASSES
    if dataset == "folder":
        from folder.facts import read_class_names
        from folder.layout import check_folder_root

        return len(read_class_names(check_folder_root(folder_root)))
    raise _unknown_dataset(dataset)


def open_dataset(args) -> DatasetIndex:
    """The index of ``--dataset``'s folder (``--voc12_root`` / ``--coco_root`` / ``--folder_root``), its lists
    cached in ``args.list_cache_dir``."""
    if args.dataset == "coco":
        from coco.dataset import open_coco

        return open_coco(args.coco_root, args.list_cache_dir, getattr(args, "coco_mask_dir", None))
    if args.dataset == "voc":
        from voc12.dataloader import open_voc

        return open_voc(args.voc12_root, args.list_cache_dir)
    if args.dataset == "folder":
        from folder.build import open_folder

        return open_folder(args.folder_root, args.list_cache_dir)
    raise _unknown_dataset(args.dataset)


def scored_ids(index: DatasetIndex, ids: Sequence[str], step: str, list_arg: str) -> list[str]:
    """The ids of ``list_arg`` an evaluation scores: all of them, or, where ground truth is optional (a folder),
    the ones with a mask, said in the log (an empty list: nothing to score, said too)."""
    if not index.gt_optional:
        return list(ids)
    kept = [i for i in ids if index.has_class_gt(i)]
    if kept:
        log.info("%s: scored %d of %d images of %s: the ones with a mask", step, len(kept), len(ids), list_arg)
    elif not ids:
        log.info("%s: nothing to score: %s holds no image", step, list_arg)
    else:
        log.info("%s: nothing to score: none of the %d images of %s has a mask in %s", step, len(ids), list_arg,
                 index.gt_folders()[0])
    return kept


def record_nothing_scored(result_dir: str, step: str, list_key: str, list_arg: str, listed: int,
                          inputs: Sequence[str]) -> dict:
    """Record in metrics.json that ``step`` found no image with ground truth among the ``listed`` of ``list_arg``;
    returns the entry."""
    from misc.core.results import update_metrics

    metrics = {list_key: list_arg, "num_images": 0, "num_listed": listed,
               "scored": "nothing: no image of the list has a mask"}
    update_metrics(result_dir, step, metrics, inputs=list(inputs))
    return metrics


def open_for_eval(args, instances: bool = False) -> DatasetIndex:
    """:func:`open_dataset` for a step that reads ground truth: VOC's folder must hold ``SegmentationClass/``
    (and ``SegmentationObject/`` for ``instances``), checked first; COCO builds its ground truth from the
    annotations (or reads a ``--coco_mask_dir`` of ready masks); a folder has masks for some images and no
    instances."""
    if args.dataset == "voc":
        from voc12.dataloader import check_voc_root, open_voc

        need = ("JPEGImages", "ImageSets/Segmentation", "SegmentationClass") + (("SegmentationObject",) if instances
                                                                                else ())
        return open_voc(check_voc_root(args.voc12_root, need), args.list_cache_dir)
    if args.dataset == "folder" and instances:
        raise FlagValueError("--dataset folder has no instance ground truth: eval_ins_seg scores VOC and COCO only; "
                             "switch it off with --eval_ins_seg_pass false")
    return open_dataset(args)


def prepare_shared_state(args, step_names: Sequence[str]) -> DatasetIndex | None:
    """Once, in one process, before any step: the dataset index (or CUB held-out list) every process reads, and
    COCO's label → category mapping next to the outputs; a folder's summary and what its index left out. Returns
    the index of a segmentation dataset."""
    if args.dataset == "cub":
        if {"train_wsol", "eval_wsol"} & set(step_names):
            from cub.dataset import CUBMetadata, load_or_make_heldout
            from misc.core.paths import wsol_heldout_ids

            load_or_make_heldout(CUBMetadata.load(args.cub_root), wsol_heldout_ids(args),
                                 args.wsol_heldout_per_class, leave_train=args.wsol_select_on == "heldout")
    elif step_names:
        index = open_dataset(args)
        if args.dataset == "coco":
            from coco.dataset import write_category_map

            log.info("COCO category mapping written to %s", write_category_map(index, args.result_dir))
        if args.dataset == "folder":
            log.info("%s", index.summary())
            for problem in index.problems():
                log.warning("%s", problem)
        return index
    return None
