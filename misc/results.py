"""Atomic writes and the shared ``result/metrics.json``."""
from __future__ import annotations

import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from misc.errors import write_error
from misc.paths import metrics_json


def _file_mode() -> int:
    """0o666 minus the process umask: the mode a plain ``open(path, "w")`` would give (mkstemp gives 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a uniquely named temp file beside ``path``, then rename it into place.

    Concurrent writers of the same path never share a temp file; the result honours the umask. No space, no
    permission or a read-only file system raise :class:`misc.errors.OutputWriteError` naming ``path`` (a
    :class:`misc.errors.UserError`); the temp file is removed first, and an earlier ``path`` stays as it was.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix or ".tmp", dir=path.parent)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        err = write_error(exc, path) if isinstance(exc, OSError) else None
        if err is not None:
            raise err from exc
        raise


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Atomic ``np.savez`` (no pickle); the file holds exactly the given key names."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(buf.getvalue()))


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def save_png(path: str | os.PathLike, label: np.ndarray, palette: list[int] | None = None) -> None:
    """Atomic single-channel uint8 PNG (a palette PNG when ``palette`` is given)."""
    from PIL import Image

    im = Image.fromarray(np.asarray(label, dtype=np.uint8))
    if palette is not None:
        im.putpalette(palette)  # L → P, indices unchanged
    atomic_write(path, lambda tmp: im.save(tmp, format="PNG"))


def to_jsonable(obj: Any) -> Any:
    """numpy → Python; NaN/inf → None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | os.PathLike, data: Any) -> None:
    text = json.dumps(to_jsonable(data), indent=2, sort_keys=False)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n"))


def update_metrics(result_dir: str | os.PathLike, key: str, values: dict,
                   inputs: list[str] | None = None) -> dict:
    """Set ``metrics[key] = values`` in ``<result_dir>/metrics.json`` (other keys kept); returns the whole dict.

    ``inputs``: the artefacts (files, folders) the values were computed from; their identities are recorded, so
    that :func:`prune_stale_metrics` can drop the entry once an input changes. Every entry is also appended to
    ``metrics_history.jsonl`` with the time, so earlier runs' numbers stay on record.
    """
    import time

    from misc.fingerprint import identity

    path = metrics_json(result_dir)
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    entry = to_jsonable(values)
    if inputs is not None:
        entry["inputs"] = {p: identity(p) for p in inputs}
    metrics[key] = entry
    write_json(path, metrics)
    history = Path(result_dir) / "metrics_history.jsonl"
    try:
        with open(history, "a") as f:
            f.write(json.dumps({"time": time.strftime("%Y-%m-%d %H:%M:%S"), "step": key, **entry}) + "\n")
    except OSError as exc:
        err = write_error(exc, history)
        if err is not None:
            raise err from exc
        raise
    return metrics


def prune_stale_metrics(result_dir: str | os.PathLike) -> list[str]:
    """Drop from ``metrics.json`` every entry whose recorded inputs changed since (they describe outputs that no
    longer exist: e.g. eval_cam of CAMs that make_cam has since recomputed); returns the dropped keys."""
    import logging

    from misc.fingerprint import identity

    path = metrics_json(result_dir)
    if not path.is_file():
        return []
    metrics = json.loads(path.read_text())
    stale = [k for k, v in metrics.items() if isinstance(v, dict) and
             any(identity(p) != ident for p, ident in v.get("inputs", {}).items())]
    if stale:
        logging.getLogger(__name__).warning(
            "metrics.json: dropped %s (computed from inputs that have changed since; still in metrics_history.jsonl)",
            ", ".join(stale))
        write_json(path, {k: v for k, v in metrics.items() if k not in stale})
    return stale
