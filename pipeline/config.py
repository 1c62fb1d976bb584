"""A run's resolved configuration: the command line over the presets over the declared defaults.

:func:`parse_args` applies, in order, the declared defaults (:mod:`pipeline.flags`), the dataset's and the preset's
overrides (:mod:`pipeline.presets`) and the command line, then resolves paths against ``--work_dir`` and sets the
derived settings (``num_classes``, ``list_cache_dir``).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from pipeline.flags import FLAGS, IGNORED, PATH_FLAGS, build_parser
from pipeline.presets import demo_roots, overrides_for

log = logging.getLogger("crt")

DESCRIPTION = """crt: CRT for weakly supervised semantic segmentation (VOC, COCO) and object localisation (CUB).

    python run_sample.py --voc12_root /data/VOC2012            # the full VOC pipeline
    python run_sample.py --demo                                # the same on the built-in synthetic dataset
    python run_sample.py --dataset cub --cub_root /data/CUB_200_2011
    python run_sample.py --dataset coco --coco_root /data/coco2014   # MS COCO 2014 (docs/data_coco.md)
    python run_sample.py --dataset folder --folder_root DIR    # your own images (docs/data_folder.md)
    python run_sample.py --demo --dry_run --train_cam_pass false   # show the plan, write nothing
"""


def num_classes_of(args: argparse.Namespace) -> int:
    """The dataset's number of foreground classes, known before its index is built (the preflight builds the
    receiving models first): a folder's are counted in its classes.txt (a :class:`~misc.core.errors.UserError`
    when it is missing or malformed)."""
    if args.dataset == "cub":
        return args.wsol_num_classes
    if args.dataset == "folder" and args.demo:
        from misc.core.errors import FlagValueError

        raise FlagValueError("--demo has no folder dataset: pass --folder_root DIR of your own (docs/data_folder.md), "
                             "or write a small synthetic one first with python -m folder.synthetic --out DIR")
    from pipeline.datasets import num_classes_of as segmentation_classes

    return segmentation_classes(args.dataset, args.folder_root)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` with the dataset's and the preset's overrides applied as defaults, then resolve paths against
    ``--work_dir``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(DESCRIPTION)
    first, _ = parser.parse_known_args(argv)
    preset = first.preset or ("demo" if first.demo else None)
    parser.set_defaults(**overrides_for(preset, first.dataset))
    args = parser.parse_args(argv)
    for name in IGNORED:
        if hasattr(args, name):
            log.info("--%s is ignored (the models are chosen by the depth and --vit_* flags)", name)
            delattr(args, name)
    args.preset = preset
    work = Path(args.work_dir)
    for name in PATH_FLAGS:
        value = getattr(args, name)
        if value and not os.path.isabs(value):
            setattr(args, name, str(work / value))
    if args.demo:
        for name, root in demo_roots(work).items():
            setattr(args, name, root)
    if args.deeplab_label_dir is None:
        args.deeplab_label_dir = args.sem_seg_out_dir
    args.list_cache_dir = str(work / "result")  # lists/labels cache (rebuilt when missing)
    args.num_classes = num_classes_of(args)
    return args


def declared_defaults() -> dict:
    """Every flag's declared default (no preset, no dataset overrides)."""
    return vars(build_parser().parse_args([]))


# Flags the report judges by itself (the pretrained sources: random, stand-in, DeepLab's COCO init; the dataset and
# the images each metric was scored on) or that do not move the numbers it compares with the paper.
JUDGED_BY_THE_REPORT = {"voc12_root", "coco_root", "folder_root", "cub_root", "deit_pretrained", "cam_cnn_pretrained",
                        "irn_pretrained", "deeplab_init", "no_pretrained", "test_list", "amp", "seed", "wsol_seed",
                        "deeplab_crf", "cam_eval_sweep", "deeplab_checkpoint_every"}


def non_default_settings(args: argparse.Namespace) -> dict[str, list]:
    """{flag: [default, value]} for every flag that shapes the numbers and differs from its declared default (a
    preset's overrides included): why a run may not compare with the paper."""
    defaults = declared_defaults()
    candidates = {f.name for f in FLAGS if not f.setting and not f.path} - JUDGED_BY_THE_REPORT

    def norm(v):
        return list(v) if isinstance(v, tuple) else v

    return {name: [norm(defaults[name]), norm(value)] for name, value in sorted(vars(args).items())
            if name in candidates and name in defaults and norm(value) != norm(defaults[name])}
