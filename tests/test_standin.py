"""The demo's stand-in for ImageNet weights: the pretraining set (object kinds no demo class has), the pretraining
script on its tiny setting, and every file of weights/standin/ loading STRICTLY through the real flags and loaders
into the demo-sized models the steps build."""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from tools.standin_data import STANDIN_STYLES, StandinConfig, make_standin_set, render_standin, image_rng
from misc.core.weights import PretrainedWeightsError
from run_sample import parse_args
from tests.conftest import REPO_ROOT

SHIPPED = REPO_ROOT / "weights" / "standin"
FILES = {"p8": "deit_demo_p8.pth", "p16": "deit_demo_p16.pth", "resnet": "resnet18_w16.pth",
         "deeplab": "deeplab_init_b1111_w16.pth"}
WIDTH = 16  # the stand-in ResNets' base width


# ------------------------------------------------------------------------------------------------ the set
def test_standin_classes_are_other_object_kinds() -> None:
    from cub.synthetic import SHAPES as CUB_SHAPES
    from voc12.synthetic import CLASS_STYLES

    voc = {(s.shape, s.colour, s.texture) for s in CLASS_STYLES}
    ours = [(s.shape, s.colour, s.texture) for s in STANDIN_STYLES]
    assert len(ours) == 32 and len(set(ours)) == 32 and len({s.name for s in STANDIN_STYLES}) == 32
    assert not voc & set(ours)
    shapes = {s.shape for s in STANDIN_STYLES}
    assert not shapes & {s.shape for s in CLASS_STYLES} and not shapes & set(CUB_SHAPES)
    # no single cue gives the class away: every shape has 2 variants, every colour serves several shapes
    assert set(Counter(s.shape for s in STANDIN_STYLES).values()) == {2}
    by_colour: dict = {}
    for s in STANDIN_STYLES:
        by_colour.setdefault(s.colour, set()).add(s.shape)
    assert all(len(v) >= 2 for v in by_colour.values())


def test_standin_images_deterministic_balanced_single_object() -> None:
    cfg = StandinConfig(image_size=64)
    images, labels = make_standin_set(64, seed=3, cfg=cfg, chunk=16)
    assert images.shape == (64, 64, 64, 3) and images.dtype == np.uint8
    assert sorted(Counter(labels.tolist()).values()) == [2] * 32
    again, labels2 = make_standin_set(64, seed=3, cfg=cfg, chunk=64)
    assert np.array_equal(images, again) and np.array_equal(labels, labels2)
    other, _ = make_standin_set(64, seed=4, cfg=cfg)
    assert not np.array_equal(images, other)
    held, held_labels = make_standin_set(32, split="heldout", seed=3, cfg=cfg)
    assert not any(np.array_equal(h, t) for h in held[:4] for t in images)
    # every class draws its object (no distractor: the object's colour must be on the image)
    for cls, style in enumerate(STANDIN_STYLES):
        img = render_standin(image_rng(0, "train", cls), cls, StandinConfig(distractor_prob=0.0, noise_std=0.0))
        near = np.abs(img.astype(int) - np.asarray(style.colour)).max(-1) <= 40
        assert near.mean() > 0.01, style.name


def test_render_image_takes_other_styles() -> None:
    from voc12.synthetic import render_image

    sample = render_image(np.random.default_rng(0), 96, 96, 31, max_objects=3, styles=STANDIN_STYLES)
    assert sample.classes[0] == 32 and all(1 <= c <= 32 for c in sample.classes)


# ------------------------------------------------------------------------------------------------ the script
@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """``tools/pretrain_standin.py --tiny`` (in-process, one job): seconds."""
    from tools.pretrain_standin import main

    out = tmp_path_factory.mktemp("standin_tiny")
    main(["--tiny", "--out", str(out), "--jobs", "1"])
    return out


