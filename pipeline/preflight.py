"""Check the flags and every pretrained source of the planned steps before the first step starts (seconds, not
hours).

:func:`validate_args` checks the flags themselves (numeric ranges, ``--shard``, ``--device``, writable output
folders), also under ``--dry_run``; it writes nothing.

:func:`check_pretrained_sources` looks at each (flag, source, receiving model) of the planned training steps:

* a local file: exists, reads with ``torch.load(weights_only=True, mmap=True)`` (safetensors: header only), and its
  keys / shapes fit the model that will receive it, through the same strict checks the loaders use
  (:func:`net.deit_cam.deit_state_for`, :func:`net.resnet.resnet_state_for`,
  :func:`net.deeplab_v2.backbone_init_state`) against the model built on the ``meta`` device (no memory, no init
  cost at real widths);
* a timm name (or the default ``*.tv_in1k`` / ``deit_small_patch16_224.fb_in1k``): known to timm, then either in
  the local cache (its file is checked like a local one) or downloadable: ``HF_HUB_OFFLINE`` or no answer from the
  hub within ``network_timeout_s`` (one try, no retries) is a problem. A name that timm resolves to other weights
  than the original's torchvision / official ones is logged as a WARNING.

All problems are collected and raised as ONE :class:`misc.core.weights.PretrainedWeightsError` listing, for each, the
flag, the source, what is wrong and what to download (or ``--no_pretrained``).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import torch
import torch.nn as nn

from misc.core.errors import UserError
from misc.core.weights import (PretrainedWeightsError, download_problem, is_local_source, read_state_dict,
                          resolve_timm_weights, warn_if_not_original)

log = logging.getLogger(__name__)

StateCheck = Callable[[Mapping[str, torch.Tensor], str], None]  # (checkpoint state, source shown) → raises


@dataclass(frozen=True)
class Need:
    """One pretrained source a step will load: ``flag`` with its value ``source`` (None → ``default``), the model
    that receives it (``target``, for messages) and ``check`` (the loader's strict key/shape check against that
    model, built on ``meta``). ``hint``: what to download."""

    flag: str
    source: str | None
    default: str
    target: str
    check: StateCheck
    hint: str


# ------------------------------------------------------------------------------------------------ receiving models
@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Every parameter / buffer registered inside goes to the ``meta`` device as it is registered, and the
    ``torch.nn.init`` functions skip meta tensors, so that building costs nothing at real widths, while the constructor's other tensor code (e.g. ``torch.linspace(...).tolist()``) still
    runs on the CPU (a plain ``with torch.device("meta")`` breaks such code)."""
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter_on_meta(self: nn.Module, name: str, param: nn.Parameter | None) -> None:
        register_parameter(self, name, param)
        if param is not None and param.device.type != "meta":
            self._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    def buffer_on_meta(self: nn.Module, name: str, tensor: torch.Tensor | None, persistent: bool = True) -> None:
        register_buffer(self, name, None if tensor is None else tensor.to("meta"), persistent)

    def skip_on_meta(init: Callable) -> Callable:
        def wrapped(tensor: torch.Tensor, *args, **kwargs):
            return tensor if tensor.device.type == "meta" else init(tensor, *args, **kwargs)
        return wrapped

    inits = {name: getattr(nn.init, name) for name in dir(nn.init)
             if name.endswith("_") and not name.startswith("_") and callable(getattr(nn.init, name))}
    patched = [(nn.init, name, init) for name, init in inits.items()]
    timm_init = sys.modules.get("timm.layers.weight_init")  # trunc_normal_ of DeiTCAM's pos_embed / Linear layers
    if timm_init is not None and callable(getattr(timm_init, "_trunc_normal_", None)):
        patched.append((timm_init, "_trunc_normal_", timm_init._trunc_normal_))
    nn.Module.register_parameter, nn.Module.register_buffer = parameter_on_meta, buffer_on_meta  # type: ignore
    for owner, name, init in patched:  # meta init is a slow python decomposition and has no effect anyway
        setattr(owner, name, skip_on_meta(init))
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer  # type: ignore
        for owner, name, init in patched:
            setattr(owner, name, init)


