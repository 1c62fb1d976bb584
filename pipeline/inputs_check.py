"""Check the inputs of the planned steps before the first one starts: what would otherwise stop a run hours in.

For the segmentation datasets (:func:`segmentation_problems`):

* every list a planned step reads resolves (``--train_list``, ``--val_list``, ``--infer_list``,
  ``--deeplab_train_list``, ``--chainer_eval_set``), has no id twice, and its ids have what those steps need: an
  image (a file), an image-level label, ground truth for the evaluations (its mask exists, is a palette or greyscale
  PNG of the image's size; where the dataset reads masks from files, its values are the dataset's);
* what a planned step takes from an earlier step that is not planned is there (trained weights, CAMs, IR labels,
  pseudo masks), and what it takes from a planned one will be made (an id scored or walked needs a CAM, and make_cam
  makes CAMs for ``--train_list`` only).

For CUB (:func:`cub_problems`): the metadata files parse, every image exists, every box lies inside its image, and
the trained weights eval_wsol reads exist when train_wsol does not run.

Every problem is collected and raised as one :class:`InputsError`, one line each, naming the flag, file or id and
what to do. The test list is not checked: without it export_deeplab_test skips itself with a warning.
"""
from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from misc.core.errors import UserError
from misc.core.paths import cam_path, cam_vit_weights, ins_seg_path, label_png
from pipeline.steps import BY_NAME

log = logging.getLogger("crt")
SHOWN = 3  # ids named per problem


class InputsError(UserError):
    """Inputs of the planned steps are missing or unusable (all of them listed)."""


@dataclass(frozen=True)
class ListNeed:
    """The ids of list flag ``flag`` are read by ``steps``, which need for each id what the booleans say."""

    flag: str
    steps: tuple[str, ...]
    image: bool = False
    label: bool = False
    class_gt: bool = False
    instance_gt: bool = False


LIST_NEEDS = (
    ListNeed("train_list", ("train_cam", "make_cam", "cam_to_ir_label", "train_irn"), image=True, label=True),
    ListNeed("val_list", ("train_cam",), image=True, label=True),
    ListNeed("val_list", ("eval_deeplab",), image=True, class_gt=True),
    ListNeed("infer_list", ("train_irn", "make_sem_seg_labels", "make_ins_seg_labels"), image=True, label=True),
    ListNeed("deeplab_train_list", ("train_deeplab",), image=True),
    ListNeed("chainer_eval_set", ("eval_cam", "eval_sem_seg"), class_gt=True),
    ListNeed("chainer_eval_set", ("eval_ins_seg",), instance_gt=True),
)


def _some(ids: Sequence[str], describe: Callable[[str], str] = repr) -> str:
    more = f" and {len(ids) - SHOWN} more" if len(ids) > SHOWN else ""
    return ", ".join(describe(i) for i in ids[:SHOWN]) + more


