"""Path indices between pixel pairs and affinities along those paths (docs/networks.md#path-indices, IRNet ``misc/method/indexing.py``).

A :class:`PathIndex` lists, for every source pixel of a feature map, its neighbours within ``radius`` ("search
directions", all in the lower half-plane so that each unordered pair appears once) and the pixels on the straight
path between them. Affinity of a pair = 1 - max(edge probability along the path).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from misc.core.labels import IGNORE_INDEX

__all__ = [
    "PathIndex",
    "search_directions",
    "direction_path",
    "search_paths_by_length",
    "edge_to_affinity",
    "affinity_labels_from_indices",
]


def search_directions(radius: int) -> list[tuple[int, int]]:
    """(dy, dx) offsets: (0, 1..r-1), then rows y = 1..r-1 with x = -(r-1)..r-1 and x² + y² < r²."""
    dirs = [(0, x) for x in range(1, radius)]
    for y in range(1, radius):
        for x in range(-radius + 1, radius):
            if x * x + y * y < radius * radius:
                dirs.append((y, x))
    return dirs


def direction_path(direction: tuple[int, int]) -> list[tuple[int, int]]:
    """Integer points of the bounding box of {(0,0), d} within distance 1 of the line through 0 and d.

    Listed row-major, then stably sorted by decreasing |y| + |x| (element 0 is ``d`` itself, (0,0) is last).
    """
    dy, dx = direction
    length_sq = dy * dy + dx * dx
    y_lo, y_hi = sorted((0, dy))
    x_lo, x_hi = sorted((0, dx))
    coords = [
        (y, x)
        for y in range(y_lo, y_hi + 1)
        for x in range(x_lo, x_hi + 1)
        if (dy * x - dx * y) ** 2 / length_sq < 1
    ]
    return sorted(coords, key=lambda c: -abs(c[0]) - abs(c[1]))


def search_paths_by_length(radius: int) -> tuple[list[np.ndarray], np.ndarray]:
    """(search_paths, search_dst) of PathIndex: paths grouped by length (ascending), each group an int64
    (n_paths, L, 2) array in direction order; search_dst (D, 2) = the first point of every path, group by group."""
    groups: dict[int, list[list[tuple[int, int]]]] = {}
    for direction in search_directions(radius):
        path = direction_path(direction)
        groups.setdefault(len(path), []).append(path)
    search_paths = [np.asarray(groups[length], dtype=np.int64) for length in sorted(groups)]
    search_dst = np.concatenate([paths[:, 0] for paths in search_paths], axis=0)
    return search_paths, search_dst


class PathIndex:
    """Search paths grouped by length and their flat indices on a (H, W) feature map.

    Attributes:
        radius, radius_floor (= ceil(radius) - 1).
        search_paths: list over path-length groups (ascending length) of int64 arrays (n_paths, L, 2) of (dy, dx).
        search_dst: (D, 2) int64, the destination of every direction, in group order.
        path_indices: list of int64 arrays (n_paths, L, N): flat indices of each path point for each source pixel.
        src_indices: (N,) int64 flat indices of the source pixels (rows [0, H-rf), cols [rf, W-rf)).
        dst_indices: (D, N) int64 flat indices of the destinations.
    """

    def __init__(self, radius: int = 10, default_size: Sequence[int] = (128, 128)) -> None:
        self.radius = int(radius)
        self.radius_floor = int(np.ceil(radius) - 1)
        self.search_paths, self.search_dst = search_paths_by_length(self.radius)
        self.default_size = (int(default_size[0]), int(default_size[1]))
        self.path_indices, self.src_indices, self.dst_indices = self.get_path_indices(self.default_size)

    @property
    def num_directions(self) -> int:
        return int(self.search_dst.shape[0])

    def source_window(self, size: Sequence[int]) -> tuple[int, int]:
        """(cropped_height, cropped_width) = (H - rf, W - 2 rf) of the source pixels on a (H, W) map."""
        return int(size[0]) - self.radius_floor, int(size[1]) - 2 * self.radius_floor

    def get_path_indices(self, size: Sequence[int]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """(path_indices, src_indices, dst_indices) on a feature map of ``size`` = (H, W) (see class docstring)."""
        height, width = int(size[0]), int(size[1])
        full = np.arange(height * width, dtype=np.int64).reshape(height, width)
        ch, cw = self.source_window(size)
        rf = self.radius_floor
        if ch <= 0 or cw <= 0:
            raise ValueError(f"feature map {size} too small for radius {self.radius}")

        def window(dy: int, dx: int) -> np.ndarray:
            return full[dy:dy + ch, rf + dx:rf + dx + cw].reshape(-1)

        path_indices = [
            np.stack([np.stack([window(int(dy), int(dx)) for dy, dx in path]) for path in paths])
            for paths in self.search_paths
        ]
        src_indices = window(0, 0)
        dst_indices = np.concatenate([group[:, 0] for group in path_indices], axis=0)
        return path_indices, src_indices, dst_indices


def edge_to_affinity(edge: torch.Tensor, path_indices: Sequence[np.ndarray | torch.Tensor]) -> torch.Tensor:
    """Affinity of every (source, direction) pair: 1 - max of ``edge`` along the path.

    edge: (B, 1, H, W) (or (B, H·W)) edge probabilities; path_indices: PathIndex.path_indices for that (H, W).
    Returns (B, D, N) on ``edge``'s device and dtype.
    """
    flat = edge.reshape(edge.shape[0], -1)
    groups = []
    for ind in path_indices:
        ind_t = torch.as_tensor(ind, device=flat.device, dtype=torch.long)
        values = flat.index_select(1, ind_t.reshape(-1)).view(flat.shape[0], *ind_t.shape)
        groups.append(1 - values.amax(dim=2))
    return torch.cat(groups, dim=1)


def affinity_labels_from_indices(
    label_reduced: np.ndarray, src_indices: np.ndarray, dst_indices: np.ndarray, num_labels: int = IGNORE_INDEX
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pair labels of train_irn from a reduced IR label map (0 bg, 1..C fg, values >= ``num_labels`` ignored:
    train_irn passes the dataset's C + 1, 21 on VOC, 81 on COCO; by default only 255 is ignored).

    label_reduced: (h, w) uint8; src_indices (N,), dst_indices (D, N) from PathIndex on (h, w).
    Returns float32 (D, N) arrays (bg_pos, fg_pos, neg): equal labels both background / equal foreground labels /
    different labels; pairs with any end >= ``num_labels`` are in none of them.
    """
    flat = np.asarray(label_reduced).reshape(-1)
    label_from = flat[np.asarray(src_indices)][None, :]
    label_to = flat[np.asarray(dst_indices)]
    valid = (label_from < num_labels) & (label_to < num_labels)
    equal = label_from == label_to
    pos = equal & valid
    bg_pos = (pos & (label_from == 0)).astype(np.float32)
    fg_pos = (pos & (label_from > 0)).astype(np.float32)
    neg = (~equal & valid).astype(np.float32)
    return bg_pos, fg_pos, neg


def affinity_labels_batch(
    label_reduced: torch.Tensor, src_indices: torch.Tensor, dst_indices: torch.Tensor, num_labels: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`affinity_labels_from_indices` for a batch, on the labels' device (train_irn builds the targets on the
    GPU from the small label maps instead of shipping ~24 MB of targets per image through the loader).

    label_reduced: (B, h, w) integer; src_indices (N,), dst_indices (D, N) long. Returns float32 (B, D, N) each.
    """
    flat = label_reduced.reshape(label_reduced.shape[0], -1).long()
    src = src_indices.to(flat.device).long()
    dst = dst_indices.to(flat.device).long()
    label_from = flat[:, src].unsqueeze(1)
    label_to = flat[:, dst.reshape(-1)].view(flat.shape[0], *dst.shape)
    valid = (label_from < num_labels) & (label_to < num_labels)
    equal = label_from == label_to
    pos = equal & valid
    bg_pos = (pos & (label_from == 0)).float()
    fg_pos = (pos & (label_from > 0)).float()
    neg = (~equal & valid).float()
    return bg_pos, fg_pos, neg
