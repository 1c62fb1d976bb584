"""Unit tests of the DeepLab stage library: model shapes / keys / init, loss helpers, poly LR, metric, CRF, data."""
from __future__ import annotations

import random

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from misc.method.crf import crf_inference_softmax, deeplab_crf_guide, wrap_to_uint8
from misc.method.deeplab_utils import PolynomialLR, logits_to_probs, msc_loss, poly_lr, resize_labels
from misc.eval.metrics import deeplab_scores, deeplab_scores_from_hist
from misc.core.weights import PretrainedWeightsError
from net.deeplab_v2 import (DeepLabV2MSC, build_deeplab_v2, load_backbone_init,
                            load_deeplab_checkpoint, param_groups, torchvision_to_deeplab)
from voc12.deeplab_data import (MEAN_BGR, TRAIN_SCALES, DeepLabDataset, deeplab_eval_dataset,
                                deeplab_train_dataset)

TINY = dict(n_classes=5, n_blocks=(1, 1, 1, 1), base_width=4)


def _tiny(**kw) -> DeepLabV2MSC:
    torch.manual_seed(0)
    return build_deeplab_v2(**{**TINY, **kw})


# ------------------------------------------------------------------------------------------------ model
@pytest.mark.parametrize("size,expected", [(321, 41), (65, 9), (97, 13)])
def test_output_stride_8(size, expected):
    base = _tiny(scales=None).eval()
    with torch.no_grad():
        out = base(torch.randn(1, 3, size, size + 8))
    w_expected = {321: 42, 65: 10, 97: 14}[size]  # (W-1)//8 + 1 with the ceil-mode pool
    assert tuple(out.shape) == (1, 5, expected, w_expected)


def test_msc_train_and_eval_outputs():
    model = _tiny()
    x = torch.randn(2, 3, 65, 81)
    model.train()
    with torch.no_grad():
        outs = model(x)
        full = model.base(x)
        half = model.base(F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False))
        three_q = model.base(F.interpolate(x, scale_factor=0.75, mode="bilinear", align_corners=False))
    assert isinstance(outs, list) and len(outs) == 4
    assert tuple(outs[0].shape) == (2, 5, 9, 11)
    torch.testing.assert_close(outs[0], full)
    torch.testing.assert_close(outs[1], half)
    torch.testing.assert_close(outs[2], three_q)
    assert outs[1].shape[-2:] == half.shape[-2:] and outs[2].shape[-2:] == three_q.shape[-2:]
    up = [F.interpolate(t, size=(9, 11), mode="bilinear", align_corners=False) for t in (half, three_q)]
    torch.testing.assert_close(outs[3], torch.maximum(full, torch.maximum(up[0], up[1])))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), outs[3])


def test_frozen_bn_stays_in_eval_and_out_of_optimiser():
    model = _tiny()
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    model.train()
    assert model.training and bn and not any(m.training for m in bn)
    assert not any(p.requires_grad for m in bn for p in m.parameters())
    stats = [m.running_mean.clone() for m in bn]
    model(torch.randn(1, 3, 33, 33))[-1].sum().backward()
    assert all(torch.equal(a, m.running_mean) for a, m in zip(stats, bn))
    groups = param_groups(model, lr=2.5e-4, weight_decay=5e-4)
    assert [g["lr"] for g in groups] == [2.5e-4, 2.5e-3, 5e-3]
    assert [g["weight_decay"] for g in groups] == [5e-4, 5e-4, 0.0]
    n_convs_backbone = sum(1 for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and "layer" in n)
    assert len(groups[0]["params"]) == n_convs_backbone
    assert [tuple(p.shape) for p in groups[2]["params"]] == [(5,)] * 4
    in_groups = {id(p) for g in groups for p in g["params"]}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert in_groups == trainable


def test_aspp_init_and_depth_presets():
    model = _tiny()
    for i in range(4):
        conv = getattr(model.base.aspp, f"c{i}")
        assert conv.dilation == (6 * (i + 1),) * 2 and conv.padding == conv.dilation
        assert torch.all(conv.bias == 0) and abs(conv.weight.std().item() - 0.01) < 0.002
    with torch.device("meta"):
        r50 = build_deeplab_v2(depth=50)
    assert sum(1 for n in r50.state_dict() if n.endswith("reduce.conv.weight")) == 16
    with pytest.raises(ValueError):
        build_deeplab_v2(depth=34)