def test_tiny_run_writes_official_layouts_and_manifest(tiny) -> None:
    import timm

    manifest = json.loads((tiny / "MANIFEST.json").read_text())
    assert set(manifest["files"]) == set(FILES.values())
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((tiny / name).read_bytes()).hexdigest() == entry["sha256"]
        assert 0.0 <= entry["heldout_top1"] <= 1.0 and entry["steps"] >= 1
    deit = torch.load(tiny / FILES["p8"], weights_only=True)
    assert list(deit) == ["model"]
    reference = timm.create_model("deit_small_patch16_224", pretrained=False, embed_dim=64, depth=4, num_heads=2,
                                  patch_size=8, img_size=64, num_classes=32).state_dict()
    assert [(k, tuple(v.shape)) for k, v in deit["model"].items()] == [(k, tuple(v.shape)) for k, v in
                                                                        reference.items()]
    assert deit["model"]["pos_embed"].dtype == torch.float16
    assert torch.load(tiny / FILES["p16"], weights_only=True)["model"]["patch_embed.proj.weight"].shape == \
        (64, 3, 16, 16)
    import torchvision

    tv = torchvision.models.resnet18(weights=None, num_classes=32).state_dict()
    state = torch.load(tiny / FILES["resnet"], weights_only=True)
    assert list(state) == list(tv)
    assert state["conv1.weight"].shape == (WIDTH, 3, 7, 7) and state["fc.weight"].shape == (32, 8 * WIDTH)
    deeplab = torch.load(tiny / FILES["deeplab"], weights_only=True)
    assert deeplab["layer4.0.conv3.weight"].shape == (512, 128, 1, 1) and "layer4.1.conv1.weight" not in deeplab


def test_tiny_run_is_deterministic(tiny, tmp_path) -> None:
    from tools.pretrain_standin import main

    main(["--tiny", "--out", str(tmp_path), "--jobs", "1", "--models", "deit_demo_p8", "resnet18_w16"])
    for name in ("deit_demo_p8.pth", "resnet18_w16.pth"):
        assert (tmp_path / name).read_bytes() == (tiny / name).read_bytes(), name
    main(["--tiny", "--out", str(tmp_path / "s1"), "--jobs", "1", "--models", "deit_demo_p8", "--seed", "1"])
    assert (tmp_path / "s1" / "deit_demo_p8.pth").read_bytes() != (tiny / "deit_demo_p8.pth").read_bytes()


# ------------------------------------------------------------------------------------------------ real flags
def _voc_args(folder: Path, *extra: str):
    return parse_args(["--demo", "--no_pretrained", "false", "--cam_cnn_width", str(WIDTH),
                       "--irn_backbone_width", str(WIDTH),
                       "--deit_pretrained", str(folder / FILES["p8"]),
                       "--cam_cnn_pretrained", str(folder / FILES["resnet"]),
                       "--irn_pretrained", str(folder / FILES["resnet"]),
                       "--deeplab_init", str(folder / FILES["deeplab"]), *extra])


def _cub_args(folder: Path, *extra: str):
    return parse_args(["--dataset", "cub", "--demo", "--no_pretrained", "false", "--wsol_cnn_width", str(WIDTH),
                       "--wsol_image_size", "128", "--wsol_patch_size", "16",
                       "--deit_pretrained", str(folder / FILES["p16"]),
                       "--cam_cnn_pretrained", str(folder / FILES["resnet"]), *extra])


def _file_state(path: Path) -> dict[str, torch.Tensor]:
    from misc.core.weights import load_checkpoint

    return load_checkpoint(path)


def _assert_loaded(own: dict[str, torch.Tensor], file_state: dict[str, torch.Tensor], skip=("fc.", "head.")) -> int:
    """Every file tensor (but the classifier heads) is in the model with the file's value."""
    n = 0
    for key, value in file_state.items():
        if key.startswith(skip):
            continue
        assert key in own, key
        assert torch.equal(own[key], value.to(own[key].dtype)), key
        n += 1
    return n


