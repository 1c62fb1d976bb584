"""The shared training driver: batch arithmetic for 1-8 processes, accumulation, two gloo processes, skip / resume /
restart by fingerprint, non-finite losses."""
from __future__ import annotations

import argparse
import json
import logging
import os

import numpy as np
import pytest
import torch

from misc.engine.distributed import DistContext, GlobalBatchSampler, split_counts
from misc.engine.training import NonFiniteLossError, TrainJob, run_training, split_batch


# ------------------------------------------------------------------ batch arithmetic
@pytest.mark.parametrize("world", range(1, 9))
def test_every_process_count_makes_the_same_global_batches(world):
    """DeepLab's 10 images per update (batch 5 × 2) are the same 10 images for 1..8 processes, split evenly."""
    n, global_batch = 53, 10
    one = list(GlobalBatchSampler(n, global_batch, 0, 1, seed=3))
    shares = [list(GlobalBatchSampler(n, global_batch, r, world, seed=3)) for r in range(world)]
    assert all(len(s) == len(one) == n // global_batch for s in shares)
    for u, batch in enumerate(one):
        parts = [shares[r][u] for r in range(world)]
        assert [len(p) for p in parts] == split_counts(global_batch, world)
        assert sum(parts, []) == batch
        assert min(len(p) for p in parts) >= 1


def test_sampler_epochs_resume_and_errors():
    s = GlobalBatchSampler(20, 4, seed=0)
    s.set_epoch(1)
    epoch1 = list(s)
    s.set_epoch(1, skip_batches=3)
    assert list(s) == epoch1[3:]
    s.set_epoch(2)
    assert list(s) != epoch1
    assert sorted(sum(epoch1, [])) == list(range(20))
    with pytest.raises(ValueError, match="--deeplab_batch_size 2 is smaller than the 3 processes"):
        GlobalBatchSampler(20, 2, 0, 3, flag="--deeplab_batch_size")
    # evaluation keeps every image, even when the last batch has fewer images than processes
    ev = [list(GlobalBatchSampler(9, 4, r, 3, shuffle=False, drop_last=False)) for r in range(3)]
    assert sorted(sum(sum(ev, []), [])) == list(range(9))
    # training without drop_last keeps a last batch only if every process gets an image
    assert len(GlobalBatchSampler(9, 4, 0, 2, drop_last=False)) == 2
    assert len(GlobalBatchSampler(10, 4, 0, 2, drop_last=False)) == 3


def test_split_batch():
    batch = {"img": torch.arange(10).view(5, 2), "name": list("abcde")}
    parts = split_batch(batch, [3, 2])
    assert parts[0]["img"].tolist() == [[0, 1], [2, 3], [4, 5]] and parts[1]["name"] == ["d", "e"]


# ------------------------------------------------------------------ a toy job run through the real driver
class _Noisy(torch.utils.data.Dataset):
    """x with numpy-random noise (augmentation), y = fixed linear function of x."""

    def __init__(self, n: int = 24) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0])

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        noise = torch.from_numpy(np.random.normal(0, 0.1, 4).astype(np.float32))
        noise *= float(os.environ.get("TOY_NOISE", "1"))
        return {"x": self.x[i] + noise, "y": self.y[i]}


class ToyJob(TrainJob):
    name = "train_toy"
    batch_flag = "--toy_batch"

    def config(self) -> dict:
        return {"lr": self.args.toy_lr, "batch": self.args.toy_batch, "micro": self.args.toy_micro,
                "updates": self.args.toy_updates}

    def outputs(self):
        return [self.sess_dir / "toy.pth"]

    def setup(self, ctx: DistContext) -> None:
        torch.manual_seed(123)  # same initial weights on every rank (DDP also broadcasts them)
        self.model = torch.nn.Linear(4, 1)
        self.dataset = _Noisy()
        self.global_batch, self.micro_batch = self.args.toy_batch, self.args.toy_micro
        self.total_updates = self.args.toy_updates
        self.modules = {"model": self.model}
        self.optimizers = {"model": torch.optim.SGD(self.model.parameters(), lr=self.args.toy_lr, momentum=0.9)}
        self.ddp_modules = {"model": self.model}

    def loss(self, batch: dict, epoch: int) -> dict:
        pred = self.nets["model"](batch["x"])[:, 0]
        mse = ((pred - batch["y"]) ** 2).mean()
        return {"total": mse * float(os.environ.get("TOY_LOSS_SCALE", "1"))}

    def after_update(self, update: int) -> None:
        if os.environ.get("TOY_CRASH_AT") == str(update):
            raise KeyboardInterrupt(f"simulated kill after update {update}")

    def final_state_dicts(self):
        return {self.outputs()[0]: self.model.state_dict()}


