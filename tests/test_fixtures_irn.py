"""IRN-stage outputs of the original code (fixtures path_index, affinity_labels, irn_loss, edge_displacement_post,
sem_seg_labels, ins_seg_labels, cam_to_ir_label), reproduced within each fixture's recommended tolerance."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from misc.method.imutils import pil_rescale, top_left_crop
from misc.method.indexing import PathIndex, affinity_labels_from_indices, edge_to_affinity
from misc.method.instances import (
    cluster_centroids,
    find_centroids_with_refinement,
    ins_seg_from_cams,
    split_cams_by_instance,
)
from misc.method.ir_label import confident_argmax, make_ir_label
from misc.method.crf import crf_inference_label
from misc.method.random_walk import (
    dense_affinity,
    propagate_to_edge,
    propagate_to_edge_dense,
    sem_seg_from_cams,
    to_transition_matrix,
    upsample_and_normalise,
)
from net.resnet50_irn import AffinityDisplacementLoss, edge_displacement_post, irn_total_loss, pad_to_crop
from tests.conftest import load_fixture

pytestmark = pytest.mark.fixtures

ARGMAX_NOISE = 1e-4  # top-2 margins below this are float noise (fixtures' checks.final_argmax)


def _prefixes(arrays: dict, pattern: str) -> list[str]:
    return sorted({m.group(1) for k in arrays if (m := re.match(pattern, k))})


def _top2_gap(rw: np.ndarray, size, bg_thres: float) -> np.ndarray:
    """(H, W) gap between the two largest channels of [bg] + the fixture's normalised upsampled walk."""
    rw_up = upsample_and_normalise(torch.from_numpy(rw), size)
    scores = F.pad(rw_up, (0, 0, 0, 0, 1, 0), value=bg_thres)
    top2 = torch.topk(scores, 2, dim=0).values
    return (top2[0] - top2[1]).numpy()


def test_path_index():
    meta, arrays = load_fixture("path_index")
    radii = sorted(int(m.group(1)) for k in meta["config"] if (m := re.match(r"r(\d+)_default_size$", k)))
    assert radii
    for r in radii:
        index = PathIndex(r, meta["config"][f"r{r}_default_size"])
        assert index.radius_floor == int(arrays[f"r{r}_radius_floor"])
        np.testing.assert_array_equal(index.search_dst, arrays[f"r{r}_search_dst"])
        lengths = arrays[f"r{r}_path_lengths"]
        assert [p.shape[1] for p in index.search_paths] == lengths.tolist()
        for i in range(len(lengths)):
            np.testing.assert_array_equal(index.search_paths[i], arrays[f"r{r}_search_paths_{i}"])
            np.testing.assert_array_equal(index.path_indices[i], arrays[f"r{r}_path_indices_{i}"])
        np.testing.assert_array_equal(index.src_indices, arrays[f"r{r}_src_indices"])
        np.testing.assert_array_equal(index.dst_indices, arrays[f"r{r}_dst_indices"])


def test_affinity_labels():
    meta, arrays = load_fixture("affinity_labels")
    cfg = meta["config"]
    cropped = top_left_crop(arrays["ir_label"], cfg["crop_size"], 255)
    np.testing.assert_array_equal(cropped, arrays["label_cropped"])
    reduced = pil_rescale(cropped, 0.25, 0)
    np.testing.assert_array_equal(reduced, arrays["reduced_label"])
    index = PathIndex(cfg["radius"], cfg["feature_size"])
    np.testing.assert_array_equal(index.search_dst, arrays["search_dst"])
    np.testing.assert_array_equal(index.src_indices, arrays["src_indices"])
    outputs = affinity_labels_from_indices(reduced, index.src_indices, index.dst_indices)
    for out, key in zip(outputs, ("aff_bg_pos_label", "aff_fg_pos_label", "aff_neg_label")):
        assert out.dtype == arrays[key].dtype
        np.testing.assert_array_equal(out, arrays[key])