@pytest.fixture(params=["shipped", "tiny"])
def folder(request, tiny) -> Path:
    if request.param == "shipped":
        missing = [n for n in FILES.values() if not (SHIPPED / n).is_file()]
        if missing:
            pytest.fail(f"stand-in weights missing from {SHIPPED}: {missing} (python tools/pretrain_standin.py)")
        return SHIPPED
    return tiny


def test_voc_demo_models_load_standin_weights_strictly(folder) -> None:
    from misc.method.indexing import PathIndex
    from net.deeplab_v2 import load_backbone_init, torchvision_to_deeplab
    from pipeline.models import build_cam_cnn, build_cam_vit
    from pipeline.models import build_deeplab
    from pipeline.models import build_irn

    args = _voc_args(folder)
    assert (args.vit_embed_dim, args.vit_depth, args.vit_num_heads, args.vit_patch_size, args.vit_tile_size) == \
        (64, 4, 2, 8, 64)
    vit = build_cam_vit(args, pretrained=True)
    deit = _file_state(folder / FILES["p8"])
    assert _assert_loaded(vit.state_dict(), deit) == len(deit) - 2  # all but the file's Linear head
    assert vit.head.weight.shape == (20, 64, 3, 3)

    resnet = _file_state(folder / FILES["resnet"])
    cnn = build_cam_cnn(args, pretrained=True)
    assert _assert_loaded(cnn.backbone.state_dict(), resnet) == len(cnn.backbone.state_dict())
    assert cnn.classifier.weight.shape == (20, 8 * WIDTH, 1, 1)

    irn = build_irn(args, PathIndex(radius=10, default_size=(24, 24)))
    assert _assert_loaded(irn.resnet50.state_dict(), resnet) == len(irn.resnet50.state_dict())
    assert not any(p.requires_grad for p in irn.resnet50.parameters())  # IRNet's backbone stays frozen
    irn.train()
    assert not irn.resnet50.training

    deeplab = build_deeplab(args)
    assert load_backbone_init(deeplab, args.deeplab_init, flag="--deeplab_init") == "imagenet"
    mapped = torchvision_to_deeplab(_file_state(folder / FILES["deeplab"]))
    own = deeplab.base.state_dict()
    assert _assert_loaded(own, mapped) == len([k for k in own if not k.startswith("aspp.")])


def test_cub_demo_models_load_standin_weights_strictly(folder) -> None:
    from pipeline.models import build_wsol_cnn, build_wsol_vit

    args = _cub_args(folder)
    vit = build_wsol_vit(args, pretrained=True)
    deit = _file_state(folder / FILES["p16"])
    assert _assert_loaded(vit.state_dict(), deit) == len(deit) - 2
    cnn = build_wsol_cnn(args, pretrained=True)
    resnet = _file_state(folder / FILES["resnet"])
    assert _assert_loaded(cnn.backbone.state_dict(), resnet) == len(cnn.backbone.state_dict())


def test_preflight_accepts_standin_weights(folder) -> None:
    from pipeline.pretrained_check import check_pretrained_sources

    check_pretrained_sources(_voc_args(folder), ["step.train_cam", "step.train_irn", "step.train_deeplab"])
    check_pretrained_sources(_cub_args(folder), ["step.train_wsol"])


def test_standin_weights_into_wrong_shapes_fail(folder) -> None:
    from pipeline.pretrained_check import check_pretrained_sources
    from pipeline.models import build_cam_cnn, build_cam_vit
    from pipeline.models import build_wsol_vit

    with pytest.raises(PretrainedWeightsError, match=r"--cam_cnn_pretrained.*--cam_cnn_width"):
        build_cam_cnn(_voc_args(folder, "--cam_cnn_width", "64"), pretrained=True)
    with pytest.raises(PretrainedWeightsError, match=r"--deit_pretrained.*patch_embed"):  # p8 file, patch-16 model
        build_wsol_vit(_cub_args(folder, "--deit_pretrained", str(folder / FILES["p8"])), pretrained=True)
    with pytest.raises(PretrainedWeightsError, match=r"--deit_pretrained.*pos_embed"):  # 8x8 grid vs 14x14
        build_cam_vit(_voc_args(folder, "--vit_tile_size", "112"), pretrained=True)
    with pytest.raises(PretrainedWeightsError, match="--irn_pretrained"):
        check_pretrained_sources(_voc_args(folder, "--irn_backbone_width", "32"), ["step.train_irn"])


