"""Training checkpoints: atomic saves and the resume rule shared by the training steps."""
from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import torch

from misc.core.fingerprint import config_diff
from misc.core.io import atomic_write

log = logging.getLogger(__name__)


def save_state_dict(state: dict, path: str | Path) -> None:
    """Atomic ``torch.save`` (tensors and plain containers only: loadable with ``weights_only=True``).

    No space / no permission: :class:`misc.core.errors.OutputWriteError` naming ``path``, no temp file left behind and an
    earlier checkpoint at ``path`` unchanged (see :func:`misc.core.io.atomic_write`)."""
    buf = io.BytesIO()  # serialised in memory: the same bytes whatever the temp file's name

    def write(tmp: str) -> None:
        torch.save(state, buf)
        Path(tmp).write_bytes(buf.getbuffer())

    atomic_write(path, write)


def load_resume(path: str | Path, device: torch.device, fp: str, config: dict | None = None,
                overwrite: bool = False) -> dict | None:
    """The resume state at ``path`` when it was written under fingerprint ``fp``, else None (start from scratch).

    A state of another configuration is not resumed: the differing entries of ``config`` are logged.
    """
    path = Path(path)
    if overwrite or not path.is_file():
        return None
    state = torch.load(path, map_location=device, weights_only=True)
    if state.get("fingerprint") != fp:
        old = state.get("config")
        diff = config_diff(json.loads(old) if isinstance(old, str) else old, config) if config else []
        log.warning("%s was written by another configuration (%s); starting from scratch", path,
                    "; ".join(diff) or "fingerprint differs")
        return None
    return state
