"""eval_cam: seed mIoU of the transformer CAMs on ``--chainer_eval_set`` (docs/make_cam.md#seed-evaluation) and a background-threshold sweep.

Per image: a constant background plane ``--cam_eval_thres`` is put in front of ``high_res``, the argmax is mapped
through ``[0] + keys + 1``; the confusion follows chainercv (GT 255 skipped, not cut to the dataset's labels; a
label outside them is refused), streamed into one (at most 21×21 on VOC, 81×81 on COCO) int64 matrix per threshold.
A folder dataset is scored on the images of the set that have a mask (none: nothing is scored, and said).
Writes ``metrics.json["eval_cam"]`` and CAM overlays for a few images under ``result/vis/cam``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from misc.eval.metrics import ConfusionMeter, gt_to_chainer, iou_from_confusion, miou
from misc.core.outputs import load_output_npz
from misc.core.paths import cam_path, vis_dir
from voc12.facts import NUM_LABELS as VOC_NUM_LABELS
from misc.core.results import update_metrics
from misc.engine.per_image import with_projection

log = logging.getLogger(__name__)


def cam_to_seed(high_res: np.ndarray, keys: np.ndarray, bg_thres: float) -> np.ndarray:
    """(K, H, W) per-class max-normalised CAMs + 0-based keys → (H, W) int64 labels in 0..C (ties → background)."""
    cams = np.concatenate([np.full((1,) + high_res.shape[1:], bg_thres, high_res.dtype), high_res], axis=0)
    lookup = np.concatenate([[0], np.asarray(keys, np.int64) + 1])
    return lookup[np.argmax(cams, axis=0)]


def load_cam(cam_dir: str | Path, img_id: str) -> dict[str, np.ndarray]:
    path = cam_path(cam_dir, img_id)
    if not path.is_file():
        raise FileNotFoundError(f"eval: no CAM for image id {img_id!r} at {path}; run make_cam first")
    return load_output_npz(path, "make_cam", ("keys", "high_res"))


def evaluate_seeds(cams: Iterable[dict], gts: Iterable[np.ndarray], thresholds: Sequence[float],
                   ids: Sequence[str] | None = None, num_labels: int = VOC_NUM_LABELS) -> dict[float, dict]:
    """{threshold: {'iou', 'miou', 'confusion'}} for each background threshold.

    Streams: ``cams`` and ``gts`` are read once, pairwise (generators are fine), into one confusion per threshold,
    so train_aug's CAMs never sit in memory together. ``ids`` name the pairs in errors (a size mismatch, a label
    outside ``0..num_labels-1``: the dataset's background + classes, 21 on VOC, 81 on COCO).
    """
    meters = {float(t): ConfusionMeter(num_labels) for t in thresholds}
    for k, (cam, gt) in enumerate(zip(cams, gts, strict=True)):
        gt = gt_to_chainer(gt)
        name = None if ids is None else ids[k]
        for t, meter in meters.items():
            meter.add(cam_to_seed(cam["high_res"], cam["keys"], t), gt, name)
    out = {}
    for t, meter in meters.items():
        iou = iou_from_confusion(meter.confusion)
        out[t] = {"iou": iou, "miou": miou(iou), "confusion": meter.confusion}
    return out


def run(args) -> dict:
    from dataset.vis import save_cam_overlays
    from pipeline.datasets import open_for_eval, record_nothing_scored, scored_ids

    index = open_for_eval(args)
    listed = index.ids(args.chainer_eval_set)
    ids = scored_ids(index, listed, "eval_cam", args.chainer_eval_set)
    if not ids:
        save_cam_overlays(index, listed[: args.vis_num], args.cam_out_dir, vis_dir(args, "cam"))
        return record_nothing_scored(args.result_dir, "eval_cam", "eval_set", args.chainer_eval_set, len(listed),
                                     [args.cam_out_dir])
    missing = [i for i in ids if not cam_path(args.cam_out_dir, i).is_file()]
    if missing:
        raise FileNotFoundError(f"eval_cam: {len(missing)} CAMs missing in {args.cam_out_dir} (e.g. {missing[0]!r}); "
                                "make_cam writes them for --train_list, which must cover --chainer_eval_set")
    cams = (load_cam(args.cam_out_dir, i) for i in with_projection(ids, "eval_cam", len(ids)))
    gts = (index.read_class_gt(i) for i in ids)
    thresholds = sorted(set(float(t) for t in args.cam_eval_sweep) | {float(args.cam_eval_thres)})
    results = evaluate_seeds(cams, gts, thresholds, ids, index.num_labels)
    main = results[float(args.cam_eval_thres)]
    best_t = max(results, key=lambda t: results[t]["miou"] if np.isfinite(results[t]["miou"]) else -1)
    for t, r in results.items():
        log.info("eval_cam: bg threshold %.2f -> mIoU %.4f", t, r["miou"])
    log.info("eval_cam: mIoU %.4f at --cam_eval_thres %.2f; best %.4f at %.2f (%d images of %s)",
             main["miou"], args.cam_eval_thres, results[best_t]["miou"], best_t, len(ids), args.chainer_eval_set)
    metrics = {
        "miou": main["miou"], "iou": main["iou"], "bg_thres": float(args.cam_eval_thres),
        "eval_set": args.chainer_eval_set, "num_images": len(ids),
        "sweep": {f"{t:.2f}": r["miou"] for t, r in results.items()},
        "best_bg_thres": best_t, "best_miou": results[best_t]["miou"],
    }
    if index.gt_optional:
        metrics["num_listed"] = len(listed)
    update_metrics(args.result_dir, "eval_cam", metrics, inputs=[args.cam_out_dir])
    save_cam_overlays(index, ids[: args.vis_num], args.cam_out_dir, vis_dir(args, "cam"))
    return metrics
