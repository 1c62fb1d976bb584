"""Logging: a file-descriptor-level tee into ``<log_name>.log`` and a step timer.

:func:`tee_output` redirects fds 1 and 2 through a pipe, so everything any process writes to stdout or stderr
(Python, C extensions, worker processes started with spawn, tqdm bars) reaches both the terminal and the log file.
The log is appended to, with a header per run.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from typing import Iterator

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: int = logging.INFO) -> None:
    """Root logger to stderr (which the tee also captures)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_crt", False):
            root.removeHandler(h)
    # the process's real stderr (fd 2, which :func:`tee_output` routes into the log), even where sys.stderr is replaced
    handler = logging.StreamHandler(sys.__stderr__ or sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, "%H:%M:%S"))
    handler._crt = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


def _pump(read_fd: int, targets: list[int], log_file) -> None:
    while True:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        for fd in targets:
            with contextlib.suppress(OSError):
                os.write(fd, chunk)
        log_file.write(chunk)
        log_file.flush()


@contextlib.contextmanager
def tee_output(log_path: str | os.PathLike, header: str | None) -> Iterator[None]:
    """Append ``header`` (None: none, e.g. on the other torchrun ranks) and everything written to fds 1/2 (this
    process and its children) to ``log_path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    log_file = open(log_path, "ab")
    if header is not None:
        log_file.write(f"\n{'=' * 100}\n{header}\n{'=' * 100}\n".encode())
        log_file.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 1)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    thread = threading.Thread(target=_pump, args=(read_fd, [saved_out], log_file), daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        thread.join(timeout=10)
        for fd in (read_fd, saved_out, saved_err):
            with contextlib.suppress(OSError):
                os.close(fd)
        log_file.close()


class StepTimer:
    """Logs ``step.X: start <ctime>`` and ``step.X: done in <s> s``; ``elapsed`` holds the seconds."""

    def __init__(self, name: str, logger: logging.Logger | None = None, quiet: bool = False) -> None:
        self.name, self.log = name, logger or logging.getLogger("crt")
        self.elapsed, self.quiet = 0.0, quiet

    def __enter__(self) -> "StepTimer":
        if not self.quiet:
            self.log.info("step.%s: start %s", self.name, time.ctime())
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.elapsed = time.perf_counter() - self._t0
        status = "failed" if exc_type else "done"
        if exc_type or not self.quiet:
            self.log.info("step.%s: %s in %.1f s", self.name, status, self.elapsed)
