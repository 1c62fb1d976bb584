"""End to end on a folder dataset of one's own (tiny preset, random weights): the synthetic folder of 3 classes, 12
images, 4 with a mask and 1 of background only, through the whole default pipeline; then a folder without any
mask, whose evaluations have nothing to score."""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import run_sample
from folder.build import open_folder
from misc.core.io import load_npz
from tests.conftest import TINY_FOLDER_ARGV, rerun_log

pytestmark = pytest.mark.slow

CLASS_NAMES = ("ring", "star", "box")


@pytest.fixture(scope="module")
def folder_run(tiny_folder_run):
    work, argv = tiny_folder_run
    root = argv[argv.index("--folder_root") + 1]
    return work, argv, open_folder(root)


def test_the_dataset_and_its_run_records(folder_run):
    work, _, index = folder_run
    assert index.class_names == CLASS_NAMES and len(index.ids("train")) == 12 and len(index.ids("val")) == 4
    config = json.loads((work / "result" / "config.json").read_text())
    assert (config["dataset"], config["num_classes"]) == ("folder", 3)
    log = (work / "sample_train_eval.log").read_text()
    assert (f"folder dataset {index.root}: 3 classes, 12 images in labels.csv (1 with no class: background only), "
            "4 with a mask; splits: train 12, val 4") in log


def test_pseudo_masks_hold_only_the_classes_of_their_image(folder_run):
    work, _, index = folder_run
    for img_id in index.ids("train"):
        keys = np.flatnonzero(index.label(img_id))
        allowed = {0} | {int(k) + 1 for k in keys}
        h, w = np.asarray(Image.open(index.image_path(img_id))).shape[:2]
        cam = load_npz(work / "result" / "cam" / f"{img_id}.npz")
        assert cam["keys"].tolist() == keys.tolist() and cam["high_res"].shape == (len(keys), h, w)
        ir = np.asarray(Image.open(work / "result" / "ir_label" / f"{img_id}.png"))
        assert ir.shape == (h, w) and set(np.unique(ir).tolist()) <= allowed | {255}
        sem = Image.open(work / "result" / "sem_seg" / f"{img_id}.png")
        values = set(np.unique(np.asarray(sem)).tolist())
        assert sem.mode == "P" and sem.size == (w, h) and values <= allowed and values <= {0, 1, 2, 3}
    background_only = [i for i in index.ids("train") if not index.label(i).any()]
    assert background_only == ["img_011"]
    assert not np.asarray(Image.open(work / "result" / "sem_seg" / "img_011.png")).any()


def test_evaluations_score_the_masked_images(folder_run):
    work, argv, _ = folder_run
    m = json.loads((work / "result" / "metrics.json").read_text())
    for key in ("eval_cam", "eval_sem_seg"):
        assert (m[key]["eval_set"], m[key]["num_images"], m[key]["num_listed"]) == ("train", 4, 12)
        assert 0.0 <= m[key]["miou"] <= 1.0 and 1 <= len(m[key]["iou"]) <= 4
    dl = m["eval_deeplab"]
    assert (dl["val_list"], dl["num_images"], dl["num_listed"]) == ("val", 4, 4)
    for variant in ("no_crf", "crf"):
        assert 0.0 <= dl[variant]["Mean IoU"] <= 1.0 and list(dl[variant]["Class IoU"]) == ["0", "1", "2", "3"]
    log = (work / "sample_train_eval.log").read_text()
    for line in ("eval_cam: scored 4 of 12 images of train: the ones with a mask",
                 "eval_sem_seg: scored 4 of 12 images of train: the ones with a mask",
                 "eval_deeplab: scored 4 of 4 images of val: the ones with a mask"):
        assert line in log
    assert "step.export_deeplab_test" not in log  # off for a folder
    args = run_sample.parse_args(argv)
    assert torch.load(args.cam2_weights_name, weights_only=True)["head.weight"].shape[0] == 3
    state = torch.load(args.deeplab_weights_name, weights_only=True)
    assert {v.shape[0] for k, v in state.items() if "aspp" in k and k.endswith("weight")} == {4}


def test_the_report_names_the_classes(folder_run):
    work, _, _ = folder_run
    html = (work / "result" / "report.html").read_text()
    assert "crt run report: FOLDER" in html
    for name in ("background", *CLASS_NAMES):
        assert f"<td>{name}</td>" in html or f">{name}<" in html, name
    assert "Train images: CAMs, IR labels, pseudo masks" in html and "Val images: DeepLab predictions" in html
    assert "CAM: ring" in html or "CAM: star" in html or "CAM: box" in html


def test_every_flag_the_folder_run_reads_is_declared(folder_run):
    """The folder run's reads (tests/flag_reads.py, with the other tiny runs' of the session) are all declared."""
    from pipeline import flags as F
    from tests.flag_reads import READS

    assert {"train_cam", "make_cam", "eval_cam", "eval_deeplab", "report"} <= set(READS)
    assert F.undeclared_reads(READS) == []
    assert "folder_root" in READS["train_cam"]


def test_rerun_skips_finished_work(folder_run):
    work, argv, _ = folder_run
    log = rerun_log(work, argv)
    for step in ("train_cam", "train_irn", "train_deeplab"):
        assert f"{step}: up to date" in log
    for step in ("make_cam", "cam_to_ir_label", "make_sem_seg_labels"):
        assert f"{step}: 0 processed" in log
    assert "rebuilding folder index cache" not in log


def test_a_folder_without_masks_has_nothing_to_score(tmp_path, tiny_folder_run):
    _, argv = tiny_folder_run
    root = tmp_path / "no_masks"
    shutil.copytree(argv[argv.index("--folder_root") + 1], root)
    shutil.rmtree(root / "masks")
    work = tmp_path / "work"
    off = [f"--{s}" for s in ("cam_to_ir_label_pass", "train_irn_pass", "make_sem_seg_pass", "train_deeplab_pass")]
    argv = [*TINY_FOLDER_ARGV, "--folder_root", str(root), "--work_dir", str(work), "--cam_num_epoches", "1",
            "--make_cam_pass", "false", *(a for flag in off for a in (flag, "false"))]
    assert run_sample.main(argv) == 0
    log = (work / "sample_train_eval.log").read_text()
    assert "train_cam: --val_list val holds no image: no validation loss" in log
    for line in ("eval_cam: nothing to score: none of the 12 images of train has a mask",
                 "eval_sem_seg: nothing to score: none of the 12 images of train has a mask",
                 "eval_deeplab: nothing to score: val holds no image"):
        assert line in log
    m = json.loads((work / "result" / "metrics.json").read_text())
    nothing = "nothing: no image of the list has a mask"
    assert {k: v for k, v in m["eval_cam"].items() if k != "inputs"} == {
        "eval_set": "train", "num_images": 0, "num_listed": 12, "scored": nothing}
    assert (m["eval_sem_seg"]["num_images"], m["eval_sem_seg"]["scored"]) == (0, nothing)
    assert (m["eval_deeplab"]["val_list"], m["eval_deeplab"]["num_listed"], m["eval_deeplab"]["scored"]) == (
        "val", 0, nothing)
    assert (work / "result" / "report.html").is_file()
