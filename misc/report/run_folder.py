"""Reading what a run left in its result folder (``run.json``, ``config.json``, ``timings.json``, ``metrics.json``,
JSON-lines logs), with the paths it names followed to where they are now; what cannot be read is collected as a
problem for the page instead of stopping the report."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from misc.core.errors import UserError
from misc.core.paths import config_json, metrics_json, run_json, timings_json


class ReportInputError(UserError, FileNotFoundError):
    """The folder to report on does not exist."""


def read_json(path: str | os.PathLike, problems: list[str] | None = None) -> Any:
    """The parsed file, or None when missing; an unreadable one is None too, with a line in ``problems``."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        if problems is not None:
            problems.append(f"{path.name}: unreadable ({exc})")
        return None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The JSON objects of a JSON-lines file; lines that do not parse (a run cut short mid-line) are skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    with open(path) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
    return out


@dataclass
class RunFolder:
    """What a run left in its result folder, with its paths resolved where they are now."""

    result_dir: Path
    config: dict
    run: dict | None
    metrics: dict
    timings: dict
    problems: list[str]

    @classmethod
    def load(cls, result_dir: str | os.PathLike, fallback_config: dict | None = None) -> "RunFolder":
        """Read the run's records in ``result_dir``; ``fallback_config`` stands in for a missing config.json."""
        result_dir = Path(result_dir)
        if not result_dir.is_dir():
            raise ReportInputError(f"report: no result folder at {result_dir}; pass the --result_dir of a run")
        problems: list[str] = []
        config = read_json(config_json(result_dir), problems)
        if not isinstance(config, dict):
            problems.append("no config.json: the configuration below is this invocation's, not the run's")
            config = dict(fallback_config or {})
        run = read_json(run_json(result_dir), problems)
        metrics = read_json(metrics_json(result_dir), problems)
        timings = read_json(timings_json(result_dir), problems)
        return cls(result_dir, config, run if isinstance(run, dict) else None,
                   metrics if isinstance(metrics, dict) else {}, timings if isinstance(timings, dict) else {},
                   problems)

    @property
    def dataset(self) -> str:
        """The run's ``--dataset`` (a folder without config.json: "cub" when a WSOL step ran, else "voc")."""
        if self.config.get("dataset"):
            return str(self.config["dataset"])
        return "cub" if {"train_wsol", "eval_wsol"} & set(self.metrics) else "voc"

    def path(self, flag: str) -> Path | None:
        """The folder or file of config flag ``flag`` as it is now: relative paths against the run's working
        folder; a path under the run's result (or work) folder that has moved with it, under the new one."""
        value = self.config.get(flag)
        if not value:
            return None
        return self.resolve(value)

    def resolve(self, value: str | os.PathLike) -> Path:
        """A path the run recorded, as it is now (see :meth:`path`)."""
        base = Path(self.run["cwd"]) if self.run and self.run.get("cwd") else Path.cwd()
        p = Path(value) if os.path.isabs(value) else base / value
        if p.exists():
            return p
        here = self.result_dir.resolve()
        old_result = self._abs(self.config.get("result_dir"), base)
        old_work = self._abs(self.config.get("work_dir"), base)
        for old, new in ((old_result, here), (old_work, here.parent if old_result and old_work
                                              and old_result.parent == old_work else None)):
            if old is not None and new is not None:
                try:
                    return new / p.relative_to(old)
                except ValueError:
                    continue
        return p

    @staticmethod
    def _abs(value: Any, base: Path) -> Path | None:
        if not value:
            return None
        return Path(value) if os.path.isabs(value) else base / value
