"""The one training driver behind train_cam, train_irn, train_deeplab and train_wsol.

A step supplies a :class:`TrainJob`: its configuration (what shapes its result, for the fingerprint), its data
set and global batch, its models and optimisers, and the loss of one micro-batch. The driver does the rest, the
same way for every step:

* **skip or resume**: a finished run of the same configuration is skipped (its weights are up to date); an
  interrupted one resumes from its last checkpoint, RNG states and loss history included; a run of another
  configuration starts from scratch, logging which flags differ.
* **batches**: one global batch per update (:class:`misc.engine.distributed.GlobalBatchSampler`) whatever the number of
  processes, split into micro-batches of at most ``micro_batch`` images (gradient accumulation, DDP ``no_sync``
  until the last one); each micro-batch's loss is weighted by its share of the global batch, so 1 to 8
  processes make the same update as the original's one GPU.
* **processes**: CPU, one GPU, one spawned process per GPU or torchrun; DDP without buffer broadcasts (every
  buffer of these nets is constant during training); DataLoader workers divided among the processes.
* **precision**: ``--amp bf16`` or ``fp16`` (with a gradient scaler); a non-finite loss stops the run at once,
  naming the step, update and loss term, before anything non-finite is saved.
* **records**: per-update losses and learning rates in ``<result>/logs/<step>.jsonl``, per-epoch summaries in
  ``metrics.json[<step>]``, the configuration and output identities in ``<sess>/<step>.state.json``.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from misc.core.checkpoint import load_resume, save_state_dict
from misc.engine.distributed import DistContext, barrier, launch, make_loader
from misc.core.errors import FlagValueError, UserError
from misc.core.fingerprint import canonical, config_diff, fingerprint, write_sidecar
from misc.core.paths import training_log
from misc.core.io import atomic_write, write_json
from misc.core.results import update_metrics
from misc.method.torchutils import autocast

log = logging.getLogger(__name__)
__all__ = ["TrainJob", "run_training", "autocast", "seed_everything", "NonFiniteLossError", "split_batch"]


class NonFiniteLossError(UserError, RuntimeError):
    """A loss became NaN or infinite: training stopped before saving anything non-finite."""


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class TrainJob:
    """What one training step supplies to :func:`run_training`.

    Class attributes: ``name`` (the step), ``seed_flag`` (the flag holding its seed). In :meth:`setup` the job
    sets ``dataset``, ``global_batch`` (images per update), ``micro_batch`` (most images per forward on one process,
    None = its whole share), ``total_updates``, ``modules`` (name → module, saved and resumed), ``optimizers``,
    optionally ``schedulers`` and ``ddp_modules`` (name → module to wrap; the wrapped ones are in ``self.nets``).
    """

    name = "train"
    seed_flag = "seed"
    batch_flag = "--batch_size"  # named in batch-size errors
    drop_last = True
    checkpoint_every: int | None = None  # updates between resume checkpoints (None: every epoch)

    def __init__(self, args) -> None:
        self.args = args
        self.schedulers: dict[str, Any] = {}
        self.ddp_modules: dict[str, torch.nn.Module] = {}
        self.nets: dict[str, torch.nn.Module] = {}
        self.state: dict[str, Any] = {}  # small job state saved with the checkpoint (e.g. the best epoch)

    # ---- what the step defines
    def config(self) -> dict:
        """Everything that shapes the trained weights (flags, list digests, input identities)."""
        raise NotImplementedError

    def outputs(self) -> list[Path]:
        """The final weights files."""
        raise NotImplementedError

    def setup(self, ctx: DistContext) -> None:
        """Set the data set, batch sizes, update count, modules and optimisers (see the class docstring)."""
        raise NotImplementedError

    def loss(self, batch: dict, epoch: int) -> dict[str, torch.Tensor]:
        """Forward one micro-batch (on ``self.nets``); returns 0-d losses, ``total`` the one to minimise (a mean
        over the micro-batch)."""
        raise NotImplementedError

    def start_epoch(self, epoch: int) -> None:
        """Before the first update of ``epoch`` (0-based)."""

    def after_update(self, update: int) -> None:
        """After the optimiser steps of update ``update`` (1-based count of updates done)."""

    def end_epoch(self, epoch: int, means: dict[str, float], ctx: DistContext) -> dict:
        """After the last update of an epoch (every rank); returns extra fields of the epoch record."""
        return {}

    def finish(self, ctx: DistContext) -> None:
        """After training (every rank): e.g. a last estimate; rank 0 then saves :meth:`final_state_dicts`."""

    def final_state_dicts(self) -> dict[Path, dict]:
        """{output path: state dict} written on rank 0 at the end."""
        raise NotImplementedError

    def metrics(self, history: list[dict], updates: list[dict]) -> dict:
        """``metrics.json[name]`` from the epoch records and the per-update records."""
        return {"epochs": history}

    # ---- helpers for the step
    @property
    def sess_dir(self) -> Path:
        return Path(self.args.sess_dir)

    def state_path(self) -> Path:
        from misc.core.paths import training_state

        return training_state(self.sess_dir, self.name)

    def resume_path(self) -> Path:
        from misc.core.paths import training_resume

        return training_resume(self.sess_dir, self.name)


def _state_record(job: TrainJob) -> dict | None:
    """The job's state file of its last run (None when missing or unreadable)."""
    path = job.state_path()
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def up_to_date(job: TrainJob, fp: str) -> bool:
    """True when ``job`` finished before with fingerprint ``fp`` and its outputs are still the files it wrote."""
    rec = _state_record(job)
    if not rec or rec.get("fingerprint") != fp or not rec.get("finished"):
        return False
    for path, size in rec.get("outputs", {}).items():
        p = Path(path)
        if not p.is_file() or p.stat().st_size != size:
            return False
    return True


