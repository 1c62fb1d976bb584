"""make_cocoann: the instance pseudo labels of make_ins_seg_labels as COCO JSON, and their COCO ``segm`` AP
(docs/instances.md#coco-json).

For the ids of ``--infer_list`` (the images make_ins_seg_labels labels) it writes, in ``--cocoann_out_dir``:

* ``pseudo_instances_<list>.json`` — COCO annotations (images, categories, RLE masks, area, bbox, iscrowd 0): the
  training file of a Mask R-CNN (Detectron2 ``register_coco_instances``, MMDetection ``CocoDataset``). It holds the
  instances with score > ``--cocoann_min_score`` (default 0: all but the fragments under 1 % of the image, which
  make_ins_seg_labels scores 0);
* ``pseudo_instances_<list>_results.json`` — COCO results: every instance with its score.

When the dataset has instance ground truth for ``--chainer_eval_set`` (VOC: ``SegmentationObject``), it also writes
``gt_instances_<eval set>.json`` and scores the results on those images with pycocotools' COCOeval (segm AP, AP50,
AP75, ...) into ``metrics.json["make_cocoann"]``, beside eval_ins_seg's VOC AP.

The dataset facts (string ids, integer image ids and sizes, categories, ground truth) come from
:func:`dataset_facts`, the one place that dispatches on ``--dataset``.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from misc.eval.coco_json import (annotations_file, categories_from_names, coco_segm_eval, image_ids, instance_results,
                            results_to_annotations, strip_to_result, voc_ground_truth)
from misc.core.errors import DataError, FlagValueError, MissingDataFileError, UnreadableFileError
from misc.core.outputs import load_output_npz
from misc.core.paths import cocoann_annotations, cocoann_ground_truth, cocoann_results, ins_seg_path
from misc.core.io import atomic_write
from misc.core.results import update_metrics

log = logging.getLogger(__name__)

Records = tuple[list[dict], list[dict], dict[int, int]]  # (images, categories, label → category id)


@dataclass(frozen=True)
class DatasetFacts:
    """What the COCO export needs to know about a dataset.

    ``ids(list_arg)``: the string ids of a list flag's value; ``records(ids)``: (image records ``{id, file_name,
    width, height}`` in the order of ``ids``, categories ``{id, name, supercategory}``, {0-based class label of
    make_ins_seg_labels: category id}); ``ground_truth(ids, images, categories)``: the instance ground truth of
    ``ids`` as a COCO annotations dict, or None when the dataset has none.
    """

    ids: Callable[[str], list[str]]
    records: Callable[[Sequence[str]], Records]
    ground_truth: Callable[[Sequence[str], list[dict], list[dict]], dict | None]


def dataset_facts(args) -> DatasetFacts:
    """The dataset facts of ``--dataset`` (the one dispatch on it in this step; add a dataset here)."""
    if args.dataset == "voc":
        return _voc_facts(args)
    if args.dataset == "coco":
        return _coco_facts(args)
    raise FlagValueError(f"--dataset {args.dataset}: make_cocoann knows the datasets voc and coco; switch it off with "
                         "--make_cocoann_pass false")


def dataset_records(args, ids: Sequence[str]) -> Records:
    """(images, categories, label_to_category_id) of ``ids`` in ``--dataset`` (see :class:`DatasetFacts`)."""
    return dataset_facts(args).records(ids)


# ------------------------------------------------------------------------------------------------------------ VOC
def _voc_facts(args) -> DatasetFacts:
    from voc12.facts import CLASS_NAMES as VOC_CLASS_NAMES
    from voc12.dataloader import check_voc_root, class_gt_path, object_gt_path, open_voc

    root = check_voc_root(args.voc12_root)
    index = open_voc(root, args.list_cache_dir)

    def records(ids: Sequence[str]) -> Records:
        """Integer ids by :func:`misc.eval.coco_json.voc_image_id` ("2007_000032" → 2007000032); sizes from the JPEG
        headers; categories 1..20 = VOC's class indices, so label c (0-based) → category c + 1."""
        numbers = image_ids(ids)
        images = []
        for i in ids:
            width, height = _image_size(index.image_path(i), i)
            images.append({"id": numbers[i], "file_name": f"{i}.jpg", "width": width, "height": height})
        categories = categories_from_names(VOC_CLASS_NAMES)
        return images, categories, {c: c + 1 for c in range(len(VOC_CLASS_NAMES))}

    def ground_truth(ids: Sequence[str], images: list[dict], categories: list[dict]) -> dict | None:
        if not (root / "SegmentationObject").is_dir():
            log.warning("make_cocoann: %s has no SegmentationObject folder: no instance ground truth, no COCO "
                        "evaluation", root)
            return None
        obj = [object_gt_path(root, i) for i in ids]
        cls = [class_gt_path(root, i) for i in ids]
        missing = [i for i, o, c in zip(ids, obj, cls) if not (o.is_file() and c.is_file())]
        if missing:
            raise MissingDataFileError(
                f"make_cocoann: {len(missing)} id(s) of --chainer_eval_set {args.chainer_eval_set} have no "
                f"SegmentationObject + SegmentationClass PNG in {root} (e.g. {missing[0]!r}); evaluate on a list "
                "with instance ground truth (VOC: train or val)")
        return voc_ground_truth(images, obj, cls, categories, description=f"VOC instances of {args.chainer_eval_set}")

    return DatasetFacts(ids=index.ids, records=records, ground_truth=ground_truth)


