"""End to end: the whole VOC pipeline (tiny preset, synthetic data, random weights) and a rerun that skips work."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import run_sample
from misc.core.io import load_npz

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tiny_voc_run):
    """The session's tiny VOC run (tests/conftest.py): every default step, the instance steps, 3 CAM epochs."""
    return tiny_voc_run


def _ids(work, split):
    from voc12.dataloader import open_voc

    return open_voc(work / "data" / "demo_voc12", work / "result").ids(split)


def test_cam_outputs(tiny_run):
    work, _ = tiny_run
    ids = _ids(work, "train_aug")
    from voc12.dataloader import open_voc, read_image

    voc = open_voc(work / "data" / "demo_voc12", work / "result")
    for img_id in ids[:5]:
        cam = load_npz(work / "result" / "cam" / f"{img_id}.npz")
        assert set(cam) == {"keys", "cam", "high_res"}
        h, w = read_image(voc.image_path(img_id)).shape[:2]
        k = int(voc.label(img_id).sum())
        assert cam["keys"].tolist() == np.nonzero(voc.label(img_id))[0].tolist()
        assert cam["cam"].shape == (k, (h - 1) // 4 + 1, (w - 1) // 4 + 1)
        assert cam["high_res"].shape == (k, h, w) and cam["high_res"].dtype == np.float32
        # per-class max normalisation: max = m / (m + 1e-5) <= 1, ReLU'd
        assert (cam["high_res"] >= 0).all() and (cam["high_res"].reshape(k, -1).max(1) <= 1).all()


def test_training_losses_fall_and_checkpoints_reload(tiny_run):
    work, argv = tiny_run
    metrics = json.loads((work / "result" / "metrics.json").read_text())
    epochs = metrics["train_cam"]["epochs"]
    assert len(epochs) == 3
    assert epochs[-1]["loss_cls_vit"] < epochs[0]["loss_cls_vit"]
    assert epochs[-1]["loss_cls_cnn"] < epochs[0]["loss_cls_cnn"]
    args = run_sample.parse_args(argv)
    from pipeline.models import build_cam_cnn, build_cam_vit

    for build, path in ((build_cam_vit, args.cam2_weights_name), (build_cam_cnn, args.cam1_weights_name)):
        model = build(args, pretrained=False)
        model.load_state_dict(torch.load(path, weights_only=True), strict=True)
    from pipeline.models import load_irn

    load_irn(args, torch.device("cpu"))
    assert metrics["train_irn"]["epochs"][0]["total"] > 0
    records = (work / "result" / "logs" / "train_cam.jsonl").read_text().splitlines()
    assert len(records) == 3 * (18 // 4) and json.loads(records[-1])["update"] == 3 * (18 // 4)


def test_label_outputs(tiny_run):
    work, _ = tiny_run
    for img_id in _ids(work, "train_aug")[:5]:
        ir = np.asarray(Image.open(work / "result" / "ir_label" / f"{img_id}.png"))
        assert set(np.unique(ir)) <= set(range(21)) | {255}
    from voc12.dataloader import open_voc

    voc = open_voc(work / "data" / "demo_voc12", work / "result")
    for img_id in _ids(work, "train"):
        im = Image.open(work / "result" / "sem_seg" / f"{img_id}.png")
        assert im.mode == "P"
        mask = np.asarray(im)
        assert mask.shape == Image.open(voc.image_path(img_id)).size[::-1]
        allowed = {0} | {int(k) + 1 for k in np.nonzero(voc.label(img_id))[0]}
        assert set(np.unique(mask)) <= allowed  # only background and the image's own classes
        ins = load_npz(work / "result" / "ins_seg" / f"{img_id}.npz")
        assert ins["mask"].shape[1:] == mask.shape and len(ins["score"]) == len(ins["class"]) == len(ins["mask"])


def test_metrics_and_pictures(tiny_run):
    work, _ = tiny_run
    m = json.loads((work / "result" / "metrics.json").read_text())
    for key in ("eval_cam", "eval_sem_seg"):
        assert 0.0 <= m[key]["miou"] <= 1.0 and len(m[key]["iou"]) >= 1
    assert set(m["eval_cam"]["sweep"]) >= {"0.15", "0.30"}
    assert "map_0.5" in m["eval_ins_seg"]
    assert 0.0 <= m["make_cocoann"]["segm_AP50"] <= 1.0 and m["make_cocoann"]["eval_set"] == "train"
    from pycocotools.coco import COCO

    coco = COCO(str(work / "result" / "cocoann" / "pseudo_instances_train.json"))
    assert len(coco.getImgIds()) == len(_ids(work, "train")) == m["make_cocoann"]["num_images"]
    for variant in ("no_crf", "crf"):
        assert 0.0 <= m["eval_deeplab"][variant]["Mean IoU"] <= 1.0
    assert m["train_deeplab"]["first_loss"] > 0
    assert any((work / "result" / "vis" / "cam").iterdir())
    assert any((work / "result" / "vis" / "sem_seg").iterdir())
    assert any((work / "result" / "vis" / "deeplab").iterdir())
    config = json.loads((work / "result" / "config.json").read_text())
    assert config["preset"] == "tiny" and config["make_ins_seg_pass"] is True
    log = (work / "sample_train_eval.log").read_text()
    assert "step.train_cam: start" in log and "step.eval_deeplab: done in" in log


def test_test_export(tiny_run):
    work, _ = tiny_run
    from voc12.dataloader import open_voc

    voc = open_voc(work / "data" / "demo_voc12", work / "result")
    out = work / "result" / "deeplab" / "results" / "VOC2012" / "Segmentation" / "comp6_test_cls"
    ids = voc.ids("test")
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(ids)
    for img_id in ids:
        im = Image.open(out / f"{img_id}.png")
        assert im.mode == "P" and im.size == Image.open(voc.image_path(img_id)).size
    import tarfile

    with tarfile.open(work / "result" / "deeplab" / "voc2012_test_comp6.tar.gz") as tar:
        names = tar.getnames()
    assert f"results/VOC2012/Segmentation/comp6_test_cls/{ids[0]}.png" in names


def test_rerun_skips_finished_work(tiny_run):
    work, argv = tiny_run
    cam_file = next((work / "result" / "cam").glob("*.npz"))
    before = cam_file.stat().st_mtime_ns
    rerun = argv + ["--train_cam_pass", "0", "--train_irn_pass", "0", "--train_deeplab_pass", "0"]
    assert run_sample.main(rerun) == 0
    assert cam_file.stat().st_mtime_ns == before
    log = (work / "sample_train_eval.log").read_text()
    assert log.count("crt run ") == 2  # appended
    for step in ("make_cam", "cam_to_ir_label", "make_sem_seg_labels", "make_ins_seg_labels"):
        assert f"{step}: 0 processed" in log


def _log_since(work, marker_count):
    """The part of the appended log written by the run with header number ``marker_count`` (1-based)."""
    text = (work / "sample_train_eval.log").read_text()
    return text.split("crt run ")[marker_count]


def test_identical_rerun_skips_training_then_changed_flag_recomputes_only_what_it_shapes(tiny_run):
    work, argv = tiny_run
    weights = {p: p.stat().st_mtime_ns for p in (work / "sess").glob("*.pth")}
    n_runs = (work / "sample_train_eval.log").read_text().count("crt run ")
    assert run_sample.main(argv) == 0  # the same command again: everything up to date
    log = _log_since(work, n_runs + 1)
    for step in ("train_cam", "train_irn", "train_deeplab"):
        assert f"{step}: up to date" in log
    for step in ("make_cam", "cam_to_ir_label", "make_sem_seg_labels", "export_deeplab_test"):
        assert f"{step}: 0 processed" in log
    assert {p: p.stat().st_mtime_ns for p in weights} == weights

    assert run_sample.main(argv + ["--beta", "8"]) == 0  # the walk's beta shapes the masks and what follows them
    log = _log_since(work, n_runs + 2)
    assert "train_cam: up to date" in log and "train_irn: up to date" in log
    assert "make_cam: 0 processed" in log and "cam_to_ir_label: 0 processed" in log
    assert "make_sem_seg_labels: removing" in log and "beta: 10.0 -> 8.0" in log
    n_masks = len(list((work / "result" / "sem_seg").glob("*.png")))
    assert f"make_sem_seg_labels: {n_masks} processed" in log
    assert "train_deeplab: configuration changed" in log and "train_deeplab: up to date" not in log
    manifest = json.loads((work / "result" / "sem_seg" / ".crt_manifest.json").read_text())
    assert manifest["config"]["beta"] == 8
    metrics = json.loads((work / "result" / "metrics.json").read_text())
    from misc.core.fingerprint import identity

    assert metrics["eval_sem_seg"]["inputs"][str(work / "result" / "sem_seg")] == identity(work / "result" / "sem_seg")
