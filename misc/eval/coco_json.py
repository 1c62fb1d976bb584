"""Instances as COCO JSON (RLE masks through pycocotools) and their COCO ``segm`` evaluation (docs/instances.md#coco-json).

Pure functions, no step imports:

* :func:`encode_mask` — one boolean (H, W) mask → COCO RLE (``counts`` a str, JSON-ready), its area and bbox;
* :func:`instance_results` — the instances of one image → result dicts ``{image_id, category_id, segmentation,
  score}`` (what a detector's output file holds; COCOeval's input);
* :func:`results_to_annotations` — result dicts → annotation dicts ``{id, image_id, category_id, segmentation, area,
  bbox, iscrowd}`` (what a training / ground-truth file holds);
* :func:`annotations_file` — ``{"info", "licenses", "images", "categories", "annotations"}``: the file Detectron2's
  ``register_coco_instances`` or MMDetection's ``CocoDataset`` loads;
* :func:`categories_from_names`, :func:`voc_image_id` — the dataset facts (1-based contiguous category ids, the
  integer image id of a VOC id);
* :func:`coco_segm_eval` — pycocotools ``COCOeval(iouType="segm")``: AP, AP50, AP75, ... with its printed summary
  sent to the logger.

Masks are RLE-encoded per image, so a caller streaming images holds one image's masks at a time.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import logging
import os
import re
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from misc.core.errors import DataError

log = logging.getLogger(__name__)

__all__ = [
    "encode_mask",
    "decode_mask",
    "instance_results",
    "results_to_annotations",
    "strip_to_result",
    "annotations_file",
    "categories_from_names",
    "voc_image_id",
    "image_ids",
    "voc_ground_truth",
    "coco_segm_eval",
]

_VOC_ID = re.compile(r"^(\d{4})_(\d{6})$")
HASHED_ID_BASE = 10**10  # image ids of other forms start here (see voc_image_id)


def encode_mask(mask: np.ndarray) -> tuple[dict, int, list[float]]:
    """Boolean (H, W) mask → (RLE ``{"size": [H, W], "counts": str}``, area in pixels, bbox ``[x, y, w, h]``).

    pycocotools wants a Fortran-ordered uint8 array; its compressed ``counts`` (bytes) is decoded to ASCII for JSON.
    """
    from pycocotools import mask as mask_utils

    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"encode_mask: expected an (H, W) mask, got shape {m.shape}")
    rle = mask_utils.encode(np.asfortranarray(m.astype(bool).astype(np.uint8)))
    area = int(mask_utils.area(rle))
    bbox = [float(v) for v in mask_utils.toBbox(rle)]
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}, area, bbox


def decode_mask(rle: Mapping[str, Any]) -> np.ndarray:
    """COCO RLE (``counts`` str or bytes, compressed) → boolean (H, W) mask."""
    from pycocotools import mask as mask_utils

    counts = rle["counts"]
    obj = {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(obj).astype(bool)


def instance_results(
    image_id: int,
    masks: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    label_to_category_id: Mapping[int, int] | Sequence[int],
    min_score: float | None = None,
) -> list[dict]:
    """The instances of one image → COCO result dicts, in the input order.

    masks (R, H, W) bool; labels (R,) the dataset's 0-based class indices, mapped through ``label_to_category_id``
    (e.g. VOC: label c → category c + 1); scores (R,). Empty masks (no pixel) are dropped; so are instances with
    score <= ``min_score`` when it is given. Each dict: ``image_id``, ``category_id``, ``segmentation`` (RLE, str
    counts), ``score`` and, for :func:`results_to_annotations`, ``area`` and ``bbox``.
    """
    masks = np.asarray(masks)
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if masks.ndim != 3 or not len(masks) == len(labels) == len(scores):
        raise ValueError(f"instance_results: masks {masks.shape}, labels {labels.shape} and scores {scores.shape} "
                         "must be (R, H, W), (R,) and (R,)")
    out = []
    for mask, label, score in zip(masks, labels, scores):
        if min_score is not None and not score > min_score:
            continue
        try:
            if int(label) < 0:
                raise KeyError(label)
            category_id = int(label_to_category_id[int(label)])
        except (KeyError, IndexError):
            raise DataError(f"image {image_id}: class label {int(label)} has no COCO category "
                            f"(the categories cover labels {_label_range(label_to_category_id)})") from None
        rle, area, bbox = encode_mask(mask)
        if area == 0:
            continue
        out.append({"image_id": int(image_id), "category_id": category_id, "segmentation": rle,
                    "score": float(score), "area": area, "bbox": bbox})
    return out


def _label_range(label_to_category_id: Mapping[int, int] | Sequence[int]) -> str:
    keys = sorted(label_to_category_id) if isinstance(label_to_category_id, Mapping) else \
        range(len(label_to_category_id))
    return f"{min(keys)}..{max(keys)}" if len(keys) else "none"


def results_to_annotations(results: Iterable[Mapping[str, Any]], first_id: int = 1, iscrowd: int = 0) -> list[dict]:
    """Result dicts (from :func:`instance_results`) → annotation dicts with consecutive ids from ``first_id``.

    The score is dropped (a training / ground-truth file has none); area and bbox are recomputed from the RLE when a
    result lacks them.
    """
    out = []
    for k, r in enumerate(results):
        if "area" in r and "bbox" in r:
            area, bbox = int(r["area"]), [float(v) for v in r["bbox"]]
        else:
            _, area, bbox = encode_mask(decode_mask(r["segmentation"]))
        out.append({"id": first_id + k, "image_id": int(r["image_id"]), "category_id": int(r["category_id"]),
                    "segmentation": r["segmentation"], "area": area, "bbox": bbox, "iscrowd": int(iscrowd)})
    return out


def strip_to_result(result: Mapping[str, Any]) -> dict:
    """The four keys of COCO's results format (no bbox: with a bbox, ``COCO.loadRes`` would take the box area as the
    detection's area)."""
    return {k: result[k] for k in ("image_id", "category_id", "segmentation", "score")}


