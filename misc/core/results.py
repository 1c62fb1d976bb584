"""The shared ``result/metrics.json``: one entry per step, dropped once the inputs it was computed from change."""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from misc.core.errors import write_error
from misc.core.fingerprint import identity
from misc.core.io import to_jsonable, write_json
from misc.core.paths import metrics_json

log = logging.getLogger(__name__)


def update_metrics(result_dir: str | os.PathLike, key: str, values: dict,
                   inputs: list[str] | None = None) -> dict:
    """Set ``metrics[key] = values`` in ``<result_dir>/metrics.json`` (other keys kept); returns the whole dict.

    ``inputs``: the artefacts (files, folders) the values were computed from; their identities are recorded, so
    that :func:`prune_stale_metrics` can drop the entry once an input changes. Every entry is also appended to
    ``metrics_history.jsonl`` with the time, so earlier runs' numbers stay on record.
    """
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
    path = metrics_json(result_dir)
    if not path.is_file():
        return []
    metrics = json.loads(path.read_text())
    stale = [k for k, v in metrics.items() if isinstance(v, dict) and
             any(identity(p) != ident for p, ident in v.get("inputs", {}).items())]
    if stale:
        log.warning(
            "metrics.json: dropped %s (computed from inputs that have changed since; still in metrics_history.jsonl)",
            ", ".join(stale))
        write_json(path, {k: v for k, v in metrics.items() if k not in stale})
    return stale
