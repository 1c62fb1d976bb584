"""Preprocessing rules of docs/data_voc.md (misc/imutils, voc12 datasets)."""
import random

import numpy as np

from misc.core.labels import label_palette
from misc.method import imutils
from misc.method.imutils import TorchvisionNormalize


def _img(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_rescaled_size_rounds_half_to_even():
    assert imutils.rescaled_size(143, 97, 0.5) == (72, 48)  # 71.5 -> 72, 48.5 -> 48
    assert imutils.rescaled_size(375, 500, 1.5) == (562, 750)  # 562.5 -> 562


def test_pil_resize_noop_and_orders():
    img = _img(10, 12)
    assert imutils.pil_resize(img, (10, 12), 3) is img
    out = imutils.pil_resize(img, (5, 6), 0)
    assert out.shape == (5, 6, 3)
    # PIL NEAREST of a factor-2 reduction samples pixel 2i+1 (centre rounding)
    np.testing.assert_array_equal(out, img[1::2, 1::2])
    lab = np.arange(16, dtype=np.uint8).reshape(4, 4).repeat(4, 0).repeat(4, 1)
    np.testing.assert_array_equal(imutils.pil_rescale(lab, 0.25, 0), lab[2::4, 2::4])


def test_random_resize_long_uses_long_side():
    random.seed(3)
    img = _img(100, 50)  # h > w: scale = L / h
    out = imutils.random_resize_long(img, 80, 80)
    assert out.shape[:2] == (80, 40)
    out = imutils.random_resize_long(_img(50, 100), 60, 60)  # w >= h: scale = L / w
    assert out.shape[:2] == (30, 60)


def test_random_scale_tuple_same_factor():
    random.seed(0)
    img, lab = _img(40, 60), np.zeros((40, 60), np.uint8)
    s_expected = 0.5 + random.Random(0).random() * 1.0
    out_img, out_lab = imutils.random_scale((img, lab), (0.5, 1.5), (3, 0))
    assert out_img.shape[:2] == out_lab.shape == imutils.rescaled_size(40, 60, s_expected)


def test_random_lr_flip_joint():
    img = _img(4, 5)
    lab = np.arange(20, dtype=np.uint8).reshape(4, 5)
    seen = set()
    for seed in range(10):
        random.seed(seed)
        a, b = imutils.random_lr_flip((img, lab))
        flipped = not np.array_equal(b, lab)
        seen.add(flipped)
        np.testing.assert_array_equal(a, img[:, ::-1] if flipped else img)
    assert seen == {True, False}


def test_random_crop_fill_and_shared_box():
    random.seed(1)
    img = np.ones((20, 50, 3), np.float32)
    lab = np.full((20, 50), 7, np.uint8)
    ci, cl = imutils.random_crop((img, lab), 32, (0, 255))
    assert ci.shape == (32, 32, 3) and cl.shape == (32, 32)
    # rows: image (20) pasted inside the container, the rest filled; columns: cut from the image
    assert (ci[..., 0] == 1).sum() == 20 * 32 and (ci[..., 0] == 0).sum() == 12 * 32
    np.testing.assert_array_equal(ci[..., 0] == 1, cl == 7)
    assert set(np.unique(cl)) == {7, 255}


def test_top_left_crop():
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = imutils.top_left_crop(img, 5, -1)
    assert out.shape == (5, 5)
    np.testing.assert_array_equal(out[:3, :4], img)
    assert (out[3:] == -1).all() and (out[:, 4] == -1).all()
    np.testing.assert_array_equal(imutils.top_left_crop(img, 2, 0), img[:2, :2])


def test_strided_sizes():
    assert imutils.get_strided_size((375, 500), 4) == (94, 125)
    assert imutils.get_strided_up_size((375, 500), 16) == (384, 512)
    assert imutils.get_strided_up_size((143, 97), 16) == (144, 112)


def test_compress_range():
    np.testing.assert_array_equal(imutils.compress_range(np.array([5, 0, 9, 5])), [1, 0, 2, 1])


def test_normalize_float64_then_float32():
    img = _img(3, 4)
    out = TorchvisionNormalize()(img)
    assert out.dtype == np.float32
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_array_equal(out, ((img / 255.0 - mean) / std).astype(np.float32))


def test_voc_palette():
    pal = np.asarray(label_palette()).reshape(256, 3)
    assert tuple(pal[1]) == (128, 0, 0) and tuple(pal[15]) == (192, 128, 128) and tuple(pal[255]) == (224, 224, 192)
