"""CUB reader on the real 24-image sample (tests/data/real_cub) and the synthetic generator."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from cub import dataset as D
from cub.synthetic import class_style, make_synthetic_cub, mask_box, render_image
from misc.eval.wsol_metrics import WSOLMeter

MEAN = torch.tensor(D.IMAGENET_MEAN)[:, None, None]
STD = torch.tensor(D.IMAGENET_STD)[:, None, None]


def spec_box(box_xywh, width, height, size=224):
    """The box rescale of docs/wsol_cub.md#data, written out independently of cub.dataset."""
    x, y, w, h = (int(float(v)) for v in box_xywh)
    return [int(max(x / width * size, 0)), int(max(y / height * size, 0)),
            int(min((x + w) / width * size, size - 1)), int(min((y + h) / height * size, size - 1))]


@pytest.fixture(scope="module")
def real_meta(real_cub_root) -> D.CUBMetadata:
    return D.CUBMetadata.load(real_cub_root)


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    return make_synthetic_cub(tmp_path_factory.mktemp("syn"), num_classes=6, train_per_class=5, test_per_class=3,
                              image_size=(64, 128), seed=3, grayscale_fraction=0.2)


# --- real sample ----------------------------------------------------------------------------------------------------

def test_real_metadata(real_meta, real_cub_root):
    m = real_meta
    assert len(m.image_ids) == 24 and all(isinstance(i, str) for i in m.image_ids)
    assert m.image_ids[:3] == ("39", "55", "62")
    assert sorted(set(m.labels.values())) == list(range(12))
    assert all(list(m.labels.values()).count(c) == 2 for c in range(12))
    assert m.labels["39"] == 0 and m.labels["448"] == 8 and m.labels["636"] == 11
    assert len(m.split_ids("train")) == 12 and len(m.split_ids("test")) == 12
    assert m.is_train["55"] and not m.is_train["39"] and not m.is_train["448"]
    assert m.boxes["39"] == (69.0, 57.0, 199.0, 141.0)
    assert m.num_classes == 200 and m.class_names[8] == "009.Brewer_Blackbird"
    assert m.image_path("448") == real_cub_root / "images" / "009.Brewer_Blackbird/Brewer_Blackbird_0028_2682.jpg"
    assert m.missing_images() == []
    with pytest.raises(ValueError):
        m.split_ids("val")


def test_real_eval_boxes_follow_spec(real_meta):
    ds = D.build_eval_dataset(real_meta, ids=real_meta.image_ids)
    for k, image_id in enumerate(ds.ids):
        sample = ds[k]
        with Image.open(real_meta.image_path(image_id)) as im:
            width, height = im.size
        assert sample["box"].dtype == torch.int64 and sample["box"].shape == (4,)
        assert sample["box"].tolist() == spec_box(real_meta.boxes[image_id], width, height), image_id
        assert sample["name"] == image_id and sample["label"] == real_meta.labels[image_id]
        assert sample["img"].shape == (3, 224, 224) and sample["img"].dtype == torch.float32
    # by hand: id 39 is 320x223 with box (69, 57, 199, 141): 69/320*224 = 48.3, 57/223*224 = 57.26,
    # 268/320*224 = 187.6, 198/223*224 = 198.9
    assert ds[ds.ids.index("39")]["box"].tolist() == [48, 57, 187, 198]
    # id 423 is 500x500 with box (4, 29, 495, 470): 1.79, 12.99, min(223.55, 223), min(223.55, 223)
    assert ds[ds.ids.index("423")]["box"].tolist() == [1, 12, 223, 223]


def test_real_test_split_default(real_meta):
    ds = D.build_eval_dataset(real_meta)
    assert ds.ids == real_meta.split_ids("test") and len(ds) == 12


def test_grayscale_image_becomes_rgb(real_meta):
    with Image.open(real_meta.image_path("448")) as raw:
        assert raw.mode == "L"
    img = D.load_image_rgb(real_meta, "448")
    assert img.mode == "RGB" and img.size == (500, 333)
    ds = D.build_eval_dataset(real_meta, ids=["448"])
    x = ds[0]["img"] * STD + MEAN  # back to [0, 1]
    assert x.shape == (3, 224, 224)
    torch.testing.assert_close(x[0], x[1], atol=1e-6, rtol=0)
    torch.testing.assert_close(x[0], x[2], atol=1e-6, rtol=0)


