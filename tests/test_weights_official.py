"""Official-layout weight files (bench.official_weights: random values, exact names / keys / shapes) load strictly
through the real flags and loaders at real widths; wrong or incomplete files fail with the flag and file named."""
from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import pytest
import torch

from bench.official_weights import FILENAMES, write_official_weights
from misc.core.weights import PretrainedWeightsError
from run_sample import parse_args
from tests.conftest import fixtures_dir


def official_weights() -> dict[str, Path]:
    """All official-layout files (seed 0), written once into a temp folder named after the writer's source hash
    (shared by the test modules and later runs; ~760 MB)."""
    import bench.official_weights as writer

    digest = hashlib.sha1(Path(writer.__file__).read_bytes()).hexdigest()[:12]
    return write_official_weights(Path(tempfile.gettempdir()) / f"crt_official_weights_{digest}")


@pytest.fixture(scope="module")
def official() -> dict[str, Path]:
    return official_weights()


def _file(official, name: str) -> dict[str, torch.Tensor]:
    return torch.load(official[name], weights_only=True)


def _deit_state(official) -> dict[str, torch.Tensor]:
    return _file(official, "deit_small")["model"]


# ------------------------------------------------------------------------------------------------ the files
def test_file_names_and_layouts(official) -> None:
    import timm
    import torchvision

    assert {k: p.name for k, p in official.items()} == FILENAMES
    deit = _file(official, "deit_small")
    assert list(deit) == ["model"]
    reference = timm.create_model("deit_small_patch16_224", pretrained=False).state_dict()
    assert [(k, tuple(v.shape)) for k, v in deit["model"].items()] == [(k, tuple(v.shape)) for k, v in reference.items()]
    assert deit["model"]["head.weight"].shape == (1000, 384) and deit["model"]["pos_embed"].shape == (1, 197, 384)
    for depth in (50, 101, 152):
        state = _file(official, f"resnet{depth}")
        tv = getattr(torchvision.models, f"resnet{depth}")(weights=None).state_dict()
        expected = [(k, tuple(v.shape)) for k, v in tv.items() if not k.endswith("num_batches_tracked")]
        assert [(k, tuple(v.shape)) for k, v in state.items()] == expected
        assert state["fc.weight"].shape == (1000, 2048)
        assert not torch.equal(state["bn1.weight"], torch.ones(64))  # 1-dim tensors are random too


def test_deeplab_coco_file_matches_the_real_key_list(official) -> None:
    """The real deeplabv1_resnet101-coco.pth key list (626 entries, recorded in the deeplab fixture)."""
    path = fixtures_dir() / "deeplab_forward.json"
    if not path.is_file():
        pytest.fail(f"fixture missing: {path}")
    entries = json.loads(path.read_text())["config"]["coco_init_layout"]["entries"]
    state = _file(official, "deeplab_coco")
    got = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in state.items()]
    assert len(got) == 626 and got == entries


