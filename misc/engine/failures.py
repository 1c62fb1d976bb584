"""One run, one cause: when one process of a multi-process run fails, the run ends with that failure alone.

Two ways a run has several processes:

* spawned workers (``--nproc N``, several GPUs, CPU workers of a per-image step): :func:`spawn` runs them. A worker
  that fails records why (:class:`FailureRecord`, a JSON file in a folder of the parent's) and exits without a
  traceback. The others get :data:`GRACE_S` seconds to stop by themselves (those that lost their peers do), then
  SIGTERM (SIGKILL 10 s later). :func:`spawn` raises the first real cause once: a worker's
  :class:`~misc.core.errors.UserError` as a :class:`WorkerUserError` with its message, a bug as
  :class:`WorkerBugError` carrying the worker's traceback, a worker killed from outside (SIGKILL, the out-of-memory
  killer) as :class:`WorkerKilledError`. A worker that only lost its peers (a collective failing because the
  cause's process ended) is never taken for the cause.
* ``torchrun``: every rank runs the orchestrator. The rank that fails first writes torchrun's error file
  (:func:`write_torchrun_error_file`, so that torchrun's closing summary names the cause) and publishes its rank in
  the process group's store; a rank that then loses its peers logs one line, "stopped because process K failed"
  (:func:`peer_failure_line`), instead of a traceback of its own.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from misc.core.errors import UserError, os_error_message

log = logging.getLogger(__name__)

# How a collective reports that a peer process is gone (gloo, NCCL, the c10d store).
PEER_LOSS_MARKERS = ("connection closed by peer", "connection reset by peer", "broken pipe", "connection refused",
                     "communicator was aborted", "nccl communicator", "socket timeout", "transport endpoint",
                     "recvbytes", "sendbytes", "read error", "failed to recv", "failed to send")
FAILED_RANK_KEY = "crt/failed_rank"
GRACE_S = 10.0  # seconds the other workers get to stop by themselves once one has failed


class WorkerUserError(UserError):
    """A worker process stopped on a user error (its message, unchanged)."""


class WorkerKilledError(UserError):
    """A worker process was killed from outside (a signal, e.g. the out-of-memory killer)."""


class WorkerBugError(RuntimeError):
    """A worker process stopped on a bug; ``worker_traceback`` is its traceback."""

    def __init__(self, message: str, worker_traceback: str) -> None:
        super().__init__(message)
        self.worker_traceback = worker_traceback


@dataclass
class FailureRecord:
    """Why one process stopped: ``kind`` is ``user`` (a :class:`UserError` or no space / no permission), ``peer`` (it
    lost its peers: a consequence, not a cause) or ``bug``."""

    rank: int
    kind: str
    message: str
    traceback: str
    time: float


def is_peer_loss(exc: BaseException) -> bool:
    """Whether ``exc`` says that another process of the run went away (a collective or the store failed)."""
    names = {c.__name__ for c in type(exc).__mro__}
    text = str(exc).lower()
    return bool({"DistBackendError", "DistNetworkError", "DistStoreError"} & names) or any(
        marker in text for marker in PEER_LOSS_MARKERS)


def classify(rank: int, exc: BaseException) -> FailureRecord:
    """The record of ``exc`` raised in process ``rank``."""
    message = str(exc) if isinstance(exc, UserError) else os_error_message(exc)
    if message is not None:
        kind = "user"
    elif is_peer_loss(exc):
        kind, message = "peer", f"{type(exc).__name__}: {exc}"
    else:
        kind, message = "bug", f"{type(exc).__name__}: {exc}"
    return FailureRecord(rank, kind, message, traceback.format_exc(), time.time())


# ------------------------------------------------------------------------------------------------ spawned workers
def _worker(index: int, folder: str, fn: Callable, args: Sequence) -> None:
    try:
        fn(index, *args)
    except (Exception, KeyboardInterrupt) as exc:
        record = classify(index, exc)
        path = Path(folder) / f"{index}.json"
        path.with_suffix(".tmp").write_text(json.dumps(asdict(record)))
        os.replace(path.with_suffix(".tmp"), path)
        sys.exit(1)  # no traceback here: the parent raises the cause once


def _records(folder: str) -> list[FailureRecord]:
    out = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            out.append(FailureRecord(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue
    return sorted(out, key=lambda r: r.time)


def root_cause(records: Sequence[FailureRecord], killed: tuple[int, str] | None, nprocs: int,
               what: str) -> Exception:
    """The exception that stands for the run: the first user error or bug; else the process killed from outside
    (``killed``: its index and signal name); else the first peer loss. Logs one line for each other process."""
    causes = [r for r in records if r.kind != "peer"]
    if causes:
        first = causes[0]
        cause_rank = first.rank
        error: Exception = (WorkerUserError(first.message) if first.kind == "user" else
                            WorkerBugError(f"{what} process {first.rank} failed: {first.message}", first.traceback))
    elif killed is not None:
        cause_rank, name = killed
        error = WorkerKilledError(
            f"{what} process {cause_rank} of {nprocs} was killed by {name} (the out-of-memory killer, or a kill from "
            f"outside); what it had not checkpointed is lost: run the same command again to resume")
    elif records:
        first = records[0]
        cause_rank = first.rank
        error = WorkerBugError(f"{what} process {first.rank} lost its peers: {first.message}", first.traceback)
    else:
        return RuntimeError(f"{what}: a worker process ended without a record")
    for rank in range(nprocs):
        if rank != cause_rank:
            log.info("%s process %d stopped because process %d failed", what, rank, cause_rank)
    return error


def _signal_name(exit_code: int) -> str:
    try:
        return signal.Signals(-exit_code).name
    except ValueError:
        return f"signal {-exit_code}"


def spawn(fn: Callable, args: Sequence, nprocs: int, what: str) -> None:
    """``torch.multiprocessing.spawn(fn, args, nprocs)`` ending as one run: when a worker fails, the others get
    :data:`GRACE_S` seconds to stop by themselves (those that lost their peers do), then are ended; the first cause
    is raised once (see the module docstring). ``what`` names the workers in messages (a step)."""
    import torch.multiprocessing as mp
    from torch.multiprocessing.spawn import ProcessException

    with tempfile.TemporaryDirectory(prefix="crt_failures_") as folder:
        context = mp.spawn(_worker, args=(folder, fn, tuple(args)), nprocs=nprocs, join=False)
        try:
            while not context.join(grace_period=GRACE_S):
                pass
        except ProcessException:
            records = _records(folder)
            recorded = {r.rank for r in records}
            killed = next(((i, _signal_name(p.exitcode)) for i, p in enumerate(context.processes)
                           if i not in recorded and p.exitcode is not None and p.exitcode < 0
                           and p.exitcode != -signal.SIGTERM), None)
            raise root_cause(records, killed, nprocs, what) from None


# ------------------------------------------------------------------------------------------------ torchrun
def publish_failed_rank(rank: int) -> None:
    """Tell the other ranks (through the process group's store, if there is one) that ``rank`` failed first."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            store = dist.distributed_c10d._get_default_store()
            if not store.check([FAILED_RANK_KEY]):
                store.set(FAILED_RANK_KEY, str(rank))
    except Exception:  # noqa: BLE001 (the store may be gone with the failed process)
        pass


def peer_failure_line(rank: int) -> str:
    """The one line a rank logs when it stopped because another one failed (naming it when the store knows)."""
    failed = None
    try:
        import torch.distributed as dist

        store = dist.distributed_c10d._get_default_store()
        store.set_timeout(datetime.timedelta(seconds=5))
        failed = store.get(FAILED_RANK_KEY).decode()
    except Exception:  # noqa: BLE001
        pass
    who = f"process {failed}" if failed is not None else "another process of this run"
    return f"process {rank} stopped because {who} failed (its error is the cause)"


def write_torchrun_error_file(message: str, *, consequence: bool = False) -> None:
    """Write ``message`` to torchrun's error file of this rank (``$TORCHELASTIC_ERROR_FILE``), so that torchrun's
    closing summary shows it instead of its "To enable traceback" hint. A ``consequence`` (a rank that stopped because
    another failed) is stamped a second later, so that torchrun's first-failure choice falls on the cause."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    stamp = int(time.time()) + (1 if consequence else 0)
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        record = {"message": {"message": message, "extraInfo": {"py_callstack": message, "timestamp": str(stamp)}}}
        Path(path).write_text(json.dumps(record))
    except OSError:
        pass
