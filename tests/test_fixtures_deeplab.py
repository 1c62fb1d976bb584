"""DeepLab stage against the golden outputs of deeplab-pytorch (fixtures deeplab_*; README_wsol_deeplab.md)."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from misc.method.crf import crf_inference_softmax, deeplab_crf_guide
from misc.method.deeplab_utils import PolynomialLR, logits_to_probs, msc_loss, resize_labels
from misc.eval.metrics import deeplab_scores
from net.deeplab_v2 import build_deeplab_v2, named_param_groups
from tests.conftest import load_fixture
from voc12.deeplab_data import read_image_bgr, subtract_mean

pytestmark = pytest.mark.fixtures

OUTPUT_NAMES = ("1x", "0.5x", "0.75x", "max")


def _rebuild_weights(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """config.weight_init: one float64 standard-normal draw per state_dict entry in key order."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros_like(value)
            continue
        z = rng.standard_normal(tuple(value.shape))
        if value.dim() == 4:
            w = z * np.sqrt(1.0 / np.prod(value.shape[1:]))
        elif key.endswith(".bn.weight"):
            w = 1.0 + 0.1 * z
        elif key.endswith(".running_var"):
            w = 1.0 + np.abs(0.1 * z)
        else:
            w = 0.1 * z
        out[key] = torch.from_numpy(w.astype(np.float32))
    return out


def _bgr_batch(images_u8: np.ndarray) -> torch.Tensor:
    """(N,H,W,3) uint8 BGR → (N,3,H,W) float32 centred as the original (config.input_recipe)."""
    return torch.from_numpy(np.stack([subtract_mean(im).transpose(2, 0, 1) for im in images_u8]))


def _layout(state: dict[str, torch.Tensor]) -> list[list]:
    return [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in state.items()]


@pytest.fixture(scope="module")
def forward_case():
    meta, arrays = load_fixture("deeplab_forward")
    cfg = meta["config"]
    torch.manual_seed(0)
    model = build_deeplab_v2(cfg["n_classes"], n_blocks=cfg["n_blocks"], scales=cfg["msc_scales"],
                             atrous_rates=cfg["atrous_rates"])
    weights = _rebuild_weights(model, cfg["weight_seed"])
    model.load_state_dict(weights, strict=True)
    return meta, arrays, model, weights


def test_deeplab_forward_weights_rebuild(forward_case):
    meta, arrays, model, weights = forward_case
    assert _layout(model.state_dict()) == meta["config"]["state_dict_keys"]
    sums = np.array([v.double().sum().item() if v.is_floating_point() else 0.0 for v in weights.values()])
    sumsq = np.array([(v.double() ** 2).sum().item() if v.is_floating_point() else 0.0 for v in weights.values()])
    np.testing.assert_allclose(sums, arrays["weights_sum"], rtol=1e-9, atol=0)
    np.testing.assert_allclose(sumsq, arrays["weights_sumsq"], rtol=1e-9, atol=0)


def test_deeplab_forward_real_checkpoint_layout():
    """Our full DeepLabV2_ResNet101_MSC has exactly the real checkpoint's keys/shapes/dtypes, in order."""
    meta, _ = load_fixture("deeplab_forward")
    cfg = meta["config"]
    real = cfg["real_checkpoint_layout"]
    with torch.device("meta"):
        model = build_deeplab_v2(cfg["n_classes"], depth=101)
    layout = _layout(model.state_dict())
    assert len(layout) == real["n_entries"]
    assert layout == real["entries"]
    # the COCO init (DeepLabV1 layout) covers the whole backbone; only its fc.* are extra, only aspp.* are missing
    coco = {e[0]: e[1] for e in cfg["coco_init_layout"]["entries"]}
    base = {k[len("base."):]: list(v.shape) for k, v in model.state_dict().items()}
    assert {k for k in base if k not in coco} == {k for k in base if k.startswith("aspp.")}
    assert {k for k in coco if k not in base} == {k for k in coco if k.startswith("fc.")}
    assert all(coco[k] == shape for k, shape in base.items() if k in coco)


