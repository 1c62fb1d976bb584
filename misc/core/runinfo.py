"""The record of a run (``<result>/run.json``): command line, start time, git commit, host and devices.

Written once at the start of a run by ``run_sample.run``; read by the run report. Every probe is cheap and never
fails the run: outside a git checkout (or without git) the commit is None; without CUDA the device is the CPU.
"""
from __future__ import annotations

import os
import platform
import subprocess
import time
from typing import Sequence


def git_state(repo: str | os.PathLike) -> dict | None:
    """{commit, dirty, branch} of the checkout at ``repo``, or None (no git, not a checkout, git too slow)."""
    def git(*cmd: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", os.fspath(repo), *cmd], capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status),
            "branch": git("rev-parse", "--abbrev-ref", "HEAD")}


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else :func:`platform.processor`, else the machine type."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def devices(device_flag: str) -> list[str]:
    """What ``--device`` resolves to, in words: each visible GPU's name (``cuda:0 NVIDIA H100 ...``) or the CPU."""
    import torch

    if device_flag != "cpu" and torch.cuda.is_available():
        if device_flag.startswith("cuda:"):
            index = int(device_flag.split(":", 1)[1])
            return [f"cuda:{index} {torch.cuda.get_device_name(index)}"]
        return [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    return [f"cpu {cpu_name()} ({os.cpu_count()} logical cores)"]


def run_record(argv: Sequence[str], device_flag: str, steps: Sequence[str], repo: str | os.PathLike,
               non_default: dict | None = None, prog: str = "run_sample.py") -> dict:
    """The run's record: ``argv`` (without the program), the steps planned, start time (``started``: local time,
    ``t``: seconds since the epoch), git state of ``repo``, host, Python/torch versions, devices, and the flags that
    differ from the defaults (``non_default``: {flag: [default, value]})."""
    import torch

    return {
        "argv": list(argv),
        "command": " ".join(["python", prog, *map(_quote, argv)]),
        "cwd": os.getcwd(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "t": round(time.time(), 3),
        "steps": list(steps),
        "git": git_state(repo),
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "devices": devices(device_flag),
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "non_default": non_default or {},
    }


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(str(arg))
