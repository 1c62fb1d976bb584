"""eval_ins_seg: VOC-style instance-segmentation AP at IoU 0.5 of the instance pseudo labels (docs/instances.md#evaluation).

GT instances of ``--chainer_eval_set`` come from the dataset (VOC: ``SegmentationObject`` + ``SegmentationClass``;
COCO: the non-crowd instance annotations, docs/data_coco.md); the AP follows chainercv's
``eval_instance_segmentation_voc`` (area under the interpolated PR curve, classes without GT dropped), one image at
a time. On COCO this is not COCO's official mask AP (no crowd regions ignored, no IoU sweep or area ranges).
"""
from __future__ import annotations

import logging
from pathlib import Path

from misc.eval.instance_ap import InstanceAPMeter
from misc.core.outputs import load_output_npz
from misc.core.paths import ins_seg_path
from misc.core.results import update_metrics
from misc.engine.per_image import with_projection

log = logging.getLogger(__name__)


def run(args) -> dict:
    from pipeline.datasets import open_for_eval

    index = open_for_eval(args, instances=True)
    ids = index.ids(args.chainer_eval_set)
    pred_dir = Path(args.ins_seg_out_dir)
    missing = [i for i in ids if not ins_seg_path(pred_dir, i).is_file()]
    if missing:
        raise FileNotFoundError(f"eval_ins_seg: {len(missing)} instance labels missing in {pred_dir} (e.g. "
                                f"{missing[0]!r} at {ins_seg_path(pred_dir, missing[0])}); run make_ins_seg_labels "
                                "with an --infer_list covering --chainer_eval_set")
    meter = InstanceAPMeter(iou_thresh=0.5)
    for i in with_projection(ids, "eval_ins_seg", len(ids)):  # one image's masks in memory at a time
        p = load_output_npz(ins_seg_path(pred_dir, i), "make_ins_seg_labels", ("score", "mask", "class"))
        gt_masks, gt_labels = index.gt_instances(i)
        meter.add(p["mask"], p["class"], p["score"], gt_masks, gt_labels)
    r = meter.result()
    log.info("eval_ins_seg: 0.5iou: mAP %.4f (%d images of %s)", r["map"], len(ids), args.chainer_eval_set)
    names = index.class_names
    ap = {names[c]: v for c, v in enumerate(r["ap"][: len(names)])}
    metrics = {"map_0.5": r["map"], "ap_0.5": ap, "eval_set": args.chainer_eval_set, "num_images": len(ids)}
    update_metrics(args.result_dir, "eval_ins_seg", metrics, inputs=[args.ins_seg_out_dir])
    return metrics
