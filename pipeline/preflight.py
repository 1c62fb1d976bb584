"""Checks of a run before anything is written or computed (also under ``--dry_run``; they write nothing): every
flag against its declaration (:mod:`pipeline.flags`), flags that must fit each other, ``--device``, the CUB held-out
count and the output folders of the planned steps. The pretrained sources are checked by
:mod:`pipeline.pretrained_check`.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import torch

from misc.core.errors import UserError
from pipeline.flags import value_problems, written_by


def _shown(value: object) -> str:
    return " ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


def _relation_problems(args) -> list[str]:
    """Values that must fit each other (only once each is in its own range)."""
    problems = []
    lo_hi = getattr(args, "cam_resize_long", None)
    if lo_hi is not None and lo_hi[0] > lo_hi[1]:
        problems.append(f"--cam_resize_long {_shown(lo_hi)}: the first (shortest long side) must be <= the second")
    fg, bg = getattr(args, "conf_fg_thres", None), getattr(args, "conf_bg_thres", None)
    if fg is not None and bg is not None and fg <= bg:
        problems.append(f"--conf_fg_thres {fg}: must be above --conf_bg_thres {bg} (confident foreground above, "
                        f"confident background below)")
    dim, heads = getattr(args, "vit_embed_dim", None), getattr(args, "vit_num_heads", None)
    if dim is not None and heads is not None and dim % heads:
        problems.append(f"--vit_embed_dim {dim}: must be a multiple of --vit_num_heads {heads}")
    if getattr(args, "dataset", "voc") == "cub":
        size, patch = getattr(args, "wsol_image_size", None), getattr(args, "wsol_patch_size", None)
        if size is not None and patch is not None and size % patch:
            problems.append(f"--wsol_image_size {size}: must be a multiple of --wsol_patch_size {patch}")
    else:
        tile, patch = getattr(args, "vit_tile_size", None), getattr(args, "vit_patch_size", None)
        if tile is not None and patch is not None and (tile % patch or (tile // patch) % 2):
            problems.append(f"--vit_tile_size {tile}: must be an even multiple of --vit_patch_size {patch} (tiles "
                            f"overlap by half a tile)")
    return problems


def _shard_problem(args) -> str | None:
    from misc.engine.per_image import parse_shard

    try:
        parse_shard(getattr(args, "shard", None))
    except ValueError as exc:
        return str(exc)
    return None


def _device_problem(args) -> str | None:
    """--device names a device this process can use (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ...)."""
    value = getattr(args, "device", "auto")
    if value == "auto":
        return None
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError) as exc:
        return f"--device {value}: not a device ({exc}); use auto, cpu, cuda or cuda:N"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            why = f"torch {torch.__version__}, built with CUDA {torch.version.cuda or 'none'}" + (
                f", CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else "")
            return f"--device {value}: no CUDA device is visible ({why}); use --device cpu"
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            return f"--device {value}: only {count} CUDA device(s) are visible (cuda:0 to cuda:{count - 1})"
    return None


def probe_write(folder: str | os.PathLike) -> None:
    """Create and remove a temporary file in the existing folder ``folder``; raises :class:`OSError` if it fails."""
    with tempfile.TemporaryFile(dir=folder):
        pass


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _folder_problems(args, step_names: Sequence[str]) -> list[str]:
    """Each output folder (made or not yet) can receive files: the nearest existing folder above it takes a temp
    file. Nothing is left behind (``--dry_run`` writes nothing)."""
    folders: list[tuple[str, Path]] = []
    if getattr(args, "work_dir", None):
        folders.append(("--work_dir", Path(args.work_dir)))
    if getattr(args, "result_dir", None):
        folders.append(("--result_dir", Path(args.result_dir)))
    if getattr(args, "sess_dir", None):  # run() makes the sess folder (resume and state files)
        folders.append(("--sess_dir", Path(args.sess_dir)))
    if getattr(args, "log_name", None):
        folders.append(("--log_name", log_file(args).parent))
    for step in step_names:
        for flag in written_by(step):
            value = getattr(args, flag, None)
            if value:
                folders.append((f"--{flag}", Path(value) if flag.endswith("_dir") else Path(value).parent))
    problems, probed = [], set()
    for flag, folder in folders:
        folder = folder.absolute()
        base = _nearest_existing(folder)
        if base in probed:
            continue
        probed.add(base)
        if not base.is_dir():
            problems.append(f"{flag} {folder}: {base} is a file, not a folder; choose another {flag}")
            continue
        try:
            probe_write(base)
        except OSError as exc:
            why = (exc.strerror or str(exc)).lower()
            problems.append(f"{flag} {folder}: cannot create files in {base} ({why}); make it writable or choose "
                            f"another {flag}")
    return problems


def log_file(args) -> Path:
    """The run's log file: ``<work_dir>/<log_name>.log`` (``--log_name`` may hold subfolders)."""
    return Path(args.work_dir) / f"{args.log_name}.log"


