"""Atomic writes of outputs (JSON, npz, PNG) and their reading back."""
from __future__ import annotations

import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from misc.core.errors import write_error


def _file_mode() -> int:
    """0o666 minus the process umask: the mode a plain ``open(path, "w")`` would give (mkstemp gives 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a uniquely named temp file beside ``path``, then rename it into place.

    Concurrent writers of the same path never share a temp file; the result honours the umask. No space, no
    permission or a read-only file system raise :class:`misc.core.errors.OutputWriteError` naming ``path`` (a
    :class:`misc.core.errors.UserError`); the temp file is removed first, and an earlier ``path`` stays as it was.
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