def _args(tmp_path, **kw) -> argparse.Namespace:
    base = dict(sess_dir=str(tmp_path / "sess"), result_dir=str(tmp_path / "result"), device="cpu", nproc=None,
                num_workers=0, seed=0, amp="off", overwrite=False, toy_lr=0.05, toy_batch=6, toy_micro=None,
                toy_updates=8)
    base.update(kw)
    return argparse.Namespace(**base)


def _weights(tmp_path) -> torch.Tensor:
    sd = torch.load(tmp_path / "sess" / "toy.pth", weights_only=True)
    return torch.cat([sd["weight"].flatten(), sd["bias"]])


def test_accumulation_equals_one_big_batch(tmp_path):
    run_training(ToyJob, _args(tmp_path / "a", toy_micro=None))
    run_training(ToyJob, _args(tmp_path / "b", toy_micro=2))  # 6 images as 2 + 2 + 2, accumulated
    assert torch.allclose(_weights(tmp_path / "a"), _weights(tmp_path / "b"), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("nproc", [2, 4])
def test_several_gloo_processes_make_the_single_process_update(tmp_path, nproc, monkeypatch):
    """The plain launch's one-process-per-device path, on the CPU: same weights as one process (mean losses of
    unequal shares are weighted by their image counts: 6 over 4 processes would be 2+2+1+1). Without augmentation
    noise, whose random draws differ per process."""
    monkeypatch.setenv("TOY_NOISE", "0")
    run_training(ToyJob, _args(tmp_path / "one"))
    run_training(ToyJob, _args(tmp_path / "many", nproc=nproc))
    assert torch.allclose(_weights(tmp_path / "one"), _weights(tmp_path / "many"), atol=1e-5)
    records = [json.loads(line) for line in (tmp_path / "many" / "result" / "logs" / "train_toy.jsonl").open()]
    assert [r["update"] for r in records] == list(range(1, 9))


def test_skip_resume_and_restart(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    reference = tmp_path / "ref"
    run_training(ToyJob, _args(reference))

    # killed after update 5 (of 8): the rerun resumes there (RNG states included) and ends where the reference ends
    work = tmp_path / "work"
    monkeypatch.setenv("TOY_CRASH_AT", "5")
    with pytest.raises(KeyboardInterrupt):
        run_training(ToyJob, _args(work, toy_batch=6))
    monkeypatch.delenv("TOY_CRASH_AT")
    assert not (work / "sess" / "toy.pth").exists()
    run_training(ToyJob, _args(work))
    assert "resuming after update 4" in caplog.text  # checkpoints at epoch ends: 4 updates per epoch
    assert torch.equal(_weights(work), _weights(reference))
    lines = (work / "result" / "logs" / "train_toy.jsonl").read_text().splitlines()
    assert [json.loads(x)["update"] for x in lines] == list(range(1, 9))
    history = json.loads((work / "result" / "metrics.json").read_text())["train_toy"]["epochs"]
    assert [h["epoch"] for h in history] == [1, 2]  # the epoch before the interruption is kept

    # identical rerun: skipped; changed flag: restarts from scratch and says which flag changed
    caplog.clear()
    mtime = (work / "sess" / "toy.pth").stat().st_mtime_ns
    run_training(ToyJob, _args(work))
    assert "train_toy: up to date" in caplog.text
    assert (work / "sess" / "toy.pth").stat().st_mtime_ns == mtime
    caplog.clear()
    run_training(ToyJob, _args(work, toy_lr=0.01))
    assert "lr: 0.05 -> 0.01" in caplog.text and "resuming" not in caplog.text
    assert not torch.equal(_weights(work), _weights(reference))
    state = json.loads((work / "sess" / "train_toy.state.json").read_text())
    assert state["finished"] and state["config"]["lr"] == 0.01


def test_non_finite_loss_stops_before_saving(tmp_path, monkeypatch):
    monkeypatch.setenv("TOY_LOSS_SCALE", "nan")
    with pytest.raises(NonFiniteLossError, match="train_toy: non-finite loss at update 1 \\(total\\)"):
        run_training(ToyJob, _args(tmp_path))
    assert not (tmp_path / "sess" / "toy.pth").exists()
    assert not (tmp_path / "sess" / "train_toy_last.pt").exists()
