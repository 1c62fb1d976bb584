"""Loading ImageNet / original checkpoints: by timm name or from a local file, with a clear offline error.

Every checkpoint is read with ``torch.load(..., weights_only=True)``.
"""
from __future__ import annotations

import logging
import os
from typing import Mapping

import torch

log = logging.getLogger(__name__)


class PretrainedWeightsError(RuntimeError):
    """Raised when pretrained weights can be neither fetched nor read from a local file."""


def unwrap_state_dict(obj: object) -> dict[str, torch.Tensor]:
    """Return the tensor dict inside a checkpoint (``model`` / ``state_dict`` wrappers, ``module.`` prefix removed)."""
    while isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("model", "state_dict", "model_state"):
            if key in obj:
                obj = obj[key]
                break
        else:
            obj = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    state = dict(obj)  # type: ignore[arg-type]
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a checkpoint file safely (``weights_only=True``) and return its state dict."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return unwrap_state_dict(torch.load(path, map_location=map_location, weights_only=True))


def load_pretrained(source: str | None, timm_name: str, *, flag: str, download_hint: str) -> dict[str, torch.Tensor]:
    """ImageNet weights for a backbone.

    ``source`` is a local file (``.pth``/``.pt``/``.bin``/``.safetensors``), a timm model name, or ``None``
    (use ``timm_name``). When the name cannot be fetched (offline) a :class:`PretrainedWeightsError` says which file
    to download and which ``flag`` takes it.
    """
    if source and (os.path.sep in source or os.path.isfile(source) or source.endswith((".pth", ".pt", ".bin", ".safetensors"))):
        if not os.path.isfile(source):
            raise PretrainedWeightsError(f"{flag}: file not found: {source}. {download_hint}")
        if source.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(source)
        return load_checkpoint(source)
    name = source or timm_name
    import timm

    try:
        model = _create_from_cache(timm, name)
        if model is None:
            model = timm.create_model(name, pretrained=True)
    except Exception as exc:  # offline, unknown name, hub error
        raise PretrainedWeightsError(
            f"could not fetch the pretrained weights '{name}' ({type(exc).__name__}: {exc}). "
            f"Download them once on a machine with internet: {download_hint} "
            f"and pass the file with {flag} /path/to/file, or pass --no_pretrained to start from random weights."
        ) from exc
    log.info("loaded pretrained weights %s via timm", name)
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
