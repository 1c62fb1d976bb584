"""One process per GPU: torchrun launches, or a plain run that spawns one worker per visible GPU.

Training steps call :func:`launch` with a function ``fn(args, ctx)``; it runs
* under ``torchrun`` (``WORLD_SIZE`` set): in this process, with the process group already initialised;
* with several visible GPUs and ``--device auto|cuda``: in one spawned process per GPU (DDP over NCCL), or in
  ``--nproc N`` spawned processes (on the CPU over gloo with ``--device cpu``: the rehearsal of the multi-GPU path);
* otherwise: in this process on ``--device`` (CPU or one GPU).
"""
from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from misc.core.errors import FlagValueError, UserError


class DeviceUnavailableError(UserError, RuntimeError):
    """``--device`` names a device this process cannot use."""


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def under_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def resolve_device(device_arg: str, local_rank: int = 0) -> torch.device:
    if device_arg == "auto":
        device_arg = "cuda" if torch.cuda.is_available() else "cpu"
    if device_arg == "cuda":
        return torch.device("cuda", local_rank)
    device = torch.device(device_arg)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError(f"--device {device_arg}: no CUDA GPU is visible to this process (torch "
                           f"{torch.__version__}); use --device cpu or auto")
    return device


def init_from_env(device_arg: str) -> DistContext:
    """Join the torchrun process group (idempotent) and return this process's context."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = resolve_device(device_arg, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=2))
    return DistContext(rank, world, device)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawned(rank: int, world: int, port: int, fn: Callable, args) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    from misc.core.log import setup_logging

    setup_logging()
    ctx = init_from_env(args.device)
    if ctx.device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    fn(args, ctx)  # on an exception the group stays up until the failure is recorded (misc.engine.failures)
    dist.destroy_process_group()


def num_processes(args) -> int:
    """Processes of the plain launch: ``--nproc`` when given, else every visible GPU for --device auto/cuda, else 1."""
    if getattr(args, "nproc", None):
        return int(args.nproc)
    return torch.cuda.device_count() if args.device in ("auto", "cuda") and torch.cuda.is_available() else 1


def launch(fn: Callable, args, what: str = "training") -> None:
    """Run ``fn(args, ctx)`` in every process: this one under torchrun; else one spawned process per GPU (or
    ``--nproc`` processes, CPU ones over gloo with ``--device cpu``), ending as one run when one fails
    (:func:`misc.engine.failures.spawn`; ``what`` names them); else here, on ``--device``."""
    configure_precision()
    if under_torchrun():
        fn(args, init_from_env(args.device))
        return
    n = num_processes(args)
    if n > 1:
        from misc.engine.failures import spawn

        spawn(_spawned, (n, _free_port(), fn, args), n, what)
        return
    fn(args, DistContext(0, 1, resolve_device(args.device)))


def configure_precision() -> None:
    """TF32 matmuls/convolutions on GPUs unless ``CRT_TF32=0`` (set by ``--tf32 false``); a no-op on the CPU."""
    if torch.cuda.is_available():
        on = os.environ.get("CRT_TF32", "1") != "0"
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on


def process_rank() -> tuple[int, int]:
    """(rank, world size) of this process: from the process group when one is joined, else from torchrun's env."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return process_rank()[0] == 0


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        t = t.clone()
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t


def split_counts(total: int, parts: int) -> list[int]:
    """``total`` items over ``parts`` as evenly as possible, the first ones one larger: 10 over 3 → [4, 3, 3]."""
    return [total // parts + (r < total % parts) for r in range(parts)]


class GlobalBatchSampler(Sampler):
    """Batches of one *global* batch per update, split over the processes; yields this rank's share.

    Every rank draws the same seeded permutation per epoch (``seed + epoch``), cuts it into global batches of
    ``global_batch`` indices and takes its slice (:func:`split_counts`), so the images of an update do not depend on
    the number of processes: 10 images per update are 10 on one GPU (5 × 2 accumulated), 5 + 5 on two, 4 + 3 + 3
    on three. ``drop_last``: the last incomplete global batch is dropped (the originals' rule for train_cam,
    train_irn and DeepLab); otherwise it is kept, for training when it has at least one image per process (DDP
    needs every rank in every update), for evaluation (``shuffle`` off) always, a rank without share skipping it.
    ``skip_batches``
    (:meth:`set_epoch`) resumes in the middle of an epoch.
    """

    def __init__(self, num_items: int, global_batch: int, rank: int = 0, world_size: int = 1, *, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = True, flag: str = "batch size") -> None:
        if global_batch < world_size:
            raise FlagValueError(f"{flag} {global_batch} is smaller than the {world_size} processes: each process "
                                 f"needs at least one image per update; raise {flag} or use fewer processes")
        if num_items < global_batch and drop_last:
            raise FlagValueError(f"{num_items} training images are fewer than one batch ({flag} {global_batch}); "
                                 f"choose a smaller {flag}")
        self.num_items, self.global_batch, self.rank, self.world = num_items, global_batch, rank, world_size
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip = epoch, skip_batches

    def __len__(self) -> int:
        full, rest = divmod(self.num_items, self.global_batch)
        return full + (not self.drop_last and rest >= (self.world if self.shuffle else 1))

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.num_items, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.num_items)
        for b in range(self.skip, len(self)):
            batch = order[b * self.global_batch:(b + 1) * self.global_batch].tolist()
            counts = split_counts(len(batch), self.world)
            start = sum(counts[:self.rank])
            if counts[self.rank]:
                yield batch[start:start + counts[self.rank]]


def loader_workers(num_workers: int, ctx: DistContext) -> int:
    """``--num_workers`` is per machine: each of the processes on it gets its share (at least 0)."""
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world_size))
    return num_workers // max(1, local_world) if ctx.distributed else num_workers


def make_loader(dataset, global_batch: int, ctx: DistContext, *, flag: str, train: bool, num_workers: int,
                seed: int = 0, drop_last: bool | None = None):
    """DataLoader of this process's share of each global batch (:class:`GlobalBatchSampler`).

    ``train``: shuffled, last incomplete batch dropped (the originals' rule); otherwise in order and kept.
    ``flag`` names the batch-size flag in errors. Worker seeds derive from ``seed`` and the rank.
    """
    from torch.utils.data import DataLoader

    drop_last = train if drop_last is None else drop_last
    sampler = GlobalBatchSampler(len(dataset), global_batch, ctx.rank, ctx.world_size, seed=seed, shuffle=train,
                                 drop_last=drop_last, flag=flag)
    workers = loader_workers(num_workers, ctx)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=ctx.device.type == "cuda",
                      persistent_workers=train and workers > 0,
                      generator=torch.Generator().manual_seed(seed * 1000 + ctx.rank))