def _meta_state(build: Callable[[], nn.Module]) -> dict[str, torch.Tensor]:
    """The state dict of ``build()`` with every tensor on the ``meta`` device (shapes only, no init cost)."""
    with _parameters_on_meta():
        return build().state_dict()


def _deit_need(args, build: Callable[[], torch.nn.Module], what: str) -> Need:
    """``build``: the step's transformer (from :mod:`pipeline.models`), built on ``meta`` to get the receiving shapes."""
    from net.deit_cam import DEIT_DOWNLOAD_HINT, DEIT_TIMM_NAME, deit_state_for

    def check(state: Mapping[str, torch.Tensor], source: str) -> None:
        own = _meta_state(build)
        deit_state_for(own, state, flag="--deit_pretrained", source=source)

    return Need("--deit_pretrained", args.deit_pretrained, DEIT_TIMM_NAME, what, check, DEIT_DOWNLOAD_HINT)


def _resnet_need(flag: str, source: str | None, depth: int, what: str, build: Callable[[], torch.nn.Module]) -> Need:
    """``build``: the ResNet backbone of the step's model (from :mod:`pipeline.models`) that receives the weights."""
    from net.resnet import TORCHVISION_URLS, resnet_state_for

    def check(state: Mapping[str, torch.Tensor], shown: str) -> None:
        own = _meta_state(build)
        resnet_state_for(own, state, depth=depth, flag=flag, source=shown)

    url = TORCHVISION_URLS.get(depth)
    hint = f"{url} (file {url.rsplit('/', 1)[-1]})" if url else f"timm resnet{depth}.tv_in1k"
    return Need(flag, source, f"resnet{depth}.tv_in1k", f"{what} (ResNet-{depth})", check, hint)


def _deeplab_need(args) -> Need:
    from pipeline.models import build_deeplab
    from net.deeplab_v2 import COCO_INIT_HINT, TORCHVISION_URLS, backbone_init_state

    depth = args.deeplab_depth

    def check(state: Mapping[str, torch.Tensor], shown: str) -> None:
        own = _meta_state(lambda: build_deeplab(args, msc=False))
        backbone_init_state(own, state, flag="--deeplab_init", source=shown, depth=depth)

    url = TORCHVISION_URLS.get(depth)
    hint = f"{COCO_INIT_HINT} (the paper's init)" + (f" or {url} (ImageNet)" if url else "")
    return Need("--deeplab_init", args.deeplab_init, f"resnet{depth}.tv_in1k", f"DeepLab-v2 backbone (ResNet-{depth})",
                check, hint)


def needs_for(args, step_modules: Sequence[str]) -> list[Need]:
    """The pretrained sources the steps ``step_modules`` (e.g. ``"step.train_cam"``) will load, in order (mirrors
    the pretrained loads of pipeline/models.py, whose builders also give the receiving shapes); empty with
    ``--no_pretrained``."""
    if getattr(args, "no_pretrained", False):
        return []
    from pipeline.models import build_cam_cnn, build_cam_vit, build_irn_net, build_wsol_cnn, build_wsol_vit

    needs: list[Need] = []
    for module in step_modules:
        step = module.rsplit(".", 1)[-1]
        if step == "train_cam":
            needs.append(_deit_need(args, lambda: build_cam_vit(args, pretrained=False),
                                    what="train_cam transformer branch"))
            needs.append(_resnet_need("--cam_cnn_pretrained", args.cam_cnn_pretrained, args.cam_cnn_depth,
                                      "train_cam CNN branch", lambda: build_cam_cnn(args, pretrained=False).backbone))
        elif step == "train_irn":
            needs.append(_resnet_need("--irn_pretrained", args.irn_pretrained, args.irn_backbone_depth,
                                      "train_irn backbone", lambda: build_irn_net(args).backbone))
        elif step == "train_deeplab":
            needs.append(_deeplab_need(args))
        elif step == "train_wsol":
            needs.append(_deit_need(args, lambda: build_wsol_vit(args, pretrained=False),
                                    what="train_wsol transformer"))
            needs.append(_resnet_need("--cam_cnn_pretrained", args.cam_cnn_pretrained, args.wsol_cnn_depth,
                                      "train_wsol CNN branch", lambda: build_wsol_cnn(args, pretrained=False).backbone))
    return needs