# ------------------------------------------------------------------------------------------------ shipped files
def test_shipped_manifest_and_sizes() -> None:
    manifest = json.loads((SHIPPED / "MANIFEST.json").read_text())
    assert set(manifest["files"]) == set(FILES.values())
    total = 0
    for name, entry in manifest["files"].items():
        data = (SHIPPED / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], name
        total += len(data)
        assert entry["heldout_top1"] > 0.3, (name, entry["heldout_top1"])  # far above chance (1/32)
    assert total < 5 * 2**20
    assert "not imagenet" in manifest["what"].lower()
    assert (SHIPPED / "README.md").is_file()


def test_demo_presets_match_the_shipped_transformers_architecture() -> None:
    """The head count leaves every tensor's shape alone, so strict loading cannot catch a preset whose transformer has
    other heads than its stand-in was trained with: MANIFEST.json's record of each file must match the preset."""
    files = json.loads((SHIPPED / "MANIFEST.json").read_text())["files"]
    voc = parse_args(["--demo"])
    cub = parse_args(["--demo", "--dataset", "cub"])
    for args, name, patch, size in ((voc, FILES["p8"], voc.vit_patch_size, voc.vit_tile_size),
                                    (cub, FILES["p16"], cub.wsol_patch_size, cub.wsol_image_size)):
        arch = files[name]["architecture"]
        assert (arch["embed_dim"], arch["depth"], arch["num_heads"], arch["patch_size"], arch["img_size"]) == \
            (args.vit_embed_dim, args.vit_depth, args.vit_num_heads, patch, size), name
    assert (voc.vit_num_heads, cub.vit_num_heads) == (2, 4)


def test_demo_preset_loads_the_shipped_standins_through_the_real_flags() -> None:
    """``--demo`` alone selects the shipped files through --deit_pretrained, --cam_cnn_pretrained, --irn_pretrained
    and --deeplab_init (one DeiT file per dataset), at the widths they were trained for."""
    voc = parse_args(["--demo"])
    assert not voc.no_pretrained
    assert Path(voc.deit_pretrained) == SHIPPED / FILES["p8"]
    assert Path(voc.cam_cnn_pretrained) == Path(voc.irn_pretrained) == SHIPPED / FILES["resnet"]
    assert Path(voc.deeplab_init) == SHIPPED / FILES["deeplab"]
    assert (voc.cam_cnn_width, voc.irn_backbone_width, voc.deeplab_base_width) == (WIDTH, WIDTH, WIDTH)
    assert (voc.vit_patch_size, voc.vit_tile_size) == (8, 64)
    cub = parse_args(["--demo", "--dataset", "cub"])
    assert Path(cub.deit_pretrained) == SHIPPED / FILES["p16"]
    assert Path(cub.cam_cnn_pretrained) == SHIPPED / FILES["resnet"]
    assert (cub.wsol_cnn_width, cub.wsol_patch_size, cub.wsol_image_size) == (WIDTH, 16, 128)
    # a user's own file still wins over the preset's
    own = parse_args(["--demo", "--deit_pretrained", "/data/deit_small.pth"])
    assert own.deit_pretrained == "/data/deit_small.pth"
    # the data does not depend on --seed: seeds compare on the same images
    assert parse_args(["--demo", "--seed", "2"]).demo_data_seed == 0
