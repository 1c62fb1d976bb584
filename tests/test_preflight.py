"""pipeline.preflight: every pretrained source of the planned steps is checked in seconds, all problems in one error."""
from __future__ import annotations

import http.server
import logging
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

from pipeline.pretrained_check import check_pretrained_sources, needs_for
from misc.core.weights import PretrainedWeightsError
from run_sample import parse_args
from tests.test_weights_official import official_weights

VOC_TRAIN = ["step.train_cam", "step.train_irn", "step.train_deeplab"]


@pytest.fixture(scope="module")
def official() -> dict[str, Path]:
    return official_weights()


@pytest.fixture
def empty_caches(tmp_path, monkeypatch) -> Path:
    """Empty HF hub and torch hub caches; HF_HUB_OFFLINE unset."""
    from huggingface_hub import constants

    hub = tmp_path / "hf_hub"
    hub.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch_hub"))
    return hub


def _good_args(official, *extra: str):
    return parse_args(["--deit_pretrained", str(official["deit_small"]),
                       "--cam_cnn_pretrained", str(official["resnet152"]),
                       "--irn_pretrained", str(official["resnet50"]),
                       "--deeplab_init", str(official["deeplab_coco"]), *extra])


def test_official_files_pass_at_real_widths_in_seconds(official, caplog) -> None:
    import net.deeplab_v2  # noqa: F401  (imports are the steps' cost, not the check's)
    import net.deit_cam  # noqa: F401

    args = _good_args(official)
    check_pretrained_sources(args, VOC_TRAIN + ["step.make_cam", "step.eval_cam"])
    start = time.perf_counter()
    with caplog.at_level(logging.INFO, logger="pipeline.pretrained_check"):
        check_pretrained_sources(args, VOC_TRAIN)
    elapsed = time.perf_counter() - start
    assert elapsed < 10, f"preflight took {elapsed:.1f} s at real widths"
    assert "4 pretrained source(s) checked" in caplog.text
    cub = parse_args(["--dataset", "cub", "--deit_pretrained", str(official["deit_small"]),
                      "--cam_cnn_pretrained", str(official["resnet50"])])
    check_pretrained_sources(cub, ["step.train_wsol", "step.eval_wsol"])
    imagenet_init = _good_args(official, "--deeplab_init", str(official["resnet101"]))
    check_pretrained_sources(imagenet_init, ["step.train_deeplab"])


def test_every_bad_source_in_one_error(official, tmp_path) -> None:
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    args = parse_args(["--deit_pretrained", str(official["resnet50"]),       # wrong model
                       "--cam_cnn_pretrained", str(tmp_path / "missing152.pth"),  # missing
                       "--irn_pretrained", str(broken),                        # unreadable
                       "--deeplab_init", str(official["resnet50"])])          # wrong depth
    with pytest.raises(PretrainedWeightsError) as err:
        check_pretrained_sources(args, VOC_TRAIN)
    msg = str(err.value)
    assert msg.startswith("4 pretrained weight source(s) cannot be used")
    lines = [line for line in msg.splitlines() if line.startswith("  - ")]
    assert [line.split()[1] for line in lines] == ["--deit_pretrained", "--cam_cnn_pretrained", "--irn_pretrained",
                                                   "--deeplab_init"]
    assert "not a DeiT state dict" in lines[0] and "resnet50-19c8e357.pth" in lines[0]
    assert "file not found" in lines[1] and "resnet152-b121ed2d.pth" in lines[1] and "--no_pretrained" in lines[1]
    assert "cannot be read" in lines[2]
    assert "layer4.block23" in lines[3] or "layer4.block7" in lines[3]


def test_only_the_planned_steps_are_checked(official, tmp_path) -> None:
    args = _good_args(official, "--cam_cnn_pretrained", str(tmp_path / "missing.pth"))
    check_pretrained_sources(args, ["step.train_irn", "step.train_deeplab", "step.make_cam"])
    with pytest.raises(PretrainedWeightsError, match="--cam_cnn_pretrained"):
        check_pretrained_sources(args, ["step.train_cam"])


def test_no_pretrained_checks_nothing(tmp_path) -> None:
    args = parse_args(["--no_pretrained", "--deit_pretrained", str(tmp_path / "nope.pth"),
                       "--deeplab_init", "no_such_timm_model"])
    assert needs_for(args, VOC_TRAIN) == []
    check_pretrained_sources(args, VOC_TRAIN + ["step.train_wsol"])