# ------------------------------------------------------------------------------------------------ checks
def _problem(need: Need, shown: str, what: str) -> str:
    return f"{need.flag} {shown} (for the {need.target}): {what}"


def _check_state(need: Need, state: Mapping[str, torch.Tensor], shown: str) -> str | None:
    try:
        need.check(state, shown)
    except PretrainedWeightsError as exc:
        text = str(exc)
        prefix = f"{need.flag} {shown}: "
        return _problem(need, shown, text[len(prefix):] if text.startswith(prefix) else text)
    return None


def _one_line(text: str, limit: int = 300) -> str:
    """``text`` with its whitespace (newlines too) collapsed, cut at ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _unreadable(path: str, exc: Exception) -> str:
    """Why the file at ``path`` is no checkpoint, in one line: a text file is named as such."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if not head:
        return "cannot be read: it is an empty file, not a checkpoint"
    if text is not None and all(c.isprintable() or c in "\n\r\t" for c in text):
        return f"cannot be read: it is a text file, not a checkpoint (it starts with {_one_line(text, 60)!r})"
    return f"cannot be read with torch.load(weights_only=True) ({type(exc).__name__}: {_one_line(str(exc))})"


def check_need(need: Need, *, network_timeout_s: float = 3.0,
               state_cache: dict[str, Mapping[str, torch.Tensor] | str] | None = None,
               probes: dict[str, str | None] | None = None) -> str | None:
    """None when ``need`` will load, else one line saying what is wrong and what to do. ``state_cache`` (path →
    state or read error) and ``probes`` (host → network problem) share work between needs."""
    cache = state_cache if state_cache is not None else {}
    advice = f"Get {need.hint} and pass it with {need.flag} /path/to/file, or pass --no_pretrained."
    if is_local_source(need.source):
        path = need.source
        if not os.path.isfile(path):
            return _problem(need, path, f"file not found. {advice}")
        if path not in cache:
            try:
                cache[path] = read_state_dict(path, lazy=True)
            except Exception as exc:  # unreadable, not a checkpoint, pickled objects refused by weights_only
                cache[path] = _unreadable(path, exc)
        state = cache[path]
        if isinstance(state, str):
            return _problem(need, path, f"{state}. {advice}")
        return _check_state(need, state, path)
    name = need.source or need.default
    warn_if_not_original(name, need.default, need.flag)
    try:
        weights = resolve_timm_weights(name)
    except ValueError as exc:
        return _problem(need, name, f"unknown to timm ({exc}). {advice}")
    if weights.cached:
        try:
            state = read_state_dict(weights.cached, lazy=True)
        except Exception as exc:
            return _problem(need, name, f"its cached file {weights.cached} cannot be read ({exc}). {advice}")
        return _check_state(need, state, f"{name} ({weights.cached})")
    problem = download_problem(weights, network_timeout_s, probes)
    if problem:
        return _problem(need, name, f"{problem}. {advice}")
    log.info("%s %s: not cached; timm will download it when the step starts", need.flag, name)
    return None


