"""Check every pretrained source of the planned training steps before the first step starts (seconds, not hours).

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
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import torch
import torch.nn as nn

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
