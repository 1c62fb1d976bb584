"""COCO 2014 data layer: category mapping, labels, lists, the index cache, ground-truth masks and instances from
hand-made annotations (polygons, compressed and uncompressed RLE, overlaps, crowd regions), ready mask folders, bad
input, the synthetic generator, and the dataset facts the steps and models read."""
import json
import logging

import numpy as np
import pytest
from PIL import Image

from coco.dataset import (COCO_2014_CATEGORIES, COCOLayoutError, COCOSplitError, class_mask, coco_categories,
                          coco_image_records, instance_masks, open_coco, write_category_map)
from misc.core.errors import DataError, MissingDataFileError
from misc.core.labels import IGNORE_INDEX as IGNORE

H, W = 8, 10


def rle(mask: np.ndarray, compressed: bool) -> dict:
    from pycocotools import mask as mask_utils

    if compressed:
        r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode()}
    flat = mask.astype(np.uint8).ravel(order="F")
    runs, cur, n = [], 0, 0
    for v in flat:
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    return {"size": list(mask.shape), "counts": runs}


def block(r0, r1, c0, c1):
    m = np.zeros((H, W), bool)
    m[r0:r1, c0:c1] = True
    return m


# Image 9's annotations and the mask they must give (rows, cols; H 8 x W 10):
#  big person polygon rows 0..5, cols 0..6 (area 42); a car 2x2 block (RLE, listed FIRST, smaller: stays on top);
#  a crowd of persons rows 5..7 all columns (uncompressed RLE; the polygon's row 5 covers part of it);
#  two equal-area dogs (2x3) overlapping at column 8: the later annotation is on top.
def image9_annotations() -> list[dict]:
    return [
        {"id": 901, "image_id": 9, "category_id": 3, "iscrowd": 0, "segmentation": rle(block(2, 4, 2, 4), True)},
        {"id": 902, "image_id": 9, "category_id": 1, "iscrowd": 0, "segmentation": [[0, 0, 7, 0, 7, 6, 0, 6]]},
        {"id": 903, "image_id": 9, "category_id": 1, "iscrowd": 1, "segmentation": rle(block(5, 8, 0, 10), False)},
        {"id": 904, "image_id": 9, "category_id": 18, "iscrowd": 0, "segmentation": rle(block(0, 2, 7, 9), True)},
        {"id": 905, "image_id": 9, "category_id": 19, "iscrowd": 0, "segmentation": rle(block(0, 2, 8, 10), True)},
    ]


def expected_mask9() -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[5:8, :] = IGNORE  # crowd
    m[0:6, 0:7] = 1  # person polygon (42 px), also over the crowd's row 5
    m[0:2, 7:9] = 17  # dog: official id 18 is label 17 (id 12 is unused)
    m[0:2, 8:10] = 18  # horse (id 19), same area, later: on top at column 8
    m[2:4, 2:4] = 3  # car, smallest: on top of the person although listed first
    return m


def write_folder(root, train_anns=None, categories=None):
    """A hand-made COCO folder: train images 9 (annotated), 25 (no annotation), 30 (toothbrush), 42 (crowd only);
    val image 100 (airplane). Categories are written in reverse order (the index sorts them by id)."""
    cats = categories if categories is not None else [
        {"supercategory": f"super{cid}", "id": cid, "name": name} for cid, name in reversed(COCO_2014_CATEGORIES)]
    (root / "annotations").mkdir(parents=True)
    train = {
        "images": [{"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg", "width": W, "height": H}
                   for i in (9, 25, 30, 42)],
        "annotations": (image9_annotations() if train_anns is None else train_anns) + [
            {"id": 3001, "image_id": 30, "category_id": 90, "iscrowd": 0, "segmentation": [[1, 1, 4, 1, 4, 3, 1, 3]]},
            {"id": 4201, "image_id": 42, "category_id": 17, "iscrowd": 1, "segmentation": rle(block(1, 3, 1, 5), False)},
        ],
        "categories": cats,
    }
    val = {"images": [{"id": 100, "file_name": "COCO_val2014_000000000100.jpg", "width": W, "height": H}],
           "annotations": [{"id": 10001, "image_id": 100, "category_id": 5, "iscrowd": 0,
                            "segmentation": [[0, 0, 5, 0, 5, 5, 0, 5]]}],
           "categories": cats}
    (root / "annotations" / "instances_train2014.json").write_text(json.dumps(train))
    (root / "annotations" / "instances_val2014.json").write_text(json.dumps(val))
    for split, ids in (("train2014", (9, 25, 30, 42)), ("val2014", (100,))):
        (root / split).mkdir()
        for i in ids:
            Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(root / split / f"COCO_{split}_{i:012d}.jpg")
    return root