def test_irn_loss():
    meta, arrays = load_fixture("irn_loss")
    cfg = meta["config"]
    index = PathIndex(cfg["radius"], cfg["feature_size"])
    np.testing.assert_array_equal(index.search_dst, arrays["search_dst"])
    model = AffinityDisplacementLoss(index)
    np.testing.assert_array_equal(model.disp_target.numpy(), arrays["disp_target"])

    labels = [affinity_labels_from_indices(r, index.src_indices, index.dst_indices) for r in arrays["reduced_labels"]]
    label_keys = ("aff_bg_pos_label", "aff_fg_pos_label", "aff_neg_label")
    for i, key in enumerate(label_keys):
        np.testing.assert_array_equal(np.stack([lab[i] for lab in labels]), arrays[key])

    edge_out, dp_out = torch.from_numpy(arrays["edge_out"]), torch.from_numpy(arrays["dp_out"])
    tol = dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.to_affinity(torch.sigmoid(edge_out)).numpy(), arrays["aff"], **tol)
    np.testing.assert_allclose(model.to_pair_displacement(dp_out).numpy(), arrays["pair_disp"], **tol)
    terms = model.loss_terms(edge_out, dp_out)
    for term, key in zip(terms, ("pos_aff_loss", "neg_aff_loss", "dp_fg_loss", "dp_bg_loss")):
        np.testing.assert_allclose(term.numpy(), arrays[key], **tol)

    losses = irn_total_loss(*terms, *(torch.from_numpy(arrays[k]) for k in label_keys))
    scalar_keys = {"bg_pos_aff_loss": "bg_pos_aff_loss", "fg_pos_aff_loss": "fg_pos_aff_loss",
                   "pos_aff_loss": "pos_aff_loss_scalar", "neg_aff_loss": "neg_aff_loss_scalar",
                   "dp_fg_loss": "dp_fg_loss_scalar", "dp_bg_loss": "dp_bg_loss_scalar", "total_loss": "total_loss"}
    for ours, theirs in scalar_keys.items():
        assert losses[ours].dtype == torch.float32
        np.testing.assert_allclose(losses[ours].item(), arrays[theirs], rtol=1e-5, err_msg=ours)


def test_edge_to_affinity_matches_loss_affinity():
    meta, arrays = load_fixture("irn_loss")
    cfg = meta["config"]
    index = PathIndex(cfg["radius"], cfg["feature_size"])
    aff = edge_to_affinity(torch.sigmoid(torch.from_numpy(arrays["edge_out"])), index.path_indices)
    np.testing.assert_allclose(aff.numpy(), arrays["aff"], rtol=1e-5, atol=1e-5)