def test_eval_transform_is_pil_bilinear_resize(real_meta):
    image_id = "39"
    ds = D.build_eval_dataset(real_meta, ids=[image_id])
    with Image.open(real_meta.image_path(image_id)) as im:
        ref = np.asarray(im.convert("RGB").resize((224, 224), Image.BILINEAR), dtype=np.float32) / 255.0
    ref_t = (torch.from_numpy(ref).permute(2, 0, 1) - MEAN) / STD
    torch.testing.assert_close(ds[0]["img"], ref_t, atol=1e-6, rtol=0)


def test_train_transform_resize_crop_flip(real_meta):
    image_id = "55"
    ds = D.build_train_dataset(real_meta)
    assert ds.ids == real_meta.split_ids("train")
    with Image.open(real_meta.image_path(image_id)) as im:
        resized = np.asarray(im.convert("RGB").resize((256, 256), Image.BILINEAR), dtype=np.float32) / 255.0
    k = ds.ids.index(image_id)
    for seed in range(3):
        torch.manual_seed(seed)
        i = int(torch.randint(0, 256 - 224 + 1, size=(1,)))
        j = int(torch.randint(0, 256 - 224 + 1, size=(1,)))
        flip = bool(torch.rand(1) < 0.5)
        ref = resized[i: i + 224, j: j + 224]
        if flip:
            ref = ref[:, ::-1]
        torch.manual_seed(seed)
        sample = ds[k]
        assert sample["label"] == real_meta.labels[image_id] and sample["name"] == image_id
        got = (sample["img"] * STD + MEAN).permute(1, 2, 0).numpy()
        np.testing.assert_allclose(got, ref, atol=1e-6)


def test_heldout_split(real_meta, tmp_path):
    ids = D.make_heldout_ids(real_meta, n_per_class=1)
    train = real_meta.split_ids("train")
    assert len(ids) == 12 and set(ids) <= set(train)
    assert sorted(real_meta.labels[i] for i in ids) == list(range(12))
    per_class_first = {}
    for i in sorted(train, key=int):
        per_class_first.setdefault(real_meta.labels[i], i)
    assert set(ids) == set(per_class_first.values())
    path = tmp_path / "lists" / "heldout.txt"
    assert D.load_or_make_heldout(real_meta, path, 1) == ids
    assert path.read_text().split() == ids
    assert D.load_or_make_heldout(real_meta, path, 5) == ids  # an existing list is read, not rebuilt
    assert len(D.build_train_dataset(real_meta, exclude_ids=ids)) == 0  # the sample has one train image per class
    path.write_text("39\n")  # a test image
    with pytest.raises(D.CUBDatasetError, match="not train images"):
        D.load_or_make_heldout(real_meta, path)


# --- errors ----------------------------------------------------------------------------------------------------------

def test_wrong_root_lists_everything_missing(tmp_path):
    with pytest.raises(D.CUBDatasetError, match="does not exist") as err:
        D.CUBMetadata.load(tmp_path / "nope")
    assert "vision.caltech.edu" in str(err.value)
    (tmp_path / "images.txt").write_text("1 a/b.jpg\n")
    with pytest.raises(D.CUBDatasetError) as err:
        D.CUBMetadata.load(tmp_path)
    msg = str(err.value)
    for name in ("image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt", "images/"):
        assert name in msg
    assert "images.txt," not in msg and "CUB_200_2011" in msg


def test_parent_folder_hint(synthetic_root):
    with pytest.raises(D.CUBDatasetError, match="did you mean"):
        D.CUBMetadata.load(synthetic_root.parent)


def test_missing_image_names_id_and_path(synthetic_root, tmp_path):
    root = tmp_path / "CUB_200_2011"
    shutil.copytree(synthetic_root, root)
    meta = D.CUBMetadata.load(root)
    victim = meta.split_ids("test")[0]
    path = meta.image_path(victim)
    os.remove(path)
    with pytest.raises(D.CUBDatasetError) as err:
        D.build_eval_dataset(meta)
    assert f"id {victim}" in str(err.value) and str(path) in str(err.value)
    other = meta.split_ids("test")[1]
    ds = D.build_eval_dataset(meta, ids=[other])
    os.remove(meta.image_path(other))
    with pytest.raises(D.CUBDatasetError, match=f"id {other}"):
        ds[0]


