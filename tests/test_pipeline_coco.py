"""End to end on the synthetic COCO set (tiny preset, random weights): every VOC step with 81 labels, the instance
steps, the category map, the GT masks, projected times, and a rerun that skips finished work."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import run_sample
from misc.core.io import load_npz
from tests.conftest import rerun_log

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def coco_run(tiny_coco_run):
    from coco.dataset import open_coco

    work, argv = tiny_coco_run
    return work, argv, open_coco(work / "data" / "demo_coco", work / "result")


def test_lists_categories_and_ground_truth(coco_run):
    work, _, index = coco_run
    data = json.loads((work / "data" / "demo_coco" / "annotations" / "instances_train2014.json").read_text())
    annotated = {im["id"] for im in data["images"]} & {a["image_id"] for a in data["annotations"]}
    assert len(index.ids("train")) == len(annotated) == len(data["images"]) - 1  # the empty image is left out
    cmap = json.loads((work / "result" / "coco_categories.json").read_text())["categories"]
    assert len(cmap) == 80 and cmap[0] == {"label": 1, "id": 1, "name": "person", "supercategory": ""}
    assert cmap[-1]["id"] == 90
    masks = sorted(p.stem for p in (work / "result" / "coco_gt_masks").glob("*.png"))
    assert masks == sorted(index.ids("train") + index.ids("val"))  # built by the evaluations, one per scored image
    config = json.loads((work / "result" / "config.json").read_text())
    assert config["num_classes"] == 80 and config["dataset"] == "coco"


def test_per_image_outputs_use_80_classes(coco_run):
    work, _, index = coco_run
    for img_id in index.ids("train"):
        label = index.label(img_id)
        keys = np.nonzero(label)[0]
        cam = load_npz(work / "result" / "cam" / f"{img_id}.npz")
        assert cam["keys"].tolist() == keys.tolist() and cam["high_res"].shape[1:] == index.image_size(img_id)
        allowed = {0} | {int(k) + 1 for k in keys}
        ir = np.asarray(Image.open(work / "result" / "ir_label" / f"{img_id}.png"))
        assert set(np.unique(ir).tolist()) <= allowed | {255}
        sem = Image.open(work / "result" / "sem_seg" / f"{img_id}.png")
        assert sem.mode == "P" and set(np.unique(np.asarray(sem)).tolist()) <= allowed
        ins = load_npz(work / "result" / "ins_seg" / f"{img_id}.npz")
        assert set(ins["class"].tolist()) <= set(keys.tolist())
        assert ins["mask"].shape[1:] == index.image_size(img_id)
    assert max(int(k) for i in index.ids("train") for k in np.nonzero(index.label(i))[0]) > 20  # beyond VOC's range


def test_metrics_models_and_projections(coco_run):
    work, argv, index = coco_run
    m = json.loads((work / "result" / "metrics.json").read_text())
    for key in ("eval_cam", "eval_sem_seg"):
        assert 0.0 <= m[key]["miou"] <= 1.0 and len(m[key]["iou"]) <= 81
        assert m[key]["num_images"] == len(index.ids("train"))
    # chainercv's confusion grows to the largest label seen (tv = label 62 here) and is cut to the 81 labels
    assert 21 < len(m["eval_sem_seg"]["iou"]) <= 81 and 21 < len(m["eval_cam"]["iou"]) <= 81
    assert "map_0.5" in m["eval_ins_seg"] and set(m["eval_ins_seg"]["ap_0.5"]) <= set(index.class_names)
    for variant in ("no_crf", "crf"):
        assert 0.0 <= m["eval_deeplab"][variant]["Mean IoU"] <= 1.0
        assert len(m["eval_deeplab"][variant]["Class IoU"]) == 81
    assert m["eval_deeplab"]["num_images"] == len(index.ids("val"))
    args = run_sample.parse_args(argv)
    state = torch.load(args.deeplab_weights_name, weights_only=True)
    assert {v.shape[0] for k, v in state.items() if "aspp" in k and k.endswith("weight")} == {81}
    assert torch.load(args.cam2_weights_name, weights_only=True)["head.weight"].shape[0] == 80
    lines = (work / "sample_train_eval.log").read_text().splitlines()
    for step in ("train_cam", "make_cam", "cam_to_ir_label", "train_irn", "make_sem_seg_labels", "eval_sem_seg"):
        assert any(f" {step}: " in line and "projected time for" in line for line in lines), step
    log = "\n".join(lines)
    assert "step.export_deeplab_test" not in log  # off for COCO (no test masks)


def test_rerun_skips_finished_work(coco_run):
    work, argv, _ = coco_run
    log = rerun_log(work, argv)
    for step in ("train_cam", "train_irn", "train_deeplab"):
        assert f"{step}: up to date" in log
    for step in ("make_cam", "cam_to_ir_label", "make_sem_seg_labels", "make_ins_seg_labels"):
        assert f"{step}: 0 processed" in log
    assert "reading" not in log or "instances_train2014.json (once" not in log  # the index came from its cache


def test_cocoann_exports_official_ids_and_scores_against_the_official_instances(coco_run):
    """make_cocoann on COCO: real image ids and sizes, official category ids, the official annotations (crowd
    regions included) as ground truth, and pycocotools' segm AP in metrics.json."""
    from pycocotools.coco import COCO

    work, argv, index = coco_run
    args = run_sample.parse_args(argv)
    from misc.core.paths import cocoann_annotations, cocoann_ground_truth

    ids = index.ids(args.infer_list)
    pseudo = COCO(str(cocoann_annotations(args, args.infer_list)))
    records = {r["id"]: r for r in index.image_records(ids)}
    assert sorted(pseudo.getImgIds()) == sorted(records)
    for image_id, im in pseudo.imgs.items():
        assert (im["width"], im["height"]) == (records[image_id]["width"], records[image_id]["height"])
    official = {c["id"] for c in index.category_records()}
    assert {c["id"] for c in pseudo.dataset["categories"]} == official
    by_stem = {index.image_records([i])[0]["id"]: i for i in ids}
    for ann in pseudo.dataset["annotations"]:  # each instance's category is one of its image's labels
        labels = {int(k) + 1 for k in np.nonzero(index.label(by_stem[ann["image_id"]]))[0]}
        assert ann["category_id"] in {index.label_to_category_id()[k] for k in labels}
    gt = json.loads(cocoann_ground_truth(args, args.chainer_eval_set).read_text())
    source = [a for i in index.ids(args.chainer_eval_set) for a in index.annotations(i)]
    assert len(gt["annotations"]) == len(source) and any(a["iscrowd"] for a in gt["annotations"])
    m = json.loads((work / "result" / "metrics.json").read_text())["make_cocoann"]
    assert 0.0 <= m["segm_AP50"] <= 1.0 and m["num_images"] == len(ids)