def test_state_dict_round_trip(tmp_path):
    model = _tiny()
    state = model.state_dict()
    assert "base.layer1.conv1.conv.weight" in state and "base.aspp.c3.bias" in state
    assert "base.layer2.block1.shortcut.bn.running_var" in state and "base.layer5.block1.conv3x3.conv.weight" in state
    path = tmp_path / "checkpoint_final.pth"
    torch.save(state, path)
    other = build_deeplab_v2(**TINY)
    load_deeplab_checkpoint(other, path)
    for k, v in other.state_dict().items():
        assert torch.equal(v, state[k]), k
    bare = build_deeplab_v2(**TINY, scales=None)
    load_deeplab_checkpoint(bare, path)  # 'base.' stripped for the single-scale network
    assert torch.equal(bare.aspp.c0.weight, state["base.aspp.c0.weight"])


def test_coco_layout_init(tmp_path):
    src = _tiny(scales=None)
    coco = {k: v.clone() + 1 for k, v in src.state_dict().items() if not k.startswith("aspp.")}
    coco["fc.weight"], coco["fc.bias"] = torch.zeros(91, 128, 1, 1), torch.zeros(91)
    torch.save(coco, tmp_path / "deeplabv1_resnet101-coco.pth")
    model = _tiny()
    aspp_before = model.base.aspp.c2.weight.clone()
    assert load_backbone_init(model, str(tmp_path / "deeplabv1_resnet101-coco.pth")) == "coco"
    own = model.base.state_dict()
    assert all(torch.equal(own[k], v) for k, v in coco.items() if not k.startswith("fc."))
    assert torch.equal(model.base.aspp.c2.weight, aspp_before)
    with pytest.raises(PretrainedWeightsError):
        load_backbone_init(build_deeplab_v2(**{**TINY, "n_blocks": (2, 1, 1, 1)}),
                           str(tmp_path / "deeplabv1_resnet101-coco.pth"))
    with pytest.raises(PretrainedWeightsError):
        load_backbone_init(model, str(tmp_path / "missing.pth"))


def test_imagenet_torchvision_mapping(tmp_path):
    from torchvision.models.resnet import Bottleneck, ResNet

    torch.manual_seed(0)
    tv = ResNet(Bottleneck, [1, 2, 1, 1])
    tv_state = tv.state_dict()
    mapped = torchvision_to_deeplab(tv_state)
    assert torch.equal(mapped["layer1.conv1.conv.weight"], tv_state["conv1.weight"])
    assert torch.equal(mapped["layer3.block2.conv3x3.conv.weight"], tv_state["layer2.1.conv2.weight"])
    assert torch.equal(mapped["layer5.block1.shortcut.bn.running_var"], tv_state["layer4.0.downsample.1.running_var"])
    assert not any(k.startswith("fc.") for k in mapped)
    torch.save(tv_state, tmp_path / "resnet-tiny.pth")
    model = build_deeplab_v2(n_classes=3, n_blocks=(1, 2, 1, 1))
    assert load_backbone_init(model, str(tmp_path / "resnet-tiny.pth")) == "imagenet"
    own = model.base.state_dict()
    assert all(torch.equal(own[k], v) for k, v in mapped.items())


# ------------------------------------------------------------------------------------------------ loss / LR
def test_resize_labels_non_square():
    labels = torch.from_numpy(np.random.default_rng(0).integers(0, 21, size=(2, 30, 50)))
    labels[:, :3] = 255
    out = resize_labels(labels, (8, 13))
    assert tuple(out.shape) == (2, 8, 13) and out.dtype == torch.int64
    ref = np.asarray(Image.fromarray(labels[1].numpy().astype(np.uint8)).resize((13, 8), Image.NEAREST))
    np.testing.assert_array_equal(out[1].numpy(), ref)
    square = torch.from_numpy(np.random.default_rng(1).integers(0, 21, size=(1, 41, 41)))
    # square maps: same as the original's (H, W)-into-PIL call
    ref_sq = np.asarray(Image.fromarray(square[0].numpy().astype(np.float32)).resize((6, 6), Image.NEAREST))
    np.testing.assert_array_equal(resize_labels(square, (6, 6))[0].numpy(), ref_sq.astype(np.int64))


def test_msc_loss_sums_the_outputs():
    torch.manual_seed(0)
    logits = [torch.randn(2, 4, s, s) for s in (9, 5, 7, 9)]
    labels = torch.randint(0, 4, (2, 65, 65))
    labels[:, :10] = 255
    total, terms = msc_loss(logits, labels)
    assert len(terms) == 4
    expected = [F.cross_entropy(l, resize_labels(labels, l.shape[-2:]), ignore_index=255) for l in logits]
    torch.testing.assert_close(torch.stack(terms), torch.stack(expected))
    torch.testing.assert_close(total, sum(expected))