@pytest.fixture
def folder(tmp_path):
    return write_folder(tmp_path / "coco"), tmp_path / "cache"


def stem(i, split="train2014"):
    return f"COCO_{split}_{i:012d}"


def test_category_mapping_labels_and_lists(folder, tmp_path):
    root, cache = folder
    index = open_coco(root, cache)
    assert index.splits == {"train": [stem(9), stem(30), stem(42)], "val": [stem(100, "val2014")]}  # 25: no annotation
    assert len(index.class_names) == 80 and index.class_names[0] == "person" and index.class_names[79] == "toothbrush"
    assert index.class_names[11] == "stop sign"  # official id 13 (ids 12 is unused) -> contiguous label 12
    mapping = index.label_to_category_id()
    assert mapping[1] == 1 and mapping[12] == 13 and mapping[80] == 90 and len(mapping) == 80
    assert np.nonzero(index.label(stem(9)))[0].tolist() == [0, 2, 16, 17]  # person, car, dog, horse
    assert np.nonzero(index.label(stem(30)))[0].tolist() == [79]
    assert np.nonzero(index.label(stem(42)))[0].tolist() == [15]  # a crowd-only image is labelled (cat, id 17)
    assert index.label(stem(9)).dtype == np.float32 and index.label(stem(9)).shape == (80,)
    assert index.ids("train2014") == index.ids("train") and index.ids("coco/val.txt") == [stem(100, "val2014")]
    lst = tmp_path / "ids.txt"
    lst.write_text(f"42\n{stem(9)}.jpg\n")
    assert index.ids(str(lst)) == [stem(42), stem(9)]  # bare numbers are COCO image ids
    with pytest.raises(DataError, match="without any annotation"):
        index.check_ids([stem(9), stem(25)], "my list")
    with pytest.raises(COCOSplitError, match="no test split"):
        index.ids("test")
    assert index.image_records([stem(30), stem(100, "val2014")]) == [
        {"id": 30, "file_name": "COCO_train2014_000000000030.jpg", "width": W, "height": H},
        {"id": 100, "file_name": "COCO_val2014_000000000100.jpg", "width": W, "height": H}]
    assert index.image_path(stem(100, "val2014")) == root.resolve() / "val2014" / f"{stem(100, 'val2014')}.jpg"
    cats = index.category_records()
    assert cats[4] == {"id": 5, "name": "airplane", "supercategory": "super5"}
    written = json.loads(write_category_map(index, tmp_path / "res").read_text())
    assert written["categories"][79] == {"label": 80, "id": 90, "name": "toothbrush", "supercategory": "super90"}
    assert written["background"] == 0 and written["ignore"] == 255

    class Args:
        coco_root, list_cache_dir, coco_mask_dir = str(root), str(cache), None

    assert coco_image_records(Args, [stem(9)]) == [{"id": 9, "file_name": f"{stem(9)}.jpg", "width": W, "height": H}]
    assert coco_categories(Args)[0]["id"] == 1 and len(coco_categories(Args)) == 80


