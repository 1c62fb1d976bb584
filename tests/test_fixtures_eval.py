"""Fixture `eval_cam` (both the eval_cam and the eval_sem_seg parts) against the original's outputs."""
import numpy as np
import pytest

from misc.eval.metrics import gt_to_chainer, iou_from_confusion, semantic_confusion
from step.eval_cam import cam_to_seed, evaluate_seeds
from step.eval_sem_seg import evaluate_masks
from tests.conftest import load_fixture

pytestmark = pytest.mark.fixtures


def _n_images(arrays):
    return len([k for k in arrays if k.startswith("gt")])


def test_eval_cam_fixture():
    meta, a = load_fixture("eval_cam")
    n = _n_images(a)
    thres = meta["config"]["cam_eval_thres"]
    preds = []
    for i in range(n):
        pred = cam_to_seed(a[f"high_res{i}"], a[f"keys{i}"], thres)
        np.testing.assert_array_equal(pred, a[f"pred{i}"])
        preds.append(pred)
    conf = semantic_confusion(preds, [gt_to_chainer(a[f"gt{i}"]) for i in range(n)])
    np.testing.assert_array_equal(conf, a["confusion"])
    iou = iou_from_confusion(conf)
    np.testing.assert_allclose(iou, a["iou"], rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(np.nanmean(iou), a["miou"], rtol=1e-12)
    res = evaluate_seeds([{"high_res": a[f"high_res{i}"], "keys": a[f"keys{i}"]} for i in range(n)],
                         [a[f"gt{i}"] for i in range(n)], [thres])[thres]
    np.testing.assert_allclose(res["miou"], a["miou"], rtol=1e-12)


def test_eval_sem_seg_fixture():
    _, a = load_fixture("eval_cam")
    n = _n_images(a)
    preds = [a[f"sem_pred_png{i}"] for i in range(n)]
    for i in range(n):
        np.testing.assert_array_equal(np.where(preds[i] == 255, 0, preds[i]), a[f"sem_pred{i}"])
    full = semantic_confusion([a[f"sem_pred{i}"] for i in range(n)], [gt_to_chainer(a[f"gt{i}"]) for i in range(n)])
    np.testing.assert_array_equal(full, a["sem_confusion_full"])
    r = evaluate_masks(preds, [a[f"gt{i}"] for i in range(n)])
    np.testing.assert_array_equal(r["confusion"], a["sem_confusion"])
    np.testing.assert_allclose(r["iou"], a["sem_iou"], rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(r["miou"], a["sem_miou"], rtol=1e-12)
    np.testing.assert_allclose([r["fp_bg"], r["fn_bg"]], a["sem_fp0_fn0"], rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose([r["fp_fg_mean"], r["fn_fg_mean"]], a["sem_fp_fn_mean_fg"], rtol=1e-12,
                               equal_nan=True)
