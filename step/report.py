"""report: one self-contained page per run, ``result/report.html`` (pictures embedded; opens from disk, no network).

It reads only what the run left in ``--result_dir``: ``run.json`` (command, date, commit, devices), ``config.json``,
``timings.json``, ``metrics.json``, the per-update training logs ``logs/<step>.jsonl``, ``warnings.jsonl`` and a
few per-image outputs for the gallery (CAMs, IR labels, pseudo masks, DeepLab predictions, ground truth; CUB: the
box pictures of eval_wsol). What a run lacks is said on the page instead. The last step of every pipeline; also
runs alone on an earlier run's folder:

    python -m step.report --result_dir RUN/result
    python run_sample.py --work_dir RUN --report_pass true --train_cam_pass false ... (every other step off)
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

from misc.core.errors import UserError
from misc.core.io import atomic_write
from misc.core.paths import report_html
from misc.report.gallery import BoxLayout, SegmentationLayout
from misc.report.run_folder import RunFolder, read_json
from misc.report.sections import DatasetView, build_sections, render

log = logging.getLogger(__name__)


def coco_label_names(folder: RunFolder) -> list[str] | None:
    """Background and the 80 category names by label, from the run's ``coco_categories.json``; None without it."""
    from coco.dataset import CATEGORY_MAP_NAME

    data = read_json(folder.result_dir / CATEGORY_MAP_NAME, folder.problems)
    try:
        by_label = {int(c["label"]): str(c["name"]) for c in data["categories"]}
    except (TypeError, KeyError, ValueError):
        return None
    return ["background", *(by_label.get(k, str(k)) for k in range(1, max(by_label, default=0) + 1))]


def folder_label_names(folder: RunFolder) -> list[str] | None:
    """Background and the class names of the run's folder dataset (its classes.txt); None when it is unreadable."""
    from folder.facts import read_class_names

    root = folder.path("folder_root")
    try:
        return ["background", *read_class_names(root)] if root is not None else None
    except UserError as exc:
        folder.problems.append(f"class names: {exc}")
        return None


def dataset_view(folder: RunFolder) -> DatasetView:
    """The run's dataset as the report sees it: label names and where the gallery finds images."""
    if folder.dataset == "voc":
        from voc12.facts import CLASS_NAMES as VOC_CLASS_NAMES
        from voc12 import layout

        return DatasetView(("background", *VOC_CLASS_NAMES),
                           segmentation=SegmentationLayout("voc12_root", layout.image_path, layout.class_gt_path))
    if folder.dataset == "coco":
        return DatasetView(coco_label_names(folder))
    if folder.dataset == "folder":
        from folder.layout import find_image, mask_path

        return DatasetView(folder_label_names(folder),
                           segmentation=SegmentationLayout("folder_root", find_image, mask_path))
    if folder.dataset == "cub":
        from cub.layout import image_paths

        return DatasetView(boxes=BoxLayout("cub_root", image_paths))
    return DatasetView()


def run(args) -> Path:
    """Write ``<result_dir>/report.html`` for the run in ``args.result_dir``; returns its path."""
    t0 = time.perf_counter()
    folder = RunFolder.load(args.result_dir, vars(args))
    n_images = getattr(args, "report_num_images", None)
    if n_images is None:
        n_images = int(folder.config.get("report_num_images", 4))
    sections = build_sections(folder, dataset_view(folder), n_images)
    document = render(folder, sections, time.perf_counter() - t0)
    out = report_html(folder.result_dir)
    atomic_write(out, lambda tmp: Path(tmp).write_text(document, encoding="utf-8"))
    log.info("report: wrote %s (%.0f KB) in %.1f s", out, out.stat().st_size / 1024, time.perf_counter() - t0)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m step.report --result_dir RUN/result``: (re)write the report of an earlier run."""
    p = argparse.ArgumentParser(prog="python -m step.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--result_dir", required=True, help="the run's result folder (holding metrics.json)")
    p.add_argument("--report_num_images", type=int, default=None,
                   help="images per gallery (default: the run's --report_num_images, else 4)")
    a = p.parse_args(argv)
    if a.report_num_images is not None and a.report_num_images < 0:
        p.error(f"--report_num_images {a.report_num_images}: must be >= 0")
    from misc.core.log import setup_logging

    setup_logging()
    try:
        path = run(argparse.Namespace(result_dir=a.result_dir, report_num_images=a.report_num_images))
    except UserError as exc:
        sys.stderr.write(f"crt: error: {exc}\n")
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
