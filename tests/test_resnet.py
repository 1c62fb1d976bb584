"""ResNet backbone (FixedBatchNorm, torchvision layout) and the CNN CAM branch."""
from __future__ import annotations

import pytest
import torch
import torchvision

from net.resnet import FixedBatchNorm, build_resnet, load_resnet_imagenet
from net.resnet_cam import ResNetCAM, resnet_cam_cub
from misc.core.weights import PretrainedWeightsError


def _randomise_bn(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.mark.parametrize("size,strides,expected", [
    ((112, 112), (2, 2, 2, 1), (7, 7)),
    ((100, 75), (2, 2, 2, 1), (7, 5)),  # ceil(H/16)
    ((112, 112), (2, 2, 2, 2), (4, 4)),
])
def test_resnet50_output_stride(size, strides, expected) -> None:
    torch.manual_seed(0)
    model = build_resnet(50, strides).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert out.shape == (1, 2048, *expected)
    assert model.out_channels == 2048


def test_block_counts_and_stages() -> None:
    model = build_resnet(152)
    assert [len(m) for m in (model.layer1, model.layer2, model.layer3, model.layer4)] == [3, 8, 36, 3]
    assert model.layer4[0].conv2.stride == (1, 1) and model.layer3[0].conv2.stride == (2, 2)
    assert not hasattr(model, "fc")
    stages = model.stages()
    assert len(stages) == 4 and stages[0][0] is model.conv1 and stages[3] is model.layer4
    assert len(build_resnet(18).layer3) == 2
    with pytest.raises(ValueError):
        build_resnet(42)


def test_fixed_batchnorm_uses_running_stats() -> None:
    torch.manual_seed(0)
    bn = FixedBatchNorm(4)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    before = (bn.running_mean.clone(), bn.running_var.clone())
    x = torch.randn(3, 4, 5, 5) * 3 + 2
    bn.train()
    y_train = bn(x)
    bn.eval()
    y_eval = bn(x)
    torch.testing.assert_close(y_train, y_eval)
    expected = (x - before[0].view(1, -1, 1, 1)) / torch.sqrt(before[1].view(1, -1, 1, 1) + bn.eps)
    torch.testing.assert_close(y_train, expected * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1))
    torch.testing.assert_close(bn.running_mean, before[0])
    torch.testing.assert_close(bn.running_var, before[1])
    y_train.sum().backward()
    assert bn.weight.grad is not None and bn.bias.grad is not None


def test_torchvision_state_dict_loads_and_matches() -> None:
    torch.manual_seed(0)
    tv = torchvision.models.resnet50(weights=None)
    _randomise_bn(tv)
    tv.eval()
    state = {k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    ours = build_resnet(50, strides=(2, 2, 2, 2))
    ours.load_state_dict(state, strict=True)
    ours.train()  # FixedBatchNorm: train mode must still match torchvision's eval mode
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats_tv = tv.layer4(tv.layer3(tv.layer2(tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))))))
        torch.testing.assert_close(ours(x), feats_tv, rtol=1e-4, atol=1e-5)


def test_load_resnet_imagenet_from_file(tmp_path) -> None:
    tv = torchvision.models.resnet18(weights=None)
    state = tv.state_dict()
    # old torchvision files (resnet152-b121ed2d.pth) have no num_batches_tracked buffers
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "resnet18-5c106cde.pth"
    torch.save(state, path)
    ours = build_resnet(18)
    load_resnet_imagenet(ours, 18, str(path), flag="--resnet_weights")
    torch.testing.assert_close(ours.layer2[0].conv1.weight, tv.layer2[0].conv1.weight)
    with pytest.raises(PretrainedWeightsError, match="--resnet_weights"):
        load_resnet_imagenet(ours, 18, str(tmp_path / "missing.pth"), flag="--resnet_weights")