def annotations_file(images: Sequence[Mapping[str, Any]], categories: Sequence[Mapping[str, Any]],
                     annotations: Sequence[Mapping[str, Any]], description: str = "") -> dict:
    """A COCO instances file: ``info``, ``licenses`` (empty), ``images`` ({id, file_name, width, height}),
    ``categories`` ({id, name, supercategory}) and ``annotations``. Checks that every annotation names a listed
    image and category, and that image and annotation ids are unique."""
    image_ids = [int(im["id"]) for im in images]
    if len(set(image_ids)) != len(image_ids):
        dup = sorted({i for i in image_ids if image_ids.count(i) > 1})[:5]
        raise DataError(f"annotations_file: duplicate image ids {dup}")
    known_images, known_cats = set(image_ids), {int(c["id"]) for c in categories}
    ann_ids = set()
    for a in annotations:
        if a["image_id"] not in known_images or a["category_id"] not in known_cats:
            raise DataError(f"annotations_file: annotation {a.get('id')} names image {a['image_id']} / category "
                            f"{a['category_id']}, not among the listed images / categories")
        if a["id"] in ann_ids:
            raise DataError(f"annotations_file: duplicate annotation id {a['id']}")
        ann_ids.add(a["id"])
    return {"info": {"description": description, "version": "1.0"}, "licenses": [],
            "images": [dict(im) for im in images], "categories": [dict(c) for c in categories],
            "annotations": list(annotations)}


def categories_from_names(names: Sequence[str], supercategory: str = "object") -> list[dict]:
    """``[{"id": i + 1, "name": names[i], "supercategory": ...}]``: contiguous 1-based ids (0 is COCO's "no
    category"; VOC's class index c >= 1 of SegmentationClass is category c)."""
    return [{"id": i + 1, "name": str(n), "supercategory": supercategory} for i, n in enumerate(names)]


def voc_image_id(img_id: str) -> int:
    """The integer image id of a VOC-layout id, by a fixed rule (the same id always gets the same integer):

    * ``"YYYY_NNNNNN"`` → int(``"YYYYNNNNNN"``) (``"2007_000032"`` → 2007000032, the original make_cocoann's rule);
    * an all-digit id → its value;
    * any other id (e.g. ``"crop513_2007_000033"``) → 10**10 + the first 40 bits of its SHA-1 (above every VOC id,
      below 2**53, so JavaScript readers keep it exact). The string id stays in the image's ``file_name``.
    """
    m = _VOC_ID.match(img_id)
    if m:
        return int(m.group(1)) * 1_000_000 + int(m.group(2))
    if img_id.isdigit() and img_id.isascii():
        return int(img_id)
    return HASHED_ID_BASE + int(hashlib.sha1(img_id.encode("utf-8")).hexdigest()[:10], 16)


def image_ids(ids: Sequence[str]) -> dict[str, int]:
    """{string id: integer image id} by :func:`voc_image_id`; two ids mapping to one integer → DataError."""
    out: dict[str, int] = {}
    seen: dict[int, str] = {}
    for i in ids:
        n = voc_image_id(i)
        if n in seen and seen[n] != i:
            raise DataError(f"image ids {seen[n]!r} and {i!r} both map to COCO image id {n}; leave one out")
        seen[n] = i
        out[i] = n
    return out


