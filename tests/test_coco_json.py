"""Instances as COCO JSON (misc/eval/coco_json.py) and the make_cocoann step: RLE round trip, COCOeval values derived by
hand, and the step on a tiny synthetic VOC folder."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from misc.eval.coco_json import (annotations_file, categories_from_names, coco_segm_eval, decode_mask, encode_mask,
                            image_ids, instance_results, results_to_annotations, voc_image_id)
from misc.core.errors import DataError, FlagValueError, MissingDataFileError, UserError

RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCOeval's recall thresholds


def exactly(value: float):
    """pycocotools divides by tp + fp + np.spacing(1): a precision of 1 comes out as 1 - 1e-16."""
    return pytest.approx(value, abs=1e-12)


def _square(h: int, w: int, y0: int, x0: int, size: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y0:y0 + size, x0:x0 + size] = True
    return m


# ------------------------------------------------------------------------------------------------------- encoding
def test_rle_round_trip_is_exact_with_area_and_bbox():
    rng = np.random.default_rng(0)
    masks = [rng.random((7, 13)) < 0.4, np.zeros((5, 4), bool), np.ones((3, 9), bool), _square(20, 31, 4, 17, 6)]
    for m in masks:
        rle, area, bbox = encode_mask(m)
        assert isinstance(rle["counts"], str) and rle["size"] == list(m.shape)
        json.dumps(rle)  # JSON-ready
        np.testing.assert_array_equal(decode_mask(rle), m)
        np.testing.assert_array_equal(decode_mask(json.loads(json.dumps(rle))), m)
        assert area == int(m.sum())
        if m.any():
            ys, xs = np.nonzero(m)
            assert bbox == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        else:
            assert bbox == [0.0, 0.0, 0.0, 0.0]
    assert encode_mask(_square(20, 31, 4, 17, 6))[2] == [17.0, 4.0, 6.0, 6.0]
    with pytest.raises(ValueError, match="(H, W)"):
        encode_mask(np.zeros((2, 3, 4), bool))


def test_image_ids_and_categories():
    assert voc_image_id("2007_000032") == 2007000032
    assert voc_image_id("2090_000001") == 2090000001
    assert voc_image_id("000123") == 123
    import hashlib

    other = voc_image_id("crop513_2007_000033")  # not VOC's form: 10**10 + 40 bits of its SHA-1, the same every time
    assert other == 10**10 + int(hashlib.sha1(b"crop513_2007_000033").hexdigest()[:10], 16) < 2**53
    assert voc_image_id("crop513_2007_000034") not in (other, 2007000034)
    with pytest.raises(DataError, match="both map"):
        image_ids(["2007_000032", "2007000032"])
    cats = categories_from_names(["aeroplane", "bicycle"])
    assert cats == [{"id": 1, "name": "aeroplane", "supercategory": "object"},
                    {"id": 2, "name": "bicycle", "supercategory": "object"}]


def test_instance_results_map_labels_and_drop_empty_and_low_scores():
    masks = np.stack([_square(8, 8, 0, 0, 2), np.zeros((8, 8), bool), _square(8, 8, 4, 4, 3), _square(8, 8, 0, 5, 1)])
    res = instance_results(7, masks, [0, 1, 19, 2], [0.9, 0.8, 0.5, 0.0], {c: c + 1 for c in range(20)}, min_score=0)
    assert [(r["image_id"], r["category_id"], r["score"], r["area"]) for r in res] == [(7, 1, 0.9, 4), (7, 20, 0.5, 9)]
    anns = results_to_annotations(res, first_id=5)
    assert [(a["id"], a["area"], a["bbox"], a["iscrowd"]) for a in anns] == [
        (5, 4, [0.0, 0.0, 2.0, 2.0], 0), (6, 9, [4.0, 4.0, 3.0, 3.0], 0)]
    assert "score" not in anns[0]
    with pytest.raises(DataError, match="class label 20"):
        instance_results(1, masks[:1], [20], [1.0], {c: c + 1 for c in range(20)})
    with pytest.raises(DataError, match="class label -1"):
        instance_results(1, masks[:1], [-1], [1.0], list(range(1, 21)))


# ------------------------------------------------------------------------------------------------------- COCOeval
H, W = 32, 40
CATS = categories_from_names(["a", "b"])
L2C = {0: 1, 1: 2}
# GT: image 1 holds a1 (class a) and b1 (class b); image 2 holds a2 (class a).
GT_INSTANCES = {
    1: ([_square(H, W, 2, 2, 10), _square(H, W, 18, 20, 12)], [0, 1]),
    2: ([_square(H, W, 5, 25, 8)], [0]),
}


def _gt_dict() -> dict:
    images = [{"id": i, "file_name": f"{i}.jpg", "width": W, "height": H} for i in GT_INSTANCES]
    anns: list[dict] = []
    for i, (masks, labels) in GT_INSTANCES.items():
        anns += results_to_annotations(instance_results(i, np.stack(masks), labels, np.ones(len(labels)), L2C),
                                       first_id=len(anns) + 1)
    return annotations_file(images, CATS, anns)


def _results(dets: list[tuple[int, np.ndarray, int, float]]) -> list[dict]:
    return [r for i, m, c, s in dets for r in instance_results(i, m[None], [c], [s], L2C)]


def test_ground_truth_exported_as_results_scores_ap_one():
    gt = _gt_dict()
    dets = [(i, m, c, 1.0) for i, (masks, labels) in GT_INSTANCES.items() for m, c in zip(masks, labels)]
    stats = coco_segm_eval(gt, _results(dets))
    assert stats["AP"] == exactly(1.0) and stats["AP50"] == exactly(1.0) and stats["AP75"] == exactly(1.0)
    assert stats["AP50_per_class"] == {"a": exactly(1.0), "b": exactly(1.0)}
    # the same through files: the GT written as JSON loads with pycocotools.coco.COCO
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = json.loads(json.dumps(gt))
    coco.createIndex()
    assert sorted(coco.getImgIds()) == [1, 2] and len(coco.getAnnIds()) == 3
    np.testing.assert_array_equal(coco.annToMask(coco.loadAnns(coco.getAnnIds(imgIds=[2]))[0]),
                                  GT_INSTANCES[2][0][0])


def test_wrong_class_lowers_ap_by_the_derived_amount():
    """a1 right (0.9); a2's mask labelled b (0.8, a false b); b1 right (0.7).

    Class a: 1 of 2 found at precision 1 → precision 1 at the 51 recall points 0..0.50, 0 after: AP 51/101.
    Class b: ranked [false, true] → envelope precision 1/2 at every recall point: AP 1/2. Exact masks, so every IoU
    threshold gives the same: AP = AP50 = AP75 = (51/101 + 1/2) / 2. (eval_ins_seg's VOC AP: (1/2 + 1/2) / 2.)
    """
    (a1, b1), _ = GT_INSTANCES[1]
    a2 = GT_INSTANCES[2][0][0]
    stats = coco_segm_eval(_gt_dict(), _results([(1, a1, 0, 0.9), (2, a2, 1, 0.8), (1, b1, 1, 0.7)]))
    expected = (51 / 101 + 0.5) / 2
    for key in ("AP", "AP50", "AP75"):
        assert stats[key] == exactly(expected)
    assert stats["AP50_per_class"] == {"a": exactly(51 / 101), "b": exactly(0.5)}
    from misc.eval.instance_ap import eval_instance_segmentation_voc

    voc = eval_instance_segmentation_voc([np.stack([a1, b1]), a2[None]], [np.array([0, 1]), np.array([1])],
                                         [np.array([0.9, 0.7]), np.array([0.8])],
                                         [np.stack(GT_INSTANCES[1][0]), a2[None]], [np.array([0, 1]), np.array([0])])
    assert voc["map"] == pytest.approx(0.5)


def test_shifted_instance_counts_at_the_iou_thresholds_it_passes():
    """a1 shifted 2 px right: IoU (8·10) / (12·10) = 2/3, a true positive at IoU 0.50..0.65 (4 of 10 thresholds);
    every other instance exact. Class a: at those 4 thresholds AP 1, at the other 6 only a2 is found (1 of 2, at
    precision 1 as it ranks first): 51/101. Class b: 1. AP50 = 1, AP75 = (51/101 + 1) / 2."""
    (a1, b1), _ = GT_INSTANCES[1]
    a2 = GT_INSTANCES[2][0][0]
    shifted = np.roll(a1, 2, axis=1)
    stats = coco_segm_eval(_gt_dict(), _results([(2, a2, 0, 0.9), (1, shifted, 0, 0.8), (1, b1, 1, 0.7)]))
    ap_a = (4 * 1.0 + 6 * 51 / 101) / 10
    assert stats["AP50"] == exactly(1.0)
    assert stats["AP75"] == exactly((51 / 101 + 1) / 2)
    assert stats["AP"] == exactly((ap_a + 1.0) / 2)


def test_eval_restricts_to_img_ids_and_handles_no_detections():
    gt = _gt_dict()
    a2 = GT_INSTANCES[2][0][0]
    only2 = coco_segm_eval(gt, _results([(2, a2, 0, 1.0), (1, GT_INSTANCES[1][0][0], 1, 0.5)]), img_ids=[2])
    assert only2["AP"] == exactly(1.0) and np.isnan(only2["AP50_per_class"]["b"])  # image 1 (b1 and the false b) left out
    empty = coco_segm_eval(gt, [])
    assert empty["AP"] == 0.0 and empty["AP50"] == 0.0 and empty["AP50_per_class"] == {"a": 0.0, "b": 0.0}
    with pytest.raises(DataError, match="not in the ground truth"):
        coco_segm_eval(gt, [], img_ids=[3])


def test_eval_summary_goes_to_the_logger_not_stdout(caplog, capsys):
    import logging

    gt = _gt_dict()
    dets = [(i, m, c, 1.0) for i, (masks, labels) in GT_INSTANCES.items() for m, c in zip(masks, labels)]
    with caplog.at_level(logging.INFO, logger="misc.eval.coco_json"):
        coco_segm_eval(gt, _results(dets))
    assert capsys.readouterr().out == ""
    assert any("Average Precision" in r.getMessage() and "IoU=0.50 " in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------------------- the step
@pytest.fixture(scope="module")
def tiny_voc(tmp_path_factory):
    from voc12.synthetic import make_synthetic_voc

    root = tmp_path_factory.mktemp("cocoann") / "VOC2012"
    make_synthetic_voc(root, num_train=4, num_val=2, num_extra_aug=0, num_test=0,
                       image_size=((40, 48), (48, 60)), seed=0, max_objects=3)
    return root


def _args(root, work, *extra):
    import run_sample

    return run_sample.parse_args(["--voc12_root", str(root), "--work_dir", str(work), "--infer_list", "train",
                                  "--chainer_eval_set", "train", "--make_cocoann_pass", "true", *extra])


def _gt_instances(root, args) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{id: (GT masks (R, H, W), 0-based labels (R,))} of the train ids."""
    from misc.eval.instance_ap import read_voc_instances
    from voc12.dataloader import class_gt_path, object_gt_path, open_voc

    return {i: read_voc_instances(object_gt_path(root, i), class_gt_path(root, i))
            for i in open_voc(root, args.list_cache_dir).ids("train")}


def _write_pseudo_labels_from_gt(root, args, drop: tuple[str, int] | None = None
                                 ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """make_ins_seg_labels-style outputs = the GT instances (score 0.9), plus a 1-pixel fragment of score 0 in a
    corner; ``drop`` = (id, k): the GT's k-th instance of that image is left out. Returns :func:`_gt_instances`."""
    from misc.core.paths import ins_seg_path
    from misc.core.io import save_npz

    gts = _gt_instances(root, args)
    for img_id, (masks, labels) in gts.items():
        frag = np.zeros((1,) + masks.shape[1:], bool)
        frag[0, 0, 0] = True
        keep = np.arange(len(labels)) != drop[1] if drop and img_id == drop[0] else np.ones(len(labels), bool)
        save_npz(ins_seg_path(args.ins_seg_out_dir, img_id), score=np.r_[np.full(len(masks[keep]), 0.9), 0.0],
                 mask=np.concatenate([masks[keep], frag]), **{"class": np.r_[labels[keep], labels[0]].astype(np.int64)})
    return gts


def test_make_cocoann_on_tiny_voc(tiny_voc, tmp_path):
    from pycocotools.coco import COCO

    from step import make_cocoann

    args = _args(tiny_voc, tmp_path)
    gts = _write_pseudo_labels_from_gt(tiny_voc, args)
    n_gt = sum(len(g[1]) for g in gts.values())
    metrics = make_cocoann.run(args)

    out = tmp_path / "result" / "cocoann"
    coco = COCO(str(out / "pseudo_instances_train.json"))
    assert sorted(coco.getImgIds()) == [2090000001, 2090000002, 2090000003, 2090000004]
    for img_id, (masks, labels) in gts.items():
        num = voc_image_id(img_id)
        rec = coco.loadImgs([num])[0]
        with Image.open(tiny_voc / "JPEGImages" / f"{img_id}.jpg") as im:
            assert (rec["width"], rec["height"]) == im.size
        assert rec["file_name"] == f"{img_id}.jpg"
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[num]))
        assert len(anns) == len(labels)  # the score-0 fragment is not a training annotation
        assert [a["category_id"] for a in anns] == [int(c) + 1 for c in labels]
        cls_png = np.asarray(Image.open(tiny_voc / "SegmentationClass" / f"{img_id}.png"))
        for a, m in zip(anns, masks):
            np.testing.assert_array_equal(coco.annToMask(a).astype(bool), m)
            assert set(np.unique(cls_png[m])) == {a["category_id"]}  # 1-based = VOC's class index
    assert [c["id"] for c in coco.loadCats(coco.getCatIds())] == list(range(1, 21))
    assert coco.loadCats([15])[0]["name"] == "person"

    results = json.loads((out / "pseudo_instances_train_results.json").read_text())
    assert len(results) == n_gt + len(gts) and {r["score"] for r in results} == {0.9, 0.0}
    assert set(results[0]) == {"image_id", "category_id", "segmentation", "score"}
    coco_gt = COCO(str(out / "gt_instances_train.json"))
    assert len(coco_gt.getAnnIds()) == n_gt
    coco_gt.loadRes(str(out / "pseudo_instances_train_results.json"))  # results fit the GT's image ids

    # every GT instance found; the fragments rank last and do not lower the AP
    assert metrics["segm_AP"] == exactly(1.0) and metrics["segm_AP50"] == exactly(1.0)
    stored = json.loads((tmp_path / "result" / "metrics.json").read_text())["make_cocoann"]
    assert stored["segm_AP"] == exactly(1.0) and stored["segm_AP50"] == exactly(1.0) and stored["eval_set"] == "train"
    assert stored["num_instances"] == n_gt + len(gts) and stored["num_annotations"] == n_gt
    assert str(tmp_path / "result" / "ins_seg") in stored["inputs"]


