"""Random walk of CAMs on the IRNet boundary map (docs/sem_seg_labels.md#random-walk).

The original builds a dense (h·w)×(h·w) affinity matrix A (A[i,j] = (1 - max edge on the path i→j)^β for pairs within
the search radius, 1 on the diagonal, 0 elsewhere), column-normalises it to T and squares T ``exp_times`` times; the
CAMs are then multiplied once by T^(2^exp_times). For a 500×375 image that is a 11750² matrix (0.55 GB in float32)
squared 8 times (~2.6e13 flops).

:func:`propagate_to_edge` computes the same x·T^(2^t) as 2^t sparse steps x ← x·T. T is banded: a pixel only talks
to its 2·D neighbours (D = 34 search directions for radius 5 and their mirror images) and itself, so each step is a
stencil of 2·D + 1 shifted multiply-adds on the (K, h, w) maps. Memory is O(D·h·w) and the work O(2^t·D·K·h·w).
It runs in float64 by default, which keeps the result within ~3e-5 of the original's float32 dense powers (whose own
error against float64 is of that size), so that the argmax labels are reproduced.
A 125×94 map with K = 3 takes ~0.4 s on one CPU thread (float64) instead of minutes. The stencil is many small
ops: on a CPU shared by several worker processes, give each worker one torch thread (torch.set_num_threads(1)),
otherwise thread synchronisation can make it 10-100x slower.

:func:`propagate_to_edge_dense` is a faithful port of the original (dense matrix, repeated squaring) for tests and
benchmarks.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from misc.method.indexing import PathIndex, edge_to_affinity, search_paths_by_length

__all__ = [
    "pair_affinities",
    "BandedTransition",
    "propagate_to_edge",
    "propagate_to_edge_dense",
    "affinity_sparse2dense",
    "to_transition_matrix",
    "upsample_and_normalise",
    "sem_seg_from_cams",
]


def _edge_2d(edge: torch.Tensor) -> torch.Tensor:
    if edge.dim() == 3:
        if edge.shape[0] != 1:
            raise ValueError(f"edge must be (1, h, w), got {tuple(edge.shape)}")
        return edge[0]
    if edge.dim() != 2:
        raise ValueError(f"edge must be (1, h, w) or (h, w), got {tuple(edge.shape)}")
    return edge


def pair_affinities(edge: torch.Tensor, radius: int = 5) -> tuple[np.ndarray, torch.Tensor]:
    """Affinity between every pixel p and p + d for the search directions d of ``PathIndex(radius)``.

    edge: (1, h, w) or (h, w) edge probabilities. Returns (search_dst (D, 2) int64 numpy, aff (D, h, w)) with
    aff[d, y, x] = 1 - max(edge on the path from (y, x) to (y + dy, x + dx)), and 0 where the destination lies
    outside the map (the original pads the edge map with 1.0). Same dtype/device as ``edge``.
    """
    if radius < 2:
        raise ValueError(f"radius must be >= 2 (no search direction otherwise), got {radius}")
    e = _edge_2d(edge)
    h, w = e.shape
    search_paths, search_dst = search_paths_by_length(radius)
    padded = F.pad(e[None, None], (radius, radius, 0, radius), mode="constant", value=1.0)[0, 0]
    affs = []
    for paths in search_paths:
        for path in paths:
            path_max = None
            for qy, qx in path:
                window = padded[qy:qy + h, radius + qx:radius + qx + w]
                path_max = window if path_max is None else torch.maximum(path_max, window)
            affs.append(1 - path_max)
    return search_dst, torch.stack(affs)


def _shift(t: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """out[..., y, x] = t[..., y - dy, x - dx] (zero outside)."""
    h, w = t.shape[-2:]
    out = torch.zeros_like(t)
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        t[..., max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


class BandedTransition:
    """The column-normalised transition matrix T = A^β / colsum(A^β) of the random walk, as a stencil.

    ``offsets[o] = (oy, ox)`` and ``weights[o]`` (h, w) give (x·T)[j] = Σ_o weights[o][j] · x[j + offset_o]
    (x[·] = 0 outside the map). Offset 0 is the self loop (A[j, j] = 1).
    """

    def __init__(self, offsets: Sequence[tuple[int, int]], weights: torch.Tensor) -> None:
        self.offsets = [(int(dy), int(dx)) for dy, dx in offsets]
        self.weights = weights
        self.pad = max(max(abs(dy), abs(dx)) for dy, dx in self.offsets)

    @classmethod
    def from_edge(cls, edge: torch.Tensor, radius: int = 5, beta: float = 10) -> "BandedTransition":
        """Build T from an edge map (1, h, w); computed in ``edge``'s dtype and on its device."""
        search_dst, aff = pair_affinities(edge, radius)
        scaled = aff.pow(beta)  # A[p, p + d] = A[p + d, p], (D, h, w)
        mirrored = torch.stack([_shift(a, int(dy), int(dx)) for a, (dy, dx) in zip(scaled, search_dst)])
        colsum = 1 + scaled.sum(0) + mirrored.sum(0)  # Σ_i A[i, j] (self loop included)
        forward = [(int(dy), int(dx)) for dy, dx in search_dst]
        offsets = [(0, 0)] + forward + [(-dy, -dx) for dy, dx in forward]
        weights = torch.cat([torch.ones_like(colsum)[None], scaled, mirrored]) / colsum
        return cls(offsets, weights)

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.weights.shape[-2:])  # type: ignore[return-value]

    def column_sums(self) -> torch.Tensor:
        """Σ_i T[i, j] as an (h, w) map: 1 up to rounding (sanity check)."""
        h, w = self.size
        total = torch.zeros(h, w, dtype=self.weights.dtype, device=self.weights.device)
        for wgt in self.weights:  # T[j + o, j] = weights[o][j] (0 where j + o is off the map)
            total += wgt
        return total

    def propagate(self, x: torch.Tensor, n_steps: int) -> torch.Tensor:
        """x (K, h, w) → x·T^n_steps (K, h, w), in the dtype of the weights."""
        h, w = self.size
        p = self.pad
        buf = torch.zeros(x.shape[0], h + 2 * p, w + 2 * p, dtype=self.weights.dtype, device=self.weights.device)
        inner = buf[:, p:p + h, p:p + w]
        inner.copy_(x)
        out = torch.empty_like(inner)
        views = [buf[:, p + oy:p + oy + h, p + ox:p + ox + w] for oy, ox in self.offsets]
        for _ in range(n_steps):
            torch.mul(views[0], self.weights[0], out=out)
            for view, wgt in zip(views[1:], self.weights[1:]):
                out.addcmul_(view, wgt)
            inner.copy_(out)
        return inner.clone()


