"""Loading ImageNet / original checkpoints: by timm name or from a local file, with a clear, fast offline error.

Every checkpoint is read with ``torch.load(..., weights_only=True)``.

* :func:`unwrap_state_dict` finds the tensor dict inside the usual wrappers (``model``, ``state_dict``,
  ``model_ema``, ... ; ``module.`` / ``backbone.`` prefixes carried by every key).
* :func:`load_pretrained` reads a local file or a timm name. A timm name is looked up in the local caches first;
  when it is not cached and the hub cannot be reached within a few seconds (or ``HF_HUB_OFFLINE`` is set) it fails
  at once instead of retrying for a minute. A name that timm resolves to other weights than the original's
  (torchvision ``resnet*.tv_in1k``, official ``deit_small_patch16_224.fb_in1k``) is logged as a WARNING.
* :func:`check_state_fits` is the strict key/shape comparison the loaders share (and the preflight, on ``meta``
  tensors): every problem is reported with the flag, the file and a few keys.
"""
from __future__ import annotations

import logging
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from misc.core.errors import UserError

log = logging.getLogger(__name__)

LOCAL_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".pth.tar")
# Wrapper keys of training checkpoints, most specific model first (DeiT: model / model_ema; timm: state_dict /
# state_dict_ema; ours: model_state).
WRAPPER_KEYS = ("model", "state_dict", "model_state", "model_ema", "state_dict_ema", "ema_state_dict", "ema")
# Prefixes removed when every key carries them (DDP / DataParallel, a detection-style ``backbone.`` wrapper).
STRIP_PREFIXES = ("module.", "backbone.")
HUB_PROBE_TIMEOUT_S = 3.0


class PretrainedWeightsError(UserError, RuntimeError):
    """Raised when pretrained weights can be neither fetched nor read from a local file, or do not fit the model."""


# ------------------------------------------------------------------------------------------------ state dicts
def unwrap_state_dict(obj: object) -> dict[str, torch.Tensor]:
    """Return the tensor dict inside a checkpoint.

    Wrappers in :data:`WRAPPER_KEYS` are opened (first present wins, e.g. DeiT's ``{"model", "model_ema", ...}`` →
    ``model``, a file with only ``model_ema`` → ``model_ema``); a mapping without a known wrapper keeps its
    top-level tensors. Then a prefix of :data:`STRIP_PREFIXES` is removed while every key has it
    (``module.backbone.x`` → ``x``). Raises :class:`PretrainedWeightsError` when no tensor is found.
    """
    while isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
            if not tensors:
                raise PretrainedWeightsError(
                    f"no state dict found in the checkpoint (top-level keys: {_few(list(obj))}; "
                    f"known wrappers: {', '.join(WRAPPER_KEYS)})")
            obj = tensors
        else:
            obj = inner
    if not isinstance(obj, Mapping):
        raise PretrainedWeightsError(f"the checkpoint holds a {type(obj).__name__}, not a state dict")
    state = dict(obj)
    stripped = True
    while state and stripped:
        stripped = False
        for prefix in STRIP_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                stripped = True
    return state


