"""Training checkpoints: atomic saves and the resume rule shared by the training steps."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

import torch

log = logging.getLogger(__name__)


def save_state_dict(state: dict, path: str | Path) -> None:
    """Atomic ``torch.save`` (tensors and plain containers only: loadable with ``weights_only=True``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def try_resume(path: str | Path, device: torch.device, objects: Mapping[str, Any], schedule: Mapping[str, Any],
               overwrite: bool = False) -> dict | None:
    """Restore ``objects[name].load_state_dict(state[name])`` from the resume file ``path``.

    Only when the file exists, ``overwrite`` is off and the file's ``schedule`` entries (e.g. ``max_step``) equal
    ours; returns the whole state (for the step's own fields such as the epoch) or None to start from scratch.
    """
    path = Path(path)
    if overwrite or not path.is_file():
        return None
    state = torch.load(path, map_location=device, weights_only=True)
    mismatch = {k: (state.get(k), v) for k, v in schedule.items() if state.get(k) != v}
    if mismatch:
        log.warning("%s is from another schedule (%s); starting from scratch", path, mismatch)
        return None
    for name, obj in objects.items():
        obj.load_state_dict(state[name])
    return state
