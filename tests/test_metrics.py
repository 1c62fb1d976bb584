"""Confusion / mIoU with the original (chainercv, deeplab-pytorch) semantics, on hand-made cases."""
import numpy as np

from misc.eval.metrics import (ConfusionMeter, deeplab_scores, fp_fn_rates, gt_to_chainer, iou_from_confusion, miou,
                          semantic_confusion)


def test_confusion_skips_ignore_and_grows():
    gt = gt_to_chainer(np.array([[0, 1, 255], [2, 2, 0]], np.uint8))
    pred = np.array([[0, 1, 3], [2, 0, 0]])
    conf = semantic_confusion([pred], [gt])
    assert conf.shape == (3, 3)  # 255 pixel (pred 3) skipped: n = 1 + max over kept pixels
    expected = np.array([[2, 0, 0], [0, 1, 0], [1, 0, 1]])
    np.testing.assert_array_equal(conf, expected)


def test_confusion_grows_across_images():
    m = ConfusionMeter()
    m.add(np.array([0, 1]), np.array([0, 1]))
    m.add(np.array([5]), np.array([0]))
    assert m.confusion.shape == (6, 6) and m.confusion[0, 5] == 1 and m.confusion[1, 1] == 1


def test_iou_nan_for_absent_classes():
    conf = np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]])
    iou = iou_from_confusion(conf)
    np.testing.assert_allclose(iou[:2], [3 / 4, 2 / 3])
    assert np.isnan(iou[2])
    assert miou(iou) == np.mean([3 / 4, 2 / 3])


def test_fp_fn():
    conf = np.array([[3, 1], [0, 2]])
    fp, fn = fp_fn_rates(conf)
    np.testing.assert_allclose(fp, [1 - 4 / 4, 1 - 2 / 3])
    np.testing.assert_allclose(fn, [1 - 3 / 4, 1 - 3 / 3])


def test_deeplab_scores_hand_made():
    gt = np.array([[0, 0, 1, 1, 255]])
    pred = np.array([[0, 1, 1, 1, 2]])
    s, hist = deeplab_scores([gt], [pred], num_classes=3)
    np.testing.assert_array_equal(hist, [[1, 1, 0], [0, 2, 0], [0, 0, 0]])
    assert s["Pixel Accuracy"] == 3 / 4
    assert s["Mean Accuracy"] == (1 / 2 + 1) / 2
    assert s["Class IoU"][0] == 1 / 2 and s["Class IoU"][1] == 2 / 3 and np.isnan(s["Class IoU"][2])
    assert s["Mean IoU"] == (1 / 2 + 2 / 3) / 2
    assert s["Frequency Weighted IoU"] == 0.5 * 0.5 + 0.5 * 2 / 3


def test_gt_against_itself_is_perfect(real_voc_root):
    from voc12.dataloader import read_label_png

    gt = read_label_png(real_voc_root / "SegmentationClass" / "2007_000032.png")
    assert 255 in gt and gt.max() == 255 and set(np.unique(gt)) - {255} <= set(range(21))
    iou = iou_from_confusion(semantic_confusion([np.where(gt == 255, 0, gt)], [gt_to_chainer(gt)]))
    assert miou(iou) == 1.0