def test_make_cocoann_missed_instance_and_min_score(tiny_voc, tmp_path):
    """One GT instance of class c left out: the others are found at precision 1 (the score-0 fragments rank last),
    so AP_c = #{recall points <= (n_c - 1)/n_c} / 101, or 0 when n_c = 1 (no true positive: precision 0 even at
    recall 0); every other class 1."""
    from step import make_cocoann

    args = _args(tiny_voc, tmp_path, "--cocoann_min_score", "0.95")
    gts = _gt_instances(tiny_voc, args)
    all_labels = np.concatenate([g[1] for g in gts.values()])
    counts = np.bincount(all_labels, minlength=20)
    for drop in [(i, 0) for i in gts] + [(i, k) for i in gts for k in range(len(gts[i][1]))]:
        if counts[gts[drop[0]][1][drop[1]]] >= 2:  # prefer a class with several instances (its AP is not 0)
            break
    _write_pseudo_labels_from_gt(tiny_voc, args, drop=drop)
    c = int(gts[drop[0]][1][drop[1]])
    n_c = int(counts[c])
    ap_c = float((RECALL_POINTS <= (n_c - 1) / n_c + 1e-12).sum()) / 101 if n_c > 1 else 0.0
    assert 0 < ap_c < 1  # the data (seed 0): class 7 (cat) in two images
    n_classes = len(np.unique(all_labels))
    metrics = make_cocoann.run(args)
    assert metrics["segm_AP"] == exactly((n_classes - 1 + ap_c) / n_classes)
    assert metrics["segm_AP50_per_class"][metrics_name(c)] == exactly(ap_c)
    assert metrics["num_annotations"] == 0  # every score (0.9, 0) <= 0.95
    train = json.loads((tmp_path / "result" / "cocoann" / "pseudo_instances_train.json").read_text())
    assert train["annotations"] == [] and len(train["images"]) == 4