def check_pretrained_sources(args, step_modules: Sequence[str], *, network_timeout_s: float = 3.0) -> None:
    """Check every pretrained source the steps ``step_modules`` need (see the module docstring); nothing with
    ``args.no_pretrained``. Raises one :class:`PretrainedWeightsError` listing all problems.

    Cost: key/shape checks on ``meta`` models and memory-mapped files (about a second at real widths), plus at
    most ``network_timeout_s`` per uncached timm name (one probe per host and call).
    """
    start = time.perf_counter()
    needs = needs_for(args, step_modules)
    problems: list[str] = []
    seen: set[tuple[str, str | None, str]] = set()
    state_cache: dict[str, Mapping[str, torch.Tensor] | str] = {}
    probes: dict[str, str | None] = {}
    for need in needs:
        key = (need.flag, need.source, need.target)
        if key in seen:
            continue
        seen.add(key)
        problem = check_need(need, network_timeout_s=network_timeout_s, state_cache=state_cache, probes=probes)
        if problem:
            problems.append(" ".join(problem.split()))  # one line per problem
    log.info("preflight: %d pretrained source(s) checked in %.1f s, %d problem(s)", len(seen),
             time.perf_counter() - start, len(problems))
    if problems:
        raise PretrainedWeightsError(
            f"{len(problems)} pretrained weight source(s) cannot be used; nothing was run:\n"
            + "\n".join(f"  - {p}" for p in problems))


# ----------------------------------------------------------------------------------------------- flags, device, folders
# Ranges of the numeric flags (checked when the flag exists on ``args``). Integers: (flags, least value).
_INT_AT_LEAST: tuple[tuple[tuple[str, ...], int], ...] = (
    (("cam_crop_size", "cam_batch_size", "cam_num_epoches", "cam_resize_long", "cam_cnn_width", "vit_embed_dim",
      "vit_depth", "vit_num_heads", "vit_patch_size", "vit_tile_size", "vit_num_passes",
      "irn_crop_size", "irn_batch_size", "irn_num_epoches", "irn_backbone_width",
      "deeplab_iters", "deeplab_batch_size", "deeplab_iter_size", "deeplab_crop_size", "deeplab_checkpoint_every",
      "deeplab_poly_step", "deeplab_base_width", "deeplab_blocks",
      "wsol_num_classes", "wsol_epochs", "wsol_batch_size", "wsol_lr_decay_epochs", "wsol_l1_window",
      "wsol_image_size", "wsol_patch_size", "wsol_resize_size", "wsol_cnn_width", "nproc",
      "demo_num_train", "demo_num_val", "demo_image_size", "demo_max_objects", "cub_demo_classes",
      "cub_demo_train_per_class", "cub_demo_test_per_class"), 1),
    (("num_workers", "vis_num", "report_num_images", "exp_times", "demo_num_extra", "demo_num_test",
      "wsol_heldout_per_class"), 0),
)
# Floats: (flags, low, high, low inclusive, high inclusive); every value of a list flag is checked.
_FLOAT_RANGES: tuple[tuple[tuple[str, ...], float, float, bool, bool], ...] = (
    (("cam_eval_thres", "cam_eval_sweep", "conf_fg_thres", "conf_bg_thres", "ins_seg_bg_thres", "sem_seg_bg_thres",
      "cocoann_min_score", "wsol_cam_thr", "cam_momentum", "irn_momentum", "deeplab_momentum"), 0.0, 1.0, True, True),
    (("wsol_drop_path",), 0.0, 1.0, True, False),
    (("cam_scales", "deeplab_scales", "cam_learning_rate", "irn_learning_rate", "deeplab_lr", "wsol_lr",
      "wsol_cnn_lr", "wsol_cnn_cls_lr", "cam_head_lr_mult", "beta"), 0.0, math.inf, False, False),
    (("cam_weight_decay", "irn_weight_decay", "deeplab_weight_decay", "wsol_weight_decay", "wsol_cnn_weight_decay",
      "cam_lambda", "deeplab_poly_power"), 0.0, math.inf, True, False),
)
# Output folders (a ``*_dir`` flag) or files (a ``*_name`` flag: its folder) each planned step writes.
_STEP_OUTPUTS: dict[str, tuple[str, ...]] = {
    "train_cam": ("cam1_weights_name", "cam2_weights_name"), "make_cam": ("cam_out_dir",),
    "cam_to_ir_label": ("ir_label_out_dir",), "train_irn": ("irn_weights_name",),
    "make_ins_seg_labels": ("ins_seg_out_dir",), "make_cocoann": ("cocoann_out_dir",),
    "make_sem_seg_labels": ("sem_seg_out_dir",),
    "train_deeplab": ("deeplab_weights_name",), "eval_deeplab": ("deeplab_out_dir",),
    "export_deeplab_test": ("deeplab_out_dir",),
    "train_wsol": ("wsol_weights_name", "wsol_cnn_weights_name", "wsol_out_dir"), "eval_wsol": ("wsol_out_dir",),
}


