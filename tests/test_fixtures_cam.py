"""Golden-output tests of the CAM-stage networks, loss and optimiser against the original code's fixtures."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from misc.method.cam_loss import train_cam_losses
from misc.method.torchutils import PolySGD, gap2d
from net.deit_cam import DeiTCAM, fuse_flip_pair
from tests.conftest import load_fixture

pytestmark = pytest.mark.fixtures

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def normalise_chw(img_uint8: np.ndarray) -> np.ndarray:
    """uint8 HWC RGB → float32 CHW ((v/255 − mean)/std computed in float64), as TorchvisionNormalize + HWC_to_CHW."""
    x = (img_uint8.astype(np.float64) / 255.0 - MEAN) / STD
    return np.ascontiguousarray(x.astype(np.float32).transpose(2, 0, 1))


def checksum(x: np.ndarray) -> np.ndarray:
    """(B,3,H,W) float32 → (B,2) float64 [sum, sum·(j+1)] with j the width index."""
    x64 = x.astype(np.float64)
    j = np.arange(x.shape[-1], dtype=np.float64) + 1
    return np.stack([x64.reshape(len(x), -1).sum(1), (x64 * j).reshape(len(x), -1).sum(1)], axis=1)


def build_from_weights() -> DeiTCAM:
    meta, arrays = load_fixture("deit_weights")
    cfg = meta["config"]
    model = DeiTCAM(num_classes=cfg["num_classes"], embed_dim=cfg["embed_dim"], depth=cfg["depth"],
                    num_heads=cfg["num_heads"], mlp_ratio=cfg["mlp_ratio"], patch_size=cfg["patch_size"],
                    tile_size=cfg["img_size"], num_passes=3, tiled=True, qkv_bias=cfg["qkv_bias"],
                    norm_eps=cfg["layernorm_eps"])
    model.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()}, strict=True)
    return model


@pytest.fixture(scope="module")
def deit_model() -> DeiTCAM:
    return build_from_weights()


def test_deit_weights_load_strict_and_order(deit_model: DeiTCAM) -> None:
    _, arrays = load_fixture("deit_weights")
    state = deit_model.state_dict()
    assert list(state.keys()) == list(arrays.keys())
    for k, v in arrays.items():
        np.testing.assert_array_equal(state[k].numpy(), v)
    vit, head = deit_model.trainable_parameters()
    params = list(deit_model.parameters())
    assert [id(p) for p in vit] == [id(p) for p in params[:-2]]
    assert [id(p) for p in head] == [id(p) for p in params[-2:]]
    assert deit_model.no_weight_decay() == {"pos_embed", "cls_token"}


def test_deit_forward_train(deit_model: DeiTCAM) -> None:
    meta, arrays = load_fixture("deit_forward_train")
    deit_model.train()
    for ci, _ in enumerate(meta["config"]["cases"]):
        x_np = np.stack([normalise_chw(im) for im in arrays[f"case{ci}_images_uint8"]])
        np.testing.assert_allclose(checksum(x_np), arrays[f"case{ci}_input_checksum"], rtol=1e-9)
        x = torch.from_numpy(x_np)
        with torch.no_grad():
            tiles, num_h, num_w = deit_model.tile(x)
            scores, attn = deit_model.tile_scores(tiles)
            out = deit_model(x)
        check = meta["checks"][f"case{ci}"]
        assert (num_h, num_w) == (check["num_h"], check["num_w"])
        assert attn is None
        np.testing.assert_allclose(scores.numpy(), arrays[f"case{ci}_head_out_tiles"], atol=1e-4, rtol=1e-4)
        assert list(out.shape) == check["output_shape"]
        np.testing.assert_allclose(out.numpy(), arrays[f"case{ci}_output"], atol=1e-4, rtol=1e-4)
    deit_model.eval()


def test_deit_forward_cam(deit_model: DeiTCAM) -> None:
    meta, arrays = load_fixture("deit_forward_cam")
    deit_model.eval()
    for ci, _ in enumerate(meta["config"]["cases"]):
        s = normalise_chw(arrays[f"case{ci}_image_uint8"])
        x_np = np.stack([s, np.ascontiguousarray(s[..., ::-1])])
        np.testing.assert_allclose(checksum(x_np), arrays[f"case{ci}_input_checksum"], rtol=1e-9)
        x = torch.from_numpy(x_np)
        check = meta["checks"][f"case{ci}"]
        with torch.no_grad():
            padded = deit_model.pad_for_cam(x)
            assert list(padded.shape[-2:]) == check["padded_hw"]
            cam = fuse_flip_pair(deit_model(x, return_cam=True))
            if f"case{ci}_head_out_tiles" in arrays:
                tiles, num_h, num_w = deit_model.tile(padded)
                assert (num_h, num_w) == (check["num_h"], check["num_w"])
                rows: list[torch.Tensor] = []
                scores, attn = deit_model.tile_scores(tiles, cls_attention=True, attention_rows=rows)
                np.testing.assert_allclose(scores.numpy(), arrays[f"case{ci}_head_out_tiles"], atol=1e-4, rtol=1e-4)
                ref_rows = arrays[f"case{ci}_attn_cls_row_headmean"]
                np.testing.assert_allclose(torch.stack(rows).numpy(), ref_rows, atol=1e-4, rtol=1e-4)
                expected_attn = ref_rows.sum(0)[:, 1:].reshape(-1, 1, deit_model.grid, deit_model.grid)
                np.testing.assert_allclose(attn.numpy(), expected_attn, atol=1e-4, rtol=1e-4)
        assert list(cam.shape) == check["cam_shape"]
        np.testing.assert_allclose(cam.numpy(), arrays[f"case{ci}_cam"], atol=1e-4, rtol=1e-4)


def test_train_cam_loss() -> None:
    meta, arrays = load_fixture("train_cam_loss")
    cfg = meta["config"]
    cam1, cam2, label = (torch.from_numpy(arrays[k]) for k in ("cam1", "cam2", "label"))
    first = train_cam_losses(cam1, cam2, label, epoch=0, cam_lambda=cfg["cam_lambda"], crop_size=cfg["crop_size"])
    later = train_cam_losses(cam1, cam2, label, epoch=1, cam_lambda=cfg["cam_lambda"], crop_size=cfg["crop_size"])
    for key, name in (("loss_cls_cnn", "loss1"), ("loss_cls_vit", "loss2"), ("loss_l1", "loss3")):
        np.testing.assert_allclose(first[key].item(), arrays[name], rtol=1e-5)
        np.testing.assert_allclose(later[key].item(), arrays[name], rtol=1e-5)
    np.testing.assert_allclose(first["total"].item(), arrays["loss_epoch0"], rtol=1e-5)
    np.testing.assert_allclose(later["total"].item(), arrays["loss_epoch_gt0"], rtol=1e-5)
    # bytecode rule (0, 5): loss1 + 0*loss2 + 5*lambda*loss3
    shipped = train_cam_losses(cam1, cam2, label, epoch=3, cam_lambda=cfg["cam_lambda"], crop_size=cfg["crop_size"],
                               cls2_weight_after_warmup=0.0, l1_multiplier=5.0)
    np.testing.assert_allclose(shipped["total"].item(),
                               float(arrays["loss1"]) + 5 * cfg["cam_lambda"] * float(arrays["loss3"]), rtol=1e-5)
    np.testing.assert_allclose(gap2d(cam1).numpy(), arrays["cam1"].mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)


def test_poly_optimizer() -> None:
    meta, arrays = load_fixture("poly_optimizer")
    cfg = meta["config"]
    init = torch.from_numpy(arrays["init_params"])
    n0 = 3
    p0 = torch.nn.Parameter(init[:n0].clone())
    p1 = torch.nn.Parameter(init[n0:].clone())
    lr0, lr1 = cfg["group_lrs"]
    opt = PolySGD([{"params": [p0], "lr": lr0, "weight_decay": cfg["weight_decay"]},
                   {"params": [p1], "lr": lr1, "weight_decay": cfg["weight_decay"]}],
                  lr=cfg["lr"], weight_decay=cfg["weight_decay"], max_step=cfg["max_step"],
                  poly_power=cfg["poly_power"], momentum=cfg["sgd_momentum_effective"])
    grads = torch.from_numpy(arrays["grads"])
    for step in range(cfg["n_steps"]):
        p0.grad = grads[step, :n0].clone()
        p1.grad = grads[step, n0:].clone()
        opt.step()
        lrs = [g["lr"] for g in opt.param_groups]
        np.testing.assert_allclose(lrs, arrays["lrs"][step], rtol=1e-12)
        params = torch.cat([p0.detach(), p1.detach()]).numpy()
        np.testing.assert_allclose(params, arrays["params"][step], atol=1e-6, rtol=0)
    assert opt.global_step == cfg["n_steps"]


def test_poly_optimizer_resume_matches_uninterrupted() -> None:
    """state_dict carries global_step: a resumed optimiser continues the same lr schedule and momentum."""
    torch.manual_seed(0)
    grads = torch.randn(6, 4)

    def make(p: torch.nn.Parameter) -> PolySGD:
        return PolySGD([{"params": [p], "lr": 0.5}], lr=0.5, weight_decay=1e-4, max_step=4, momentum=0.3)

    a = torch.nn.Parameter(torch.ones(4))
    opt_a = make(a)
    for g in grads:
        a.grad = g.clone()
        opt_a.step()

    b = torch.nn.Parameter(torch.ones(4))
    opt_b = make(b)
    for g in grads[:3]:
        b.grad = g.clone()
        opt_b.step()
    saved = opt_b.state_dict()
    b2 = torch.nn.Parameter(b.detach().clone())
    opt_c = make(b2)
    opt_c.load_state_dict(saved)
    assert opt_c.global_step == 3
    for g in grads[3:]:
        b2.grad = g.clone()
        opt_c.step()
    torch.testing.assert_close(b2.detach(), a.detach())
    assert opt_c.param_groups[0]["lr"] == opt_a.param_groups[0]["lr"]
