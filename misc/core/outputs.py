"""Reading back the per-image outputs of earlier steps, and a cheap check that one is intact.

:func:`output_problem` is what :func:`misc.engine.per_image.run_per_image` asks before it skips an id as done: an output that
cannot be read (a ``.npz`` cut short, a PNG with a bad chunk) is not done and is recomputed. It reads no array
data: for ``.npz`` the zip directory and every member's ``.npy`` header (which must announce exactly the member's
size), for ``.png`` PIL's ``verify()`` (chunk structure and CRCs, no decoding).

:func:`load_output_npz` / :func:`read_output_png` are how a later step loads such an output: any failure is a
:class:`~misc.core.errors.CorruptOutputError` naming the path and the step to rerun.
"""
from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from misc.core.errors import CorruptOutputError, UnreadableFileError


def _npz_problem(path: Path, keys: Sequence[str] = ()) -> str | None:
    size = path.stat().st_size
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        names = {i.filename[:-4] if i.filename.endswith(".npy") else i.filename for i in infos}
        missing = [k for k in keys if k not in names]
        if missing:
            return f"it lacks the array(s) {missing}"
        for info in infos:
            if info.header_offset + info.compress_size > size:
                return f"member {info.filename} runs past the end of the file"
            if not info.filename.endswith(".npy"):
                continue
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                if dtype.hasobject:
                    return f"member {info.filename} holds Python objects"
                want = math.prod(shape) * dtype.itemsize
                have = info.file_size - f.tell()
                if want != have:
                    return f"member {info.filename} holds {have} data bytes, its header announces {want}"
    return None


def _png_problem(path: Path) -> str | None:
    from PIL import Image

    with Image.open(path) as im:
        im.verify()
    return None


def output_problem(path: str | os.PathLike, keys: Sequence[str] = ()) -> str | None:
    """Why the output at ``path`` is unreadable (``None``: it looks intact). ``keys``: arrays a ``.npz`` must hold.

    Other suffixes are only checked for being non-empty."""
    path = Path(path)
    try:
        if path.suffix == ".npz":
            return _npz_problem(path, keys)
        if path.suffix == ".png":
            return _png_problem(path)
        return None if path.stat().st_size > 0 else "it is empty"
    except Exception as exc:  # BadZipFile, OSError (truncated), SyntaxError (PIL), ValueError (npy header)
        return f"{type(exc).__name__}: {exc}".rstrip(": ")


def _rerun(producer: str) -> str:
    return (f"rerun {producer} (it recomputes outputs it cannot read), or delete the file and rerun it"
            if producer else "delete it and rerun the step that wrote it")


def load_output_npz(path: str | os.PathLike, producer: str = "", keys: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """All arrays of the ``.npz`` output at ``path``; unreadable or lacking ``keys`` → :class:`CorruptOutputError`."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise CorruptOutputError(f"{path} is unreadable ({type(exc).__name__}: {exc}); {_rerun(producer)}") from exc
    missing = [k for k in keys if k not in out]
    if missing:
        raise CorruptOutputError(f"{path} lacks the array(s) {missing} (it has {sorted(out)}); {_rerun(producer)}")
    return out


def read_output_png(path: str | os.PathLike, producer: str = "", num_classes: int | None = None) -> np.ndarray:
    """Class-index map of a label PNG written by ``producer``; unreadable → :class:`CorruptOutputError`.

    Mode, value (``num_classes``) and other data errors of :func:`misc.method.imutils.read_label_png` pass through."""
    from misc.core.labels import read_label_png

    path = Path(path)
    try:
        return read_label_png(path, num_classes=num_classes)
    except UnreadableFileError as exc:
        cause = exc.__cause__ or exc
        raise CorruptOutputError(f"{path} is unreadable ({type(cause).__name__}: {cause}); "
                                 f"{_rerun(producer)}") from exc