def read_state_dict(path: str | os.PathLike, *, lazy: bool = False) -> dict[str, torch.Tensor]:
    """Read ``path`` (``torch.save`` zip or legacy format, or ``.safetensors``) and unwrap it.

    ``lazy=True`` is for key / shape checks and cheap at any size: zip checkpoints are memory-mapped
    (``mmap=True``), safetensors and legacy-format files give ``meta`` tensors (shapes, no values).
    """
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        if lazy:
            from safetensors import safe_open

            with safe_open(path, framework="pt") as f:
                return {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
        from safetensors.torch import load_file

        return unwrap_state_dict(load_file(path))
    if lazy and not zipfile.is_zipfile(path):  # legacy format: no mmap; shapes are all we want
        return unwrap_state_dict(torch.load(path, map_location="meta", weights_only=True))
    return unwrap_state_dict(torch.load(path, map_location="cpu", weights_only=True, mmap=lazy))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a checkpoint file safely (``weights_only=True``) and return its state dict."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return unwrap_state_dict(torch.load(path, map_location=map_location, weights_only=True))


def optional_buffer(key: str) -> bool:
    """BatchNorm's ``num_batches_tracked``: absent from pre-0.4.1 files (torchvision's 2017 ResNets), unused."""
    return key.endswith(".num_batches_tracked")


def _few(keys: list[str], n: int = 4) -> str:
    shown = ", ".join(keys[:n])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > n else shown


def check_state_fits(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], *, flag: str, source: str,
                     what: str, may_miss: Callable[[str], bool] = optional_buffer,
                     may_extra: Callable[[str], bool] = lambda key: False, hint: str = "") -> None:
    """Strict comparison of a checkpoint ``state`` with the model's ``own`` state dict (shapes only: both may be
    ``meta`` tensors). Raises :class:`PretrainedWeightsError` naming ``flag``, ``source`` and a few keys of each
    kind (missing, unexpected, other shape); ``may_miss`` / ``may_extra`` exempt keys."""
    missing = [k for k in own if k not in state and not may_miss(k)]
    unexpected = [k for k in state if k not in own and not may_extra(k)]
    bad_shape = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or bad_shape):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} model keys missing from the file ({_few(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({_few(unexpected)})")
    if bad_shape:
        shown = "; ".join(f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in bad_shape[:3])
        parts.append(f"{len(bad_shape)} keys with another shape ({shown}{', ...' if len(bad_shape) > 3 else ''})")
    first = _few(list(state), 3) if state else "(empty)"
    raise PretrainedWeightsError(
        f"{flag} {source}: not a {what} state dict that fits this model: {'; '.join(parts)}. "
        f"The file's first keys: {first}.{' ' + hint if hint else ''}")


# ------------------------------------------------------------------------------------------------ timm names
def is_local_source(source: str | None) -> bool:
    """True when ``source`` names a file (a path separator, an existing file or a checkpoint suffix), not a timm
    name."""
    return bool(source) and (os.path.sep in source or os.path.isfile(source) or source.endswith(LOCAL_SUFFIXES))


@dataclass(frozen=True)
class TimmWeights:
    """Where timm would take the pretrained weights of ``name`` from, resolved offline.

    ``resolved``: ``arch.tag`` (a bare name gets timm's default tag); ``load_from``: 'hf-hub' / 'url' / 'file';
    ``location``: repo id, url or path; ``cached``: the local file when it is in the HF hub / torch hub cache;
    ``probe_url``: what to ask to see whether a download could work.
    """

    name: str
    resolved: str
    load_from: str
    location: str
    cached: str | None
    probe_url: str | None


def resolve_timm_weights(name: str) -> TimmWeights:
    """Resolve a timm name without network (timm's pretrained cfg + the local caches). ValueError when timm has no
    pretrained weights of that name."""
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError as exc:  # invalid tag
        raise ValueError(str(exc)) from exc
    if cfg is None:
        raise ValueError(f"'{name}' is not a timm model name with pretrained weights")
    arch = cfg.architecture or name.split(".")[0]
    resolved = f"{arch}.{cfg.tag}" if cfg.tag else arch
    load_from, loc = _resolve_source(cfg.to_dict())
    cached: str | None = None
    probe: str | None = None
    if load_from == "hf-hub":
        repo, filename = loc if isinstance(loc, tuple) else (loc, None)
        repo, _, revision = repo.partition("@")
        from huggingface_hub import constants, try_to_load_from_cache

        names = [filename] if filename else ["model.safetensors", "pytorch_model.bin"]
        for fn in names:
            hit = try_to_load_from_cache(repo, fn, revision=revision or None)
            if isinstance(hit, str) and os.path.isfile(hit):
                cached = hit
                break
        probe = f"{constants.ENDPOINT.rstrip('/')}/{repo}/resolve/{revision or 'main'}/{names[0]}"  # honours HF_ENDPOINT
        location = repo
    elif load_from == "url":
        location = loc if isinstance(loc, str) else loc[0]
        filename = os.path.basename(urllib.parse.urlparse(location).path)
        path = os.path.join(torch.hub.get_dir(), "checkpoints", filename)
        cached = path if os.path.isfile(path) else None
        probe = location
    elif load_from == "file":
        location = str(loc)
        cached = location if os.path.isfile(location) else None
    else:
        raise ValueError(f"timm has no pretrained weights for '{name}' (no hub id, url or file)")
    return TimmWeights(name, resolved, load_from, location, cached, probe)


def _resolve_source(cfg: dict) -> tuple[str, object]:
    """timm's own choice of source (hub first, then url), with a fallback if its private helper moves."""
    try:
        from timm.models._builder import _resolve_pretrained_source

        return _resolve_pretrained_source(cfg)
    except ImportError:  # pragma: no cover - other timm versions
        if cfg.get("file"):
            return "file", cfg["file"]
        if cfg.get("hf_hub_id"):
            hub = cfg["hf_hub_id"]
            return "hf-hub", (hub, cfg["hf_hub_filename"]) if cfg.get("hf_hub_filename") else hub
        return ("url", cfg["url"]) if cfg.get("url") else ("", "")


def warn_if_not_original(name: str, original: str, flag: str) -> None:
    """WARNING when timm resolves ``name`` to other weights than ``original`` (the torchvision / official weights
    the original code used, e.g. ``resnet152.tv_in1k``); INFO when a bare name resolves to them."""
    try:
        resolved = resolve_timm_weights(name).resolved
    except ValueError:
        return  # reported by the loader / preflight
    if resolved != original:
        bare = "." not in name
        log.warning(
            "%s %s: timm resolves %s to '%s', other weights than the original's '%s' (the torchvision / "
            "official ones); numbers may differ from the paper's. Pass %s %s (or the official file) to match.",
            flag, name, "the bare name" if bare else "it", resolved, original, flag, original)
    elif name != resolved:
        log.info("%s %s: timm resolves it to '%s' (the original's weights)", flag, name, resolved)


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` set in the environment or in huggingface_hub's constants."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
        return True
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover
        return False
    return bool(constants.HF_HUB_OFFLINE)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # an HTTP answer is all we need: do not follow to the CDN
        return None


def url_unreachable(url: str, timeout_s: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """None when ``url``'s server answers an HTTP HEAD within ``timeout_s`` (any status), else why not.

    One try, no retries; DNS included in the time limit (the request runs in a daemon thread).
    """
    result: list[str | None] = []

    def probe() -> None:
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(urllib.request.Request(url, method="HEAD"), timeout=timeout_s):
                result.append(None)
        except urllib.error.HTTPError:
            result.append(None)  # the server answered
        except Exception as exc:  # DNS, refused, timeout, TLS
            result.append(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}")

    thread = threading.Thread(target=probe, name="hub-probe", daemon=True)
    thread.start()
    thread.join(timeout_s + 0.5)
    host = urllib.parse.urlparse(url).netloc
    if not result:
        return f"{host} did not answer within {timeout_s:g} s"
    return None if result[0] is None else f"{host} not reachable ({result[0]})"


def download_problem(weights: TimmWeights, timeout_s: float = HUB_PROBE_TIMEOUT_S,
                     probes: dict[str, str | None] | None = None) -> str | None:
    """None when ``weights`` are cached or can be downloaded now; else what is wrong (offline / unreachable).

    ``probes`` (host → result) lets several names share one probe per host.
    """
    if weights.cached:
        return None
    if weights.load_from == "file":
        return f"timm's pretrained file {weights.location} does not exist"
    if weights.load_from == "hf-hub" and hub_offline():
        return f"'{weights.resolved}' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
    if not weights.probe_url:
        reason: str | None = "no download url"
    else:
        host = urllib.parse.urlparse(weights.probe_url).netloc
        if probes is not None and host in probes:
            reason = probes[host]
        else:
            reason = url_unreachable(weights.probe_url, timeout_s)
            if probes is not None:
                probes[host] = reason
    if reason:
        return f"'{weights.resolved}' is not in the local cache and would need the network: {reason}"
    return None


# ------------------------------------------------------------------------------------------------ loading
def load_pretrained(source: str | None, timm_name: str, *, flag: str, download_hint: str) -> dict[str, torch.Tensor]:
    """ImageNet weights for a backbone.

    ``source`` is a local file (``.pth``/``.pt``/``.bin``/``.safetensors``), a timm model name, or ``None``
    (use ``timm_name``, the original's weights). A name that resolves to other weights than ``timm_name`` is
    logged as a WARNING. When the name can be neither read from the cache nor fetched (offline: fails within a few
    seconds) a :class:`PretrainedWeightsError` says which file to download and which ``flag`` takes it.
    """
    if is_local_source(source):
        if not os.path.isfile(source):
            raise PretrainedWeightsError(f"{flag}: file not found: {source}. {download_hint}")
        try:
            return read_state_dict(source)
        except PretrainedWeightsError as exc:
            raise PretrainedWeightsError(f"{flag} {source}: {exc}") from exc
        except Exception as exc:  # not a checkpoint, truncated, pickled objects refused by weights_only
            raise PretrainedWeightsError(f"{flag} {source}: cannot be read with torch.load(weights_only=True) "
                                         f"({type(exc).__name__}: {exc}). {download_hint}") from exc
    name = source or timm_name
    warn_if_not_original(name, timm_name, flag)
    import timm

    def failure(reason: str) -> PretrainedWeightsError:
        return PretrainedWeightsError(
            f"could not fetch the pretrained weights '{name}' ({reason}). "
            f"Download them once on a machine with internet: {download_hint} "
            f"and pass the file with {flag} /path/to/file, or pass --no_pretrained to start from random weights.")

    try:
        weights = resolve_timm_weights(name)
    except ValueError as exc:
        raise failure(f"ValueError: {exc}") from exc
    model = _create_from_cache(timm, name) if weights.cached else None
    if model is None:
        problem = download_problem(weights)
        if problem:
            raise failure(problem)
        try:
            model = timm.create_model(name, pretrained=True)
        except Exception as exc:  # hub error during the download
            raise failure(f"{type(exc).__name__}: {exc}") from exc
    log.info("loaded pretrained weights %s (%s) via timm", name, weights.resolved)
    return model.state_dict()


def _create_from_cache(timm, name: str):
    """The timm model from the local hub cache only (no network), or None when it is not cached."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return None
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        return timm.create_model(name, pretrained=True)
    except Exception:
        return None
    finally:
        constants.HF_HUB_OFFLINE = saved