# ----------------------------------------------------------------------------------------------------------- COCO
def _coco_facts(args) -> DatasetFacts:
    from coco.dataset import open_coco

    index = open_coco(args.coco_root, args.list_cache_dir, getattr(args, "coco_mask_dir", None))

    def records(ids: Sequence[str]) -> Records:
        """The official image ids and sizes (from the annotation files) and the official category ids: label c
        (0-based) → the id of contiguous category c + 1."""
        to_official = index.label_to_category_id()
        return index.image_records(ids), index.category_records(), {c - 1: i for c, i in to_official.items()}

    def ground_truth(ids: Sequence[str], images: list[dict], categories: list[dict]) -> dict | None:
        """The official instance annotations of ``ids`` as they are (crowd regions stay crowd for COCOeval)."""
        anns = []
        for img_id, im in zip(ids, images, strict=True):
            for a in index.annotations(img_id):
                anns.append({"id": int(a["id"]), "image_id": int(im["id"]), "category_id": int(a["category_id"]),
                             "segmentation": a["segmentation"], "area": float(a["area"]), "bbox": list(a["bbox"]),
                             "iscrowd": int(a.get("iscrowd", 0))})
        return annotations_file(images, categories, anns, description=f"COCO instances of {args.chainer_eval_set}")

    return DatasetFacts(ids=index.ids, records=records, ground_truth=ground_truth)


def _image_size(path: Path, img_id: str) -> tuple[int, int]:
    """(width, height) from the image header."""
    from PIL import Image

    if not path.is_file():
        raise MissingDataFileError(f"image id {img_id!r}: no image at {path}; put the JPEG there or remove the id "
                                   "from the list")
    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except Exception as exc:
        raise UnreadableFileError(f"image id {img_id!r}: cannot read image {path} ({type(exc).__name__}: {exc})") \
            from exc