def _shown(value: object) -> str:
    return " ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


def _range_text(low: float, high: float, low_in: bool, high_in: bool) -> str:
    if high == math.inf:
        return f"{'>=' if low_in else '>'} {low:g}"
    return f"in {'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"


def _inside(v: float, low: float, high: float, low_in: bool, high_in: bool) -> bool:
    """``v`` is finite and within the range (NaN and inf are not)."""
    return math.isfinite(v) and (low <= v if low_in else low < v) and (v <= high if high_in else v < high)


def _number_problems(args) -> list[str]:
    """Each numeric flag against its range in :data:`_INT_AT_LEAST` / :data:`_FLOAT_RANGES`."""
    problems = []
    for flags, least in _INT_AT_LEAST:
        for flag in flags:
            value = getattr(args, flag, None)
            values = value if isinstance(value, (list, tuple)) else [value]
            if value is not None and any(v < least for v in values):
                what = "every value " if isinstance(value, (list, tuple)) else ""
                problems.append(f"--{flag} {_shown(value)}: {what}must be an integer >= {least}")
    for flags, low, high, low_in, high_in in _FLOAT_RANGES:
        for flag in flags:
            value = getattr(args, flag, None)
            values = value if isinstance(value, (list, tuple)) else [value]
            if value is not None and not all(_inside(float(v), low, high, low_in, high_in) for v in values):
                what = "every value " if isinstance(value, (list, tuple)) else ""
                problems.append(f"--{flag} {_shown(value)}: {what}must be {_range_text(low, high, low_in, high_in)}")
    return problems


def _relation_problems(args) -> list[str]:
    """Values that must fit each other (only once each is in its own range)."""
    problems = []
    lo_hi = getattr(args, "cam_resize_long", None)
    if lo_hi is not None and lo_hi[0] > lo_hi[1]:
        problems.append(f"--cam_resize_long {_shown(lo_hi)}: the first (shortest long side) must be <= the second")
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
    for step in step_names:
        for flag in _STEP_OUTPUTS.get(step, ()):
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


def validate_args(args, step_modules: Sequence[str]) -> None:
    """Check the flags of a run before anything is written or computed: numeric ranges (positive sizes, epochs,
    iterations, scales; thresholds in [0, 1]), ``--shard``, ``--device``, the CUB held-out count and that every
    output folder is writable. Raises one :class:`misc.core.errors.UserError` naming each bad flag and its allowed
    range. Pretrained sources are checked by :func:`check_pretrained_sources`."""
    step_names = [m.rsplit(".", 1)[-1] for m in step_modules]
    problems = _number_problems(args)
    if not problems:
        problems.extend(_relation_problems(args))
    for problem in (_shard_problem(args), _device_problem(args), _heldout_problem(args, step_names)):
        if problem:
            problems.append(problem)
    if not problems:  # ranges first: a folder check is pointless for a run that cannot start anyway
        problems.extend(_folder_problems(args, step_names))
    if len(problems) == 1:
        raise UserError(problems[0])
    if problems:
        raise UserError(f"{len(problems)} flag values cannot be used; nothing was run:\n"
                        + "\n".join(f"  - {p}" for p in problems))
