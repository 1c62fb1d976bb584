"""PathIndex, edge→affinity, affinity labels and the banded random walk vs the dense original algorithm."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from misc.method.indexing import PathIndex, affinity_labels_from_indices, direction_path, edge_to_affinity, search_directions
from misc.method.random_walk import (
    BandedTransition,
    dense_affinity,
    pair_affinities,
    propagate_to_edge,
    propagate_to_edge_dense,
    sem_seg_from_cams,
    to_transition_matrix,
    upsample_and_normalise,
)


@pytest.mark.parametrize("radius, n_dirs", [(5, 34), (10, 152)])
def test_number_of_search_directions(radius, n_dirs):
    assert len(search_directions(radius)) == n_dirs
    index = PathIndex(radius, (radius * 3, radius * 3))
    assert index.search_dst.shape == (n_dirs, 2)
    assert index.num_directions == n_dirs
    assert index.radius_floor == radius - 1
    # every unordered pair once: directions lie in the open lower half-plane (dy > 0, or dy == 0 and dx > 0)
    assert all(dy > 0 or (dy == 0 and dx > 0) for dy, dx in index.search_dst)
    assert len({tuple(d) for d in index.search_dst}) == n_dirs


def test_direction_path_order_and_content():
    assert direction_path((0, 3)) == [(0, 3), (0, 2), (0, 1), (0, 0)]
    # (1, 2): every point of the 2x3 bounding box is closer than 1 to the line 2y = x
    path = direction_path((1, 2))
    assert path[0] == (1, 2) and path[-1] == (0, 0)
    assert sorted(path) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    # (2, 1): (0, 1) and (2, 0) are at distance 2/sqrt(5) < 1 too, (0,1) vs (1,0) ties keep row-major order
    assert direction_path((2, 1)) == [(2, 1), (1, 1), (2, 0), (0, 1), (1, 0), (0, 0)]
    # stable sort by decreasing |y|+|x|: ties keep the row-major order
    assert direction_path((1, -1)) == [(1, -1), (0, -1), (1, 0), (0, 0)]
    # (3, 1): (1, 1) is at distance 2/sqrt(10) < 1, (0, 1) at 3/sqrt(10) < 1, (3, 0) too; (2, 0) at 2/sqrt(10)
    assert all((3 * x - 1 * y) ** 2 < 10 for y, x in direction_path((3, 1)))


def test_path_indices_layout():
    index = PathIndex(5, (9, 12))
    rf = index.radius_floor
    ch, cw = 9 - rf, 12 - 2 * rf
    full = np.arange(9 * 12).reshape(9, 12)
    np.testing.assert_array_equal(index.src_indices, full[:ch, rf:rf + cw].ravel())
    assert index.dst_indices.shape == (34, ch * cw)
    for d, (dy, dx) in enumerate(index.search_dst):
        np.testing.assert_array_equal(index.dst_indices[d], full[dy:dy + ch, rf + dx:rf + dx + cw].ravel())
    lengths = [p.shape[1] for p in index.search_paths]
    assert lengths == sorted(lengths) and len(set(lengths)) == len(lengths)
    for paths, inds in zip(index.search_paths, index.path_indices):
        assert inds.shape == (paths.shape[0], paths.shape[1], ch * cw)


def test_edge_to_affinity_brute_force():
    torch.manual_seed(0)
    h, w = 8, 11
    index = PathIndex(4, (h, w))
    edge = torch.rand(2, 1, h, w)
    aff = edge_to_affinity(edge, index.path_indices)
    assert aff.shape == (2, index.num_directions, index.src_indices.size)
    e = edge.numpy()[:, 0]
    paths = [path for group in index.search_paths for path in group]
    rf = index.radius_floor
    ch, cw = h - rf, w - 2 * rf
    for d, path in enumerate(paths):
        on_path = np.stack([e[:, qy:qy + ch, rf + qx:rf + qx + cw] for qy, qx in path])  # (L, 2, ch, cw)
        expected = 1 - on_path.max(0).reshape(2, -1)
        np.testing.assert_array_equal(aff[:, d].numpy(), expected)


def test_affinity_labels_hand_case():
    # 1 row of 4 pixels would be too small for radius 2 (rf = 1): use a 2x4 map, directions (0,1),(1,-1),(1,0),(1,1)
    index = PathIndex(2, (2, 4))
    assert [tuple(d) for d in index.search_dst] == [(0, 1), (1, 0), (1, -1), (1, 1)]
    label = np.array([[0, 0, 5, 255],
                      [0, 5, 5, 7]], dtype=np.uint8)
    bg, fg, neg = affinity_labels_from_indices(label, index.src_indices, index.dst_indices)
    assert bg.dtype == fg.dtype == neg.dtype == np.float32
    # sources: row 0, cols 1..2 -> labels (0, 5)
    # (0,1): 0->5 neg, 5->255 invalid; (1,0): 0->5 neg, 5->5 fg; (1,-1): 0->0 bg, 5->5 fg; (1,1): 0->5 neg, 5->7 neg
    np.testing.assert_array_equal(bg, [[0, 0], [0, 0], [1, 0], [0, 0]])
    np.testing.assert_array_equal(fg, [[0, 0], [0, 1], [0, 1], [0, 0]])
    np.testing.assert_array_equal(neg, [[1, 0], [1, 0], [0, 0], [1, 1]])


def _dense_from_banded(trans: BandedTransition) -> torch.Tensor:
    """T[j + o, j] = weights[o][j] as a dense (h·w, h·w) matrix; weights pointing off the map must be 0."""
    h, w = trans.size
    dense = torch.zeros(h * w, h * w, dtype=trans.weights.dtype)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for (oy, ox), wgt in zip(trans.offsets, trans.weights):
        inside = (ys + oy >= 0) & (ys + oy < h) & (xs + ox >= 0) & (xs + ox < w)
        assert torch.all(wgt[~inside] == 0)
        rows = ((ys + oy) * w + xs + ox)[inside]
        cols = (ys * w + xs)[inside]
        dense.index_put_((rows, cols), wgt[inside], accumulate=True)
    return dense


def test_banded_transition_equals_dense_matrix():
    torch.manual_seed(1)
    edge = torch.rand(1, 7, 9, dtype=torch.float64)
    edge[0, 3, :] = 1.0  # a full boundary row: zero affinity across it
    edge[0, 0, 0] = 0.0
    trans = BandedTransition.from_edge(edge, radius=5, beta=10)
    assert len(trans.offsets) == 1 + 2 * 34
    _, dense_aff = dense_affinity(edge, 5)
    expected = to_transition_matrix(dense_aff, beta=10, times=0)
    torch.testing.assert_close(_dense_from_banded(trans), expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(trans.column_sums(), torch.ones(7, 9, dtype=torch.float64), rtol=0, atol=1e-12)


def test_pair_affinities_match_path_index_on_padded_edge():
    torch.manual_seed(2)
    h, w, r = 6, 8, 5
    edge = torch.rand(1, h, w)
    search_dst, aff = pair_affinities(edge, r)
    sparse_aff, _ = dense_affinity(edge, r)  # (1, D, N) on the padded grid (h + r, w + 2r), rf = r - 1
    cw = w + 2 * r - 2 * (r - 1)
    for y in range(h):
        for x in range(w):
            n = y * cw + (x + r - (r - 1))
            torch.testing.assert_close(aff[:, y, x], sparse_aff[0, :, n], rtol=0, atol=0)
    assert search_dst.shape == (34, 2)


@pytest.mark.parametrize("shape, k, exp_times", [((9, 13), 2, 8), ((12, 7), 3, 4), ((5, 6), 1, 0)])
def test_fast_random_walk_equals_dense(shape, k, exp_times):
    torch.manual_seed(sum(shape) + k)
    x = torch.rand(k, *shape, dtype=torch.float64)
    edge = torch.rand(1, *shape, dtype=torch.float64) ** 2
    fast = propagate_to_edge(x, edge, radius=5, beta=10, exp_times=exp_times)
    dense = propagate_to_edge_dense(x, edge, radius=5, beta=10, exp_times=exp_times)
    assert fast.shape == dense.shape == (k, 1) + shape
    assert fast.dtype == torch.float64
    torch.testing.assert_close(fast, dense, rtol=1e-9, atol=1e-12)


def test_fast_random_walk_float32_io_and_device():
    torch.manual_seed(3)
    x = torch.rand(2, 10, 10)
    edge = torch.rand(1, 10, 10)
    out = propagate_to_edge(x, edge)
    assert out.dtype == torch.float32 and out.device == edge.device and out.shape == (2, 1, 10, 10)
    out32 = propagate_to_edge(x, edge, dtype=torch.float32)
    torch.testing.assert_close(out32, out, rtol=0, atol=1e-4)
    # a full boundary column cuts the map: nothing propagates from the left part into the right part
    x = torch.zeros(1, 6, 9, dtype=torch.float64)
    x[0, :, :3] = 1.0
    wall = torch.zeros(1, 6, 9, dtype=torch.float64)
    wall[0, :, 4] = 1.0
    rw = propagate_to_edge(x, wall)
    assert torch.all(rw[0, 0, :, 4:] == 0) and torch.all(rw[0, 0, :, :4] > 0)


def test_sem_seg_from_cams_shapes_and_keys():
    torch.manual_seed(4)
    cams = torch.zeros(2, 6, 8)
    cams[0, :, :3] = 1.0
    cams[1, :, 5:] = 1.0
    edge = torch.zeros(1, 6, 8)
    edge[0, :, 4] = 1.0
    label = sem_seg_from_cams(cams, np.array([3, 11]), edge, (22, 30), bg_thres=0.25)
    assert label.shape == (22, 30) and label.dtype == np.uint8
    assert set(np.unique(label)) <= {0, 4, 12}
    assert label[10, 2] == 4 and label[10, 27] == 12


def test_upsample_and_normalise_global_max():
    rw = torch.rand(3, 1, 4, 5)
    up = upsample_and_normalise(rw, (15, 18))
    assert up.shape == (3, 15, 18)
    assert torch.isclose(up.max(), torch.tensor(1.0))


def test_all_zero_cams_give_background_not_nan():
    """The original divides 0 by 0 here and the NaNs label the whole image with the first class."""
    rw = torch.zeros(2, 1, 4, 5)
    up = upsample_and_normalise(rw, (15, 18))
    assert torch.equal(up, torch.zeros(2, 15, 18))
    edge = torch.full((1, 6, 8), 0.2)
    label = sem_seg_from_cams(torch.zeros(2, 6, 8), np.array([3, 11]), edge, (22, 30), bg_thres=0.25)
    assert label.shape == (22, 30) and not label.any()