def _duplicates(ids: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    return sorted({i for i in ids if i in seen or seen.add(i)})


def _gt_problem(index, img_id: str) -> str | None:
    """Why the class mask of ``img_id`` cannot be scored (None: it can): missing, not a PNG of class indices, of
    another size than its image, or with values outside the dataset's labels (decoding a mask takes milliseconds)."""
    from PIL import Image

    if getattr(index, "gt_optional", False) and not index.has_class_gt(img_id):  # scored only where a mask is
        return None
    if not getattr(index, "class_gt_from_files", True):  # built from the annotations when scored
        return None if index.has_class_gt(img_id) else f"image {img_id!r} has no annotations to build its mask from"
    path = index.class_gt_path(img_id)
    if not path.is_file():
        return f"no mask {path}"
    try:
        with Image.open(path) as mask:
            mode, size = mask.mode, mask.size
        with Image.open(index.image_path(img_id)) as image:
            image_size = image.size
    except Exception as exc:  # noqa: BLE001 (an unreadable header is the problem reported)
        return f"cannot read the header of {path} or of its image ({type(exc).__name__}: {exc})"
    if mode not in ("P", "L", "I", "I;16"):
        return f"{path} has mode {mode}: a mask must be a palette or greyscale PNG of class indices, not colours"
    if size != image_size:
        return f"{path} is {size[0]}x{size[1]} (WxH) but its image is {image_size[0]}x{image_size[1]}"
    try:
        index.read_class_gt(img_id)
    except UserError as exc:
        return str(exc)
    return None


def _list_problems(args, planned: set[str], index, ids_of: Callable[[str], list[str] | None]) -> list[str]:
    """Ids without an image, a label or usable ground truth: one line per kind, each id once, naming the lists."""
    missing: dict[str, dict[str, list[str]]] = {"image": {}, "label": {}, "ground truth": {}, "instance mask": {}}
    why: dict[str, str] = {}
    for need in LIST_NEEDS:
        readers = [s for s in need.steps if s in planned]
        ids = ids_of(need.flag) if readers else None
        if ids is None:
            continue
        where = f"--{need.flag} {getattr(args, need.flag)} ({', '.join(readers)})"
        for i in ids:
            if need.image and not index.image_path(i).is_file():
                missing["image"].setdefault(i, []).append(where)
            if need.label and i not in index.labels:
                missing["label"].setdefault(i, []).append(where)
            if need.class_gt:
                if i not in why:
                    why[i] = _gt_problem(index, i) or ""
                if why[i]:
                    missing["ground truth"].setdefault(i, []).append(where)
            if need.instance_gt and hasattr(index, "object_gt_path") and not index.object_gt_path(i).is_file():
                missing["instance mask"].setdefault(i, []).append(where)
    problems = []
    for kind, ids in missing.items():
        if not ids:
            continue
        lists = ", ".join(dict.fromkeys(w for ws in ids.values() for w in ws))
        first = list(ids)[:SHOWN]
        more = f"; and {len(ids) - SHOWN} more" if len(ids) > SHOWN else ""
        if kind == "image":
            detail, fix = ", ".join(str(index.image_path(i)) for i in first), "add the images or remove the ids"
        elif kind == "label":
            detail, fix = ", ".join(repr(i) for i in first), "add their annotations or remove the ids"
        elif kind == "ground truth":
            detail, fix = "; ".join(why[i] for i in first), "fix or restore the masks"
        else:
            detail, fix = ", ".join(str(index.object_gt_path(i)) for i in first), "add them or switch eval_ins_seg off"
        problems.append(f"{len(ids)} id(s) of {lists} have no usable {kind}: {detail}{more}; {fix}")
    return problems


def _made_before(args, planned: set[str], index, ids_of: Callable[[str], list[str] | None]) -> list[str]:
    """What planned steps take from earlier steps: made by a planned one (CAMs cover their ids), or already there."""
    from pipeline.tasks import mask_ids

    problems: list[str] = []
    cams_made = "make_cam" in planned
    train = ids_of("train_list") if cams_made else None
    train_ids = set(train or ())

    def needs_cams(step: str, ids: Sequence[str], what: str) -> None:
        if step not in planned or (cams_made and train is None):  # an unresolved list is reported already
            return
        if cams_made:
            outside = [i for i in ids if i not in train_ids]
            if outside:
                problems.append(f"{step}: {len(outside)} id(s) of {what} are not in --train_list {args.train_list}, "
                                f"so make_cam makes no CAM for them: {_some(outside)}; use a --train_list that holds "
                                f"them")
        else:
            absent = [i for i in ids if not cam_path(args.cam_out_dir, i).is_file()]
            if absent:
                problems.append(f"{step}: no CAM for {len(absent)} id(s) of {what} in --cam_out_dir "
                                f"{args.cam_out_dir}: {_some(absent)}; run make_cam (--make_cam_pass true)")

    def needs_file(step: str, producer: str, path: Path, flag: str) -> None:
        if step in planned and producer not in planned and not Path(path).is_file():
            problems.append(f"{step} reads {path} (--{flag}), which does not exist: run {producer} "
                            f"(--{BY_NAME[producer].switch} true) or pass --{flag}")

    def needs_outputs(step: str, producer: str, folder: str, flag: str, ids: Sequence[str] | None,
                      path_of: Callable[[str, str], Path]) -> None:
        if step in planned and producer not in planned and ids:
            absent = [i for i in ids if not path_of(folder, i).is_file()]
            if absent:
                problems.append(f"{step}: --{flag} {folder} lacks the outputs of {producer} for {len(absent)} id(s): "
                                f"{_some(absent)}; run {producer} first")

    infer = ids_of("infer_list") if planned & {"make_sem_seg_labels", "make_ins_seg_labels", "train_irn",
                                               "make_cocoann"} else None
    def scored(flag: str) -> list[str] | None:
        """The ids of ``flag`` an evaluation scores: those with a mask where masks are optional (a folder)."""
        ids = ids_of(flag)
        if ids is not None and getattr(index, "gt_optional", False):
            ids = [i for i in ids if index.has_class_gt(i)]
        return ids

    evaluated = scored("chainer_eval_set") if planned & {"eval_cam", "eval_sem_seg", "eval_ins_seg"} else None
    if evaluated is not None:
        needs_cams("eval_cam", evaluated, f"--chainer_eval_set {args.chainer_eval_set}")
    if "cam_to_ir_label" in planned and not cams_made:
        needs_cams("cam_to_ir_label", ids_of("train_list") or [], f"--train_list {args.train_list}")
    if "make_sem_seg_labels" in planned and infer is not None and (
            "train_deeplab" not in planned or ids_of("deeplab_train_list") is not None):
        needs_cams("make_sem_seg_labels", mask_ids(args, index), "the pseudo masks' ids")
    if infer is not None:
        needs_cams("make_ins_seg_labels", infer, f"--infer_list {args.infer_list}")
    needs_file("make_cam", "train_cam", cam_vit_weights(args), "cam2_weights_name")
    for step in ("make_sem_seg_labels", "make_ins_seg_labels"):
        needs_file(step, "train_irn", Path(args.irn_weights_name), "irn_weights_name")
    if "eval_deeplab" in planned and scored("val_list"):  # nothing to score: the weights are not read
        needs_file("eval_deeplab", "train_deeplab", Path(args.deeplab_weights_name), "deeplab_weights_name")
    needs_file("export_deeplab_test", "train_deeplab", Path(args.deeplab_weights_name), "deeplab_weights_name")
    needs_outputs("train_irn", "cam_to_ir_label", args.ir_label_out_dir, "ir_label_out_dir",
                  ids_of("train_list") if "train_irn" in planned else None, label_png)
    needs_outputs("eval_sem_seg", "make_sem_seg_labels", args.sem_seg_out_dir, "sem_seg_out_dir", evaluated, label_png)
    needs_outputs("eval_ins_seg", "make_ins_seg_labels", args.ins_seg_out_dir, "ins_seg_out_dir", evaluated,
                  ins_seg_path)
    needs_outputs("make_cocoann", "make_ins_seg_labels", args.ins_seg_out_dir, "ins_seg_out_dir", infer,
                  ins_seg_path)
    if "train_deeplab" in planned and not ("make_sem_seg_labels" in planned
                                           and Path(args.deeplab_label_dir) == Path(args.sem_seg_out_dir)):
        ids = ids_of("deeplab_train_list") or []
        absent = [i for i in ids if not label_png(args.deeplab_label_dir, i).is_file()]
        if absent:
            problems.append(f"train_deeplab: --deeplab_label_dir {args.deeplab_label_dir} has no mask for "
                            f"{len(absent)} id(s) of --deeplab_train_list {args.deeplab_train_list}: {_some(absent)}; "
                            f"run make_sem_seg_labels or point --deeplab_label_dir at the masks")
    return problems


def segmentation_problems(args: argparse.Namespace, steps: Sequence[str], index) -> list[str]:
    """The problems of a VOC, COCO or folder run's inputs (see the module docstring); ``index``: its dataset."""
    planned = set(steps)
    resolved: dict[str, list[str] | None] = {}
    problems: list[str] = []

    def ids_of(flag: str) -> list[str] | None:
        if flag not in resolved:
            value = getattr(args, flag)
            try:
                ids = index.ids(value)
            except UserError as exc:
                problems.append(f"--{flag} {value}: {exc}")
                ids = None
            if ids is not None:
                twice = _duplicates(ids)
                if twice:
                    problems.append(f"--{flag} {value}: {len(twice)} id(s) are listed more than once: {_some(twice)}; "
                                    f"list each image once")
            resolved[flag] = ids
        return resolved[flag]

    problems_of_lists = _list_problems(args, planned, index, ids_of)
    made = _made_before(args, planned, index, ids_of)
    return problems + problems_of_lists + made


def cub_problems(args: argparse.Namespace, steps: Sequence[str]) -> list[str]:
    """The problems of a CUB run's inputs: metadata, images, boxes inside their images, eval_wsol's weights."""
    from cub.dataset import CUBMetadata, box_problems

    planned = set(steps)
    if not planned & {"train_wsol", "eval_wsol"}:
        return []
    try:
        meta = CUBMetadata.load(args.cub_root)
    except UserError as exc:
        return [str(exc)]
    problems = []
    missing = meta.missing_images()
    if missing:
        problems.append(f"--cub_root {meta.root}: {len(missing)} image(s) of images.txt do not exist: "
                        + ", ".join(str(p) for _, p in missing[:SHOWN]) + "; restore them from CUB_200_2011.tgz")
    else:
        problems += box_problems(meta)
    if "eval_wsol" in planned and "train_wsol" not in planned and not Path(args.wsol_weights_name).is_file():
        problems.append(f"eval_wsol reads {args.wsol_weights_name} (--wsol_weights_name), which does not exist: run "
                        f"train_wsol (--train_wsol_pass true) or pass --wsol_weights_name")
    return problems


def check_inputs(args: argparse.Namespace, steps: Sequence[str], index=None) -> None:
    """Raise one :class:`InputsError` listing every problem of the planned steps' inputs (nothing when the steps
    read no dataset). ``index``: the opened dataset of a segmentation run (opened here when None)."""
    start = time.perf_counter()
    readers = [s for s in steps if s != "report"]
    if not readers:
        return
    if args.dataset == "cub":
        problems = cub_problems(args, readers)
    else:
        if index is None:
            from pipeline.datasets import open_dataset

            index = open_dataset(args)
        problems = segmentation_problems(args, readers, index)
    log.info("preflight: inputs of %d step(s) checked in %.1f s, %d problem(s)", len(readers),
             time.perf_counter() - start, len(problems))
    if len(problems) == 1:
        raise InputsError(f"{problems[0]}; nothing was run")
    if problems:
        raise InputsError(f"{len(problems)} problems with the inputs of the planned steps; nothing was run:\n"
                          + "\n".join(f"  - {p}" for p in problems))