def propagate_to_edge(
    x: torch.Tensor,
    edge: torch.Tensor,
    radius: int = 5,
    beta: float = 10,
    exp_times: int = 8,
    dtype: torch.dtype | None = torch.float64,
) -> torch.Tensor:
    """Random walk of ``x`` (K, h, w) with the transition built from ``edge`` (1, h, w): x·(1 - edge)·T^(2^exp_times).

    Same result as the original's dense powering (up to float rounding) without any (h·w)² matrix. Runs on
    ``edge``'s device in ``dtype`` (float64 default; pass torch.float32 on devices without float64).
    Returns (K, 1, h, w) in x's dtype.
    """
    h, w = x.shape[-2:]
    device = edge.device
    cdtype = dtype or x.dtype
    e = _edge_2d(edge).to(device=device, dtype=cdtype)
    trans = BandedTransition.from_edge(e, radius, beta)
    x0 = x.reshape(-1, h, w).to(device=device, dtype=cdtype) * (1 - e)
    rw = trans.propagate(x0, 2 ** int(exp_times))
    return rw.to(x.dtype).view(-1, 1, h, w)


# ---------------------------------------------------------------------------------------------------------------
# Dense reference (the original algorithm)


def affinity_sparse2dense(
    affinity_sparse: torch.Tensor, ind_from: np.ndarray, ind_to: np.ndarray, n_vertices: int
) -> torch.Tensor:
    """Dense symmetric (V, V) matrix: A[from, to] = A[to, from] = aff, A[i, i] = 1; duplicate entries SUM.

    affinity_sparse: (1, D, N) (or D·N values) ordered like ``ind_to`` (D, N); ind_from (N,).
    """
    device = affinity_sparse.device
    values = affinity_sparse.reshape(-1)
    ind_from_t = torch.as_tensor(ind_from, dtype=torch.long, device=device)
    ind_to_t = torch.as_tensor(ind_to, dtype=torch.long, device=device)
    ind_from_t = ind_from_t.repeat(ind_to_t.shape[0]).view(-1)
    ind_to_t = ind_to_t.reshape(-1)
    diag = torch.arange(n_vertices, device=device)
    indices = torch.cat([torch.stack([ind_from_t, ind_to_t]), torch.stack([diag, diag]),
                         torch.stack([ind_to_t, ind_from_t])], dim=1)
    vals = torch.cat([values, torch.ones(n_vertices, dtype=values.dtype, device=device), values])
    return torch.sparse_coo_tensor(indices, vals, (n_vertices, n_vertices), check_invariants=False).to_dense()


