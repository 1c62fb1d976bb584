"""eval_sem_seg: mIoU of the random-walk pseudo masks on ``--chainer_eval_set`` (docs/sem_seg_labels.md#evaluation).

Prediction PNGs have 255 mapped to 0; the confusion is cut to the dataset's labels ([:21, :21] on VOC, [:81, :81]
on COCO); background and foreground fp/fn rates are logged as in the original. Masks and ground truth are streamed,
one image at a time; a folder dataset is scored on the images with a mask. Writes ``metrics.json["eval_sem_seg"]``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from voc12.facts import NUM_LABELS as VOC_NUM_LABELS
from misc.eval.metrics import fp_fn_rates, gt_to_chainer, iou_from_confusion, miou, semantic_confusion
from misc.core.outputs import read_output_png
from misc.core.paths import label_png
from misc.core.results import update_metrics
from misc.engine.per_image import with_projection

log = logging.getLogger(__name__)


def evaluate_masks(preds: Iterable[np.ndarray], gts: Iterable[np.ndarray], ids: Sequence[str] | None = None,
                   num_labels: int = VOC_NUM_LABELS) -> dict:
    """preds: label PNG contents (255 → 0); gts: GT maps (255 ignored); both may be generators (read once,
    pairwise). Returns iou/miou/fp/fn and the confusion cut to ``num_labels`` (background + the dataset's classes).
    ``ids`` name the pairs in errors (a size mismatch, a label outside ``0..num_labels-1``)."""
    preds = (np.where(p == 255, 0, p).astype(np.uint8) for p in preds)
    confusion = semantic_confusion(preds, (gt_to_chainer(g) for g in gts), ids, num_labels)[:num_labels, :num_labels]
    fp, fn = fp_fn_rates(confusion)
    iou = iou_from_confusion(confusion)
    return {"iou": iou, "miou": miou(iou), "fp_bg": fp[0], "fn_bg": fn[0], "fp_fg_mean": np.mean(fp[1:]),
            "fn_fg_mean": np.mean(fn[1:]), "confusion": confusion}


def run(args) -> dict:
    from pipeline.datasets import open_for_eval, record_nothing_scored, scored_ids

    index = open_for_eval(args)
    listed = index.ids(args.chainer_eval_set)
    ids = scored_ids(index, listed, "eval_sem_seg", args.chainer_eval_set)
    if not ids:
        return record_nothing_scored(args.result_dir, "eval_sem_seg", "eval_set", args.chainer_eval_set, len(listed),
                                     [args.sem_seg_out_dir])
    pred_dir = Path(args.sem_seg_out_dir)
    missing = [i for i in ids if not label_png(pred_dir, i).is_file()]
    if missing:
        raise FileNotFoundError(f"eval_sem_seg: {len(missing)} masks missing in {pred_dir} (e.g. {missing[0]!r}); "
                                "make_sem_seg_labels writes them for --infer_list, which must cover --chainer_eval_set")
    preds = (read_output_png(label_png(pred_dir, i), "make_sem_seg_labels")
             for i in with_projection(ids, "eval_sem_seg", len(ids)))
    gts = (index.read_class_gt(i) for i in ids)
    r = evaluate_masks(preds, gts, ids, index.num_labels)
    log.info("eval_sem_seg: bg fp %.4f fn %.4f; fg mean fp %.4f fn %.4f", r["fp_bg"], r["fn_bg"], r["fp_fg_mean"],
             r["fn_fg_mean"])
    log.info("eval_sem_seg: mIoU %.4f (%d images of %s)", r["miou"], len(ids), args.chainer_eval_set)
    metrics = {k: v for k, v in r.items() if k != "confusion"}
    metrics.update(eval_set=args.chainer_eval_set, num_images=len(ids))
    if index.gt_optional:
        metrics["num_listed"] = len(listed)
    update_metrics(args.result_dir, "eval_sem_seg", metrics, inputs=[args.sem_seg_out_dir])
    return metrics