# ------------------------------------------------------------------------------------------------------------ step
def write_json_compact(path: str | Path, data: Any) -> None:
    """Atomic JSON without indentation (the files hold one RLE string per instance; COCO-sized files stay small);
    NaN is refused."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def export_results(args, ids: Sequence[str], images: Sequence[dict],
                   label_to_category_id: dict[int, int]) -> list[dict]:
    """Read the instance labels of ``ids`` one image at a time and RLE-encode them: result dicts (with area and
    bbox) of every instance, in id order. A missing output or a mask of another size than the image → UserError."""
    folder = Path(args.ins_seg_out_dir)
    missing = [i for i in ids if not ins_seg_path(folder, i).is_file()]
    if missing:
        raise MissingDataFileError(
            f"make_cocoann: {len(missing)} instance label file(s) missing in {folder} (e.g. "
            f"{ins_seg_path(folder, missing[0])}); run make_ins_seg_labels (--make_ins_seg_pass true) on --infer_list "
            f"{args.infer_list}")
    results: list[dict] = []
    for img_id, im in zip(ids, images, strict=True):
        path = ins_seg_path(folder, img_id)
        det = load_output_npz(path, "make_ins_seg_labels", ("score", "mask", "class"))
        if det["mask"].ndim != 3 or det["mask"].shape[1:] != (im["height"], im["width"]):
            raise DataError(f"{path}: masks of shape {det['mask'].shape}, the image {img_id!r} is "
                            f"{im['height']}x{im['width']} (HxW); rerun make_ins_seg_labels with --overwrite true")
        try:
            results.extend(instance_results(im["id"], det["mask"], det["class"], det["score"], label_to_category_id))
        except (DataError, ValueError) as exc:
            raise DataError(f"{path}: {exc}; rerun make_ins_seg_labels with --overwrite true") from exc
        del det  # one image's masks at a time
    return results


def run(args) -> dict:
    facts = dataset_facts(args)
    ids = facts.ids(args.infer_list)
    eval_ids = evaluation_ids(args, facts, ids)  # a flag problem shows before the export
    images, categories, label_to_category_id = facts.records(ids)
    results = export_results(args, ids, images, label_to_category_id)
    kept = [r for r in results if r["score"] > args.cocoann_min_score]
    train_path, results_path = cocoann_annotations(args, args.infer_list), cocoann_results(args, args.infer_list)
    write_json_compact(train_path, annotations_file(
        images, categories, results_to_annotations(kept),
        description=f"crt instance pseudo labels of {args.infer_list} (score > {args.cocoann_min_score})"))
    write_json_compact(results_path, [strip_to_result(r) for r in results])
    log.info("make_cocoann: %d instances of %d images -> %s (training annotations, %d with score > %g) and %s "
             "(results, all)", len(results), len(ids), train_path, len(kept), args.cocoann_min_score, results_path)
    metrics: dict[str, Any] = {"list": args.infer_list, "num_images": len(ids), "num_instances": len(results),
                               "num_annotations": len(kept), "annotations_file": str(train_path),
                               "results_file": str(results_path)}
    by_id = dict(zip(ids, images))
    metrics.update(evaluate(args, facts, [by_id[i] for i in eval_ids], eval_ids, results, categories))
    update_metrics(args.result_dir, "make_cocoann", metrics, inputs=[args.ins_seg_out_dir])
    return metrics


def evaluation_ids(args, facts: DatasetFacts, exported: Sequence[str]) -> list[str]:
    """The ids of ``--chainer_eval_set``; they must be among the ``exported`` ones (``--infer_list``)."""
    eval_ids = facts.ids(args.chainer_eval_set)
    outside = sorted(set(eval_ids) - set(exported))
    if outside:
        raise FlagValueError(
            f"make_cocoann: {len(outside)} id(s) of --chainer_eval_set {args.chainer_eval_set} are not in "
            f"--infer_list {args.infer_list} (e.g. {outside[0]!r}): the COCO evaluation scores the exported "
            "instances; use an --infer_list that covers --chainer_eval_set")
    return eval_ids


def evaluate(args, facts: DatasetFacts, eval_images: list[dict], eval_ids: Sequence[str], results: list[dict],
             categories: list[dict]) -> dict:
    """COCO segm AP of ``results`` on the images ``eval_ids`` (records ``eval_images``); {} when the dataset has no
    instance ground truth. Writes the ground truth as ``gt_instances_<set>.json``."""
    gt = facts.ground_truth(eval_ids, eval_images, categories)
    if gt is None:
        return {}
    gt_path = cocoann_ground_truth(args, args.chainer_eval_set)
    write_json_compact(gt_path, gt)
    keep = {im["id"] for im in eval_images}
    scored = [r for r in results if r["image_id"] in keep]
    stats = coco_segm_eval(gt, scored, img_ids=sorted(keep))
    per_class = stats.pop("AP50_per_class")
    voc_ap = _voc_ap_of_eval_ins_seg(args)
    log.info("make_cocoann: COCO segm AP %.4f, AP50 %.4f, AP75 %.4f (%d images of %s, %d detections)%s",
             stats["AP"], stats["AP50"], stats["AP75"], len(eval_ids), args.chainer_eval_set, len(scored),
             f"; eval_ins_seg's VOC AP@0.5: {voc_ap:.4f}" if voc_ap is not None else "")
    return {"eval_set": args.chainer_eval_set, "eval_images": len(eval_ids), "eval_detections": len(scored),
            "gt_instances": len(gt["annotations"]), "ground_truth_file": str(gt_path),
            "segm_AP": stats["AP"], "segm_AP50": stats["AP50"], "segm_AP75": stats["AP75"], "segm": stats,
            "segm_AP50_per_class": per_class}


def _voc_ap_of_eval_ins_seg(args) -> float | None:
    """eval_ins_seg's mAP@0.5 from metrics.json, when it is there for the same eval set (for the log line)."""
    path = Path(args.result_dir) / "metrics.json"
    try:
        entry = json.loads(path.read_text()).get("eval_ins_seg", {})
    except (OSError, ValueError):
        return None
    value = entry.get("map_0.5")
    return float(value) if entry.get("eval_set") == args.chainer_eval_set and value is not None else None
