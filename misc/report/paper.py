"""The paper's figures and which of a run's numbers compare with them: the rows of the report's results table.

Dataset-agnostic: the rows are looked up by metric name; a dataset without paper figures (or a metric without one)
has rows without a paper figure.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence


@dataclass(frozen=True)
class PaperFigure:
    """A published number (percent, as published), what it measures and where it comes from."""

    value: float
    what: str
    source: str


# The paper's figures (CRT, arXiv 2209.15211) and where each is published: the CRT README or its training log.
PAPER_FIGURES: dict[str, dict[str, PaperFigure]] = {
    "voc": {
        "seed_miou": PaperFigure(57.7, "seed mIoU, DeiT-branch CAMs, background 0.15, VOC 2012 train (1,464 images)",
                                 "CRT README"),
        "mask_miou": PaperFigure(71.8, "pseudo-mask mIoU after the IRNet random walk, VOC 2012 train (1,464 images)",
                                 "CRT README"),
        "deeplab_val_crf": PaperFigure(
            71.2, "DeepLab-v2 ResNet-101 (COCO-pretrained init) mIoU, VOC 2012 val (1,449 images); the paper does "
                  "not say whether with the CRF (most likely with it)", "CRT README"),
    },
    "cub": {
        "cls_top1": PaperFigure(80.1, "Cls@1, CUB test (5,794 images), epoch chosen on the test set",
                                "CRT training log, epoch 19"),
        "cls_top5": PaperFigure(95.2, "Cls@5, CUB test, epoch chosen on the test set", "CRT training log, epoch 19"),
        "loc_top1": PaperFigure(72.9, "Top-1 Loc, CUB test, epoch chosen on the test set", "CRT README"),
        "loc_top5": PaperFigure(86.4, "Top-5 Loc, CUB test, epoch chosen on the test set", "CRT README"),
        "loc_gt_known": PaperFigure(90.1, "GT-known Loc, CUB test, epoch chosen on the test set", "CRT README"),
    },
}
PAPER_SOURCE_NOTE = "Paper figures: the CRT README and training log (arXiv 2209.15211)."
VOC_TRAIN_IMAGES, VOC_VAL_IMAGES, CUB_TEST_IMAGES = 1464, 1449, 5794


@dataclass
class ResultRow:
    """One line of the results table: this run's value (None: the run has none) beside the paper's."""

    label: str
    path: tuple[str, ...]  # keys into metrics.json
    value: float | None
    paper: PaperFigure | None = None
    not_comparable: list[str] = field(default_factory=list)  # why this row does not compare (besides the run's)
    unit: str = "fraction"  # "fraction" (paper in percent) or "percent"

    @property
    def metric_id(self) -> str:
        return "/".join(self.path)


def lookup(metrics: Mapping, path: Sequence[str]) -> Any:
    """``metrics[p0][p1]...`` or None when a key is missing."""
    node: Any = metrics
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def number(value: Any) -> float | None:
    """A finite float, or None (missing, null for NaN, not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


# ------------------------------------------------------------------------------------------------------- rows
def _row(metrics: Mapping, label: str, path: Sequence[str], paper: PaperFigure | None = None,
         unit: str = "fraction") -> ResultRow | None:
    """A row when ``metrics`` has its step (the value may still be None), else None."""
    if path[0] not in metrics:
        return None
    return ResultRow(label, tuple(path), number(lookup(metrics, path)), paper, unit=unit)


def _condition(ok: bool, why: str) -> list[str]:
    return [] if ok else [why]


def segmentation_rows(metrics: Mapping, config: Mapping, paper: Mapping[str, PaperFigure]) -> list[ResultRow]:
    """Seeds, pseudo masks, instances and DeepLab (VOC and any dataset with the same steps)."""
    rows = []
    cam = metrics.get("eval_cam", {})
    r = _row(metrics, f"seed mIoU (CAMs, background {cam.get('bg_thres', '?')}, {cam.get('eval_set', '?')}, "
                      f"{cam.get('num_images', '?')} images)", ("eval_cam", "miou"), paper.get("seed_miou"))
    if r:
        if paper.get("seed_miou"):
            r.not_comparable += _condition(cam.get("eval_set") == "train" and cam.get("num_images") == VOC_TRAIN_IMAGES,
                                           f"scored on {cam.get('num_images')} images of {cam.get('eval_set')!r}, "
                                           f"the paper on VOC train's {VOC_TRAIN_IMAGES}")
            r.not_comparable += _condition(cam.get("bg_thres") == 0.15,
                                           f"background threshold {cam.get('bg_thres')}, the paper's 0.15")
        rows.append(r)
        r = _row(metrics, f"best seed mIoU of the sweep (background {cam.get('best_bg_thres', '?')})",
                 ("eval_cam", "best_miou"))
        if r:
            rows.append(r)
    sem = metrics.get("eval_sem_seg", {})
    r = _row(metrics, f"pseudo-mask mIoU ({sem.get('eval_set', '?')}, {sem.get('num_images', '?')} images)",
             ("eval_sem_seg", "miou"), paper.get("mask_miou"))
    if r:
        if paper.get("mask_miou"):
            r.not_comparable += _condition(sem.get("eval_set") == "train" and sem.get("num_images") == VOC_TRAIN_IMAGES,
                                           f"scored on {sem.get('num_images')} images of {sem.get('eval_set')!r}, "
                                           f"the paper on VOC train's {VOC_TRAIN_IMAGES}")
        rows.append(r)
    ins = metrics.get("eval_ins_seg", {})
    r = _row(metrics, f"instance mAP@0.5 ({ins.get('eval_set', '?')}, {ins.get('num_images', '?')} images)",
             ("eval_ins_seg", "map_0.5"))
    if r:
        rows.append(r)
    dl = metrics.get("eval_deeplab", {})
    where = f"{dl.get('val_list', '?')}, {dl.get('num_images', '?')} images"
    for variant, label, key in (("no_crf", "without CRF", "deeplab_val_no_crf"),
                                ("crf", "with CRF", "deeplab_val_crf")):
        if "eval_deeplab" in metrics and variant not in dl:
            continue
        r = _row(metrics, f"DeepLab val mIoU {label} ({where})", ("eval_deeplab", variant, "Mean IoU"), paper.get(key))
        if not r:
            continue
        if r.paper:
            r.not_comparable += _condition(dl.get("num_images") == VOC_VAL_IMAGES,
                                           f"scored on {dl.get('num_images')} images, the paper on VOC val's "
                                           f"{VOC_VAL_IMAGES}")
            r.not_comparable += _condition(bool(config.get("deeplab_init")),
                                           "DeepLab started from ImageNet weights (no --deeplab_init); the paper from "
                                           "COCO-pretrained ones (a few points more)")
            r.not_comparable += _condition(dl.get("crf_guide", "original") == "original",
                                           f"CRF guide {dl.get('crf_guide')!r}, the original's 'original'")
        rows.append(r)
    return rows


def wsol_rows(metrics: Mapping, config: Mapping, paper: Mapping[str, PaperFigure]) -> list[ResultRow]:
    """CUB: classification and localisation accuracies, MaxBoxAccV2 (percent) and the whole-image baseline."""
    ev = metrics.get("eval_wsol", {})
    n = ev.get("n_images", "?")
    select_on = lookup(metrics, ("train_wsol", "select_on")) or config.get("wsol_select_on")
    rows = []
    for key, label in (("cls_top1", "Cls@1"), ("cls_top5", "Cls@5"), ("loc_top1", "Top-1 Loc"),
                       ("loc_top5", "Top-5 Loc"), ("loc_gt_known", "GT-known Loc")):
        r = _row(metrics, f"{label} (test, {n} images)", ("eval_wsol", key), paper.get(key))
        if not r:
            continue
        if r.paper:
            r.not_comparable += _condition(ev.get("n_images") == CUB_TEST_IMAGES,
                                           f"scored on {n} images, the paper on CUB test's {CUB_TEST_IMAGES}")
            r.not_comparable += _condition(select_on == "test",
                                           f"epoch selected on {select_on!r} images; the paper selected on the test "
                                           "set (--wsol_select_on test)")
            if key.startswith("loc"):
                r.not_comparable += _condition(ev.get("box_rule", "original") == "original",
                                               f"box rule {ev.get('box_rule')!r}, the original's 'original'")
        rows.append(r)
    for key, label, unit in (("maxboxacc", "MaxBoxAccV2 (percent, IoU 0.3/0.5/0.7)", "percent"),
                             ("whole_image_gt_known", "GT-known of the whole-image box (baseline)", "fraction")):
        r = _row(metrics, label, ("eval_wsol", key), unit=unit)
        if r:
            rows.append(r)
    return rows


def result_rows(dataset: str, metrics: Mapping, config: Mapping) -> list[ResultRow]:
    """The results table of a run of ``dataset``: every metric it has, beside the paper's where there is one."""
    paper = PAPER_FIGURES.get(dataset, {})
    if dataset == "cub":
        return wsol_rows(metrics, config, paper)
    return segmentation_rows(metrics, config, paper)


# ------------------------------------------------------------------------------------------------ comparability
WEIGHT_FLAGS = ("deit_pretrained", "cam_cnn_pretrained", "irn_pretrained", "deeplab_init")


def run_not_comparable(config: Mapping, run: Mapping | None) -> list[str]:
    """Why no number of this run compares with the paper's: a preset (demo, tiny), random or stand-in weights,
    settings that differ from the defaults (the paper's). Empty when none is known."""
    why = []
    if config.get("preset") or config.get("demo"):
        why.append(f"a '{config.get('preset') or 'demo'}' preset run (small models, short schedules"
                   + (", synthetic data" if config.get("demo") else "") + ")")
    if config.get("no_pretrained"):
        why.append("trained from random weights (--no_pretrained), not from ImageNet ones")
    standin = [f"--{f}" for f in WEIGHT_FLAGS if config.get(f) and "standin" in Path(str(config[f])).parts]
    if standin and not config.get("no_pretrained"):
        why.append(f"stand-in pretrained weights ({', '.join(standin)}), not the official ImageNet/COCO ones")
    if run is None:
        why.append("no run.json: the flags that differ from the defaults are unknown")
    elif run.get("non_default"):
        flags = sorted(run["non_default"])
        shown = ", ".join(f"--{f}" for f in flags[:8]) + (f" and {len(flags) - 8} more" if len(flags) > 8 else "")
        why.append(f"{len(flags)} setting(s) differ from the defaults: {shown}")
    return why
