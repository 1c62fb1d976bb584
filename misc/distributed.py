"""One process per GPU: torchrun launches, or a plain run that spawns one worker per visible GPU.

Training steps call :func:`launch` with a function ``fn(args, ctx)``; it runs
* under ``torchrun`` (``WORLD_SIZE`` set): in this process, with the process group already initialised;
* with several visible GPUs and ``--device auto|cuda``: in one spawned process per GPU (DDP over NCCL);
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
    return torch.device(device_arg)


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
                      LOCAL_RANK=str(rank))
    from misc.log import setup_logging

    setup_logging()
    ctx = init_from_env("cuda")
    try:
        fn(args, ctx)
    finally:
        dist.destroy_process_group()


def launch(fn: Callable, args) -> None:
    """Run ``fn(args, ctx)`` on every GPU (DDP) or on the single device of ``args.device``."""
    if under_torchrun():
        fn(args, init_from_env(args.device))
        return
    n_gpus = torch.cuda.device_count() if args.device in ("auto", "cuda") else 0
    if n_gpus > 1:
        import torch.multiprocessing as mp

        mp.spawn(_spawned, args=(n_gpus, _free_port(), fn, args), nprocs=n_gpus, join=True)
        return
    fn(args, DistContext(0, 1, resolve_device(args.device)))


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        t = t.clone()
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t


def make_loader(dataset, global_batch: int, ctx: DistContext, *, flag: str, train: bool, num_workers: int,
                seed: int = 0, drop_last: bool | None = None):
    """DataLoader of this process's share: ``global_batch / world_size`` per process, a DistributedSampler under DDP.

    ``train``: shuffled, last incomplete batch dropped (the originals' rule); otherwise in order. ``flag`` names the
    batch-size flag in errors.
    """
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    if global_batch % ctx.world_size:
        raise ValueError(f"{flag} {global_batch} must be divisible by the {ctx.world_size} processes")
    drop_last = train if drop_last is None else drop_last
    sampler = DistributedSampler(dataset, shuffle=train, drop_last=drop_last, seed=seed) if ctx.distributed else None
    return DataLoader(dataset, batch_size=global_batch // ctx.world_size, shuffle=train and sampler is None,
                      sampler=sampler, drop_last=drop_last, num_workers=num_workers,
                      pin_memory=ctx.device.type == "cuda", persistent_workers=train and num_workers > 0)