def test_class_mask_overlap_crowd_rle_and_polygon(folder):
    anns = [{**a, "label": {1: 1, 3: 3, 18: 17, 19: 18}[a["category_id"]]} for a in image9_annotations()]
    np.testing.assert_array_equal(class_mask(anns, H, W), expected_mask9())
    # the order of the annotations does not change who is on top, except between equal areas
    swapped = anns[:3] + [anns[4], anns[3]]
    want = expected_mask9()
    want[0:2, 7:9] = 17  # the dog is now the later of the two equal areas
    np.testing.assert_array_equal(class_mask(swapped, H, W), want)
    root, cache = folder
    index = open_coco(root, cache)
    got = index.read_class_gt(stem(9))  # built on first use, into <cache>/coco_gt_masks
    np.testing.assert_array_equal(got, expected_mask9())
    png = cache / "coco_gt_masks" / f"{stem(9)}.png"
    assert png.is_file() and Image.open(png).mode == "P"
    crowd_only = index.read_class_gt(stem(42))
    assert set(np.unique(crowd_only).tolist()) == {0, 255} and (crowd_only == 255).sum() == 8
    masks, labels = index.gt_instances(stem(9))  # non-crowd only, annotation order, 0-based labels
    assert labels.tolist() == [2, 0, 16, 17] and masks.shape == (4, H, W) and masks.dtype == bool
    np.testing.assert_array_equal(masks[1], block(0, 6, 0, 7))
    empty_masks, empty_labels = instance_masks([a for a in anns if a["iscrowd"]], H, W)
    assert empty_masks.shape == (0, H, W) and empty_labels.shape == (0,)


