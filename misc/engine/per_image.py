"""The one per-image runner behind make_cam, cam_to_ir_label, make_sem_seg_labels and make_ins_seg_labels.

It also logs, once per worker, the measured time per image and the projected time of the step's whole list on
one such device (:class:`Projection`, also used by the training driver and the evaluation steps).

A step supplies a :class:`PerImageTask` (where an id's output goes, what shapes it, how to load its inputs, how to
compute and write it). The runner takes care of the rest: the id list and ``--shard K/N``, the output folder's
manifest (outputs of another configuration are removed before any new one is written: see
:func:`misc.core.fingerprint.prepare_output_dir`), skipping ids already done (unless ``overwrite``; an output that
exists but cannot be read, see :func:`misc.core.outputs.output_problem`, is logged and recomputed), the split over
GPUs (one process per device) or CPU processes, a progress bar, and an error that names the id when one image
fails (a :class:`~misc.core.errors.UserError` of a task, whose message names the file, is raised as is). Tasks write
their outputs atomically (``misc.core.io``), so an interrupted run leaves no half-written file and a rerun
completes whatever is missing.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from misc.core.errors import FlagValueError, UserError, os_error_message

log = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
    """``35 s``, ``12.5 min``, ``3.2 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Projection:
    """Logs once the measured seconds per item and the projected time of ``total`` items on this device.

    :meth:`tick` after each item. The first item (model set-up, warm-up) starts the clock and is not measured; the
    line is logged after ``after`` more items or ``after_s`` seconds, whichever comes first, or by :meth:`finish`
    when the list ends earlier. ``where``: the device and processes, for the message."""

    def __init__(self, what: str, total: int, unit: str = "image", where: str = "", after: int = 20,
                 after_s: float = 60.0, enabled: bool = True) -> None:
        self.what, self.total, self.unit, self.where = what, int(total), unit, where
        self.after, self.after_s, self.enabled = after, after_s, enabled
        self.t0: float | None = None
        self.count = 0
        self.logged = False

    def tick(self) -> None:
        now = time.perf_counter()
        if self.t0 is None:
            self.t0 = now
            return
        self.count += 1
        if not self.logged and (self.count >= self.after or now - self.t0 >= self.after_s):
            self._log(now)

    def seconds_per_item(self) -> float | None:
        if self.t0 is None or self.count == 0:
            return None
        return (time.perf_counter() - self.t0) / self.count

    def finish(self) -> None:
        if not self.logged and self.count > 0:
            self._log(time.perf_counter())

    def _log(self, now: float) -> None:
        self.logged = True
        if not self.enabled or self.t0 is None or self.count == 0:
            return
        per = (now - self.t0) / self.count
        where = f" on {self.where}" if self.where else ""
        log.info("%s: %.3g s per %s (measured over %d %ss%s); projected time for %s %ss on this device: %s",
                 self.what, per, self.unit, self.count, self.unit, where, f"{self.total:,}", self.unit,
                 format_duration(per * self.total))


def with_projection(items, what: str, total: int, unit: str = "image", where: str = ""):
    """Yield ``items`` unchanged, ticking a :class:`Projection` after each (for streaming evaluation loops)."""
    proj = Projection(what, total, unit, where)
    for item in items:
        yield item
        proj.tick()
    proj.finish()


class PerImageTask:
    """Override ``output_path``, ``config``, ``load`` and ``process``; ``setup`` runs once per worker (e.g. builds
    the model). ``out_dir`` holds the outputs (files ending in ``suffix``) and their manifest."""

    name = "task"
    suffix = ".npz"
    output_keys: tuple[str, ...] = ()  # arrays a ``.npz`` output must hold to count as done
    out_dir: Path

    def config(self) -> dict | None:
        """What shapes the outputs (flags, input identities), recorded in the folder's manifest; None: unrecorded."""
        return None

    def output_path(self, img_id: str) -> Path:
        raise NotImplementedError

    def output_problem(self, img_id: str) -> str | None:
        """Why the existing output of ``img_id`` cannot be used (``None``: it is intact, the id is done).

        Cheap: reads headers, not the arrays (:func:`misc.core.outputs.output_problem`)."""
        from misc.core.outputs import output_problem

        return output_problem(self.output_path(img_id), self.output_keys)

    def setup(self, device: torch.device) -> None:
        self.device = device

    def load(self, img_id: str) -> Any:
        """CPU-side input loading (runs in DataLoader workers); must be picklable output."""
        return None

    def process(self, img_id: str, inputs: Any) -> None:
        """Compute and write the outputs of ``img_id`` (atomically)."""
        raise NotImplementedError


def parse_shard(shard: str | None) -> tuple[int, int]:
    """``"K/N"`` → (K, N) with 0 <= K < N; ``None`` → (0, 1)."""
    if not shard:
        return 0, 1
    try:
        k, n = (int(v) for v in shard.split("/"))
    except ValueError:
        raise FlagValueError(f"--shard must look like K/N (e.g. 0/4), got {shard!r}") from None
    if not 0 <= k < n:
        raise FlagValueError(f"--shard {shard}: need 0 <= K < N")
    return k, n