def test_poly_lr_steps_and_reaches_zero():
    values = [poly_lr(1.0, it, step_size=10, iter_max=100, power=0.9) for it in range(0, 131)]
    assert values[0] == values[9] == 1.0
    assert values[10] == values[19] == pytest.approx(0.9**0.9, rel=1e-15)
    assert values[100] == 0.0 and values[130] == 0.0
    assert poly_lr(2.0, 105, step_size=10, iter_max=105, power=0.9) == 2.0 * (1 - 100 / 105) ** 0.9
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p], "lr": 0.5}])
    sched = PolynomialLR(opt, step_size=10, iter_max=100, power=0.9)
    sched.step(20)
    assert opt.param_groups[0]["lr"] == 0.5 * 0.8**0.9
    state = sched.state_dict()
    sched.step(100)
    assert sched.get_last_lr() == [0.0]
    sched.load_state_dict(state)
    assert sched.get_last_lr() == [0.5 * 0.8**0.9]


# ------------------------------------------------------------------------------------------------ metric
def test_deeplab_scores_hand_made():
    # 3 classes; rows = GT, cols = prediction. Class 2 never in the GT but predicted once.
    gt = np.array([[0, 0, 0, 1], [1, 1, 255, 0]])
    pred = np.array([[0, 0, 1, 1], [1, 2, 2, 0]])
    scores, hist = deeplab_scores([gt], [pred], 3)
    np.testing.assert_array_equal(hist, [[3, 1, 0], [0, 2, 1], [0, 0, 0]])
    # pixel acc 5/7; class acc: 3/4, 2/3, NaN (class 2 absent from GT)
    assert scores["Pixel Accuracy"] == pytest.approx(5 / 7, rel=1e-15)
    assert scores["Mean Accuracy"] == pytest.approx((3 / 4 + 2 / 3) / 2, rel=1e-15)
    # IoU: class 0 = 3/(4+3-3)=3/4, class 1 = 2/(3+3-2)=1/2, class 2 = 0/(0+1-0)=0 (not in the mean: not in GT)
    assert [scores["Class IoU"][i] for i in range(3)] == pytest.approx([0.75, 0.5, 0.0], rel=1e-15)
    assert scores["Mean IoU"] == pytest.approx((0.75 + 0.5) / 2, rel=1e-15)
    assert scores["Frequency Weighted IoU"] == pytest.approx(4 / 7 * 0.75 + 3 / 7 * 0.5, rel=1e-15)
    again = deeplab_scores_from_hist(hist)
    assert again["Mean IoU"] == scores["Mean IoU"]
    nan_case, _ = deeplab_scores([np.array([0, 0])], [np.array([0, 0])], 3)
    assert np.isnan(nan_case["Class IoU"][1]) and nan_case["Mean IoU"] == 1.0


# ------------------------------------------------------------------------------------------------ CRF
def test_wrap_to_uint8():
    x = np.array([-67.008, -0.4, -1.2, 0.9, 151.3, 255.0, -122.675], dtype=np.float32)
    np.testing.assert_array_equal(wrap_to_uint8(x), [189, 0, 255, 0, 151, 255, 134])


