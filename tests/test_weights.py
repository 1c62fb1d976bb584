"""Weight loading: local files with weights_only, unwrap rules, and the offline error naming file and flag."""
import pytest
import torch

from misc.core.weights import PretrainedWeightsError, load_checkpoint, load_pretrained, unwrap_state_dict


def test_unwrap_model_and_module_prefix(tmp_path):
    sd = {"module.a": torch.ones(2), "module.b": torch.zeros(1)}
    assert set(unwrap_state_dict({"model": sd, "epoch": 3})) == {"a", "b"}
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": sd, "best_map": 0.5}, path)
    assert set(load_checkpoint(path)) == {"a", "b"}


def test_local_file_and_missing_file(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"model": {"x": torch.arange(3)}}, path)
    assert torch.equal(load_pretrained(str(path), "unused", flag="--f", download_hint="h")["x"], torch.arange(3))
    with pytest.raises(PretrainedWeightsError, match="--f"):
        load_pretrained(str(tmp_path / "nope.pth"), "unused", flag="--f", download_hint="get it here")


def test_unknown_name_names_flag_and_file():
    with pytest.raises(PretrainedWeightsError) as e:
        load_pretrained("no_such_model_name_xyz", "x", flag="--deit_pretrained", download_hint="deit.pth from X")
    msg = str(e.value)
    assert "--deit_pretrained" in msg and "deit.pth from X" in msg and "--no_pretrained" in msg


def test_unwrap_ema_and_backbone_wrappers():
    sd = {"a": torch.ones(2), "b.c": torch.zeros(1)}
    assert set(unwrap_state_dict({"model_ema": sd, "epoch": 3, "args": {"lr": 1}})) == {"a", "b.c"}
    assert set(unwrap_state_dict({"model": sd, "model_ema": {"x": torch.ones(1)}})) == {"a", "b.c"}  # model first
    assert set(unwrap_state_dict({"state_dict": {f"module.backbone.{k}": v for k, v in sd.items()}})) == {"a", "b.c"}
    assert set(unwrap_state_dict({f"backbone.{k}": v for k, v in sd.items()})) == {"a", "b.c"}
    mixed = {"backbone.a": torch.ones(1), "classifier.weight": torch.ones(1)}
    assert set(unwrap_state_dict(mixed)) == set(mixed)  # not every key: kept (the ResNet loader takes backbone.*)
    with pytest.raises(PretrainedWeightsError, match="no state dict"):
        unwrap_state_dict({"epoch": 3, "args": {"lr": 1}})


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch_hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hub"


def test_uncached_name_offline_fails_fast(empty_hub):
    import time

    start = time.perf_counter()
    with pytest.raises(PretrainedWeightsError) as e:
        load_pretrained(None, "resnet18.tv_in1k", flag="--irn_pretrained", download_hint="resnet18-5c106cde.pth")
    assert time.perf_counter() - start < 5
    msg = str(e.value)
    assert "--irn_pretrained" in msg and "HF_HUB_OFFLINE" in msg and "resnet18-5c106cde.pth" in msg


def test_cached_name_loads_offline(empty_hub):
    """A timm name in the local HF cache loads with HF_HUB_OFFLINE set, through the real ResNet loader."""
    import torchvision
    from safetensors.torch import save_file

    from net.resnet import build_resnet, load_resnet_imagenet

    state = torchvision.models.resnet18(weights=None).state_dict()
    snapshot = empty_hub / "models--timm--resnet18.tv_in1k" / "snapshots" / ("1" * 40)
    snapshot.mkdir(parents=True)
    (empty_hub / "models--timm--resnet18.tv_in1k" / "refs").mkdir()
    (empty_hub / "models--timm--resnet18.tv_in1k" / "refs" / "main").write_text("1" * 40)
    save_file(state, snapshot / "model.safetensors")
    model = build_resnet(18)
    load_resnet_imagenet(model, 18, None, flag="--irn_pretrained")
    assert torch.equal(model.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_warning_when_timm_resolves_to_other_weights(caplog):
    import logging

    from misc.core.weights import resolve_timm_weights, warn_if_not_original

    assert resolve_timm_weights("resnet152").resolved == "resnet152.a1h_in1k"
    assert resolve_timm_weights("deit_small_patch16_224").resolved == "deit_small_patch16_224.fb_in1k"
    with caplog.at_level(logging.INFO, logger="misc.core.weights"):
        warn_if_not_original("resnet152", "resnet152.tv_in1k", "--cam_cnn_pretrained")
        warn_if_not_original("resnet152.tv2_in1k", "resnet152.tv_in1k", "--cam_cnn_pretrained")
        warn_if_not_original("resnet152.tv_in1k", "resnet152.tv_in1k", "--cam_cnn_pretrained")
        warn_if_not_original("deit_small_patch16_224", "deit_small_patch16_224.fb_in1k", "--deit_pretrained")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "resnet152.a1h_in1k" in warnings[0] and "resnet152.tv_in1k" in warnings[0]
    assert "resnet152.tv2_in1k" in warnings[1] and "numbers may differ" in warnings[1]


def test_unreadable_file_names_flag(tmp_path):
    path = tmp_path / "resnet50-19c8e357.pth"
    path.write_bytes(b"<html>a login page saved as .pth</html>")
    with pytest.raises(PretrainedWeightsError, match=r"--irn_pretrained .*resnet50-19c8e357\.pth: cannot be read"):
        load_pretrained(str(path), "resnet50.tv_in1k", flag="--irn_pretrained", download_hint="h")
