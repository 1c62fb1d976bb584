"""IRNet model (shapes, frozen backbone, parameter groups, checkpoint key names), its loss and the IR labels."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from misc.method.indexing import PathIndex, affinity_labels_from_indices
from misc.method.ir_label import confident_argmax, make_ir_label, padded_keys
from net.resnet50_irn import (
    AffinityDisplacementLoss,
    EdgeDisplacement,
    IRNet,
    MeanShift,
    edge_displacement_post,
    irn_total_loss,
    load_irn_weights,
    zero_pad_to_crop,
)

# The original state dict of Net: every backbone tensor under resnet50.* plus these aliases (same tensors).
ORIGINAL_ALIASES = {"stage1.0.": "resnet50.conv1.", "stage1.1.": "resnet50.bn1.", "stage2.0.": "resnet50.layer1.",
                    "stage3.0.": "resnet50.layer2.", "stage4.0.": "resnet50.layer3.", "stage5.0.": "resnet50.layer4."}


def _original_style_state(model: IRNet) -> dict[str, torch.Tensor]:
    """Our state dict + the aliases / extra buffers the original checkpoint carries."""
    state = dict(model.state_dict())
    extra = {}
    for alias, prefix in ORIGINAL_ALIASES.items():
        for key, value in state.items():
            if key.startswith(prefix):
                extra[alias + key[len(prefix):]] = value
    for i in range(6):
        for key, value in state.items():
            if key.startswith(f"fc_edge{i + 1}."):
                extra[f"edge_layers.{i}." + key[len(f"fc_edge{i + 1}."):]] = value
    extra["fc_dp7.4.running_mean"] = state["mean_shift.running_mean"]
    extra["dp_layers.6.4.running_mean"] = state["mean_shift.running_mean"]
    extra["path_indices0"] = torch.zeros(2, 2, 7, dtype=torch.long)
    extra["disp_target"] = torch.zeros(1, 2, 3, 1)
    state.update(extra)
    return state


@pytest.fixture(scope="module")
def irnet() -> IRNet:
    torch.manual_seed(0)
    return IRNet()


@pytest.fixture(scope="module")
def edge_displacement() -> EdgeDisplacement:
    return EdgeDisplacement(crop_size=32, stride=4)


def test_state_dict_uses_original_key_names(irnet):
    keys = set(irnet.state_dict())
    for key in ("resnet50.conv1.weight", "resnet50.bn1.running_var", "resnet50.layer1.0.downsample.0.weight",
                "resnet50.layer4.2.conv3.weight", "mean_shift.running_mean", "fc_edge1.0.weight",
                "fc_edge1.1.weight", "fc_edge3.1.bias", "fc_edge6.weight", "fc_edge6.bias", "fc_dp6.0.weight",
                "fc_dp7.0.weight", "fc_dp7.1.weight", "fc_dp7.3.weight"):
        assert key in keys, key
    assert not any(k.startswith(("stage", "backbone.", "edge_layers", "dp_layers", "resnet50.fc")) for k in keys)
    assert not any(k.endswith("num_batches_tracked") and k.startswith("fc_") for k in keys)


def test_parameter_groups_and_frozen_backbone(irnet):
    edge_params, dp_params = irnet.trainable_parameters()
    n_edge = sum(p.numel() for p in edge_params)
    n_dp = sum(p.numel() for p in dp_params)
    # edge: 1x1 convs (64+256+512+1024+2048)*32, GN affine 5*2*32, final conv 160 + bias 1
    assert n_edge == (64 + 256 + 512 + 1024 + 2048) * 32 + 5 * 64 + 161
    # dp: convs 64*64+256*128+512*256+1024*256+2048*256+768*256+448*256+256*2, GN affine 2*(64+128+256*5)
    assert n_dp == (64 * 64 + 256 * 128 + 512 * 256 + 1024 * 256 + 2048 * 256 + 768 * 256 + 448 * 256 + 256 * 2
                    + 2 * (64 + 128 + 256 * 5))
    assert all(not p.requires_grad for p in irnet.resnet50.parameters())
    irnet.train()
    assert irnet.training and not irnet.resnet50.training and irnet.fc_edge1.training
    assert irnet.backbone is irnet.resnet50  # read as backbone, registered (state-dict keys) as resnet50.*
    keys = irnet.state_dict()
    assert "resnet50.conv1.weight" in keys and not any(k.startswith("backbone.") for k in keys)
    irnet.eval()
    assert not irnet.fc_dp7.training


def test_mean_shift_train_vs_eval():
    shift = MeanShift(2)
    shift.running_mean.copy_(torch.tensor([1.0, -2.0]))
    x = torch.zeros(1, 2, 3, 3)
    assert torch.equal(shift.train()(x), x)
    out = shift.eval()(x)
    assert torch.all(out[:, 0] == -1) and torch.all(out[:, 1] == 2)


def test_forward_shapes_and_edge_displacement(irnet, edge_displacement):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 32, 32)
    irnet.eval()
    with torch.no_grad():
        edge_out, dp_out = irnet(x)
    assert edge_out.shape == (2, 1, 8, 8) and dp_out.shape == (2, 2, 8, 8)

    edge_displacement.load_state_dict(irnet.state_dict())
    edge_displacement.eval()
    img = torch.randn(1, 3, 30, 21)
    pair = torch.cat([img, img.flip(-1)])
    with torch.no_grad():
        edge, dp = edge_displacement(pair)
        raw_edge, raw_dp = irnet(zero_pad_to_crop(pair, 32))
    assert edge.shape == (1, 8, 6) and dp.shape == (2, 8, 6)
    assert torch.all((edge >= 0) & (edge <= 1))
    expected_edge, expected_dp = edge_displacement_post(raw_edge, raw_dp, (8, 6))
    torch.testing.assert_close(edge, expected_edge)
    torch.testing.assert_close(dp, expected_dp)


def test_edge_displacement_post_by_hand():
    edge_out = torch.zeros(2, 1, 4, 4)
    edge_out[0, 0, 0, 0] = 2.0
    edge_out[1, 0, 0, 2] = 4.0  # column 2 of a width-3 crop flips to column 0
    dp_out = torch.arange(2 * 2 * 16, dtype=torch.float32).view(2, 2, 4, 4)
    edge, dp = edge_displacement_post(edge_out, dp_out, (3, 3))
    assert edge.shape == (1, 3, 3)
    assert torch.isclose(edge[0, 0, 0], torch.sigmoid(torch.tensor(3.0)))
    assert torch.isclose(edge[0, 1, 1], torch.tensor(0.5))
    torch.testing.assert_close(dp, dp_out[0, :, :3, :3])


def test_zero_pad_to_crop_pads_right_bottom():
    x = torch.ones(2, 3, 5, 7)
    out = zero_pad_to_crop(x, 8)
    assert out.shape == (2, 3, 8, 8)
    assert out[..., :5, :7].eq(1).all() and out[..., 5:, :].eq(0).all() and out[..., :, 7:].eq(0).all()
    assert zero_pad_to_crop(torch.ones(1, 3, 8, 33), 16).shape == (1, 3, 16, 48)  # larger sides: next multiple of 16


def test_load_original_style_checkpoint_and_round_trip(irnet, edge_displacement, tmp_path):
    torch.manual_seed(2)
    with torch.no_grad():
        for p in irnet.parameters():
            p.normal_()
        irnet.mean_shift.running_mean.copy_(torch.tensor([0.5, -0.25]))
    original = _original_style_state(irnet)
    load_irn_weights(edge_displacement, original)
    for key, value in irnet.state_dict().items():
        assert torch.equal(edge_displacement.state_dict()[key], value), key

    path = tmp_path / "irn.pth"
    torch.save(edge_displacement.state_dict(), path)
    reread = torch.load(path, weights_only=True)
    expected = irnet.fc_dp7[3].weight.detach().clone()
    with torch.no_grad():
        irnet.fc_dp7[3].weight.zero_()
        irnet.mean_shift.running_mean.zero_()
    load_irn_weights(irnet, reread)
    assert torch.equal(irnet.fc_dp7[3].weight, expected)
    assert torch.equal(irnet.mean_shift.running_mean, torch.tensor([0.5, -0.25]))

    broken = {k: v for k, v in original.items() if not k.startswith("fc_edge6")}
    with pytest.raises(KeyError):
        load_irn_weights(edge_displacement, broken)


def test_affinity_displacement_loss_and_gradients():
    torch.manual_seed(3)
    index = PathIndex(radius=3, default_size=(8, 8))
    model = AffinityDisplacementLoss(index)
    n_dirs = index.num_directions
    assert model.disp_target.shape == (1, 2, n_dirs, 1)
    assert "path_indices0" not in model.state_dict()  # derived data, kept out of checkpoints
    assert model.path_indices0.shape == index.path_indices[0].shape
    model.train()
    # random stage outputs of a 32x32 input (the backbone forward itself is tested above)
    shapes = [(64, 8, 8), (256, 8, 8), (512, 4, 4), (1024, 2, 2), (2048, 2, 2)]
    feats = [torch.randn(2, *shape).relu() for shape in shapes]
    model.backbone_features = lambda x: feats  # instance override: forward() = heads(feats) + loss
    x = torch.zeros(2, 3, 32, 32)
    terms = model(x, True)
    n = index.src_indices.size
    d = n_dirs
    assert [tuple(t.shape) for t in terms] == [(2, d, n), (2, d, n), (2, 2, d, n), (2, 2, d, n)]
    labels = np.random.default_rng(0).choice([0, 3, 255], size=(2, 8, 8)).astype(np.uint8)
    aff = [affinity_labels_from_indices(lab, index.src_indices, index.dst_indices) for lab in labels]
    bg, fg, neg = (torch.from_numpy(np.stack([a[i] for a in aff])) for i in range(3))
    losses = irn_total_loss(*terms, bg, fg, neg)
    assert set(losses) == {"bg_pos_aff_loss", "fg_pos_aff_loss", "pos_aff_loss", "neg_aff_loss", "dp_fg_loss",
                           "dp_bg_loss", "total_loss"}
    expected_total = (losses["pos_aff_loss"] + losses["neg_aff_loss"]) / 2 \
        + (losses["dp_fg_loss"] + losses["dp_bg_loss"]) / 2
    torch.testing.assert_close(losses["total_loss"], expected_total)
    losses["total_loss"].backward()
    edge_params, dp_params = model.trainable_parameters()
    assert all(p.grad is not None for p in edge_params + dp_params)
    assert all(p.grad is None for p in model.resnet50.parameters())
    edge_out, dp_out = model(x, False)
    assert edge_out.shape == (2, 1, 8, 8) and dp_out.shape == (2, 2, 8, 8)


def test_irn_total_loss_by_hand():
    # B=1, D=1, N=2: bg pair 0 with pos loss 2, fg pair 1 with pos loss 4, neg label on pair 1 with neg loss 6
    pos = torch.tensor([[[2.0, 4.0]]])
    neg_loss = torch.tensor([[[1.0, 6.0]]])
    dp_fg = torch.ones(1, 2, 1, 2) * 3.0
    dp_bg = torch.ones(1, 2, 1, 2) * 5.0
    bg = torch.tensor([[[1.0, 0.0]]])
    fg = torch.tensor([[[0.0, 1.0]]])
    neg = torch.tensor([[[0.0, 1.0]]])
    out = irn_total_loss(pos, neg_loss, dp_fg, dp_bg, bg, fg, neg)
    eps = 1e-5
    assert out["bg_pos_aff_loss"].item() == pytest.approx(2 / (1 + eps))
    assert out["fg_pos_aff_loss"].item() == pytest.approx(4 / (1 + eps))
    assert out["pos_aff_loss"].item() == pytest.approx(3 / (1 + eps))
    assert out["neg_aff_loss"].item() == pytest.approx(6 / (1 + eps))
    assert out["dp_fg_loss"].item() == pytest.approx(6 / (2 + eps))
    assert out["dp_bg_loss"].item() == pytest.approx(10 / (2 + eps))
    assert out["total_loss"].item() == pytest.approx((3 + 6) / 2 + (3 + 5) / 2, rel=1e-4)


def test_confident_argmax_and_keys():
    high_res = np.array([[[0.2, 0.5]], [[0.1, 0.3]]], dtype=np.float32)  # (K=2, 1, 2)
    np.testing.assert_array_equal(confident_argmax(high_res, 0.35), [[0, 1]])
    np.testing.assert_array_equal(confident_argmax(high_res, 0.15), [[1, 1]])
    np.testing.assert_array_equal(padded_keys(np.array([4, 14])), [0, 5, 15])


def test_make_ir_label_on_a_clear_image():
    h, w = 24, 32
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[:, 16:] = 200
    high_res = np.zeros((1, h, w), dtype=np.float32)
    high_res[0, :, 18:] = 0.9
    high_res[0, :, 14:18] = 0.25  # between the thresholds: background for 0.35, foreground for 0.15
    label = make_ir_label(img, high_res, np.array([6]))
    assert label.shape == (h, w) and label.dtype == np.uint8
    assert set(np.unique(label)) <= {0, 7, 255}
    assert np.all(label[:, :10] == 0) and np.all(label[:, 20:] == 7)


def test_narrow_backbone_heads_follow_its_channels():
    torch.manual_seed(0)
    model = IRNet(depth=18, base_width=16).eval()
    assert model.resnet50.conv1.weight.shape == (16, 3, 7, 7)
    # head inputs: stem 16, layer1..4 16, 32, 64, 128 (BasicBlock); head widths unchanged
    assert [m[0].weight.shape[1] for m in model.edge_modules()[:5]] == [16, 16, 32, 64, 128]
    assert [m[0].weight.shape[:2] for m in model.dp_modules()[:5]] == [(64, 16), (128, 16), (256, 32), (256, 64),
                                                                      (256, 128)]
    with torch.no_grad():
        edge, dp = model(torch.randn(1, 3, 64, 64))
    assert edge.shape == (1, 1, 16, 16) and dp.shape == (1, 2, 16, 16)
    wrapper = EdgeDisplacement(crop_size=32, stride=4, depth=18, base_width=16)
    load_irn_weights(wrapper, model.state_dict())
    loss_model = AffinityDisplacementLoss(PathIndex(radius=3, default_size=(8, 8)), depth=50, base_width=8)
    assert loss_model.fc_edge5[0].weight.shape == (32, 256, 1, 1)
    assert all(len(t.shape) for t in loss_model(torch.randn(1, 3, 32, 32)))
