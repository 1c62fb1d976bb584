"""eval_deeplab: DeepLab-v2 on ``--val_list`` without and with the dense CRF (docs/deeplab.md#test-and-crf).

Inference (per-image runner, every GPU or the CPU): MSC max logits at stride 8 → ``result/deeplab/val_logits/<id>.npz``.
Scoring: bilinear to the image size, softmax, argmax → ``val_pred/<id>.png``; the CRF (deeplab-pytorch parameters,
``--deeplab_crf_guide original`` reproduces its quirky guide image) over ``--num_workers`` CPU processes →
``val_crf/<id>.png``. Pixel Acc / Mean Acc / FreqW IoU / mIoU of both into ``metrics.json["eval_deeplab"]`` against
the dataset's ground truth (VOC ``SegmentationClass``, COCO's masks built from the annotations, a folder's masks:
only its images with a mask are predicted and scored), streamed one image at a time; panels image | pseudo mask |
prediction | GT under ``result/vis/deeplab``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from misc.eval.metrics import deeplab_scores
from misc.core.fingerprint import identity, prepare_output_dir
from misc.core.outputs import load_output_npz, output_problem, read_output_png
from misc.core.paths import deeplab_logits_path, deeplab_val_dirs, label_png, vis_dir
from misc.core.io import save_png
from misc.core.results import update_metrics
from misc.engine.per_image import device_workers, run_per_image, with_projection
from pipeline.tasks import DeepLabLogitsTask, StepTask, probs_from_logits

log = logging.getLogger(__name__)


class CRFTask(StepTask):
    """Logits → softmax → dense CRF → label PNG (CPU)."""

    name = "eval_deeplab"
    suffix = ".png"

    def __init__(self, args, index, logits_dir: Path, out_dir: Path) -> None:
        super().__init__(args, index, out_dir)
        self.logits_dir, self.guide = Path(logits_dir), args.deeplab_crf_guide

    def inputs(self) -> dict:
        return {"logits": identity(self.logits_dir)}

    def load(self, img_id: str):
        from dataset.images import read_image_bgr

        return read_image_bgr(self.index.image_path(img_id)).astype(np.uint8), load_output_npz(
            deeplab_logits_path(self.logits_dir, img_id), "eval_deeplab", DeepLabLogitsTask.output_keys)

    def process(self, img_id: str, inputs) -> None:
        from misc.method.crf import crf_inference_softmax, deeplab_crf_guide

        bgr, logits = inputs
        probs = probs_from_logits(logits)
        q = crf_inference_softmax(deeplab_crf_guide(bgr, quirk=self.guide == "original"), probs)
        save_png(self.output_path(img_id), np.argmax(q, 0).astype(np.uint8), palette=self.index.palette())


def predictions_without_crf(ids, logits_dir: Path, out_dir: Path, overwrite: bool = False,
                            palette: list[int] | None = None) -> None:
    """Argmax of the upsampled logits → ``out_dir/<id>.png``; the folder follows the logits' fingerprint."""
    prepare_output_dir(out_dir, "deeplab_pred", {"logits": identity(logits_dir)}, (".png",), overwrite)
    for img_id in ids:
        path = label_png(out_dir, img_id)
        if not path.is_file() or output_problem(path):
            logits = load_output_npz(deeplab_logits_path(logits_dir, img_id), "eval_deeplab",
                                     DeepLabLogitsTask.output_keys)
            pred = np.argmax(probs_from_logits(logits), 0).astype(np.uint8)
            save_png(path, pred, palette=palette)


def score_folder(ids, pred_dir: Path, index) -> dict:
    """deeplab-pytorch's scores of the predictions in ``pred_dir`` against the dataset's ground truth (``index``:
    the index of :mod:`pipeline.datasets`), streamed one image at a time."""
    gts = (index.read_class_gt(i) for i in with_projection(ids, f"eval_deeplab scoring {pred_dir.name}", len(ids)))
    preds = (read_output_png(label_png(pred_dir, i), "eval_deeplab") for i in ids)
    scores, _ = deeplab_scores(gts, preds, index.num_labels, ids)
    return scores


def run(args) -> dict:
    from pipeline.datasets import open_for_eval, record_nothing_scored, scored_ids

    index = open_for_eval(args)
    listed = index.ids(args.val_list)
    ids = scored_ids(index, listed, "eval_deeplab", args.val_list)
    if not ids:
        return record_nothing_scored(args.result_dir, "eval_deeplab", "val_list", args.val_list, len(listed),
                                     [args.deeplab_weights_name])
    logits_dir, pred_dir, crf_dir = deeplab_val_dirs(args)
    run_per_image(DeepLabLogitsTask(args, index, logits_dir), ids, overwrite=args.overwrite, split_ranks=False,
                  **device_workers(args))
    predictions_without_crf(ids, logits_dir, pred_dir, args.overwrite, index.palette())
    metrics = {"no_crf": score_folder(ids, pred_dir, index), "val_list": args.val_list, "num_images": len(ids)}
    if index.gt_optional:
        metrics["num_listed"] = len(listed)
    log.info("eval_deeplab: val mIoU %.4f without CRF", metrics["no_crf"]["Mean IoU"])
    if args.deeplab_crf:
        run_per_image(CRFTask(args, index, logits_dir, crf_dir), ids, devices=["cpu"],
                      processes=max(1, args.num_workers), overwrite=args.overwrite, split_ranks=False)
        metrics["crf"] = score_folder(ids, crf_dir, index)
        metrics["crf_guide"] = args.deeplab_crf_guide
        log.info("eval_deeplab: val mIoU %.4f with CRF", metrics["crf"]["Mean IoU"])
    update_metrics(args.result_dir, "eval_deeplab", metrics, inputs=[args.deeplab_weights_name])
    from dataset.vis import save_label_panels

    shown = crf_dir if args.deeplab_crf else pred_dir
    save_label_panels(index, ids[: args.vis_num], [args.deeplab_label_dir, shown], vis_dir(args, "deeplab"))
    return metrics
