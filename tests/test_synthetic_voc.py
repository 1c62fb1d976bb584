"""The synthetic VOC 2012 folder: layout, determinism, mask/XML consistency, palette, borders, class coverage."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from voc12.facts import CLASS_NAMES as VOC_CLASS_NAMES
from voc12 import synthetic
from voc12.synthetic import boundary_band, make_synthetic_voc

SIZE = ((112, 144), (144, 176))
COUNTS = dict(num_train=100, num_val=50, num_extra_aug=50, num_test=6)

# Known entries of the standard VOC colour map (independent of the code under test).
KNOWN_COLOURS = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 4: (0, 0, 128), 7: (128, 128, 128),
                 8: (64, 0, 0), 15: (192, 128, 128), 20: (0, 64, 128), 255: (224, 224, 192)}


def _read_list(root: Path, name: str) -> list[str]:
    return (root / "ImageSets" / "Segmentation" / f"{name}.txt").read_text().split()


def _xml_objects(root: Path, img_id: str) -> tuple[ET.Element, list[tuple[str, tuple[int, ...]]]]:
    ann = ET.parse(root / "Annotations" / f"{img_id}.xml").getroot()
    objs = []
    for obj in ann.findall("object"):
        box = obj.find("bndbox")
        objs.append((obj.findtext("name"), tuple(int(box.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))))
    return ann, objs


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    """A 200-image train_aug+val set (+6 test images) of about 128x160."""
    root = tmp_path_factory.mktemp("synvoc") / "VOC2012"
    out = make_synthetic_voc(root, image_size=SIZE, seed=3, **COUNTS)
    assert out == root
    return root


@pytest.fixture(scope="module")
def ids(voc) -> dict[str, list[str]]:
    train, val = _read_list(voc, "train"), _read_list(voc, "val")
    aug = sorted(p.stem for p in (voc / "SegmentationClassAug").glob("*.png"))
    extra = sorted(set(aug) - set(train) - set(val))
    return {"train": train, "val": val, "extra": extra, "test": _read_list(voc, "test")}


def test_image_sets_and_folders(voc, ids):
    assert [len(ids[k]) for k in ("train", "val", "extra", "test")] == [100, 50, 50, 6]
    assert _read_list(voc, "trainval") == sorted(ids["train"] + ids["val"])
    every = ids["train"] + ids["val"] + ids["extra"] + ids["test"]
    assert len(set(every)) == len(every)
    for img_id in every:
        assert re.fullmatch(r"\d{4}_\d{6}", img_id)
        as_int = int(img_id.replace("_", ""))  # the original int32 id round trip
        assert as_int < 2 ** 31 and str(as_int)[:4] + "_" + str(as_int)[4:] == img_id
    seg = set(ids["train"] + ids["val"])
    assert {p.stem for p in (voc / "JPEGImages").glob("*.jpg")} == set(every)
    assert {p.stem for p in (voc / "Annotations").glob("*.xml")} == set(every)
    assert {p.stem for p in (voc / "SegmentationClass").glob("*.png")} == seg
    assert {p.stem for p in (voc / "SegmentationObject").glob("*.png")} == seg
    aug = {p.stem for p in (voc / "SegmentationClassAug").glob("*.png")}
    assert aug == seg | set(ids["extra"])  # train + extra + val, never test
    assert not aug & set(ids["test"])


def test_no_test_list_without_test_images(tmp_path):
    root = make_synthetic_voc(tmp_path / "v", num_train=2, num_val=1, num_extra_aug=1, image_size=((48, 48), (64, 64)))
    assert not (root / "ImageSets" / "Segmentation" / "test.txt").exists()
    assert _read_list(root, "train") == ["2090_000001", "2090_000002"]


def test_same_seed_same_bytes_any_workers(tmp_path):
    kw = dict(num_train=6, num_val=3, num_extra_aug=3, num_test=2, image_size=SIZE, seed=11)
    a = make_synthetic_voc(tmp_path / "a", **kw)
    b = make_synthetic_voc(tmp_path / "b", num_workers=2, **kw)
    c = make_synthetic_voc(tmp_path / "c", **{**kw, "seed": 12})
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 14 * 2 + 9 * 2 + 12 + 4  # jpg+xml, class+object (train+val), aug (no test), 4 lists
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    jpgs = [rel for rel in files if rel.suffix == ".jpg"]
    assert sum((a / rel).read_bytes() != (c / rel).read_bytes() for rel in jpgs) == len(jpgs)


def test_images_and_xml_sizes(voc, ids):
    (h_lo, h_hi), (w_lo, w_hi) = SIZE
    heights, widths = [], []
    for img_id in ids["train"] + ids["val"] + ids["extra"] + ids["test"]:
        with Image.open(voc / "JPEGImages" / f"{img_id}.jpg") as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            w, h = im.size
        assert h_lo <= h <= h_hi and w_lo <= w <= w_hi
        heights.append(h), widths.append(w)
        ann, objs = _xml_objects(voc, img_id)
        assert ann.findtext("filename") == f"{img_id}.jpg"
        assert (int(ann.findtext("size/width")), int(ann.findtext("size/height"))) == (w, h)
        assert ann.findtext("size/depth") == "3"
        assert 1 <= len(objs) <= 3
        for name, (x0, y0, x1, y1) in objs:
            assert name in VOC_CLASS_NAMES
            assert 1 <= x0 <= x1 <= w and 1 <= y0 <= y1 <= h
        assert all(o.findtext("difficult") == "0" for o in ann.findall("object"))
    assert len(set(heights)) > 5 and len(set(widths)) > 5


def test_masks_palette_values_and_xml_consistency(voc, ids):
    n_multi, n_same_class_twice = 0, 0
    for img_id in ids["train"] + ids["val"]:
        cls_im = Image.open(voc / "SegmentationClass" / f"{img_id}.png")
        obj_im = Image.open(voc / "SegmentationObject" / f"{img_id}.png")
        for im in (cls_im, obj_im):
            assert im.mode == "P"
            pal = np.asarray(im.getpalette()[: 256 * 3]).reshape(-1, 3)
            for idx, rgb in KNOWN_COLOURS.items():
                assert tuple(pal[idx]) == rgb
        cls_map, obj_map = np.asarray(cls_im), np.asarray(obj_im)
        aug = np.asarray(Image.open(voc / "SegmentationClassAug" / f"{img_id}.png"))
        with Image.open(voc / "JPEGImages" / f"{img_id}.jpg") as jpg:
            assert cls_map.shape == obj_map.shape == aug.shape == (jpg.size[1], jpg.size[0])
        assert set(np.unique(cls_map)) <= set(range(21)) | {255}
        void = cls_map == 255
        assert void.any()
        np.testing.assert_array_equal(void, obj_map == 255)
        np.testing.assert_array_equal(cls_map[~void], aug[~void])  # the Aug map is the same labelling, unvoided

        _, objs = _xml_objects(voc, img_id)
        # Instances are 1..R in XML order; each instance has one class, the XML object's class.
        assert set(np.unique(obj_map)) - {0, 255} == set(range(1, len(objs) + 1))
        assert not (obj_map[cls_map == 0] % 255).any()  # background <-> instance 0
        for k, (name, (x0, y0, x1, y1)) in enumerate(objs, 1):
            classes = np.unique(cls_map[obj_map == k])
            assert classes.tolist() == [VOC_CLASS_NAMES.index(name) + 1]
            ys, xs = np.nonzero(obj_map == k)  # the box holds the (unvoided) instance pixels
            assert x0 <= xs.min() + 1 and xs.max() + 1 <= x1 and y0 <= ys.min() + 1 and ys.max() + 1 <= y1
        mask_names = {VOC_CLASS_NAMES[c - 1] for c in np.unique(cls_map) if 1 <= c <= 20}
        assert {name for name, _ in objs} == mask_names
        n_multi += len(mask_names) > 1
        n_same_class_twice += len(objs) > len(mask_names)
    assert n_multi >= 10 and n_same_class_twice >= 3


def test_void_is_a_thin_band_on_instance_boundaries(voc, ids):
    fractions = []
    for img_id in ids["train"] + ids["val"]:
        obj_map = np.asarray(Image.open(voc / "SegmentationObject" / f"{img_id}.png")).astype(np.int32)
        void = obj_map == 255
        # Every void pixel lies within 5 px of a labelled pixel ...
        assert ndimage.distance_transform_edt(void).max() <= 5.0, img_id
        # ... and (but for thin object parts or background slivers the band swallowed) two different labels lie
        # within 5 px of it: the void sits on boundaries.
        lo = ndimage.minimum_filter(np.where(void, 1000, obj_map), size=11, mode="nearest")
        hi = ndimage.maximum_filter(np.where(void, -1, obj_map), size=11, mode="nearest")
        on_boundary = (lo[void] < hi[void]).mean()
        assert on_boundary >= 0.85, (img_id, on_boundary)
        fractions.append(on_boundary)
        # Thin: no 7x7 block is entirely void.
        assert not ndimage.binary_erosion(void, structure=np.ones((7, 7), bool)).any(), img_id
        assert void.mean() < 0.25
    assert np.mean(fractions) >= 0.97


def test_rendered_border_follows_instance_boundaries():
    rng = np.random.default_rng(0)
    for _ in range(10):
        sample = synthetic.render_image(rng, 120, 150, int(rng.integers(20)))
        inst = sample.instances
        change = np.zeros(inst.shape, bool)
        change[:, 1:] |= inst[:, 1:] != inst[:, :-1]
        change[1:, :] |= inst[1:, :] != inst[:-1, :]
        dist = ndimage.distance_transform_edt(~change)
        border = sample.border()
        assert border.any() and dist[border].max() <= 3.0
        assert 2 <= sample.border_width <= 3
        # every instance keeps labelled pixels outside the void band
        assert set(np.unique(inst[~border])) == set(range(len(sample.classes) + 1))


def test_aug_masks_have_no_void_and_cover_extra_ids(voc, ids):
    for img_id in ids["extra"] + ids["val"][:10]:
        im = Image.open(voc / "SegmentationClassAug" / f"{img_id}.png")
        assert im.mode in ("L", "P")
        aug = np.asarray(im)
        assert aug.max() <= 20 and (aug > 0).any()
        _, objs = _xml_objects(voc, img_id)
        assert {name for name, _ in objs} == {VOC_CLASS_NAMES[c - 1] for c in np.unique(aug) if c > 0}


def test_every_class_appears_roughly_uniformly(voc, ids):
    counts = np.zeros(20, int)
    for img_id in ids["train"] + ids["val"] + ids["extra"]:
        for name in {n for n, _ in _xml_objects(voc, img_id)[1]}:
            counts[VOC_CLASS_NAMES.index(name)] += 1
    assert (counts > 0).all()
    assert counts.min() >= 0.4 * counts.mean() and counts.max() <= 2.0 * counts.mean()


def test_boundary_band_widths():
    lab = np.zeros((20, 20), np.uint8)
    lab[:, 10:] = 1
    for width in (2, 3, 4, 5):
        band = boundary_band(lab, width)
        assert band.sum(axis=1).tolist() == [width] * 20
        assert band[:, 10 - width // 2: 10 + (width + 1) // 2].all()
    assert not boundary_band(np.zeros((8, 8), np.uint8), 3).any()


def test_class_styles_are_distinct():
    assert [s.name for s in synthetic.CLASS_STYLES] == list(VOC_CLASS_NAMES)
    assert len({s.shape for s in synthetic.CLASS_STYLES}) == 20
    assert len({(s.colour, s.texture) for s in synthetic.CLASS_STYLES}) == 20


def test_bad_arguments():
    with pytest.raises(ValueError):
        make_synthetic_voc("/nonexistent/never", image_size=((100, 50), (64, 64)))
    with pytest.raises(ValueError):
        make_synthetic_voc("/nonexistent/never", num_train=-1)


def test_cli(tmp_path):
    out = tmp_path / "cli"
    root = synthetic.main(["--out", str(out), "--num_train", "3", "--num_val", "2", "--num_extra_aug", "1",
                           "--num_test", "1", "--height", "64", "72", "--width", "80", "96", "--seed", "5"])
    assert root == out
    assert len(_read_list(out, "train")) == 3 and len(_read_list(out, "val")) == 2
    assert len(_read_list(out, "test")) == 1
    assert len(list((out / "SegmentationClassAug").glob("*.png"))) == 6
    for p in (out / "JPEGImages").glob("*.jpg"):
        with Image.open(p) as im:
            assert 80 <= im.size[0] <= 96 and 64 <= im.size[1] <= 72
    cfg = synthetic.config_from_args(synthetic.build_parser().parse_args(["--out", "x", "--preset", "voc"]))
    assert cfg.num_train + cfg.num_extra_aug == 10582 and cfg.num_val == 1449


def test_open_voc_reads_the_synthetic_folder(voc, ids):
    from voc12 import dataloader
    index = dataloader.open_voc(voc)
    assert index.ids("train") == ids["train"] and index.ids("val") == ids["val"]
    assert sorted(index.ids("train_aug")) == sorted(ids["train"] + ids["extra"])
    for img_id in ids["train"][:5] + ids["extra"][:5]:
        names = {VOC_CLASS_NAMES[i] for i in np.flatnonzero(index.label(img_id))}
        assert names == {n for n, _ in _xml_objects(voc, img_id)[1]}