def _log_problem(args) -> str | None:
    """--log_name names a file (<work_dir>/<log_name>.log; its folders are made), not a folder."""
    name = getattr(args, "log_name", None)
    if not name:
        return None
    if name.endswith(("/", "\\")) or Path(args.work_dir, name).is_dir() or log_file(args).is_dir():
        return (f"--log_name {name}: names a folder; give a file name (the log is written to "
                f"<work_dir>/<log_name>.log, e.g. --log_name logs/run1)")
    return None


def _heldout_problem(args, step_names: Sequence[str]) -> str | None:
    """--wsol_heldout_per_class leaves every CUB class a train image; knowable here for the demo data that is not
    written yet (its size is in the flags); an existing CUB folder is checked where the list is made
    (:func:`cub.dataset.check_heldout_per_class`)."""
    if (getattr(args, "dataset", None) != "cub" or not {"train_wsol", "eval_wsol"} & set(step_names)
            or args.wsol_select_on != "heldout"):  # selecting on the test set: the list is not held out of training
        return None
    n = args.wsol_heldout_per_class
    if n < 1:
        return (f"--wsol_heldout_per_class {n}: must be >= 1 with --wsol_select_on heldout (or select on the test "
                f"set: --wsol_select_on test)")
    if getattr(args, "demo", False) and not (Path(args.cub_root) / "images.txt").is_file():
        per_class = args.cub_demo_train_per_class
        if n >= per_class:
            allowed = f"must be in [1, {per_class - 1}]" if per_class > 1 else "no image can be held out"
            return (f"--wsol_heldout_per_class {n}: {allowed}: the demo CUB data has {per_class} train image(s) per "
                    f"class, and every class needs at least one left to train on; or select on the test set: "
                    f"--wsol_select_on test")
    return None


NO_FOLDER_STEPS = {"eval_ins_seg": "--eval_ins_seg_pass", "make_cocoann": "--make_cocoann_pass"}


def _folder_step_problem(args, step_names: Sequence[str]) -> str | None:
    """A folder dataset has no instance ground truth and no COCO ids: the steps that need them cannot run."""
    if getattr(args, "dataset", None) != "folder":
        return None
    steps = [s for s in step_names if s in NO_FOLDER_STEPS]
    if not steps:
        return None
    one = len(steps) == 1
    return (f"--dataset folder: {' and '.join(steps)} run{'s' if one else ''} on VOC and COCO only (they need "
            f"instance ground truth, which a folder dataset does not have); switch {'it' if one else 'them'} off with "
            + " ".join(f"{NO_FOLDER_STEPS[s]} false" for s in steps))


def validate_args(args, step_modules: Sequence[str]) -> None:
    """Check the flags of a run before anything is written or computed: numeric ranges (positive sizes, epochs,
    iterations, scales; thresholds in [0, 1]), ``--shard``, ``--device``, the CUB held-out count and that every
    output folder is writable. Raises one :class:`misc.core.errors.UserError` naming each bad flag and its allowed
    range. Pretrained sources are checked by :mod:`pipeline.pretrained_check`."""
    step_names = [m.rsplit(".", 1)[-1] for m in step_modules]
    problems = value_problems(args)
    if not problems:
        problems.extend(_relation_problems(args))
    for problem in (_shard_problem(args), _device_problem(args), _heldout_problem(args, step_names),
                    _log_problem(args), _folder_step_problem(args, step_names)):
        if problem:
            problems.append(problem)
    if not problems:  # ranges first: a folder check is pointless for a run that cannot start anyway
        problems.extend(_folder_problems(args, step_names))
    if len(problems) == 1:
        raise UserError(problems[0])
    if problems:
        raise UserError(f"{len(problems)} flag values cannot be used; nothing was run:\n"
                        + "\n".join(f"  - {p}" for p in problems))
