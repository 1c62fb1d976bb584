"""Training / test helpers of the DeepLab stage (docs/deeplab.md): poly LR, label resize, MSC loss, logit → probabilities."""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from misc.core.labels import IGNORE_INDEX

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ learning rate
def poly_lr(base_lr: float, iteration: int, *, step_size: int, iter_max: int, power: float) -> float:
    """deeplab-pytorch ``PolynomialLR`` value after ``scheduler.step(epoch=iteration)``.

    The lr is ``base_lr * (1 - k / iter_max) ** power`` with ``k`` the last multiple of ``step_size`` reached
    (``k <= min(iteration, iter_max)``): it changes only every ``step_size`` iterations, is exactly 0 at
    ``iter_max`` when ``iter_max % step_size == 0``, and frozen afterwards.
    """
    if step_size < 1 or iter_max < 1:
        raise ValueError(f"step_size and iter_max must be >= 1, got {step_size}, {iter_max}")
    k = (min(max(int(iteration), 0), iter_max) // step_size) * step_size
    if k == 0:
        return base_lr
    return base_lr * (1 - float(k) / iter_max) ** power


class PolynomialLR:
    """Poly schedule of deeplab-pytorch driven by the iteration number.

    ``step(iteration)`` after ``optimizer.step()`` of iteration ``iteration`` (1-based) sets every group's lr to
    :func:`poly_lr` of its initial lr, i.e. the lr used in iteration ``it`` is ``poly_lr(base, it - 1)``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, step_size: int, iter_max: int, power: float) -> None:
        self.optimizer = optimizer
        self.step_size, self.iter_max, self.power = int(step_size), int(iter_max), float(power)
        self.base_lrs = [float(g.setdefault("initial_lr", g["lr"])) for g in optimizer.param_groups]
        self.last_iteration = 0

    def lrs_at(self, iteration: int) -> list[float]:
        return [poly_lr(b, iteration, step_size=self.step_size, iter_max=self.iter_max, power=self.power)
                for b in self.base_lrs]

    def step(self, iteration: int | None = None) -> None:
        self.last_iteration = self.last_iteration + 1 if iteration is None else int(iteration)
        for group, lr in zip(self.optimizer.param_groups, self.lrs_at(self.last_iteration)):
            group["lr"] = lr

    def get_last_lr(self) -> list[float]:
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"step_size": self.step_size, "iter_max": self.iter_max, "power": self.power,
                "base_lrs": list(self.base_lrs), "last_iteration": self.last_iteration}

    def load_state_dict(self, state: dict) -> None:
        self.step_size, self.iter_max, self.power = int(state["step_size"]), int(state["iter_max"]), state["power"]
        self.base_lrs = [float(b) for b in state["base_lrs"]]
        self.step(int(state["last_iteration"]))


# ------------------------------------------------------------------------------------------------ loss
def resize_labels(labels: torch.Tensor | np.ndarray, size_hw: Sequence[int]) -> torch.Tensor:
    """Labels (N,H,W) → (N,h,w) int64 with PIL NEAREST on float32 'F' images (deeplab-pytorch ``resize_labels``).

    Fixes of the original: ``size_hw`` is (h, w) and PIL gets (w, h) (the original passed (H, W), right only for
    square maps), and the result is stacked with numpy (``torch.LongTensor(list of arrays)`` fails on torch 2).
    The result is on the labels' device (CPU for numpy input).
    """
    device = labels.device if isinstance(labels, torch.Tensor) else torch.device("cpu")
    arr = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    h, w = int(size_hw[0]), int(size_hw[1])
    out = np.stack([np.asarray(Image.fromarray(lab.astype(np.float32)).resize((w, h), resample=Image.NEAREST))
                    for lab in arr]).astype(np.int64)
    return torch.from_numpy(out).to(device)


def msc_loss(logits: Sequence[torch.Tensor], labels: torch.Tensor | np.ndarray,
             ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Sum over the MSC outputs (each (N,C,h,w)) of CE(ignore 255) against the labels resized to each size.

    Returns ``(total, terms)``; divide ``total`` by the gradient-accumulation count (ITER_SIZE 2) as the original.
    """
    terms = []
    for logit in logits:
        target = resize_labels(labels, logit.shape[-2:]).to(logit.device)
        terms.append(F.cross_entropy(logit, target, ignore_index=ignore_index))
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total, terms


# ------------------------------------------------------------------------------------------------ test-time
def logits_to_probs(logit: torch.Tensor | np.ndarray, size_hw: Sequence[int]) -> np.ndarray:
    """Stride-8 logits (C,h,w) or (1,C,h,w) → bilinear (align_corners=False) to ``size_hw`` → softmax (C,H,W) f32."""
    t = torch.as_tensor(np.asarray(logit) if not isinstance(logit, torch.Tensor) else logit).float()
    if t.dim() == 3:
        t = t[None]
    t = F.interpolate(t, size=(int(size_hw[0]), int(size_hw[1])), mode="bilinear", align_corners=False)
    return F.softmax(t, dim=1)[0].detach().cpu().numpy()
