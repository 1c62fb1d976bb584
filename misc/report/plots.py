"""The figures of the run report, drawn with matplotlib's Agg canvas: no display, no pyplot state, no backend switch
for the rest of the process. Each function returns the PNG's bytes (small figures, ``dpi`` 80 by default)."""
from __future__ import annotations

import io
import math
from typing import Mapping, Sequence

import numpy as np

DPI = 80
COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974",
          "#64b5cd")


def _figure(width: float, height: float, dpi: int = DPI, margins: tuple[float, float, float, float] = (0.7, 0.2, 0.55, 0.15)):
    """A matplotlib Figure with its own Agg canvas; ``width``, ``height`` and the ``margins`` (left, right, bottom,
    top) in inches. Fixed margins: a layout engine would draw every figure twice (half the report's time)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    left, right, bottom, top = margins
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return buf.getvalue()


def _finite(values: Sequence[float | None]) -> np.ndarray:
    """None → NaN, as float64."""
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def timings_bars(timings: Mapping[str, float], dpi: int = DPI) -> bytes:
    """Horizontal bars of seconds per step, in run order (top to bottom), each labelled with its seconds and share."""
    names = [k.split(".")[-1] for k in timings]
    secs = [float(v) for v in timings.values()]
    total = sum(secs) or 1.0
    left = 0.25 + 0.075 * max((len(n) for n in names), default=4)  # room for the step names
    fig = _figure(9.0, 0.75 + 0.28 * len(names), dpi, (left, 0.2, 0.5, 0.1))
    ax = fig.subplots()
    y = np.arange(len(names))
    ax.barh(y, secs, color=COLORS[0])
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    for yi, s in zip(y, secs):
        ax.text(s, yi, f" {s:.1f} s ({100 * s / total:.0f} %)", va="center", fontsize=8)
    ax.set_xlim(0, max(max(secs, default=0.0) * 1.25, 1.0))
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def per_class_bars(class_names: Sequence[str], series: Mapping[str, Sequence[float | None]], dpi: int = DPI) -> bytes:
    """Grouped bars: one group per class, one bar per series (e.g. seeds, masks, DeepLab); missing values leave a
    gap. Values are IoUs in [0, 1]."""
    n = len(class_names)
    k = max(1, len(series))
    longest = max((len(c) for c in class_names), default=4)
    bottom = 0.35 + 0.065 * longest * (0.72 if n <= 30 else 1.0)  # the rotated class names
    fig = _figure(min(24.0, max(8.0, 0.55 * n)), 2.9 + bottom, dpi, (0.6, 0.15, bottom, 0.1))
    ax = fig.subplots()
    x = np.arange(n)
    width = 0.8 / k
    for i, (label, values) in enumerate(series.items()):
        v = _finite(list(values)[:n] + [None] * max(0, n - len(values)))
        ax.bar(x - 0.4 + width * (i + 0.5), np.nan_to_num(v, nan=0.0), width, label=label,
               color=COLORS[i % len(COLORS)])
    ax.set_xticks(x, class_names, rotation=45 if n <= 30 else 90, ha="right" if n <= 30 else "center", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("IoU")
    ax.set_xlim(-0.6, n - 0.4)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncols=min(4, k), loc="upper right")
    return _png(fig)


def sweep_curve(points: Mapping[float, float | None], used: float | None = None, dpi: int = DPI) -> bytes:
    """mIoU against the background threshold, with the threshold the run used and the best one marked."""
    xs = sorted(points)
    ys = _finite([points[x] for x in xs])
    fig = _figure(5.5, 3.0, dpi, (0.75, 0.15, 0.5, 0.1))
    ax = fig.subplots()
    ax.plot(xs, ys, marker="o", color=COLORS[0], label="mIoU")
    if np.isfinite(ys).any():
        best = int(np.nanargmax(ys))
        ax.plot([xs[best]], [ys[best]], marker="*", markersize=14, color=COLORS[3], linestyle="none",
                label=f"best {ys[best]:.4f} at {xs[best]:.2f}")
    if used is not None:
        ax.axvline(used, color=COLORS[1], linestyle="--", label=f"used: {used:.2f}")
    ax.set_xlabel("background threshold")
    ax.set_ylabel("seed mIoU")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` points (shorter at the start); NaNs propagate locally."""
    if window <= 1 or len(y) < 3:
        return y
    c = np.cumsum(np.insert(np.nan_to_num(y), 0, 0.0))
    idx = np.arange(1, len(y) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def training_curves(records: Sequence[Mapping], dpi: int = DPI, max_points: int = 2000) -> bytes:
    """Per-update records ``{update, epoch, <loss terms>..., lr: [...]}`` → loss terms (left; raw faint, moving
    average bold; log scale when the terms span more than 50×) and the learning rates of the first parameter
    groups (right, log scale); faint lines mark epoch starts when there are few epochs."""
    updates = np.array([float(r.get("update", i + 1)) for i, r in enumerate(records)])
    skip = {"update", "epoch", "lr"}
    terms = [k for k in dict.fromkeys(k for r in records for k, v in r.items() if k not in skip)
             if all(isinstance(r.get(k), (int, float)) or r.get(k) is None for r in records)]
    stride = max(1, math.ceil(len(records) / max_points))
    sel = slice(None, None, stride)
    window = max(1, len(records) // 25)
    fig = _figure(12.0, 3.2, dpi, (0.7, 0.15, 0.5, 0.1))
    ax_loss, ax_lr = fig.subplots(1, 2, width_ratios=(2.2, 1), gridspec_kw={"wspace": 0.22})
    positive = True
    lo, hi = math.inf, 0.0
    for i, term in enumerate(terms):
        y = _finite([r.get(term) for r in records])
        color = "black" if term == "total" else COLORS[i % len(COLORS)]
        finite = y[np.isfinite(y)]
        if finite.size:
            positive &= bool((finite > 0).all())
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
        if window > 1:
            ax_loss.plot(updates[sel], y[sel], color=color, alpha=0.2, linewidth=0.8)
        ax_loss.plot(updates[sel], _smooth(y, window)[sel], color=color, linewidth=2 if term == "total" else 1.2,
                     label=term)
    if terms and positive and lo > 0 and hi / lo > 50:
        ax_loss.set_yscale("log")
    ax_loss.set_xlabel("update")
    ax_loss.set_ylabel("loss" + (f" (moving average of {window})" if window > 1 else ""))
    ax_loss.grid(alpha=0.3)
    if terms:
        ax_loss.legend(fontsize=7, ncols=min(4, len(terms)))
    epochs = [r.get("epoch") for r in records]
    starts = [updates[i] for i in range(1, len(records)) if epochs[i] != epochs[i - 1]]
    if 0 < len(starts) <= 60:
        for u in starts:
            ax_loss.axvline(u - 0.5, color="grey", alpha=0.25, linewidth=0.6)
    lrs = [r.get("lr") or [] for r in records]
    n_groups = max((len(v) for v in lrs), default=0)
    for g in range(n_groups):
        y = _finite([v[g] if g < len(v) else None for v in lrs])
        ax_lr.plot(updates[sel], y[sel], color=COLORS[g % len(COLORS)], label=f"group {g}")
    if n_groups and all(x > 0 for v in lrs for x in v if x is not None):
        ax_lr.set_yscale("log")
    ax_lr.set_xlabel("update")
    ax_lr.set_ylabel("learning rate")
    ax_lr.grid(alpha=0.3)
    if n_groups:
        ax_lr.legend(fontsize=7)
    return _png(fig)
