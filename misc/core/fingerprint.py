"""What shaped an output: the flags a step reads and the identity of its inputs, recorded beside the output.

A step describes itself as a plain ``config`` dict (its flags, and the identities of the files and folders it reads);
its :func:`fingerprint` is a short hash of that dict. Per-image output folders carry a :class:`Manifest`
(``<dir>/.crt_manifest.json``), weights files a sidecar (``<file>.crt.json``), training steps a state file in
``sess/``. On a rerun a step compares fingerprints: equal → its finished outputs are reused; different → the
differing entries are logged and the step recomputes (never mixing outputs of two configurations in one folder).

Identities chain: the identity of a folder is the fingerprint in its manifest, that of a weights file the
fingerprint in its sidecar (while the file still has the recorded size and mtime), else a hash of its bytes.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from misc.core.io import to_jsonable, write_json

log = logging.getLogger(__name__)

MANIFEST_NAME = ".crt_manifest.json"
SIDECAR_SUFFIX = ".crt.json"
_HASH_MEMO: dict[tuple[str, int, int], str] = {}


def canonical(config: Mapping[str, Any]) -> dict:
    """The JSON form of ``config`` (tuples → lists, numpy → Python), as stored and compared."""
    return json.loads(json.dumps(to_jsonable(dict(config)), sort_keys=True))


def fingerprint(config: Mapping[str, Any]) -> str:
    """16 hex digits of sha256 over the canonical JSON of ``config``."""
    text = json.dumps(canonical(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_diff(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """Human-readable ``key: old -> new`` lines of the entries that differ (nested dicts flattened with dots)."""

    def flat(d: Mapping[str, Any] | None, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in (d or {}).items():
            if isinstance(v, Mapping):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    a, b = flat(canonical(old or {})), flat(canonical(new))
    return [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}" for k in sorted(set(a) | set(b))
            if a.get(k, "<absent>") != b.get(k, "<absent>")]


def ids_digest(ids: Iterable[str]) -> str:
    """Order-sensitive hash of an id list (training lists shape the result; 10k ids hash in a millisecond)."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, memoised per (path, size, mtime) within the process."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_MEMO:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _HASH_MEMO[key] = h.hexdigest()[:16]
    return _HASH_MEMO[key]


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def write_sidecar(path: str | os.PathLike, step: str, fp: str) -> None:
    """Record that ``path`` (just written) is the output of ``step`` with fingerprint ``fp``."""
    path = Path(path)
    st = path.stat()
    write_json(_sidecar(path), {"step": step, "fingerprint": fp, "size": st.st_size, "mtime_ns": st.st_mtime_ns})


def identity(path: str | os.PathLike | None) -> str | None:
    """The identity of an input: a folder's manifest fingerprint, a file's sidecar fingerprint (while the file is
    unchanged) or content hash, ``"missing"`` when absent, None for None."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        m = Manifest.read(path)
        return f"run:{m['fingerprint']}" if m else "unrecorded"
    if not path.is_file():
        return "missing"
    side = _sidecar(path)
    if side.is_file():
        try:
            rec = json.loads(side.read_text())
            st = path.stat()
            if rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns:
                return f"run:{rec['fingerprint']}"
        except (OSError, ValueError, KeyError):
            pass
    return f"sha256:{file_sha256(path)}"


def source_identity(source: str | None, default_name: str) -> str:
    """Identity of a pretrained-weights flag value: a local file's content hash, else the (timm) name."""
    if source and os.path.isfile(source):
        return f"file:{file_sha256(source)}"
    return f"name:{source or default_name}"


class Manifest:
    """``<dir>/.crt_manifest.json``: the step and configuration that produced the outputs in a folder."""

    @staticmethod
    def read(folder: str | os.PathLike) -> dict | None:
        path = Path(folder) / MANIFEST_NAME
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            return data if "fingerprint" in data else None
        except (OSError, ValueError):
            return None

    @staticmethod
    def write(folder: str | os.PathLike, step: str, config: Mapping[str, Any]) -> str:
        fp = fingerprint(config)
        write_json(Path(folder) / MANIFEST_NAME, {"step": step, "fingerprint": fp, "config": canonical(config),
                                                  "written": time.strftime("%Y-%m-%d %H:%M:%S")})
        return fp


def prepare_output_dir(folder: str | os.PathLike, step: str, config: Mapping[str, Any], suffixes: Iterable[str],
                       overwrite: bool = False) -> str:
    """Make ``folder`` hold only outputs of ``config``; returns its fingerprint.

    Same fingerprint as the folder's manifest (and no ``overwrite``) → existing outputs are kept (a rerun only
    completes what is missing). Otherwise the outputs with ``suffixes`` are removed — after logging which
    entries of the configuration differ — and the new manifest is written before any new output.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    suffixes = tuple(suffixes)
    new_fp = fingerprint(config)
    old = Manifest.read(folder)
    stale = [p for p in folder.iterdir() if p.is_file() and p.suffix in suffixes and not p.name.startswith(".")]
    if old is not None and old["fingerprint"] == new_fp and not overwrite:
        return new_fp
    if stale:
        if overwrite:
            why = "--overwrite"
        elif old is None:
            why = "no record of the configuration that made them"
        else:
            why = "configuration changed: " + "; ".join(config_diff(old.get("config"), config))
        log.warning("%s: removing %d outputs in %s (%s); recomputing", step, len(stale), folder, why)
        for p in stale:
            p.unlink(missing_ok=True)
    Manifest.write(folder, step, config)
    return new_fp