def test_edge_displacement_post():
    meta, arrays = load_fixture("edge_displacement_post")
    cfg = meta["config"]
    h_in, w_in = (int(v) for v in arrays["input_hw"])
    stride = cfg["stride"]
    padded = pad_to_crop(torch.zeros(2, 3, h_in, w_in), cfg["crop_size"])
    assert list(padded.shape) == cfg["padded_input_shape"]
    feat = ((h_in - 1) // stride + 1, (w_in - 1) // stride + 1)
    edge, dp = edge_displacement_post(torch.from_numpy(arrays["raw_edge_out"]),
                                      torch.from_numpy(arrays["raw_dp_out"]), feat)
    assert edge.shape == arrays["edge"].shape and dp.shape == arrays["dp"].shape
    np.testing.assert_allclose(edge.numpy(), arrays["edge"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(dp.numpy(), arrays["dp"])


def test_sem_seg_labels_dense_reference():
    """The faithful dense port reproduces the original's intermediate matrices."""
    meta, arrays = load_fixture("sem_seg_labels")
    cfg = meta["config"]
    cases = _prefixes(arrays, r"(case\d+)_")
    assert cases
    for case in cases:
        edge = torch.from_numpy(arrays[f"{case}_edge"])
        cam = torch.from_numpy(arrays[f"{case}_cam"])
        sparse_aff, dense_aff = dense_affinity(edge, cfg["radius"])
        np.testing.assert_allclose(sparse_aff.numpy(), arrays[f"{case}_sparse_aff"], rtol=0, atol=1e-6)
        if f"{case}_dense_aff" in arrays:
            np.testing.assert_allclose(dense_aff.numpy(), arrays[f"{case}_dense_aff"], rtol=0, atol=1e-6)
        trans = to_transition_matrix(dense_aff, cfg["beta"], cfg["exp_times"])
        if f"{case}_trans_mat" in arrays:
            np.testing.assert_allclose(trans.numpy(), arrays[f"{case}_trans_mat"], rtol=0, atol=2e-4)
        np.testing.assert_allclose(trans.sum(0).numpy(), arrays[f"{case}_trans_colsum"], rtol=0, atol=2e-4)
        np.testing.assert_allclose(torch.diagonal(trans).numpy(), arrays[f"{case}_trans_diag"], rtol=0, atol=2e-4)
        rw_dense = propagate_to_edge_dense(cam, edge, cfg["radius"], cfg["beta"], cfg["exp_times"])
        np.testing.assert_allclose(rw_dense.numpy(), arrays[f"{case}_rw"], rtol=0, atol=5e-4)


def test_sem_seg_labels():
    meta, arrays = load_fixture("sem_seg_labels")
    cfg = meta["config"]
    for case in _prefixes(arrays, r"(case\d+)_"):
        edge = torch.from_numpy(arrays[f"{case}_edge"])
        cam = torch.from_numpy(arrays[f"{case}_cam"])
        size = tuple(int(v) for v in arrays[f"{case}_size"])
        rw = propagate_to_edge(cam, edge, cfg["radius"], cfg["beta"], cfg["exp_times"])
        assert rw.dtype == torch.float32 and rw.shape == arrays[f"{case}_rw"].shape
        np.testing.assert_allclose(rw.numpy(), arrays[f"{case}_rw"], rtol=0, atol=5e-4)
        if f"{case}_rw_up" in arrays:
            np.testing.assert_allclose(upsample_and_normalise(rw, size).numpy(), arrays[f"{case}_rw_up"],
                                       rtol=0, atol=5e-4)

        label = sem_seg_from_cams(cam, arrays[f"{case}_keys"], edge, size, beta=cfg["beta"],
                                  exp_times=cfg["exp_times"], radius=cfg["radius"], bg_thres=cfg["sem_seg_bg_thres"])
        expected = arrays[f"{case}_sem_seg"]
        assert label.dtype == np.uint8 and label.shape == expected.shape
        sure = _top2_gap(arrays[f"{case}_rw"], size, cfg["sem_seg_bg_thres"]) >= ARGMAX_NOISE
        assert sure.mean() > 0.99, case
        np.testing.assert_array_equal(label[sure], expected[sure], err_msg=case)


def test_ins_seg_labels():
    meta, arrays = load_fixture("ins_seg_labels")
    cfg = meta["config"]
    dp = arrays["dp"]
    size = tuple(int(v) for v in arrays["size"])
    centroids = find_centroids_with_refinement(dp, cfg["refinement_iterations"])
    np.testing.assert_array_equal(centroids, arrays["centroids"])
    instance_map = cluster_centroids(centroids, dp, cfg["cluster_thres"])
    np.testing.assert_array_equal(instance_map, arrays["instance_map"].astype(bool))

    cams = torch.from_numpy(arrays["cam"])
    edge = torch.from_numpy(arrays["edge"])
    instance_cam = split_cams_by_instance(cams, instance_map)
    rw = propagate_to_edge(instance_cam, edge, cfg["radius"], cfg["beta"], cfg["exp_times"])
    np.testing.assert_allclose(rw.numpy(), arrays["rw"], rtol=0, atol=5e-4)

    det = ins_seg_from_cams(cams, arrays["keys"], edge, torch.from_numpy(dp), size, beta=cfg["beta"],
                            exp_times=cfg["exp_times"], radius=cfg["radius"], bg_thres=cfg["ins_seg_bg_thres"],
                            iterations=cfg["refinement_iterations"], cluster_thres=cfg["cluster_thres"])
    np.testing.assert_array_equal(det["class"], arrays["det_class"])
    np.testing.assert_allclose(det["score"], arrays["det_score"], rtol=0, atol=5e-4)
    expected_mask = arrays["det_mask"].astype(bool)
    assert det["mask"].shape == expected_mask.shape
    sure = _top2_gap(arrays["rw"], size, cfg["ins_seg_bg_thres"]) >= ARGMAX_NOISE
    assert sure.mean() > 0.99
    np.testing.assert_array_equal(det["mask"][:, sure], expected_mask[:, sure])


def test_cam_to_ir_label():
    meta, arrays = load_fixture("cam_to_ir_label")
    cfg = meta["config"]
    images = _prefixes(arrays, r"(img\d+)_")
    assert images
    for img in images:
        high_res, keys, rgb = arrays[f"{img}_high_res"], arrays[f"{img}_keys"], arrays[f"{img}_uint8"]
        fg_argmax = confident_argmax(high_res, cfg["conf_fg_thres"])
        bg_argmax = confident_argmax(high_res, cfg["conf_bg_thres"])
        np.testing.assert_array_equal(fg_argmax, arrays[f"{img}_fg_conf_argmax"])
        np.testing.assert_array_equal(bg_argmax, arrays[f"{img}_bg_conf_argmax"])
        n_labels = keys.shape[0] + 1
        np.testing.assert_array_equal(crf_inference_label(rgb, fg_argmax, n_labels=n_labels), arrays[f"{img}_fg_crf"])
        np.testing.assert_array_equal(crf_inference_label(rgb, bg_argmax, n_labels=n_labels), arrays[f"{img}_bg_crf"])
        label = make_ir_label(rgb, high_res, keys, cfg["conf_fg_thres"], cfg["conf_bg_thres"])
        assert label.dtype == np.uint8
        np.testing.assert_array_equal(label, arrays[f"{img}_ir_label"])