def test_files_are_deterministic(official, tmp_path) -> None:
    again = write_official_weights(tmp_path, which=("deit_small",), seed=0)
    a, b = _deit_state(official), torch.load(again["deit_small"], weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = torch.load(write_official_weights(tmp_path / "s1", which=("deit_small",), seed=1)["deit_small"],
                       weights_only=True)["model"]
    assert not torch.equal(a["blocks.0.norm1.weight"], other["blocks.0.norm1.weight"])


# ------------------------------------------------------------------------------------------------ real loaders
def test_deit_official_file_through_train_cam_builder(official) -> None:
    from pipeline.models import build_cam_vit

    args = parse_args(["--deit_pretrained", str(official["deit_small"])])
    model = build_cam_vit(args, pretrained=True)
    state, own = _deit_state(official), model.state_dict()
    assert set(own) - set(state) == set() and own["head.weight"].shape == (20, 384, 3, 3)
    for key, value in own.items():
        if not key.startswith("head."):
            assert torch.equal(value, state[key]), key


def test_deit_and_resnet50_official_files_through_train_wsol_builders(official) -> None:
    from pipeline.models import build_wsol_cnn, build_wsol_vit

    args = parse_args(["--dataset", "cub", "--deit_pretrained", str(official["deit_small"]),
                       "--cam_cnn_pretrained", str(official["resnet50"])])
    vit = build_wsol_vit(args, pretrained=True)
    assert torch.equal(vit.blocks[11].mlp.fc2.weight, _deit_state(official)["blocks.11.mlp.fc2.weight"])
    cnn = build_wsol_cnn(args, pretrained=True)
    tv = _file(official, "resnet50")
    assert torch.equal(cnn.backbone.layer4[2].bn3.running_var, tv["layer4.2.bn3.running_var"])
    assert int(cnn.backbone.bn1.num_batches_tracked) == 0  # absent from the 2017 file


def test_resnet152_official_file_through_train_cam_builder(official) -> None:
    from pipeline.models import build_cam_cnn

    args = parse_args(["--cam_cnn_pretrained", str(official["resnet152"])])
    model = build_cam_cnn(args, pretrained=True)
    tv = _file(official, "resnet152")
    own = model.backbone.state_dict()
    for key, value in tv.items():
        if not key.startswith("fc."):
            assert torch.equal(own[key], value), key


def test_resnet50_official_file_through_train_irn_builder(official) -> None:
    from misc.method.indexing import PathIndex
    from pipeline.models import build_irn

    args = parse_args(["--irn_pretrained", str(official["resnet50"])])
    model = build_irn(args, PathIndex(radius=10, default_size=(32, 32)))
    tv = _file(official, "resnet50")
    assert torch.equal(model.resnet50.layer3[5].conv2.weight, tv["layer3.5.conv2.weight"])
    assert not any(p.requires_grad for p in model.resnet50.parameters())


def test_deeplab_coco_and_imagenet_files_through_train_deeplab(official) -> None:
    from net.deeplab_v2 import load_backbone_init
    from pipeline.models import build_deeplab

    args = parse_args(["--deeplab_init", str(official["deeplab_coco"])])
    model = build_deeplab(args)
    aspp = model.base.aspp.c1.weight.detach().clone()
    assert load_backbone_init(model, args.deeplab_init, depth=args.deeplab_depth, flag="--deeplab_init") == "coco"
    coco = _file(official, "deeplab_coco")
    own = model.base.state_dict()
    assert all(torch.equal(own[k], v) for k, v in coco.items() if not k.startswith("fc."))
    assert torch.equal(model.base.aspp.c1.weight, aspp)
    layout = load_backbone_init(model, str(official["resnet101"]), depth=101, flag="--deeplab_init")
    assert layout == "imagenet"
    tv = _file(official, "resnet101")
    assert torch.equal(model.base.layer4.block23.increase.bn.running_mean, tv["layer3.22.bn3.running_mean"])


# ------------------------------------------------------------------------------------------------ failures
def test_resnet_file_given_as_deit_fails_naming_flag_and_file(official) -> None:
    from pipeline.models import build_cam_vit

    args = parse_args(["--deit_pretrained", str(official["resnet50"])])
    with pytest.raises(PretrainedWeightsError) as err:
        build_cam_vit(args, pretrained=True)
    msg = str(err.value)
    assert "--deit_pretrained" in msg and "resnet50-19c8e357.pth" in msg
    assert "cls_token" in msg and "conv1.weight" in msg


def test_resnet_file_of_another_depth_fails(official) -> None:
    from pipeline.models import build_cam_cnn

    args = parse_args(["--cam_cnn_pretrained", str(official["resnet50"])])  # default --cam_cnn_depth 152
    with pytest.raises(PretrainedWeightsError, match=r"--cam_cnn_pretrained.*resnet50-19c8e357\.pth.*ResNet-50"):
        build_cam_cnn(args, pretrained=True)


def test_deeplab_coco_file_for_resnet50_fails(official) -> None:
    from net.deeplab_v2 import build_deeplab_v2, load_backbone_init

    model = build_deeplab_v2(depth=50)
    with pytest.raises(PretrainedWeightsError, match="--deeplab_init.*deeplabv1_resnet101-coco.pth"):
        load_backbone_init(model, str(official["deeplab_coco"]), depth=50)


# ------------------------------------------------------------------------------------------------ DeiT wrappers
def _deit_model(**kw):
    from net.deit_cam import deit_cam_small

    torch.manual_seed(1)
    return deit_cam_small(**kw)


@pytest.mark.parametrize("wrap", [
    lambda s: {"model_ema": s, "epoch": 299},
    lambda s: {"state_dict": {f"module.backbone.{k}": v for k, v in s.items()}, "optimizer": {}},
    lambda s: {"model": {f"backbone.{k}": v for k, v in s.items()}},
    lambda s: dict(s),  # timm's raw state dict
], ids=["model_ema", "state_dict+module.backbone.", "model+backbone.", "raw"])
def test_deit_wrapped_files_load(official, tmp_path, wrap) -> None:
    from net.deit_cam import load_deit_imagenet

    state = _deit_state(official)
    path = tmp_path / "wrapped.pth"
    torch.save(wrap(state), path)
    model = _deit_model()
    load_deit_imagenet(model, str(path), flag="--deit_pretrained")
    assert torch.equal(model.pos_embed, state["pos_embed"])
    assert torch.equal(model.blocks[7].attn.qkv.bias, state["blocks.7.attn.qkv.bias"])


def _save_edited(official, tmp_path, edit) -> str:
    state = dict(_deit_state(official))
    edit(state)
    path = tmp_path / "edited.pth"
    torch.save({"model": state}, path)
    return str(path)


def test_deit_file_missing_a_block_fails(official, tmp_path) -> None:
    from net.deit_cam import load_deit_imagenet

    def drop_block(state):
        for k in [k for k in state if k.startswith("blocks.11.")]:
            del state[k]

    path = _save_edited(official, tmp_path, drop_block)
    model = _deit_model()
    before = model.blocks[0].attn.qkv.weight.detach().clone()
    with pytest.raises(PretrainedWeightsError, match=r"--deit_pretrained .*edited\.pth.*blocks\.11\."):
        load_deit_imagenet(model, path, flag="--deit_pretrained")
    assert torch.equal(model.blocks[0].attn.qkv.weight, before)  # nothing half-loaded


def test_deit_file_with_unknown_keys_or_other_grid_fails(official, tmp_path) -> None:
    from net.deit_cam import load_deit_imagenet

    path = _save_edited(official, tmp_path, lambda s: s.update(dist_token=torch.zeros(1, 1, 384)))
    with pytest.raises(PretrainedWeightsError, match="dist_token"):
        load_deit_imagenet(_deit_model(), path, flag="--deit_pretrained")
    with pytest.raises(PretrainedWeightsError, match=r"pos_embed: file \(1, 197, 384\) vs model \(1, 785, 384\)"):
        load_deit_imagenet(_deit_model(tile_size=448), str(official["deit_small"]), flag="--deit_pretrained")


def test_deit_head_of_the_same_shape_is_loaded(tmp_path) -> None:
    """A DeiTCAM checkpoint given as --deit_pretrained keeps its conv head; a head of another shape is dropped."""
    from net.deit_cam import load_deit_imagenet

    src = _deit_model()
    torch.nn.init.normal_(src.head.weight)
    path = tmp_path / "deits_cam.pth"
    torch.save(src.state_dict(), path)
    model = _deit_model()
    load_deit_imagenet(model, str(path), flag="--deit_pretrained")
    assert torch.equal(model.head.weight, src.head.weight)
    other = _deit_model(num_classes=200)
    head = other.head.weight.detach().clone()
    load_deit_imagenet(other, str(path), flag="--deit_pretrained")
    assert torch.equal(other.head.weight, head) and torch.equal(other.norm.weight, src.norm.weight)
