"""VOC data layer on the real sample (tests/data/real_voc) and on synthetic data: lists, labels, datasets, errors."""
import random

import numpy as np
import pytest
import torch

from misc.method.imutils import TorchvisionNormalize
from voc12.dataloader import (VOC12ClassificationDataset, VOC12ImageDataset,
                              VOC12SegmentationDataset, VOCLayoutError, check_voc_root, open_voc, read_image,
                              read_label_png)


def test_real_voc_labels_from_masks(real_voc_root, tmp_path):
    voc = open_voc(real_voc_root, tmp_path)
    assert "2007_000032" in voc.ids("train") + voc.ids("val")
    gt = read_label_png(real_voc_root / "SegmentationClass" / "2007_000032.png")
    expected = sorted({int(v) - 1 for v in np.unique(gt) if 0 < v < 255})
    assert np.nonzero(voc.label("2007_000032"))[0].tolist() == expected  # no Annotations/: labels from the mask
    assert (tmp_path / "voc12_index.json").is_file()
    again = open_voc(real_voc_root, tmp_path)  # from the cache
    np.testing.assert_array_equal(again.label("2007_000032"), voc.label("2007_000032"))
    assert voc.ids("voc12/val.txt") == voc.ids("val")  # the original's list paths keep working


def test_real_voc_reader(real_voc_root):
    img = read_image(real_voc_root / "JPEGImages" / "2007_000032.jpg")
    assert img.shape == (281, 500, 3) and img.dtype == np.uint8
    gt = read_label_png(real_voc_root / "SegmentationClass" / "2007_000032.png")
    assert gt.shape == (281, 500) and gt.max() == 255


def test_bad_root_lists_everything_missing(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    with pytest.raises(VOCLayoutError) as e:
        check_voc_root(tmp_path, ("JPEGImages", "ImageSets/Segmentation", "SegmentationClass"))
    assert "ImageSets/Segmentation" in str(e.value) and "SegmentationClass" in str(e.value)
    with pytest.raises(VOCLayoutError, match="does not exist"):
        check_voc_root(tmp_path / "nope")


def test_missing_and_unreadable_images_are_named(tmp_path):
    ds = VOC12ImageDataset(["2007_999999"], tmp_path)
    with pytest.raises(FileNotFoundError, match="2007_999999"):
        ds[0]
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "JPEGImages" / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(OSError, match="bad.jpg"):
        read_image(tmp_path / "JPEGImages" / "bad.jpg")


def test_unknown_list_is_named(real_voc_root, tmp_path):
    with pytest.raises(ValueError, match="train_aug"):
        open_voc(real_voc_root, tmp_path).ids("train_aug")  # no SegmentationClassAug in the sample


def test_classification_dataset_transform_order(real_voc_root, tmp_path):
    voc = open_voc(real_voc_root, tmp_path)
    img_id = "2007_000032"
    raw = read_image(voc.image_path(img_id))
    ds = VOC12ClassificationDataset([img_id], voc.root, voc.labels, crop_size=336)  # val: top-left crop, fill 0
    out = ds[0]
    assert out["img"].shape == (3, 336, 336) and out["label"].dtype == torch.float32
    norm = TorchvisionNormalize()(raw)
    np.testing.assert_array_equal(out["img"][:, :281, :336], norm[:281, :336].transpose(2, 0, 1))
    assert (out["img"][:, 281:] == 0).all()
    random.seed(0)
    tr = VOC12ClassificationDataset([img_id], voc.root, voc.labels, resize_long=(210, 420), hor_flip=True,
                                    crop_size=336, crop_method="random")[0]
    assert tr["img"].shape == (3, 336, 336)


def test_make_cam_inputs_multiscale_flip(real_voc_root, tmp_path):
    """What make_cam's loader workers hand to the model: per scale the [img, flip] pair, the size and the labels."""
    from types import SimpleNamespace

    from step.make_cam import MakeCamTask

    voc = open_voc(real_voc_root, tmp_path)
    task = MakeCamTask(SimpleNamespace(cam_scales=(1.0, 0.5)), voc, tmp_path / "cam")
    pairs, size, label = task.load("2007_000032")
    assert size == (281, 500)
    assert pairs[0].shape == (2, 3, 281, 500) and pairs[1].shape == (2, 3, 140, 250)
    np.testing.assert_array_equal(pairs[0][1], pairs[0][0][..., ::-1])
    np.testing.assert_array_equal(label, voc.label("2007_000032"))


def test_segmentation_dataset_fills(real_voc_root, tmp_path):
    random.seed(0)
    label_dir = real_voc_root / "SegmentationClass"
    ds = VOC12SegmentationDataset(["2007_000032"], label_dir, 512, real_voc_root, rescale=(0.5, 1.5), hor_flip=True)
    out = ds[0]
    assert out["img"].shape == (3, 512, 512) and out["label"].shape == (512, 512)
    pad = (out["img"] == 0).all(axis=0)  # the fill region (an exact 0 in all channels after normalising)
    assert pad.sum() > 512 * 100 and (out["label"][pad] == 255).all()
    tl = VOC12SegmentationDataset(["2007_000032"], label_dir, 512, real_voc_root, crop_method="top_left")[0]
    assert (tl["label"][281:] == 255).all() and (tl["img"][:, 281:] == 0).all()
