"""Instance pseudo labels from IRNet displacement fields (docs/instances.md, make_ins_seg_labels).

Per image: every pixel's centroid is found by following the displacement field (300 bilinear steps); pixels whose
centroid falls in the same weak-displacement component form one instance; the CAM of each class is split by
instance, propagated by the random walk and turned into detections (mask, class, score).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from skimage import measure

from misc.method.imutils import compress_range
from misc.method.random_walk import propagate_to_edge, upsample_and_normalise

__all__ = [
    "to_one_hot",
    "find_centroids_with_refinement",
    "cluster_centroids",
    "split_cams_by_instance",
    "detect_instance",
    "ins_seg_from_cams",
]


def to_one_hot(labels: np.ndarray, maximum_val: int | None = None) -> np.ndarray:
    """Integer map (...) → bool one-hot (maximum_val, ...) with classes on the leading axis."""
    labels = np.asarray(labels)
    if maximum_val is None:
        maximum_val = int(np.max(labels)) + 1
    flat = labels.reshape(-1)
    one_hot = np.zeros((maximum_val, flat.shape[0]), dtype=bool)
    one_hot[flat, np.arange(flat.shape[0])] = True
    return one_hot.reshape((maximum_val,) + labels.shape)


def find_centroids_with_refinement(displacement: np.ndarray, iterations: int = 300) -> np.ndarray:
    """Follow the displacement field from every pixel: (2, h, w) float32 (dy, dx) → rounded centroids (2, h, w) int32.

    Each iteration samples dy and dx bilinearly (floor / ceil neighbours) at the current position, moves y and x
    together, and clips to the map. Computed in float32 like the original; rounding is half to even.
    """
    disp = np.asarray(displacement, dtype=np.float32)
    height, width = disp.shape[1:3]
    centroid_y = np.repeat(np.arange(height)[:, None], width, axis=1).astype(np.float32)
    centroid_x = np.repeat(np.arange(width)[None, :], height, axis=0).astype(np.float32)
    for _ in range(iterations):
        uy = np.ceil(centroid_y).astype(np.int32)
        dy = np.floor(centroid_y).astype(np.int32)
        y_c = centroid_y - dy
        ux = np.ceil(centroid_x).astype(np.int32)
        dx = np.floor(centroid_x).astype(np.int32)
        x_c = centroid_x - dx
        step = []
        for ch in disp:
            step.append(ch[uy, ux] * y_c * x_c + ch[dy, ux] * (1 - y_c) * x_c
                        + ch[uy, dx] * y_c * (1 - x_c) + ch[dy, dx] * (1 - y_c) * (1 - x_c))
        centroid_y = np.clip(centroid_y + step[0], 0, height - 1)
        centroid_x = np.clip(centroid_x + step[1], 0, width - 1)
    return np.stack([np.round(centroid_y).astype(np.int32), np.round(centroid_x).astype(np.int32)], axis=0)


def cluster_centroids(centroids: np.ndarray, displacement: np.ndarray, thres: float = 2.5) -> np.ndarray:
    """Instance masks (n_inst, h, w) bool: pixels grouped by the weak-displacement component of their centroid.

    Weak region = |dp| < thres, 4-connected components (labels 1..m in raster order, 0 outside). Component ids are
    compacted (the smallest id present becomes row 0; a row for "outside every weak region" exists if used).
    """
    disp = np.asarray(displacement)
    strength = np.sqrt(disp[1] ** 2 + disp[0] ** 2)
    height, width = strength.shape
    components = measure.label(strength < thres, connectivity=1, background=0)
    flat_centroids = centroids[0].astype(np.int64) * width + centroids[1]
    clusters = components.reshape(-1)[flat_centroids]
    cluster_map = compress_range(clusters.reshape(height, width) + 1)
    return to_one_hot(cluster_map)


def split_cams_by_instance(cams: torch.Tensor, instance_map: np.ndarray | torch.Tensor) -> torch.Tensor:
    """cams (K, h, w) × masks (n, h, w) → instance CAMs (K, n, h, w) (class-major channel order)."""
    masks = torch.as_tensor(np.asarray(instance_map), dtype=cams.dtype, device=cams.device)
    return cams.unsqueeze(1) * masks.unsqueeze(0)


def detect_instance(
    score_map: np.ndarray, mask: np.ndarray, class_id: np.ndarray, max_fragment_size: float = 0
) -> dict[str, np.ndarray]:
    """Each 4-connected component of each channel mask is one detection (channel order, then raster order).

    score_map (C, H, W) float; mask (C, H, W) bool; class_id (C,). Score = max of the channel's score over the
    component, or 0 when the component has fewer than ``max_fragment_size`` pixels.
    Returns {"score": (n,) float32, "mask": (n, H, W) bool, "class": (n,) int64}.
    """
    scores, labels, masks = [], [], []
    for channel_score, channel_mask, channel_class in zip(score_map, mask, class_id):
        if np.sum(channel_mask) < 1:
            continue
        segments = to_one_hot(measure.label(channel_mask, connectivity=1, background=0))[1:]
        for seg in segments:
            if np.sum(seg) < max_fragment_size:
                scores.append(0.0)
            else:
                scores.append(float(np.max(channel_score * seg)))
            labels.append(int(channel_class))
            masks.append(seg)
    shape = tuple(np.asarray(mask).shape[1:])
    return {
        "score": np.asarray(scores, dtype=np.float32),
        "mask": np.stack(masks, 0) if masks else np.zeros((0,) + shape, dtype=bool),
        "class": np.asarray(labels, dtype=np.int64),
    }


def ins_seg_from_cams(
    cams: torch.Tensor | np.ndarray,
    keys: torch.Tensor | np.ndarray | Sequence[int],
    edge: torch.Tensor,
    dp: torch.Tensor | np.ndarray,
    image_size: Sequence[int],
    beta: float = 10,
    exp_times: int = 8,
    radius: int = 5,
    bg_thres: float = 0.25,
    iterations: int = 300,
    cluster_thres: float = 2.5,
    fragment_fraction: float = 0.01,
    dtype: torch.dtype | None = torch.float64,
) -> dict[str, np.ndarray]:
    """Instance detections of one image (docs/instances.md#instance-cams-and-detections).

    cams: (K, h, w) stride-4 CAMs; keys: (K,) 0-based classes; edge: (1, h, w); dp: (2, h, w) displacement
    (EdgeDisplacement outputs); image_size: (H, W). Returns detect_instance's dict (class ids 0-based; none for an
    image without classes, K = 0).
    """
    height, width = int(image_size[0]), int(image_size[1])
    if len(keys) == 0:  # no class in the image: no instance
        return detect_instance(np.zeros((0, height, width)), np.zeros((0, height, width), bool), np.zeros(0, np.int64))
    dp_np = dp.detach().cpu().numpy() if isinstance(dp, torch.Tensor) else np.asarray(dp)
    keys_np = np.asarray(torch.as_tensor(keys).cpu()).reshape(-1)
    centroids = find_centroids_with_refinement(dp_np, iterations)
    instance_map = cluster_centroids(centroids, dp_np, cluster_thres)
    cams_t = torch.as_tensor(cams).to(edge.device)
    instance_cam = split_cams_by_instance(cams_t, instance_map)
    rw = propagate_to_edge(instance_cam, edge, radius=radius, beta=beta, exp_times=exp_times, dtype=dtype)
    rw_up = upsample_and_normalise(rw, (height, width))
    rw_up_bg = F.pad(rw_up, (0, 0, 0, 0, 1, 0), value=bg_thres)
    n_instances = instance_map.shape[0]
    instance_shape = torch.argmax(rw_up_bg, 0).cpu().numpy()
    instance_shape = to_one_hot(instance_shape, maximum_val=n_instances * len(keys_np) + 1)[1:]
    instance_class_id = np.repeat(keys_np, n_instances)
    return detect_instance(rw_up.cpu().numpy(), instance_shape, instance_class_id,
                           max_fragment_size=height * width * fragment_fraction)