def test_uncached_timm_name_offline_fails_fast(empty_caches, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = parse_args([])  # all defaults: timm *.tv_in1k / deit fb_in1k names
    start = time.perf_counter()
    with pytest.raises(PretrainedWeightsError) as err:
        check_pretrained_sources(args, VOC_TRAIN)
    assert time.perf_counter() - start < 5
    msg = str(err.value)
    for flag, name in [("--deit_pretrained", "deit_small_patch16_224.fb_in1k"),
                       ("--cam_cnn_pretrained", "resnet152.tv_in1k"), ("--irn_pretrained", "resnet50.tv_in1k"),
                       ("--deeplab_init", "resnet101.tv_in1k")]:
        assert f"  - {flag} {name} " in msg
    assert "HF_HUB_OFFLINE" in msg and "resnet152-b121ed2d.pth" in msg and "deeplabv1_resnet101-coco.pth" in msg


@pytest.fixture
def silent_server():
    """A local port that accepts connections and never answers (a hanging network)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def test_uncached_timm_name_unreachable_hub_fails_within_the_timeout(empty_caches, monkeypatch, silent_server):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", silent_server)
    args = parse_args(["--irn_pretrained", "resnet50.tv_in1k"])
    start = time.perf_counter()
    hung = r"127\.0\.0\.1:\d+ (did not answer within 1 s|not reachable .*timed out)"
    with pytest.raises(PretrainedWeightsError, match=r"--irn_pretrained resnet50\.tv_in1k .*" + hung):
        check_pretrained_sources(args, ["step.train_irn"], network_timeout_s=1.0)
    assert time.perf_counter() - start < 3


class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:  # noqa: N802
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_uncached_timm_name_with_reachable_hub_passes(empty_caches, monkeypatch, caplog) -> None:
    from huggingface_hub import constants

    server = http.server.HTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        with caplog.at_level(logging.INFO, logger="pipeline.pretrained_check"):
            check_pretrained_sources(parse_args([]), ["step.train_irn"])
    finally:
        server.shutdown()
    assert "not cached; timm will download it" in caplog.text


def _cache_timm_file(hub: Path, repo: str, state: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    folder = hub / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    (folder / "snapshots" / ("0" * 40)).mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "snapshots" / ("0" * 40) / "model.safetensors")


def test_cached_timm_name_is_checked_like_a_file(empty_caches, monkeypatch) -> None:
    import torchvision

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _cache_timm_file(empty_caches, "timm/resnet18.tv_in1k", torchvision.models.resnet18(weights=None).state_dict())
    _cache_timm_file(empty_caches, "timm/resnet34.tv_in1k", torchvision.models.resnet18(weights=None).state_dict())
    check_pretrained_sources(parse_args(["--irn_backbone_depth", "18"]), ["step.train_irn"])
    with pytest.raises(PretrainedWeightsError, match=r"--irn_pretrained resnet34\.tv_in1k .*ResNet-18"):
        check_pretrained_sources(parse_args(["--irn_backbone_depth", "34"]), ["step.train_irn"])


def test_bare_timm_name_warns_about_other_weights(empty_caches, monkeypatch, caplog) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with caplog.at_level(logging.WARNING, logger="misc.core.weights"), pytest.raises(PretrainedWeightsError):
        check_pretrained_sources(parse_args(["--irn_pretrained", "resnet50", "--deit_pretrained",
                                             "deit_small_patch16_224", "--cam_cnn_pretrained", "resnet152.tv_in1k"]),
                                 ["step.train_irn", "step.train_cam"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # deit's default tag and resnet152.tv_in1k are the original's
    assert "--irn_pretrained resnet50" in warnings[0] and "resnet50.a1_in1k" in warnings[0]
    assert "resnet50.tv_in1k" in warnings[0] and "numbers may differ" in warnings[0]


def test_meta_models_match_the_step_builders() -> None:
    """The preflight's receiving models (built on meta) have the keys and shapes of the steps' real models."""
    from pipeline.pretrained_check import _meta_state
    from net.deeplab_v2 import build_deeplab_v2
    from net.deit_cam import DeiTCAM
    from net.resnet import build_resnet
    from pipeline.models import build_cam_cnn, build_cam_vit, build_deeplab, build_wsol_vit

    args = parse_args(["--demo"])
    shapes = lambda sd: {k: tuple(v.shape) for k, v in sd.items()}  # noqa: E731
    meta = _meta_state(lambda: DeiTCAM(num_classes=20, embed_dim=args.vit_embed_dim, depth=args.vit_depth,
                                       num_heads=args.vit_num_heads, patch_size=args.vit_patch_size,
                                       tile_size=args.vit_tile_size))
    assert all(v.device.type == "meta" for v in meta.values())
    assert shapes(meta) == shapes(build_cam_vit(args, pretrained=False).state_dict())
    assert shapes(_meta_state(lambda: build_resnet(args.cam_cnn_depth, base_width=args.cam_cnn_width))) == \
        shapes(build_cam_cnn(args, pretrained=False).backbone.state_dict())
    base = build_deeplab(args)
    base = getattr(base, "base", base)
    assert shapes(_meta_state(lambda: build_deeplab_v2(n_classes=21, depth=args.deeplab_depth,
                                                       n_blocks=args.deeplab_blocks,
                                                       base_width=args.deeplab_base_width, scales=None))) == \
        shapes(base.state_dict())
    cub = parse_args(["--demo", "--dataset", "cub"])
    assert shapes(_meta_state(lambda: DeiTCAM(num_classes=cub.wsol_num_classes, embed_dim=cub.vit_embed_dim,
                                              depth=cub.vit_depth, num_heads=cub.vit_num_heads,
                                              patch_size=cub.wsol_patch_size, tile_size=cub.wsol_image_size,
                                              tiled=False))) == \
        shapes(build_wsol_vit(cub, pretrained=False).state_dict())
    torch.nn.Linear(2, 2)  # the nn.init / register patches are undone
    assert torch.nn.Linear(2, 2).weight.device.type == "cpu" and torch.nn.Linear(2, 2).weight.abs().sum() > 0
