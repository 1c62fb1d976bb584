"""eval_ins_seg: VOC instance-segmentation AP at IoU 0.5 of the instance pseudo labels (docs/instances.md#evaluation).

GT instances come from ``SegmentationObject`` + ``SegmentationClass`` of ``--chainer_eval_set``; the AP follows
chainercv's ``eval_instance_segmentation_voc`` (area under the interpolated PR curve, classes without GT dropped).
"""
from __future__ import annotations

import logging
from pathlib import Path

from misc.imutils import VOC_CLASS_NAMES
from misc.instance_ap import eval_instance_segmentation_voc, read_voc_instances
from misc.outputs import load_output_npz
from misc.paths import ins_seg_path
from misc.results import update_metrics
from voc12.dataloader import check_voc_root, class_gt_path, object_gt_path, open_voc

log = logging.getLogger(__name__)


def run(args) -> dict:
    root = check_voc_root(args.voc12_root, ("JPEGImages", "ImageSets/Segmentation", "SegmentationClass",
                                            "SegmentationObject"))
    ids = open_voc(root, args.list_cache_dir).ids(args.chainer_eval_set)
    pred_dir = Path(args.ins_seg_out_dir)
    preds = []
    for i in ids:
        path = ins_seg_path(pred_dir, i)
        if not path.is_file():
            raise FileNotFoundError(f"eval_ins_seg: no instance labels for {i!r} at {path}; run make_ins_seg_labels "
                                    "with an --infer_list covering --chainer_eval_set")
        preds.append(load_output_npz(path, "make_ins_seg_labels", ("score", "mask", "class")))
    gts = [read_voc_instances(object_gt_path(root, i), class_gt_path(root, i)) for i in ids]
    r = eval_instance_segmentation_voc([p["mask"] for p in preds], [p["class"] for p in preds],
                                       [p["score"] for p in preds], [g[0] for g in gts], [g[1] for g in gts],
                                       iou_thresh=0.5)
    log.info("eval_ins_seg: 0.5iou: mAP %.4f (%d images of %s)", r["map"], len(ids), args.chainer_eval_set)
    ap = {VOC_CLASS_NAMES[c]: v for c, v in enumerate(r["ap"][: len(VOC_CLASS_NAMES)])}
    metrics = {"map_0.5": r["map"], "ap_0.5": ap, "eval_set": args.chainer_eval_set, "num_images": len(ids)}
    update_metrics(args.result_dir, "eval_ins_seg", metrics, inputs=[args.ins_seg_out_dir])
    return metrics