def run_training(job_cls: type[TrainJob], args) -> None:
    """Skip when up to date, else run ``job_cls`` in every process (see :func:`misc.engine.distributed.launch`)."""
    job = job_cls(args)
    config = job.config()
    fp = fingerprint(config)
    if up_to_date(job, fp) and not args.overwrite:
        log.info("%s: up to date (same configuration %s, outputs in place): skipped", job.name, fp)
        return
    old = _state_record(job)
    if old and old.get("fingerprint") != fp:
        log.info("%s: configuration changed since the last run: %s", job.name,
                 "; ".join(config_diff(old.get("config"), config)))
    launch(functools.partial(_drive, job_cls, config, fp), args, job.name)


def rng_state() -> dict:
    """The states of torch's, numpy's and Python's global RNGs (tensors and ints: safe for weights_only)."""
    _, np_keys, np_pos, np_gauss_has, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(np_keys.astype(np.int64)),
             "numpy_pos": int(np_pos), "numpy_gauss": [int(np_gauss_has), float(np_gauss)],
             "python": torch.tensor(py_state, dtype=torch.int64), "python_version": int(py_version),
             "python_gauss": py_gauss}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"].cpu())
    has_gauss, gauss = state["numpy_gauss"]
    np.random.set_state(("MT19937", state["numpy"].cpu().numpy().astype(np.uint32), int(state["numpy_pos"]),
                         int(has_gauss), float(gauss)))
    random.setstate((int(state["python_version"]), tuple(int(v) for v in state["python"].tolist()),
                     state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


def split_batch(batch: dict, sizes: list[int]) -> list[dict]:
    """Cut a collated batch (tensors / lists along dim 0) into consecutive micro-batches of ``sizes``."""
    out = [dict() for _ in sizes]
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            parts = torch.split(value, sizes)
        else:
            bounds = np.cumsum([0, *sizes])
            parts = [value[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        for d, part in zip(out, parts):
            d[key] = part
    return out


def _micro_sizes(n: int, micro_batch: int | None) -> list[int]:
    """Sizes of the fewest near-equal micro-batches of at most ``micro_batch`` that ``n`` images split into."""
    if not micro_batch or n <= micro_batch:
        return [n]
    from misc.engine.distributed import split_counts

    return split_counts(n, math.ceil(n / micro_batch))


class _UpdateLog:
    """``<result>/logs/<step>.jsonl``: one JSON line per update (rank 0). A resumed run keeps the lines up to the
    update it resumes from; a fresh run starts the file anew."""

    def __init__(self, path: Path, start_update: int, enabled: bool) -> None:
        self.path, self.enabled, self.records = path, enabled, []
        if not enabled:
            return
        kept = []
        if start_update and path.is_file():
            for line in path.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    rec = json.loads(line)
                    if rec.get("update", 0) <= start_update:
                        kept.append(rec)
        self.records = kept
        text = "".join(json.dumps(r) + "\n" for r in kept)
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))
        self.file = open(path, "a")

    def add(self, record: dict) -> None:
        if self.enabled:
            self.records.append(record)
            self.file.write(json.dumps(record) + "\n")

    def flush(self) -> None:
        if self.enabled:
            self.file.flush()

    def close(self) -> None:
        if self.enabled:
            self.file.close()


def _drive(job_cls: type[TrainJob], config: dict, fp: str, args, ctx: DistContext) -> None:
    """One process's part of a training run (what :func:`run_training` launches in every process)."""
    run = _TrainingRun(job_cls(args), config, fp, args, ctx)
    run.resume()
    run.wrap_nets()
    run.train()
    run.job.finish(ctx)
    if ctx.is_main:
        run.save_outputs()
    barrier()


class _TrainingRun:
    """One process's training of a job: its loader and schedule, the update count, the epoch records so far."""

    def __init__(self, job: TrainJob, config: dict, fp: str, args, ctx: DistContext) -> None:
        """Seed this rank, set the job up and build its loader; raises when the data set gives no full batch."""
        self.job, self.config, self.fp, self.args, self.ctx = job, config, fp, args, ctx
        seed = int(getattr(args, job.seed_flag))
        seed_everything(seed + ctx.rank)
        job.setup(ctx)
        self.loader = make_loader(job.dataset, job.global_batch, ctx, flag=job.batch_flag, train=True,
                                  num_workers=args.num_workers, seed=seed, drop_last=job.drop_last)
        self.sampler = self.loader.batch_sampler
        self.updates_per_epoch = len(self.sampler)
        if self.updates_per_epoch == 0:
            raise FlagValueError(f"{job.name}: {len(job.dataset)} images give no full batch of {job.global_batch}; "
                                 f"choose a smaller {job.batch_flag}")
        self.total = job.total_updates
        self.checkpoint_every = job.checkpoint_every or self.updates_per_epoch
        self.scaler = torch.amp.GradScaler("cuda") if args.amp == "fp16" and ctx.device.type == "cuda" else None
        self.update = 0  # updates done
        self.history: list[dict] = []  # one record per finished epoch (rank 0)
        self.records: _UpdateLog | None = None
        self.t0, self.seen = 0.0, 0  # for the images per second

    def resume(self) -> None:
        """Load the modules, optimisers, schedulers, scaler, history, job state and this rank's RNG states from the
        resume file, when there is one of this configuration."""
        job = self.job
        state = load_resume(job.resume_path(), self.ctx.device, self.fp, self.config, self.args.overwrite)
        if state is None:
            return
        for name, module in job.modules.items():
            module.load_state_dict(state["modules"][name])
        for name, opt in job.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, sched in job.schedulers.items():
            sched.load_state_dict(state["schedulers"][name])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.update, self.history = int(state["update"]), list(json.loads(state["history"]))
        job.state.update(json.loads(state["job_state"]))
        rng = state.get("rng", {}).get(str(self.ctx.rank))
        if rng is not None:
            set_rng_state(rng)
        log.info("%s: resuming after update %d of %d (epoch %d)", job.name, self.update, self.total,
                 self.update // self.updates_per_epoch)

    def wrap_nets(self) -> None:
        """``job.nets``: the job's ``ddp_modules``, wrapped in DDP when there are several processes."""
        if self.ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            device = self.ctx.device
            ids = [device.index] if device.type == "cuda" else None
            self.job.nets = {k: DDP(m, device_ids=ids, **_no_buffer_sync()) for k, m in self.job.ddp_modules.items()}
        else:
            self.job.nets = dict(self.job.ddp_modules)

    def train(self) -> None:
        """Every update from the current one to the last, epoch by epoch, with the per-update log."""
        self.records = _UpdateLog(training_log(self.args.result_dir, self.job.name), self.update, self.ctx.is_main)
        self.t0, self.seen = time.perf_counter(), 0
        projection = self._projection()
        projection.tick()  # the clock starts now: the first update (warm-up) is measured too, the set-up is not
        while self.update < self.total:
            self._train_epoch(projection)
        projection.finish()
        self.records.close()

    def _projection(self):
        """The logged projection of the time left (rank 0)."""
        from misc.engine.per_image import Projection

        ctx = self.ctx
        return Projection(self.job.name, self.total, unit="update", after=10, enabled=ctx.is_main,
                          where=f"{ctx.device}, {ctx.world_size} process{'es' if ctx.world_size > 1 else ''}, "
                                f"{self.job.global_batch} images per update")

    def _train_epoch(self, projection) -> None:
        """The updates of the current epoch from the current update on (to its end or to the last update): the
        per-update records, the epoch record at its end, a resume checkpoint every ``checkpoint_every`` updates."""
        from tqdm import tqdm

        job, ctx = self.job, self.ctx
        epoch, skip = divmod(self.update, self.updates_per_epoch)
        self.sampler.set_epoch(epoch, skip)
        if skip == 0:
            job.start_epoch(epoch)
        sums: dict[str, float] = {}
        n_in_epoch = 0
        bar = tqdm(self.loader, desc=f"{job.name} epoch {epoch + 1}", disable=not ctx.is_main, mininterval=10.0,
                   dynamic_ncols=True, total=min(self.updates_per_epoch - skip, self.total - self.update))
        for batch in bar:
            losses = _one_update(job, batch, epoch, ctx, self.scaler, self.update)
            self.update += 1
            projection.tick()
            n_in_epoch += 1
            self.seen += job.global_batch
            job.after_update(self.update)
            self.records.add({"update": self.update, "epoch": epoch + 1, **losses,
                              "lr": [g["lr"] for opt in job.optimizers.values() for g in opt.param_groups][:4]})
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{losses['total']:.4f}", ips=f"{self._images_per_s():.1f}", refresh=False)
            if self.update % self.updates_per_epoch == 0:
                self._end_epoch(epoch, {k: v / max(1, n_in_epoch) for k, v in sums.items()})
            if self.update % self.checkpoint_every == 0 or self.update == self.total:
                self.records.flush()
                _save_resume(job, self.fp, self.config, self.update, self.history, self.scaler, ctx)
            if self.update >= self.total:
                break

    def _images_per_s(self) -> float:
        """Images per second of this process since training started (the set-up excluded)."""
        return self.seen / (time.perf_counter() - self.t0)

    def _end_epoch(self, epoch: int, means: dict[str, float]) -> None:
        """The job's end of ``epoch`` (every rank), then its record in the history and the log (rank 0)."""
        extra = self.job.end_epoch(epoch, means, self.ctx)
        if self.ctx.is_main:
            speed = self._images_per_s()
            self.history.append({"epoch": epoch + 1, **means, **extra, "images_per_s": round(speed, 2)})
            log.info("%s epoch %d: %s", self.job.name, epoch + 1,
                     " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                              for k, v in self.history[-1].items() if k != "epoch"))

    def save_outputs(self) -> None:
        """Rank 0 at the end: the final weights with their sidecars, ``metrics.json[<step>]`` and the state file that
        marks the run finished."""
        job, fp = self.job, self.fp
        outputs = {}
        for path, sd in job.final_state_dicts().items():
            save_state_dict(sd, path)
            write_sidecar(path, job.name, fp)
            outputs[str(path)] = Path(path).stat().st_size
        metrics = {**job.metrics(self.history, self.records.records), "fingerprint": fp}
        update_metrics(self.args.result_dir, job.name, metrics, inputs=[str(p) for p in outputs])
        write_json(job.state_path(), {"step": job.name, "fingerprint": fp, "config": canonical(self.config),
                                      "finished": True, "outputs": outputs, "updates": self.total})
        log.info("%s: saved %s", job.name, ", ".join(outputs))


def _no_buffer_sync() -> dict:
    """DDP keywords: no buffer broadcast before every forward (IRNet alone has ~213 MB of constant index buffers)."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel as DDP

    if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters:  # newer torch
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}


def _one_update(job: TrainJob, batch: dict, epoch: int, ctx: DistContext, scaler, update: int) -> dict[str, float]:
    """Forward/backward the micro-batches of this rank's share, then step every optimiser; returns the losses
    (means over this rank's images)."""
    n = next(len(v) for v in batch.values() if isinstance(v, (torch.Tensor, list)))
    sizes = _micro_sizes(n, job.micro_batch)
    for opt in job.optimizers.values():
        opt.zero_grad(set_to_none=True)
    totals: dict[str, float] = {}
    for i, micro in enumerate(split_batch(batch, sizes)):
        last = i == len(sizes) - 1
        sync = contextlib.ExitStack()
        if ctx.distributed and not last:
            for net in job.nets.values():
                sync.enter_context(net.no_sync())
        with sync:
            losses = job.loss(micro, epoch)
            _check_finite(job, losses, update + 1, ctx)
            weight = sizes[i] * ctx.world_size / job.global_batch
            total = losses["total"] * weight
            (scaler.scale(total) if scaler is not None else total).backward()
        for k, v in losses.items():
            totals[k] = totals.get(k, 0.0) + float(v.detach()) * sizes[i] / n
    for opt in job.optimizers.values():
        if scaler is not None:
            scaler.step(opt)
        else:
            opt.step()
    if scaler is not None:
        scaler.update()
    return totals


def _check_finite(job: TrainJob, losses: dict[str, torch.Tensor], update: int, ctx: DistContext) -> None:
    """Raise :class:`NonFiniteLossError` on every rank when a loss of any rank is NaN or infinite."""
    bad = torch.stack([~torch.isfinite(v.detach().float()) for v in losses.values()]).any().float()
    if ctx.distributed:
        torch.distributed.all_reduce(bad)
    if bad.item():
        which = [k for k, v in losses.items() if not torch.isfinite(v.detach()).all()]
        raise NonFiniteLossError(
            f"{job.name}: non-finite loss at update {update} ({', '.join(which) or 'on another process'}); "
            "stopped before saving. Lower the learning rate, or check the inputs (e.g. --amp fp16 overflow).")


def _save_resume(job: TrainJob, fp: str, config: dict, update: int, history: list, scaler, ctx) -> None:
    """Every rank's RNG state is gathered (all ranks call this); rank 0 writes the resume file."""
    if ctx.distributed:
        states: list = [None] * ctx.world_size
        torch.distributed.all_gather_object(states, rng_state())
        rng = {str(r): s for r, s in enumerate(states)}
    else:
        rng = {"0": rng_state()}
    if not ctx.is_main:
        return
    state = {
        "fingerprint": fp, "config": json.dumps(canonical(config)), "update": update,
        "history": json.dumps(history), "job_state": json.dumps(job.state),
        "modules": {k: m.state_dict() for k, m in job.modules.items()},
        "optimizers": {k: o.state_dict() for k, o in job.optimizers.items()},
        "schedulers": {k: s.state_dict() for k, s in job.schedulers.items()}, "rng": rng,
    }
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    save_state_dict(state, job.resume_path())