def test_deeplab_forward_param_groups(forward_case):
    meta, _, model, _ = forward_case
    names = {key: [n for n, _ in group] for key, group in named_param_groups(model).items()}
    assert names == meta["config"]["param_groups"]


def _assert_logits(ours: torch.Tensor, ref: np.ndarray) -> None:
    assert tuple(ours.shape) == ref.shape
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def test_deeplab_forward_eval_and_train(forward_case):
    meta, arrays, model, _ = forward_case
    x = _bgr_batch(arrays["image_bgr"][None])
    h, w = x.shape[-2:]
    cols, rows = torch.arange(1, w + 1, dtype=torch.float64), torch.arange(1, h + 1, dtype=torch.float64)[:, None]
    xd = x[0].double()
    checksum = [xd.sum().item(), (xd * cols).sum().item(), (xd * rows).sum().item()]
    np.testing.assert_allclose(checksum, arrays["input_checksum"], rtol=1e-12)

    model.eval()
    with torch.no_grad():
        _assert_logits(model(x), arrays["eval_logits"])
    model.train()
    assert not any(m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():
        outs = model(x)
    assert len(outs) == 4
    for out, name in zip(outs, OUTPUT_NAMES):
        _assert_logits(out, arrays[f"train_logits_{name}"])


def test_deeplab_forward_loss(forward_case):
    meta, arrays, model, _ = forward_case
    model.train()
    x = _bgr_batch(arrays["sq_images_bgr"])
    labels = torch.from_numpy(arrays["sq_labels"])
    with torch.no_grad():
        outs = model(x)
    _assert_logits(outs[-1], arrays["sq_logits_max"])
    for out, name in zip(outs, OUTPUT_NAMES):
        resized = resize_labels(labels, out.shape[-2:])
        assert resized.dtype == torch.int64
        np.testing.assert_array_equal(resized.numpy(), arrays[f"sq_resized_labels_{name}"])
    total, terms = msc_loss(outs, labels)
    np.testing.assert_allclose([t.item() for t in terms], arrays["loss_terms"], rtol=1e-5)
    np.testing.assert_allclose(total.item() / meta["config"]["iter_size"], arrays["loss_total"], rtol=1e-5)


def _check_scores(ours: dict, arrays: dict, case: str) -> None:
    for key, name in [("Pixel Accuracy", "pixel_acc"), ("Mean Accuracy", "mean_acc"),
                      ("Frequency Weighted IoU", "fw_iou"), ("Mean IoU", "mean_iou")]:
        np.testing.assert_allclose(ours[key], arrays[f"{name}_{case}"], rtol=1e-12)
    class_iou = np.array([ours["Class IoU"][i] for i in range(len(ours["Class IoU"]))])
    np.testing.assert_array_equal(np.isnan(class_iou), np.isnan(arrays[f"class_iou_{case}"]))
    np.testing.assert_allclose(class_iou, arrays[f"class_iou_{case}"], rtol=1e-12, equal_nan=True)


def test_deeplab_scores():
    meta, arrays = load_fixture("deeplab_scores")
    n_class, n_images = meta["config"]["n_class"], meta["config"]["n_images"]
    gts = [arrays[f"gt{i}"].astype(np.int64) for i in range(n_images)]
    preds = [arrays[f"pred{i}"].astype(np.int64) for i in range(n_images)]
    scores_a, hist_a = deeplab_scores(gts, preds, n_class)
    np.testing.assert_array_equal(hist_a, arrays["hist_A"])
    _check_scores(scores_a, arrays, "A")
    scores_b, hist_b = deeplab_scores(gts, [np.where(g == 255, 0, g) for g in gts], n_class)
    np.testing.assert_array_equal(hist_b, arrays["hist_B"])
    _check_scores(scores_b, arrays, "B")


def _class_checksum(maps: np.ndarray) -> np.ndarray:
    """Per class [sum, sum(v*(col+1)), sum(v*(row+1))] in float64 of (C,H,W) maps."""
    c, h, w = maps.shape
    m = maps.astype(np.float64)
    cols, rows = np.arange(1, w + 1, dtype=np.float64), np.arange(1, h + 1, dtype=np.float64)[:, None]
    return np.stack([m.sum(axis=(1, 2)), (m * cols).sum(axis=(1, 2)), (m * rows).sum(axis=(1, 2))], axis=1)


def test_deeplab_crf(real_voc_root):
    meta, arrays = load_fixture("deeplab_crf")
    cfg = meta["config"]
    image_name = re.split(r"\s", cfg["image"].strip())[0]
    image = read_image_bgr(real_voc_root / "JPEGImages" / image_name)
    assert list(image.shape[:2]) == cfg["image_hw"]
    np.testing.assert_array_equal(_class_checksum(image.transpose(2, 0, 1)), arrays["image_bgr_checksum"])

    guide = deeplab_crf_guide(image.astype(np.uint8), quirk=True, mean_bgr=tuple(cfg["mean_bgr"]))
    np.testing.assert_array_equal(guide, arrays["guide_bgr_wrapped"])

    probs = logits_to_probs(arrays["logit"], image.shape[:2])
    assert probs.shape == (cfg["n_classes"], *cfg["image_hw"]) and probs.dtype == np.float32
    np.testing.assert_allclose(_class_checksum(probs), arrays["prob_class_checksum"], rtol=1e-6)
    np.testing.assert_array_equal(probs.argmax(0), arrays["nocrf_label"])

    q = crf_inference_softmax(guide, probs, **cfg["crf"])
    assert q.shape == probs.shape and q.dtype == np.float32
    np.testing.assert_allclose(q[:, 8::16, 8::16], arrays["q_sub"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(_class_checksum(q), arrays["q_class_checksum"], rtol=1e-5)

    label = q.argmax(0)
    top2 = np.sort(q, axis=0)[-2:]
    decided = (top2[1] - top2[0]) >= 1e-4
    np.testing.assert_array_equal(label[decided], arrays["crf_label"][decided])
    assert (label != arrays["crf_label"]).sum() <= (~decided).sum()

    scores, _ = deeplab_scores([arrays["gt_label"]], [arrays["crf_label"]], cfg["n_classes"])
    np.testing.assert_allclose(scores["Pixel Accuracy"], arrays["crf_pixel_acc"], rtol=1e-12)
    np.testing.assert_allclose(scores["Mean Accuracy"], arrays["crf_mean_acc"], rtol=1e-12)
    np.testing.assert_allclose(scores["Frequency Weighted IoU"], arrays["crf_fw_iou"], rtol=1e-12)
    np.testing.assert_allclose(scores["Mean IoU"], arrays["crf_mean_iou"], rtol=1e-12)
    class_iou = np.array([scores["Class IoU"][i] for i in range(cfg["n_classes"])])
    np.testing.assert_allclose(class_iou, arrays["crf_class_iou"], rtol=1e-12, equal_nan=True)
    if decided.all():
        ours, _ = deeplab_scores([arrays["gt_label"]], [label], cfg["n_classes"])
        assert ours["Mean IoU"] == scores["Mean IoU"]


def test_deeplab_poly_lr():
    meta, arrays = load_fixture("deeplab_poly_lr")
    cfg = meta["config"]
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in cfg["base_lrs"]]
    optimizer = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, cfg["base_lrs"])],
                                momentum=0.9)
    scheduler = PolynomialLR(optimizer, step_size=cfg["step_size"], iter_max=cfg["iter_max"], power=cfg["power"])
    lrs = []
    for it in range(1, cfg["n_iter"] + 1):
        optimizer.step()
        scheduler.step(it)
        lrs.append([g["lr"] for g in optimizer.param_groups])
    np.testing.assert_allclose(np.array(lrs), arrays["lrs"], rtol=1e-12, atol=0)
