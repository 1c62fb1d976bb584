"""Logging: a file-descriptor-level tee into ``<log_name>.log`` and a step timer.

:func:`tee_output` redirects fds 1 and 2 through a pipe, so everything any process writes to stdout or stderr
(Python, C extensions, worker processes started with spawn, tqdm bars) reaches both the terminal and the log file.
The log is appended to, with a header per run.

:func:`collect_warnings` also appends every WARNING and ERROR record of the run, from this process and from the
processes it spawns (they inherit ``$CRT_WARNINGS_FILE`` and call :func:`setup_logging`), to
``<result>/warnings.jsonl``, which the run report shows.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from typing import Iterator

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
WARNINGS_ENV = "CRT_WARNINGS_FILE"  # set while a run collects warnings; spawned processes inherit it


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
    if os.environ.get(WARNINGS_ENV):  # a process spawned by a run that collects its warnings
        root.addHandler(WarningsFileHandler(os.environ[WARNINGS_ENV]))


class WarningsFileHandler(logging.Handler):
    """Appends each WARNING-or-worse record as one JSON line {t, time, level, logger, message, pid} to ``path``.

    Each line is one ``write`` on a file opened with O_APPEND, so the processes of a run can share the file."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(level=logging.WARNING)
        self.path = os.fspath(path)
        self._crt = True  # replaced, not duplicated, by setup_logging

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                message += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
            line = json.dumps({"t": round(record.created, 3),
                               "time": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created)),
                               "level": record.levelname, "logger": record.name, "message": message,
                               "pid": record.process}) + "\n"
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except Exception:  # noqa: BLE001 (a warning that cannot be recorded must not stop the run)
            self.handleError(record)


@contextlib.contextmanager
def collect_warnings(path: str | os.PathLike) -> Iterator[WarningsFileHandler]:
    """While inside: WARNING and ERROR records of this process and of the processes it spawns go to ``path``
    (appended). Yields the handler (``handler.handle(record)`` records an event without printing it)."""
    handler = WarningsFileHandler(path)
    with open(handler.path, "a"):  # exists from now on: the report can tell "no warning" from "not collected"
        pass
    root = logging.getLogger()
    root.addHandler(handler)
    previous = os.environ.get(WARNINGS_ENV)
    os.environ[WARNINGS_ENV] = handler.path
    try:
        yield handler
    finally:
        for h in list(root.handlers):  # ours, and one setup_logging may have put in its place
            if isinstance(h, WarningsFileHandler) and h.path == handler.path:
                root.removeHandler(h)
        if previous is None:
            os.environ.pop(WARNINGS_ENV, None)
        else:
            os.environ[WARNINGS_ENV] = previous


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