def voc_ground_truth(images: Sequence[Mapping[str, Any]], object_pngs: Sequence[str | os.PathLike],
                     class_pngs: Sequence[str | os.PathLike], categories: Sequence[Mapping[str, Any]],
                     description: str = "VOC ground-truth instances") -> dict:
    """VOC instance ground truth as a COCO annotations dict, one image at a time.

    ``images``: the image records ({id, file_name, width, height}); ``object_pngs`` / ``class_pngs``: their
    ``SegmentationObject`` / ``SegmentationClass`` PNGs, in the same order. Instances as eval_ins_seg reads them
    (:func:`misc.eval.instance_ap.read_voc_instances`): instance ids 1..254, class = the SegmentationClass index under
    them (category id = that index, 1..20). The 255 border pixels belong to no instance and are NOT made crowd /
    ignore regions: every annotation has ``iscrowd`` 0, so a detection's IoU with a GT instance is the same as in
    eval_ins_seg (a mask covering the border pays for it in both), and AP50 differs from eval_ins_seg's AP only by
    COCO's matching and 101-point interpolation.
    """
    from misc.eval.instance_ap import read_voc_instances

    if not len(images) == len(object_pngs) == len(class_pngs):
        raise ValueError("voc_ground_truth: images, object_pngs and class_pngs differ in length")
    label_to_category_id = {i: int(c["id"]) for i, c in enumerate(categories)}
    annotations: list[dict] = []
    for im, obj_png, cls_png in zip(images, object_pngs, class_pngs):
        try:
            masks, labels = read_voc_instances(obj_png, cls_png)
        except ValueError as exc:
            raise DataError(f"{obj_png} / {cls_png}: {exc}; fix or remove the ground-truth masks of this image") \
                from exc
        if masks.shape[1:] != (int(im["height"]), int(im["width"])):
            raise DataError(f"{obj_png}: ground truth of size {masks.shape[2]}x{masks.shape[1]} (WxH), the image "
                            f"is {im['width']}x{im['height']}")
        found = instance_results(im["id"], masks, labels, np.ones(len(labels)), label_to_category_id)
        annotations.extend(results_to_annotations(found, first_id=len(annotations) + 1))
    return annotations_file(images, categories, annotations, description=description)


_STAT_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100", "AR_small",
               "AR_medium", "AR_large")


def coco_segm_eval(gt: str | Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                   img_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """COCOeval(iouType="segm") of ``results`` against the ground truth ``gt`` (a file path or an annotations dict).

    ``img_ids``: the images evaluated (default: every GT image); results on other images are left out. Returns
    {"AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100", "AR_small", "AR_medium",
    "AR_large"} (pycocotools' 12 stats; a stat without GT in its range is NaN, pycocotools' -1) and "AP50_per_class"
    {category name: AP at IoU 0.5, NaN for a category without GT}. With no detection at all every AP/AR is 0 when
    the images hold GT (pycocotools cannot load an empty result list). pycocotools' printed output goes to the logger.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        if isinstance(gt, Mapping):
            coco_gt = COCO()
            coco_gt.dataset = copy.deepcopy(dict(gt))
            coco_gt.createIndex()
        else:
            coco_gt = COCO(str(gt))
    ids = sorted(coco_gt.getImgIds()) if img_ids is None else sorted(int(i) for i in img_ids)
    missing = set(ids) - set(coco_gt.getImgIds())
    if missing:
        raise DataError(f"coco_segm_eval: image ids {sorted(missing)[:5]} are not in the ground truth")
    keep = set(ids)
    dets = [strip_to_result(r) for r in results if int(r["image_id"]) in keep]  # loadRes writes into its input
    cats = coco_gt.loadCats(coco_gt.getCatIds())
    if not dets:
        has_gt = len(coco_gt.getAnnIds(imgIds=ids)) > 0
        value = 0.0 if has_gt else float("nan")
        out: dict[str, Any] = {name: value for name in _STAT_NAMES}
        out["AP50_per_class"] = {c["name"]: (0.0 if coco_gt.getAnnIds(imgIds=ids, catIds=[c["id"]]) else float("nan"))
                                 for c in cats}
        log.info("COCO segm eval: no detections on the %d evaluated images: AP %s", len(ids), value)
        return out
    with contextlib.redirect_stdout(printed):
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, iouType="segm")
        ev.params.imgIds = ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    for line in printed.getvalue().splitlines():
        if line.strip():
            log.info("pycocotools: %s", line.rstrip())
    out = {name: (float(v) if v >= 0 else float("nan")) for name, v in zip(_STAT_NAMES, ev.stats)}
    # precision: (T iou thresholds, R recall points, K categories, A area ranges, M max dets); IoU 0.5, area "all",
    # the largest maxDets, as in the AP50 stat.
    precision = ev.eval["precision"]
    t50 = int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))
    per_class = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[t50, :, k, 0, -1]
        p = p[p > -1]
        per_class[coco_gt.cats[cat_id]["name"]] = float(np.mean(p)) if p.size else float("nan")
    out["AP50_per_class"] = per_class
    return out