def test_crf_on_real_image(real_voc_root):
    path = real_voc_root / "JPEGImages" / "2007_000032.jpg"
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    h, w = image.shape[:2]
    rng = np.random.default_rng(0)
    coarse = torch.from_numpy(rng.normal(size=(1, 21, (h + 7) // 8, (w + 7) // 8)).astype(np.float32))
    coarse[:, 0] += 2.0
    probs = logits_to_probs(coarse, (h, w))
    assert probs.shape == (21, h, w)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    for quirk in (True, False):
        guide = deeplab_crf_guide(image, quirk=quirk)
        assert guide.shape == (h, w, 3) and guide.dtype == np.uint8
        q = crf_inference_softmax(guide, probs, iter_max=3)
        assert q.shape == (21, h, w) and q.dtype == np.float32 and np.isfinite(q).all()
        np.testing.assert_allclose(q.sum(0), 1.0, atol=1e-4)
        label = q.argmax(0)
        assert label.shape == (h, w) and label.min() >= 0 and label.max() < 21
    np.testing.assert_array_equal(deeplab_crf_guide(image, quirk=False), image[..., ::-1])
    with pytest.raises(ValueError):
        crf_inference_softmax(guide[:10], probs)


# ------------------------------------------------------------------------------------------------ data
class _ScriptedRandom:
    """Stands in for ``random``: fixed scale, crop at the origin, no flip."""

    def __init__(self, scale: float, flip: bool = False) -> None:
        self.scale, self.flip, self.calls = scale, flip, []

    def choice(self, seq):
        self.calls.append(("choice", tuple(seq)))
        return self.scale

    def randint(self, a, b):
        self.calls.append(("randint", a, b))
        return a

    def random(self):
        self.calls.append(("random",))
        return 0.1 if self.flip else 0.9


@pytest.fixture
def tiny_voc(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "labels").mkdir()
    image = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "JPEGImages" / "2008_000001.jpg"), image)
    label = np.zeros((40, 50), np.uint8)
    label[10:30, 5:25] = 7
    label[0, :] = 255
    Image.fromarray(label, mode="L").save(tmp_path / "labels" / "2008_000001.png")
    return tmp_path, label


def test_train_dataset_scale_pad_crop(tiny_voc):
    root, label = tiny_voc
    scripted = _ScriptedRandom(1.5)
    ds = DeepLabDataset(["2008_000001"], root, root / "labels", augment=True, crop_size=64, rng=scripted)
    item = ds[0]
    assert [c[0] for c in scripted.calls] == ["choice", "randint", "randint", "random"]
    assert scripted.calls[0][1] == TRAIN_SCALES
    assert item["name"] == "2008_000001"
    assert item["img"].shape == (3, 64, 64) and item["img"].dtype == np.float32
    assert item["label"].shape == (64, 64) and item["label"].dtype == np.int64
    # 40x50 * 1.5 = 60x75 -> padded to 64 rows (label 255, image = mean -> ~0 after subtraction) -> crop 64x64
    assert scripted.calls[1] == ("randint", 0, 0) and scripted.calls[2] == ("randint", 0, 75 - 64)
    assert np.all(item["label"][60:] == 255)
    assert np.abs(item["img"][:, 60:]).max() < 4e-6
    expected = np.asarray(Image.fromarray(label.astype(np.int32)).resize((75, 60), Image.NEAREST))
    np.testing.assert_array_equal(item["label"][:60], expected[:, :64])
    raw = cv2.imread(str(root / "JPEGImages" / "2008_000001.jpg")).astype(np.float32)
    raw = cv2.resize(raw, (75, 60), interpolation=cv2.INTER_LINEAR)[:, :64]
    expected_img = (raw.astype(np.float64) - np.array(MEAN_BGR)).astype(np.float32).transpose(2, 0, 1)
    np.testing.assert_array_equal(item["img"][:, :60], expected_img)
    flipped = DeepLabDataset(["2008_000001"], root, root / "labels", augment=True, crop_size=64,
                             rng=_ScriptedRandom(1.5, flip=True))[0]
    np.testing.assert_array_equal(flipped["label"], item["label"][:, ::-1])
    np.testing.assert_array_equal(flipped["img"], item["img"][:, :, ::-1])


class _RecordingRandom(random.Random):
    def choice(self, seq):
        value = super().choice(seq)
        self.scales = getattr(self, "scales", []) + [value]
        return value


def test_train_dataset_random_scales_real_image(real_voc_root):
    rng = _RecordingRandom(0)
    ds = deeplab_train_dataset(["2007_000032"], real_voc_root, real_voc_root / "SegmentationClass", rng=rng)
    gt = np.asarray(Image.open(real_voc_root / "SegmentationClass" / "2007_000032.png"))
    for _ in range(4):
        item = ds[0]
        assert item["img"].shape == (3, 321, 321) and item["label"].shape == (321, 321)
        assert set(np.unique(item["label"])) <= set(np.unique(gt)) | {255}
    assert len(rng.scales) == 4 and set(rng.scales) <= set(TRAIN_SCALES)


def test_eval_dataset_full_image(tiny_voc, real_voc_root):
    root, label = tiny_voc
    item = deeplab_eval_dataset(["2008_000001"], root, root / "labels")[0]
    assert item["img"].shape == (3, 40, 50)
    np.testing.assert_array_equal(item["label"], label.astype(np.int64))
    no_label = deeplab_eval_dataset(["2007_000032"], real_voc_root)[0]
    assert "label" not in no_label and no_label["img"].shape == (3, 281, 500)
    with pytest.raises(ValueError):
        DeepLabDataset(["x"], root, None, augment=True)
    with pytest.raises(FileNotFoundError):
        deeplab_eval_dataset(["nope"], root)[0]
