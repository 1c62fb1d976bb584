"""Fixture `make_cam`: multi-scale inputs, per-scale model outputs, scale fusion, GT-class restriction, max-norm."""
import numpy as np
import pytest
import torch

from misc.method.imutils import pil_rescale
from step.make_cam import fuse_scales, image_cams
from tests.conftest import load_fixture
from voc12.dataloader import multiscale_flip_inputs

pytestmark = pytest.mark.fixtures


def _checksum(pair):
    x = pair.astype(np.float64)
    j = np.arange(x.shape[-1], dtype=np.float64) + 1
    return np.stack([x.reshape(2, -1).sum(1), (x * j).reshape(2, -1).sum(1)], 1)


def _images(a):
    return sorted({k.split("_")[0] for k in a if k.startswith("img")})


def test_make_cam_inputs_and_fusion():
    meta, a = load_fixture("make_cam")
    scales = [float(s) for s in a["scales"]]
    for im in _images(a):
        img = a[f"{im}_uint8"]
        pairs = multiscale_flip_inputs(img, scales)
        for si, s in enumerate(scales):
            if s != 1.0:
                np.testing.assert_array_equal(pil_rescale(img, s, 3), a[f"{im}_s{si}_rescaled_uint8"])
            np.testing.assert_allclose(_checksum(pairs[si]), a[f"{im}_s{si}_input_checksum"], rtol=1e-9)
        outs = [torch.from_numpy(a[f"{im}_s{si}_model_out"]) for si in range(len(scales))]
        keys = torch.nonzero(torch.from_numpy(a[f"{im}_label"]))[:, 0]
        np.testing.assert_array_equal(keys.numpy(), a[f"{im}_keys"])
        cam, high = fuse_scales(outs, img.shape[:2], keys, meta["config"]["high_res_stride"])
        np.testing.assert_allclose(cam.numpy(), a[f"{im}_cam"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(high.numpy(), a[f"{im}_high_res"], rtol=1e-5, atol=1e-6)


def test_make_cam_end_to_end_with_model():
    from net.deit_cam import DeiTCAM

    meta, a = load_fixture("make_cam")
    wmeta, w = load_fixture("deit_weights")
    cfg = wmeta["config"]
    model = DeiTCAM(num_classes=cfg["num_classes"], embed_dim=cfg["embed_dim"], depth=cfg["depth"],
                    num_heads=cfg["num_heads"], patch_size=cfg["patch_size"], tile_size=cfg["img_size"])
    model.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()}, strict=True)
    model.eval()
    scales = [float(s) for s in a["scales"]]
    for im in _images(a):
        out = image_cams(model, a[f"{im}_uint8"], a[f"{im}_label"], scales, torch.device("cpu"))
        np.testing.assert_array_equal(out["keys"], a[f"{im}_keys"])
        np.testing.assert_allclose(out["cam"], a[f"{im}_cam"], rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(out["high_res"], a[f"{im}_high_res"], rtol=1e-5, atol=1e-4)