def to_transition_matrix(affinity_dense: torch.Tensor, beta: float, times: int) -> torch.Tensor:
    """T = A^β (elementwise) / column sums, then squared ``times`` times: T^(2^times)."""
    scaled = torch.pow(affinity_dense, beta)
    trans = scaled / torch.sum(scaled, dim=0, keepdim=True)
    for _ in range(times):
        trans = torch.matmul(trans, trans)
    return trans


def dense_affinity(edge: torch.Tensor, radius: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """(sparse_aff (1, D, N) of the padded edge, dense_aff (h·w, h·w) cropped), exactly as the original."""
    h, w = edge.shape[-2:]
    ver_padded, hor_padded = h + radius, w + 2 * radius
    index = PathIndex(radius=radius, default_size=(ver_padded, hor_padded))
    edge_padded = F.pad(edge.reshape(1, h, w), (radius, radius, 0, radius), mode="constant", value=1.0)
    sparse_aff = edge_to_affinity(edge_padded[None], index.path_indices)
    dense = affinity_sparse2dense(sparse_aff, index.src_indices, index.dst_indices, ver_padded * hor_padded)
    dense = dense.view(ver_padded, hor_padded, ver_padded, hor_padded)
    dense = dense[:-radius, radius:-radius, :-radius, radius:-radius].reshape(h * w, h * w)
    return sparse_aff, dense


def propagate_to_edge_dense(
    x: torch.Tensor,
    edge: torch.Tensor,
    radius: int = 5,
    beta: float = 10,
    exp_times: int = 8,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The original algorithm (dense (h·w)² transition matrix, repeated squaring). x (K,h,w) → (K,1,h,w).

    Memory O((h·w)²): use it only on small maps (tests) or for benchmarks.
    """
    h, w = x.shape[-2:]
    cdtype = dtype or x.dtype
    edge_c = edge.to(cdtype).reshape(1, h, w)
    _, dense = dense_affinity(edge_c, radius)
    trans = to_transition_matrix(dense, beta=beta, times=exp_times)
    xs = x.to(device=edge.device, dtype=cdtype).reshape(-1, h, w) * (1 - edge_c)
    rw = torch.matmul(xs.reshape(-1, h * w), trans)
    return rw.to(x.dtype).view(-1, 1, h, w)


# ---------------------------------------------------------------------------------------------------------------
# Per-image semantic labels (make_sem_seg_labels)


def upsample_and_normalise(rw: torch.Tensor, image_size: Sequence[int]) -> torch.Tensor:
    """rw (C, 1, h, w) → bilinear ×4 (align_corners=False), cropped to (H, W), / global max → (C, H, W).

    All-zero maps (every class's CAM was zero) stay zero: the original divides 0 by 0, and the NaNs win the
    argmax, labelling the whole image with the first class; here such an image becomes background.
    """
    height, width = int(image_size[0]), int(image_size[1])
    up = F.interpolate(rw, scale_factor=4, mode="bilinear", align_corners=False)[:, 0, :height, :width]
    peak = torch.max(up)
    return up / peak if peak > 0 else up


def sem_seg_from_cams(
    cams: torch.Tensor | np.ndarray,
    keys: torch.Tensor | np.ndarray | Sequence[int],
    edge: torch.Tensor,
    image_size: Sequence[int],
    beta: float = 10,
    exp_times: int = 8,
    radius: int = 5,
    bg_thres: float = 0.25,
    dtype: torch.dtype | None = torch.float64,
) -> np.ndarray:
    """Semantic pseudo label of one image (docs/sem_seg_labels.md#pseudo-masks).

    cams: (K, h, w) stride-4 CAMs (per-class max-normalised); keys: (K,) 0-based classes; edge: (1, h, w) boundary
    probabilities (EdgeDisplacement output); image_size: (H, W). Random walk → ×4 bilinear → crop → global max
    normalisation → background plane ``bg_thres`` in front → argmax → VOC class ids (an image without classes,
    K = 0: all background). Returns (H, W) uint8.
    """
    cams_t = torch.as_tensor(cams).to(edge.device)
    if cams_t.shape[0] == 0:  # no class in the image: all background
        return np.zeros(tuple(image_size), np.uint8)
    rw = propagate_to_edge(cams_t, edge, radius=radius, beta=beta, exp_times=exp_times, dtype=dtype)
    rw_up = upsample_and_normalise(rw, image_size)
    rw_up_bg = F.pad(rw_up, (0, 0, 0, 0, 1, 0), value=bg_thres)
    pred = torch.argmax(rw_up_bg, dim=0).cpu().numpy()
    keys_padded = np.pad(np.asarray(torch.as_tensor(keys).cpu()).reshape(-1) + 1, (1, 0), mode="constant")
    return keys_padded[pred].astype(np.uint8)