def test_resnet_cam_gradients_stop_at_stage2() -> None:
    torch.manual_seed(0)
    model = ResNetCAM(depth=50, num_classes=5)
    model.train()
    assert model.training and not model.backbone.conv1.weight.requires_grad
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 5, 4, 4)
    out.square().mean().backward()
    b = model.backbone
    for module in (b.conv1, b.bn1, b.layer1, b.layer2):
        assert all(p.grad is None for p in module.parameters())
    assert all(p.grad is not None for p in b.layer3.parameters())
    assert all(p.grad is not None for p in b.layer4.parameters())
    assert model.classifier.weight.grad is not None and model.classifier.bias is None
    backbone, classifier = model.trainable_parameters()
    assert {id(p) for p in backbone} == {id(p) for m in (b.layer3, b.layer4) for p in m.parameters()}
    assert [id(p) for p in classifier] == [id(model.classifier.weight)]
    model.eval()
    assert not model.training and not model.backbone.layer3.training
    assert not model.backbone.bn1.weight.requires_grad


def test_resnet_cam_cub_logits_and_map() -> None:
    torch.manual_seed(0)
    model = resnet_cam_cub(depth=50, num_classes=7).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits, cam = model.forward_wsol(x)
        plain = model(x)
    assert logits.shape == (2, 7) and cam.shape == (2, 7, 4, 4)
    torch.testing.assert_close(cam, plain)
    torch.testing.assert_close(logits, cam.mean(dim=(2, 3)), rtol=1e-4, atol=1e-5)


def convert_original_state_dict(state):
    """An original ``resnet50_cam.Net`` state dict (``resnet50.*``, duplicated ``stage*.*``, ``classifier.*``) in
    ResNetCAM's keys (``backbone.*``, ``classifier.*``). No step loads the original CNN branch (it only regularises
    train_cam), so the mapping lives here, as the record of the layout."""
    out = {}
    for key, value in state.items():
        if key.startswith("resnet50."):
            out["backbone." + key[len("resnet50."):]] = value
        elif key.startswith("classifier."):
            out[key] = value
    return out


def test_convert_original_state_dict() -> None:
    model = ResNetCAM(depth=18, num_classes=3)
    original = {"resnet50." + k: v for k, v in model.backbone.state_dict().items()}
    original.update({"stage1.0.weight": model.backbone.conv1.weight, "classifier.weight": model.classifier.weight})
    converted = convert_original_state_dict(original)
    model.load_state_dict(converted, strict=True)


def test_base_width_keeps_torchvision_keys_and_scales_shapes() -> None:
    tv = {k: tuple(v.shape) for k, v in torchvision.models.resnet18(weights=None).state_dict().items()
          if not k.startswith("fc.")}
    narrow = build_resnet(18, base_width=16)
    own = {k: tuple(v.shape) for k, v in narrow.state_dict().items()}
    assert list(own) == list(tv)
    assert own["conv1.weight"] == (16, 3, 7, 7) and own["layer4.1.conv2.weight"] == (128, 128, 3, 3)
    assert all(o[0] * 4 == t[0] for (k, o), t in zip(own.items(), tv.values()) if o)  # every output dim / 4
    assert narrow.out_channels == 128
    with torch.no_grad():
        assert narrow.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 128, 4, 4)
    cam = ResNetCAM(depth=18, num_classes=5, base_width=16)
    assert cam.classifier.weight.shape == (5, 128, 1, 1)


def test_layers_override_keeps_the_block_kind() -> None:
    model = build_resnet(50, base_width=16, layers=(1, 1, 1, 1))
    assert [len(m) for m in (model.layer1, model.layer2, model.layer3, model.layer4)] == [1, 1, 1, 1]
    assert model.layer4[0].conv3.weight.shape == (512, 128, 1, 1) and model.out_channels == 512
    assert "layer1.0.downsample.0.weight" in model.state_dict()
    with pytest.raises(ValueError):
        build_resnet(50, layers=(1, 1, 1))


def test_width_mismatch_names_the_width_flags(tmp_path) -> None:
    path = tmp_path / "narrow.pth"
    torch.save(build_resnet(18, base_width=16).state_dict(), path)
    with pytest.raises(PretrainedWeightsError, match=r"base width is 16.*model's 64.*--cam_cnn_width"):
        load_resnet_imagenet(build_resnet(18), 18, str(path), flag="--cam_cnn_pretrained")
    narrow = build_resnet(18, base_width=16)
    load_resnet_imagenet(narrow, 18, str(path), flag="--cam_cnn_pretrained")