def test_index_cache_is_reused_and_rebuilt_when_the_annotations_change(folder, monkeypatch, caplog):
    import coco.build as cd

    root, cache = folder
    index = open_coco(root, cache)
    index.read_class_gt(stem(9))
    real_build = cd._build
    monkeypatch.setattr(cd, "_build", lambda *a: pytest.fail("the cache should have been read"))
    again = open_coco(root, cache)
    assert again.splits == index.splits and np.array_equal(again.label(stem(9)), index.label(stem(9)))
    np.testing.assert_array_equal(again.read_class_gt(stem(9)), expected_mask9())
    monkeypatch.setattr(cd, "_build", real_build)
    # a changed annotation file (another class for image 30; image 25 gets an annotation) rebuilds lists and masks
    path = root / "annotations" / "instances_train2014.json"
    data = json.loads(path.read_text())
    data["annotations"][-2]["category_id"] = 44
    data["annotations"].append({"id": 2501, "image_id": 25, "category_id": 1, "iscrowd": 0,
                                "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]]})
    path.write_text(json.dumps(data))
    with caplog.at_level(logging.INFO):
        rebuilt = open_coco(root, cache)
    assert "instances_train2014.json changed" in caplog.text
    assert rebuilt.splits["train"] == [stem(9), stem(25), stem(30), stem(42)]
    assert np.nonzero(rebuilt.label(stem(30)))[0].tolist() == [39]  # bottle
    assert not (cache / "coco_gt_masks" / f"{stem(9)}.png").exists()  # masks of the old annotations removed
    assert rebuilt.config_entry() != index.config_entry()


def test_ready_mask_folder_is_used_as_is(folder, tmp_path):
    root, cache = folder
    ready = tmp_path / "ready" / "train2014"
    ready.mkdir(parents=True)
    mine = np.full((H, W), 7, np.uint8)
    Image.fromarray(mine).save(ready / f"{stem(9)}.png")
    index = open_coco(root, cache, tmp_path / "ready")
    assert index.masks_given
    np.testing.assert_array_equal(index.read_class_gt(stem(9)), mine)
    with pytest.raises(MissingDataFileError, match="ready masks"):
        index.read_class_gt(stem(30))
    Image.fromarray(np.full((H, W), 81, np.uint8)).save(ready / f"{stem(30)}.png")
    with pytest.raises(DataError, match=r"0\.\.80 or 255"):
        index.read_class_gt(stem(30))
    assert not (cache / "coco_gt_masks").exists()  # nothing built


def test_bad_input_is_named(tmp_path):
    with pytest.raises(COCOLayoutError, match="does not exist"):
        open_coco(tmp_path / "nowhere", tmp_path / "c")
    (tmp_path / "empty").mkdir()
    with pytest.raises(COCOLayoutError, match="instances_train2014.json"):
        open_coco(tmp_path / "empty", tmp_path / "c")
    few = [{"id": cid, "name": name} for cid, name in COCO_2014_CATEGORIES[:79]]
    root = write_folder(tmp_path / "few", categories=few)
    with pytest.raises(DataError, match="has 79 categories"):
        open_coco(root, tmp_path / "c1")
    bad_rle = image9_annotations()
    bad_rle[0]["segmentation"] = rle(np.zeros((4, 4), bool), True)
    root = write_folder(tmp_path / "rle", train_anns=bad_rle)
    with pytest.raises(DataError, match="annotation 901: RLE of size"):
        open_coco(root, tmp_path / "c2").read_class_gt(stem(9))


def test_synthetic_generator_writes_every_annotation_kind(tmp_path):
    from coco.synthetic import make_synthetic_coco

    root = make_synthetic_coco(tmp_path / "a", num_train=16, num_val=4, image_size=((64, 72), (80, 96)),
                               num_categories=5)
    again = make_synthetic_coco(tmp_path / "b", num_train=16, num_val=4, image_size=((64, 72), (80, 96)),
                                num_categories=5)
    train_json = (root / "annotations" / "instances_train2014.json").read_bytes()
    assert train_json == (again / "annotations" / "instances_train2014.json").read_bytes()  # deterministic
    data = json.loads(train_json)
    assert [c["id"] for c in data["categories"]] == [cid for cid, _ in COCO_2014_CATEGORIES]
    anns = data["annotations"]
    kinds = {("crowd" if a["iscrowd"] else "rle" if isinstance(a["segmentation"], dict) else "polygon") for a in anns}
    assert kinds == {"polygon", "rle", "crowd"}
    assert all(isinstance(a["segmentation"]["counts"], list) for a in anns if a["iscrowd"])
    annotated = {a["image_id"] for a in anns}
    assert len(data["images"]) - len(annotated) == 1  # image index 1 has no annotation
    assert {a["category_id"] for a in anns} <= {1, 3, 44, 17, 72}
    index = open_coco(root, tmp_path / "cache")
    assert len(index.ids("train")) == 15 and len(index.ids("val")) == 3
    crowd_images = {a["image_id"] for a in anns if a["iscrowd"]}
    for img_id in index.ids("train"):
        mask = index.read_class_gt(img_id)
        present = set(np.unique(mask).tolist()) - {0, 255}
        assert present and present <= {int(k) + 1 for k in np.nonzero(index.label(img_id))[0]}
        assert (255 in mask) == (index.image_records([img_id])[0]["id"] in crowd_images)
        img = np.asarray(Image.open(index.image_path(img_id)))
        assert img.shape[:2] == mask.shape


def test_dataset_facts_reach_the_models_and_defaults():
    from pipeline.models import build_cam_cnn, build_cam_vit, build_deeplab
    from pipeline.presets import DATASET_DEFAULTS
    from run_sample import parse_args

    args = parse_args(["--dataset", "coco", "--preset", "tiny"])
    assert args.num_classes == 80 and parse_args([]).num_classes == 20
    assert args.train_list == "train" and args.val_list == "val" and args.export_deeplab_test_pass is False
    assert args.cam_num_epoches == 2  # the preset wins over the COCO default ...
    assert parse_args(["--dataset", "coco"]).cam_num_epoches == DATASET_DEFAULTS["coco"]["cam_num_epoches"]
    assert parse_args(["--dataset", "coco", "--train_list", "x.txt"]).train_list == "x.txt"  # ... the command line too
    assert parse_args([]).train_list == "voc12/train_aug.txt"
    import torch

    vit = build_cam_vit(args, pretrained=False).eval()
    with torch.no_grad():
        assert vit(torch.zeros(1, 3, 64, 64)).shape[1] == 80
        assert build_cam_cnn(args, pretrained=False).eval()(torch.zeros(1, 3, 64, 64)).shape[1] == 80
        deeplab = build_deeplab(args, msc=False).eval()
        assert deeplab(torch.zeros(1, 3, 65, 65)).shape[1] == 81


def test_projection_is_logged_once_from_the_measured_time(monkeypatch, caplog):
    import misc.engine.per_image as runner

    clock = iter([100.0, 102.0, 104.0, 106.0, 108.0, 110.0])
    monkeypatch.setattr(runner.time, "perf_counter", lambda: next(clock))
    proj = runner.Projection("make_cam", 82081, where="cuda:0, 1 process", after=2)
    with caplog.at_level(logging.INFO, logger="misc.engine.per_image"):
        for _ in range(4):
            proj.tick()  # the first tick starts the clock; 2 s per image after it
        proj.finish()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["make_cam: 2 s per image (measured over 2 images on cuda:0, 1 process); projected time for "
                     "82,081 images on this device: 45.6 h"]
    assert runner.format_duration(30) == "30 s" and runner.format_duration(600) == "10.0 min"
