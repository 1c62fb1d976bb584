"""eval_wsol: localisation metrics of the selected DeiT branch on the CUB test split (docs/wsol_cub.md#metrics).

Cls@1/5, Top-1/Top-5 Loc (IoU > 0.5, the original's strict rule), GT-known (IoU ≥ 0.5), the top-1 error breakdown
(fractions, as the original logs them ×100), MaxBoxAccV2 (Choe et al. 2020; percent, CAM thresholds swept, IoU
30/50/70, multi-contour), and the whole-image-box baseline on the same images. Pictures: CAM overlay with the GT box
(green) and the predicted box of the GT class (red) under ``result/vis/wsol``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from misc.core.paths import label_png, vis_dir
from misc.core.results import update_metrics
from misc.method.torchutils import autocast

log = logging.getLogger(__name__)


def whole_image_gt_known(boxes: np.ndarray, size: int) -> float:
    """GT-known of the trivial box covering the whole image (a baseline every method must beat)."""
    from misc.eval.wsol_metrics import box_iou

    whole = np.array([[0, 0, size - 1, size - 1]])
    ious = box_iou(whole, np.asarray(boxes).reshape(-1, 4))[0]
    return float(np.mean(ious >= 0.5)) if len(ious) else float("nan")


def draw_box(img: np.ndarray, box, color) -> None:
    x1, y1, x2, y2 = (int(v) for v in box)
    h, w = img.shape[:2]
    x1, x2, y1, y2 = max(0, x1), min(w - 1, x2), max(0, y1), min(h - 1, y2)
    img[y1, x1:x2 + 1] = img[y2, x1:x2 + 1] = color
    img[y1:y2 + 1, x1] = img[y1:y2 + 1, x2] = color


def save_wsol_pictures(meta, records, ids, cams_gt, gt_boxes, out_dir: Path, size: int) -> None:
    """CAM overlay of the GT class with the GT box (green) and the GT-class CAM's box (red), in the size² frame."""
    from cub.dataset import load_image_rgb
    from misc.report.vis import overlay, save_rgb
    from misc.eval.wsol_metrics import resize_cam

    for img_id, rec, cam, gt_box in zip(ids, records, cams_gt, gt_boxes):
        image = np.asarray(load_image_rgb(meta, img_id).resize((size, size)))
        pic = overlay(image, resize_cam(cam, size))
        draw_box(pic, gt_box, (0, 255, 0))
        draw_box(pic, rec["gtk_box"], (255, 0, 0))
        save_rgb(label_png(out_dir, img_id), pic)


def run(args) -> dict:
    from cub.dataset import CUBMetadata, build_eval_dataset
    from misc.engine.distributed import resolve_device
    from pipeline.models import load_wsol_vit
    from misc.eval.wsol_metrics import MaxBoxAccMeter, WSOLMeter

    device = resolve_device(args.device)
    meta = CUBMetadata.load(args.cub_root)
    meta.check_num_classes(args.wsol_num_classes, "--wsol_num_classes")
    path = Path(args.wsol_weights_name)
    model = load_wsol_vit(args, device)
    ds = build_eval_dataset(meta, None, crop_size=args.wsol_image_size)
    loader = DataLoader(ds, batch_size=args.wsol_batch_size, shuffle=False, num_workers=args.num_workers)
    meter = WSOLMeter(cam_thr=args.wsol_cam_thr, size=args.wsol_image_size, box_rule=args.wsol_box_rule,
                      topk=min(5, args.wsol_num_classes))
    boxacc = MaxBoxAccMeter(size=args.wsol_image_size)
    all_boxes, shown_cams, shown_ids, shown_boxes = [], [], [], []
    with torch.no_grad():
        for pack in loader:
            with autocast(device, args.amp):
                logits, cams = model.forward_wsol(pack["img"].to(device))
            logits, cams = logits.float().cpu(), cams.float().cpu()
            labels = torch.as_tensor(pack["label"])
            meter.add(logits, cams, labels, pack["box"])
            gt_cams = cams[torch.arange(len(labels)), labels]
            boxacc.add(gt_cams.numpy(), pack["box"])
            all_boxes.append(np.asarray(pack["box"]))
            for i, name in enumerate(pack["name"]):
                if len(shown_ids) < args.vis_num:
                    shown_ids.append(name)
                    shown_cams.append(gt_cams[i].numpy())
                    shown_boxes.append(np.asarray(pack["box"][i]))
    summary = meter.summary()
    box_summary = boxacc.summary()
    baseline = whole_image_gt_known(np.concatenate(all_boxes), args.wsol_image_size)
    metrics = {**summary, **box_summary, "whole_image_gt_known": baseline, "box_rule": args.wsol_box_rule,
               "weights": str(path), "split": "test"}
    log.info("eval_wsol: Cls@1 %.4f Cls@5 %.4f | Top-1 Loc %.4f Top-5 Loc %.4f GT-known %.4f | MaxBoxAccV2 %.2f | "
             "whole-image box GT-known %.4f (%d images)", summary["cls_top1"], summary["cls_top5"],
             summary["loc_top1"], summary["loc_top5"], summary["loc_gt_known"], box_summary["maxboxacc"], baseline,
             summary["n_images"])
    update_metrics(args.result_dir, "eval_wsol", metrics, inputs=[args.wsol_weights_name])
    save_wsol_pictures(meta, meter.records[: len(shown_ids)], shown_ids, shown_cams, shown_boxes,
                       vis_dir(args, "wsol"), args.wsol_image_size)
    return metrics