def test_inconsistent_metadata(synthetic_root, tmp_path):
    root = tmp_path / "CUB_200_2011"
    shutil.copytree(synthetic_root, root)
    lines = (root / "bounding_boxes.txt").read_text().splitlines()
    (root / "bounding_boxes.txt").write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(D.CUBDatasetError, match="bounding_boxes.txt has no line"):
        D.CUBMetadata.load(root)


# --- synthetic generator ---------------------------------------------------------------------------------------------

def test_synthetic_layout_is_readable(synthetic_root):
    meta = D.CUBMetadata.load(synthetic_root)
    assert len(meta.image_ids) == 6 * 8 and meta.num_classes == 6
    assert len(meta.split_ids("train")) == 30 and len(meta.split_ids("test")) == 18
    assert meta.missing_images() == []
    modes = set()
    for i in meta.image_ids:
        with Image.open(meta.image_path(i)) as im:
            width, height = im.size
            modes.add(im.mode)
        assert 64 <= width <= 128 and 64 <= height <= 128
        x, y, w, h = meta.boxes[i]
        assert x >= 0 and y >= 0 and w >= 4 and h >= 4 and x + w <= width and y + h <= height
        assert meta.rel_paths[i].startswith(f"{meta.labels[i] + 1:03d}.")
    assert modes == {"RGB", "L"}


def test_synthetic_box_is_tight():
    """The written box is the object mask's extent; mask pixels carry the class colours, and the box is the one
    make_synthetic_cub writes for the same seed."""
    for c in range(10):
        img, mask = render_image(c, np.random.default_rng([0, c, 1]), (64, 128))
        x, y, w, h = mask_box(mask)
        assert mask[y, x: x + w].any() and mask[y + h - 1, x: x + w].any()
        assert mask[y: y + h, x].any() and mask[y: y + h, x + w - 1].any()
        assert mask.sum() == mask[y: y + h, x: x + w].sum() > 0
        style = class_style(c)
        px = np.asarray(img, dtype=np.float32)[mask]
        dist = np.minimum(np.abs(px - np.array(style.colour)).max(-1), np.abs(px - np.array(style.accent)).max(-1))
        assert np.median(dist) < 0.2 * 255


def test_synthetic_box_file_matches_render(tmp_path):
    root = make_synthetic_cub(tmp_path, num_classes=2, train_per_class=1, test_per_class=1, image_size=(64, 96),
                              seed=5)
    meta = D.CUBMetadata.load(root)
    for n, image_id in enumerate(meta.image_ids):
        c, k = divmod(n, 2)
        _, mask = render_image(c, np.random.default_rng([5, c, k + 1]), (64, 96))
        assert meta.boxes[image_id] == tuple(float(v) for v in mask_box(mask))


def test_synthetic_is_deterministic(tmp_path):
    kw = dict(num_classes=3, train_per_class=2, test_per_class=1, image_size=(48, 64))
    a = make_synthetic_cub(tmp_path / "a", seed=7, **kw)
    b = make_synthetic_cub(tmp_path / "b", seed=7, **kw)
    c = make_synthetic_cub(tmp_path / "c", seed=8, **kw)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 5 + 9
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files if f.suffix == ".jpg")


def test_loader_batches_feed_the_metric(synthetic_root):
    """DataLoader collation gives (B, 4) int64 boxes that WSOLMeter takes directly."""
    meta = D.CUBMetadata.load(synthetic_root)
    heldout = D.make_heldout_ids(meta, n_per_class=2)
    assert len(heldout) == 12
    train = D.build_train_dataset(meta, exclude_ids=heldout)
    assert len(train) == 18 and not set(train.ids) & set(heldout)
    batch = next(iter(DataLoader(D.build_eval_dataset(meta, ids=heldout), batch_size=5)))
    assert batch["img"].shape == (5, 3, 224, 224) and batch["box"].shape == (5, 4)
    assert batch["box"].dtype == torch.int64 and isinstance(batch["name"][0], str)
    torch.manual_seed(0)
    logits = torch.randn(5, 6)
    cams = torch.rand(5, 6, 14, 14)
    meter = WSOLMeter()
    meter.add(logits, cams, batch["label"], batch["box"])
    assert meter.summary()["n_images"] == 5