class _IdDataset(Dataset):
    def __init__(self, task: PerImageTask, ids: Sequence[str]) -> None:
        self.task, self.ids = task, list(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        img_id = self.ids[i]
        try:
            return img_id, self.task.load(img_id), None
        except UserError as exc:  # raised as is in the consumer (its message names the file)
            return img_id, None, exc
        except Exception as exc:  # reported with the id in the consumer
            return img_id, None, f"{type(exc).__name__}: {exc}"


def _first(batch):
    return batch[0]


def _work(rank: int, task: PerImageTask, shares: list[list[str]], devices: list[str], loader_workers: int,
          threads: int, total: int = 0) -> None:
    if rank > 0 or len(shares) > 1:
        from misc.core.log import setup_logging

        setup_logging()
    torch.set_num_threads(max(1, threads))
    ids = shares[rank]
    device = torch.device(devices[rank % len(devices)])
    if device.type == "cuda":
        torch.cuda.set_device(device)
    task.setup(device)
    loader = DataLoader(_IdDataset(task, ids), batch_size=1, shuffle=False, num_workers=loader_workers,
                        collate_fn=_first)
    desc = task.name if len(shares) == 1 else f"{task.name}[{rank}]"
    where = f"{device}, {len(shares)} process{'es' if len(shares) > 1 else ''}"
    projection = Projection(desc, total or len(ids), where=where)
    with torch.inference_mode():
        for img_id, inputs, err in tqdm(loader, total=len(ids), desc=desc, position=rank, mininterval=2.0,
                                        dynamic_ncols=True):
            if isinstance(err, UserError):
                raise err
            if err is not None:
                raise RuntimeError(f"{task.name}: image {img_id!r}: {err}")
            try:
                task.process(img_id, inputs)
            except UserError as exc:  # keeps its type; the message gains the image id
                exc.args = (f"{task.name}: image {img_id!r}: {exc}",)
                raise
            except Exception as exc:
                message = os_error_message(exc)
                if message is not None:  # no space, no permission...: still the user's to fix, with the id
                    raise UserError(f"{task.name}: image {img_id!r}: {message}") from exc
                raise RuntimeError(f"{task.name}: image {img_id!r} failed: {type(exc).__name__}: {exc}") from exc
            projection.tick()
    projection.finish()


def _done(task: PerImageTask, img_id: str) -> bool:
    """The output of ``img_id`` exists and is readable; an unreadable one is logged and counts as not done."""
    path = task.output_path(img_id)
    if not path.exists():
        return False
    why = task.output_problem(img_id)
    if why is None:
        return True
    log.warning("%s: recomputing %s: %s is unreadable (%s)", task.name, img_id, path, why)
    return False


@dataclass
class RunSummary:
    total: int
    skipped: int
    processed: int
    seconds: float


def run_per_image(
    task: PerImageTask,
    ids: Sequence[str],
    *,
    devices: Sequence[str] = ("cpu",),
    processes: int = 1,
    overwrite: bool = False,
    shard: str | None = None,
    loader_workers: int = 0,
    split_ranks: bool = True,
) -> RunSummary:
    """Run ``task`` on every id of ``ids`` (this shard) whose output is missing.

    ``devices``: one worker process per device when there are several (e.g. every visible GPU); ``processes``: the
    number of CPU worker processes when the only device is the CPU (for CPU-bound work such as the CRF).
    ``split_ranks``: under torchrun, each rank takes every WORLD_SIZE-th id on its own GPU (False: this process does
    all of them, e.g. inside a step that runs on rank 0 only).
    """
    from misc.engine.distributed import barrier, process_rank

    t0 = time.perf_counter()
    k, n = parse_shard(shard)
    total = len(ids)  # the whole list, all shards: what the projected time is for
    ids = list(ids)[k::n]
    rank, world = process_rank()
    config = task.config()
    if config is not None and (rank == 0 or not split_ranks):
        from misc.core.fingerprint import prepare_output_dir

        # a shard never clears the folder for --overwrite (other shards' outputs live there): it redoes its own ids
        prepare_output_dir(task.out_dir, task.name, config, (task.suffix,), overwrite=overwrite and n == 1)
    if world > 1 and split_ranks:  # under torchrun every rank takes its own share on its own GPU (or the CPU)
        barrier()
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        ids = ids[rank::world]
        if any(str(d).startswith("cuda") for d in devices):
            devices = [f"cuda:{local_rank}"]
        else:
            devices, processes = ["cpu"], max(1, processes // local_world)
    todo = ids if overwrite else [i for i in ids if not _done(task, i)]
    skipped = len(ids) - len(todo)
    if skipped:
        log.info("%s: %d of %d images already done, skipped (use --overwrite to redo)", task.name, skipped, len(ids))
    if todo:
        devices = list(devices)
        n_workers = len(devices) if len(devices) > 1 else max(1, processes)
        n_workers = min(n_workers, len(todo))
        shares = [todo[r::n_workers] for r in range(n_workers)]
        cpu_threads = max(1, (os.cpu_count() or 1) // n_workers)
        if n_workers == 1:
            _work(0, task, shares, devices, loader_workers, torch.get_num_threads(), total)
        else:
            from misc.engine.failures import spawn

            per_worker_loaders = loader_workers // n_workers
            spawn(_work, (task, shares, devices, per_worker_loaders, cpu_threads, total), n_workers, task.name)
    summary = RunSummary(len(ids), skipped, len(todo), time.perf_counter() - t0)
    log.info("%s: %d processed, %d skipped in %.1f s", task.name, summary.processed, summary.skipped, summary.seconds)
    return summary


def inference_devices(device_arg: str) -> list[str]:
    """``--device`` → the devices per-image steps use: every visible GPU for ``auto``/``cuda``, else the one given."""
    if device_arg in ("auto", "cuda") and torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if device_arg == "auto":
        return ["cpu"]
    return [device_arg]


def device_workers(args) -> dict:
    """``run_per_image`` keywords for a model step: every visible GPU, or ``--nproc`` CPU processes."""
    devices = inference_devices(args.device)
    processes = max(1, getattr(args, "nproc", None) or 1) if devices == ["cpu"] else 1
    return {"devices": devices, "processes": processes, "loader_workers": min(2, args.num_workers)}
