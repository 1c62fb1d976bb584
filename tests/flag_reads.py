"""Record which flags each pipeline step reads while a run goes (for tests/test_flags.py).

:func:`recording` wraps every step module that ``run_sample`` imports, so that the step's ``run(args)`` gets a
namespace that notes each attribute read; the reads land in :data:`READS` ({step: {flag, ...}}), over every run of
the test session made inside :func:`recording`.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import types
from typing import Iterator

READS: dict[str, set[str]] = {}


class RecordingArgs(argparse.Namespace):
    """A namespace that adds the name of each attribute read to ``READS[step]``."""

    def __init__(self, step: str, values: dict) -> None:
        super().__init__(**values)
        object.__setattr__(self, "_step", step)

    def __getattribute__(self, name: str):
        values = object.__getattribute__(self, "__dict__")
        if name in values and not name.startswith("_"):
            READS.setdefault(values["_step"], set()).add(name)
        return object.__getattribute__(self, name)

    def __reduce__(self):  # picklable for spawned workers (their reads are not recorded)
        values = {k: v for k, v in object.__getattribute__(self, "__dict__").items() if k != "_step"}
        return argparse.Namespace, (), values


def _wrap(module: types.ModuleType, step: str) -> types.ModuleType:
    wrapped = types.ModuleType(module.__name__)
    wrapped.__dict__.update(module.__dict__)

    def run(args, _run=module.run):
        recording_args = RecordingArgs(step, {k: v for k, v in vars(args).items()})
        try:
            return _run(recording_args)
        finally:
            for key, value in vars(recording_args).items():
                if key != "_step":
                    setattr(args, key, value)

    wrapped.run = run
    return wrapped


@contextlib.contextmanager
def recording() -> Iterator[dict[str, set[str]]]:
    """Within: every step that ``run_sample.run`` starts records its flag reads into :data:`READS`."""
    import run_sample

    real = importlib.import_module

    def import_module(name: str, *args, **kwargs):
        module = real(name, *args, **kwargs)
        return _wrap(module, name.rsplit(".", 1)[-1]) if name.startswith("step.") else module

    shim = types.SimpleNamespace(import_module=import_module)
    original, run_sample.importlib = run_sample.importlib, shim
    try:
        yield READS
    finally:
        run_sample.importlib = original