def test_make_cocoann_on_the_real_voc_sample(real_voc_root, tmp_path, caplog):
    """Real ids and sizes; no SegmentationObject in the sample: exported, not evaluated. The pseudo instances are the
    4-connected components of each class of SegmentationClass."""
    import logging

    from pycocotools.coco import COCO
    from skimage import measure

    from misc.core.paths import ins_seg_path
    from misc.core.io import save_npz
    from step import make_cocoann
    from voc12.dataloader import open_voc

    args = _args(real_voc_root, tmp_path)
    ids = open_voc(real_voc_root, args.list_cache_dir).ids("train")
    classes = {}
    for img_id in ids:
        cls = np.asarray(Image.open(real_voc_root / "SegmentationClass" / f"{img_id}.png"))
        masks, labels = [], []
        for c in sorted(set(np.unique(cls).tolist()) - {0, 255}):
            comp = measure.label(cls == c, connectivity=1)
            masks += [comp == k for k in range(1, comp.max() + 1)]
            labels += [c - 1] * comp.max()
        classes[img_id] = cls
        save_npz(ins_seg_path(args.ins_seg_out_dir, img_id), score=np.linspace(1, 0.5, len(masks)),
                 mask=np.stack(masks), **{"class": np.asarray(labels, np.int64)})
    with caplog.at_level(logging.WARNING):
        metrics = make_cocoann.run(args)
    assert "no SegmentationObject folder" in caplog.text
    assert "segm_AP" not in metrics and metrics["num_images"] == len(ids)
    assert not (tmp_path / "result" / "cocoann" / "gt_instances_train.json").exists()
    coco = COCO(str(tmp_path / "result" / "cocoann" / "pseudo_instances_train.json"))
    assert "2007_000032" in ids and coco.loadImgs([2007000032])[0] == {
        "id": 2007000032, "file_name": "2007_000032.jpg", "width": 500, "height": 281}
    for img_id in ids:
        num = voc_image_id(img_id)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[num]))
        rebuilt = np.zeros_like(classes[img_id])
        for a in anns:
            rebuilt[coco.annToMask(a).astype(bool)] = a["category_id"]
        np.testing.assert_array_equal(rebuilt, np.where(classes[img_id] == 255, 0, classes[img_id]))


