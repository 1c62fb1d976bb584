"""Optimiser and pooling helpers shared by the training steps (docs/networks.md#optimiser-and-pooling-helpers)."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable

import torch


class _PolyDecay:
    """Mixin: before each step, while ``global_step < max_step``, every group's lr = lr0 · (1 − step/max_step)^power;
    then the optimiser's step; then ``global_step += 1``. ``global_step`` and the initial lrs are in the state dict."""

    def _init_poly(self, max_step: int, poly_power: float) -> None:
        self.max_step = int(max_step)
        self.poly_power = float(poly_power)
        self.global_step = 0
        self.initial_lrs = [group["lr"] for group in self.param_groups]  # type: ignore[attr-defined]

    def step(self, closure: Callable[[], float] | None = None):
        if self.global_step < self.max_step:
            lr_mult = (1 - self.global_step / self.max_step) ** self.poly_power
            for group, lr0 in zip(self.param_groups, self.initial_lrs):  # type: ignore[attr-defined]
                group["lr"] = lr0 * lr_mult
        loss = super().step(closure)  # type: ignore[misc]
        self.global_step += 1
        return loss

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()  # type: ignore[misc]
        state["poly"] = {"global_step": self.global_step, "initial_lrs": list(self.initial_lrs),
                         "max_step": self.max_step, "poly_power": self.poly_power}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        poly = state_dict.pop("poly", None)
        super().load_state_dict(state_dict)  # type: ignore[misc]
        if poly is not None:
            self.global_step = int(poly["global_step"])
            self.initial_lrs = [float(v) for v in poly["initial_lrs"]]
            self.max_step = int(poly["max_step"])
            self.poly_power = float(poly["poly_power"])


class PolySGD(_PolyDecay, torch.optim.SGD):
    """Plain SGD with a per-step polynomial lr decay: what the original ``PolyOptimizer`` really does.

    The original passed ``weight_decay`` positionally into SGD's ``momentum`` slot, so its SGD momentum equals the
    weight-decay value (1e-4, i.e. effectively no momentum), every parameter group carries its own real
    ``weight_decay``, and its ``momentum=0.9`` argument only served as the poly power. Here those roles are named:

    - before each step, while ``global_step < max_step``: ``lr_g = lr0_g * (1 - global_step / max_step) ** poly_power``
      (after ``max_step`` the last lr is kept, not 0);
    - then the SGD step (``d = g + wd * p``; ``buf = d`` then ``momentum * buf + d``; ``p -= lr * buf``);
    - then ``global_step += 1``.

    ``weight_decay`` is the default for groups that do not set their own. ``global_step`` and the initial lrs are
    part of ``state_dict()`` so that training can resume.
    """

    def __init__(self, params: Iterable[Any], lr: float, weight_decay: float, max_step: int,
                 poly_power: float = 0.9, momentum: float = 1e-4) -> None:
        torch.optim.SGD.__init__(self, params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self._init_poly(max_step, poly_power)


class PolyAdamW(_PolyDecay, torch.optim.AdamW):
    """AdamW with the same per-step poly decay (not in the original: for training from random weights, e.g. the
    demo, where the original's plain SGD is far too slow)."""

    def __init__(self, params: Iterable[Any], lr: float, weight_decay: float, max_step: int,
                 poly_power: float = 0.9) -> None:
        torch.optim.AdamW.__init__(self, params, lr=lr, weight_decay=weight_decay)
        self._init_poly(max_step, poly_power)


def gap2d(x: torch.Tensor, keepdims: bool = False) -> torch.Tensor:
    """Global average pooling over H×W: (B,C,H,W) → (B,C) (or (B,C,1,1) with ``keepdims``)."""
    out = x.reshape(x.size(0), x.size(1), -1).mean(-1)
    return out.reshape(x.size(0), x.size(1), 1, 1) if keepdims else out


def autocast(device: torch.device, amp: str | bool):
    """Autocast context of ``--amp`` (``off``/``bf16``/``fp16``; ``True`` = bf16) on CUDA; a no-op elsewhere."""
    mode = {True: "bf16", False: "off"}.get(amp, amp) if isinstance(amp, bool) else amp
    if device.type == "cuda" and mode in ("bf16", "fp16"):
        return torch.autocast("cuda", dtype=torch.bfloat16 if mode == "bf16" else torch.float16)
    return contextlib.nullcontext()
