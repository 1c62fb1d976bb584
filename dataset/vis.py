"""The pictures of the segmentation steps: CAM overlays (eval_cam) and label-map panels (make_sem_seg_labels,
eval_deeplab); ``index`` is the dataset's index (:mod:`pipeline.datasets`)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from dataset.images import read_image
from misc.core.paths import cam_path, label_png
from misc.core.io import load_npz
from misc.core.labels import colorize_label, read_label_png
from misc.report.vis import hstack, overlay, save_rgb


def save_cam_overlays(index, ids: Sequence[str], cam_dir: str | Path, out_dir: str | Path) -> None:
    """For each id: the image, then one overlay per GT class CAM (``high_res``), in one PNG."""
    for img_id in ids:
        path = cam_path(cam_dir, img_id)
        if not path.is_file():
            continue
        cam = load_npz(path)
        img = read_image(index.image_path(img_id), img_id)
        panels = [img] + [overlay(img, c) for c in cam["high_res"]]
        save_rgb(label_png(out_dir, img_id), hstack(panels))


def save_label_panels(index, ids: Sequence[str], label_dirs: Sequence[str | Path], out_dir: str | Path,
                      gt: bool = True) -> None:
    """For each id: image | coloured label map of each folder | ground truth (when present)."""
    for img_id in ids:
        img = read_image(index.image_path(img_id), img_id)
        panels = [img]
        for d in label_dirs:
            p = label_png(d, img_id)
            if p.is_file():
                panels.append(colorize_label(read_label_png(p, index.num_labels)))
        if gt and index.has_class_gt(img_id):
            panels.append(colorize_label(index.read_class_gt(img_id)))
        if len(panels) > 1:
            save_rgb(label_png(out_dir, img_id), hstack(panels))