def metrics_name(label: int) -> str:
    from voc12.facts import CLASS_NAMES as VOC_CLASS_NAMES

    return VOC_CLASS_NAMES[label]


def test_make_cocoann_bad_input(tiny_voc, tmp_path):
    from step import make_cocoann

    args = _args(tiny_voc, tmp_path)
    with pytest.raises(MissingDataFileError, match=r"2090_000001\.npz.*make_ins_seg_labels"):
        make_cocoann.run(args)
    _write_pseudo_labels_from_gt(tiny_voc, args)
    bad = _args(tiny_voc, tmp_path, "--chainer_eval_set", "val")
    with pytest.raises(FlagValueError, match="--chainer_eval_set val are not in --infer_list train"):
        make_cocoann.run(bad)
    args.dataset = "cub"
    with pytest.raises(FlagValueError, match="--dataset cub"):
        make_cocoann.dataset_records(args, ["2090_000001"])
    from misc.core.paths import ins_seg_path
    from misc.core.io import save_npz

    args.dataset = "voc"
    save_npz(ins_seg_path(args.ins_seg_out_dir, "2090_000003"), score=np.ones(1), mask=np.ones((1, 5, 5), bool),
             **{"class": np.zeros(1, np.int64)})
    with pytest.raises(UserError, match=r"2090_000003\.npz: masks of shape \(1, 5, 5\)"):
        make_cocoann.run(args)


def test_step_is_registered_off_by_default(capsys):
    import run_sample

    a = run_sample.parse_args([])
    assert a.make_cocoann_pass is False and a.cocoann_min_score == 0.0
    assert a.cocoann_out_dir.endswith("result/cocoann")
    on = run_sample.parse_args(["--make_ins_seg_pass", "1", "--eval_ins_seg_pass", "1", "--make_cocoann_pass", "1"])
    names = [s.name for s in run_sample.planned_steps(on)]
    assert names.index("make_cocoann") == names.index("eval_ins_seg") + 1
    assert run_sample.main(["--demo", "--make_cocoann_pass", "1", "--cocoann_min_score", "1.5", "--dry_run"]) == 2
    assert "--cocoann_min_score 1.5: must be in [0, 1]" in capsys.readouterr().err
