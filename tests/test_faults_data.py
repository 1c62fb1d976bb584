"""Bad data and corrupt outputs (#13): every case ends in a UserError whose message names the file / id / line.

Small synthetic data (VOC and CUB); the tiny VOC pipeline runs twice (train_cam + make_cam + eval_cam, then a rerun
after one CAM file is cut in half).
"""
import io
import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from misc.core.errors import CorruptOutputError, DataError, MissingDataFileError, UnreadableFileError, UserError
from misc.core.io import save_npz
from misc.engine.per_image import PerImageTask
from pipeline.steps import SEGMENTATION_STEPS

SEGMENTATION_SWITCHES = [s.switch for s in SEGMENTATION_STEPS]


# ---------------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def voc_base(tmp_path_factory):
    from voc12.synthetic import make_synthetic_voc

    root = tmp_path_factory.mktemp("fd_voc") / "voc"
    make_synthetic_voc(root, num_train=4, num_val=2, num_extra_aug=0, image_size=((40, 48), (48, 56)), num_test=0,
                       num_workers=0)
    return root


@pytest.fixture
def voc_root(voc_base, tmp_path):
    root = tmp_path / "voc"
    shutil.copytree(voc_base, root)
    return root


@pytest.fixture(scope="module")
def cub_base(tmp_path_factory):
    from cub.synthetic import make_synthetic_cub

    return make_synthetic_cub(tmp_path_factory.mktemp("fd_cub"), num_classes=3, train_per_class=2, test_per_class=1,
                              image_size=(32, 48))


@pytest.fixture
def cub_root(cub_base, tmp_path):
    root = tmp_path / "CUB_200_2011"
    shutil.copytree(cub_base, root)
    return root


def _val_ids(root):
    return (root / "ImageSets" / "Segmentation" / "val.txt").read_text().split()


def _save_png(path, arr, mode=None, palette=True):
    im = Image.fromarray(np.asarray(arr, np.uint8), mode)
    if palette and im.mode == "L":
        from misc.core.labels import label_palette as voc_palette

        im.putpalette(voc_palette())
    im.save(path)


def _truncate(path, keep=0.5):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep)])


def _assert_user_error(exc_info, cls, *parts):
    assert isinstance(exc_info.value, UserError) and isinstance(exc_info.value, cls), type(exc_info.value)
    msg = str(exc_info.value)
    for p in parts:
        assert str(p) in msg, (p, msg)
    return msg


# ---------------------------------------------------------------------------------------------------------------
# 1. VOC masks: mode, values, size
# ---------------------------------------------------------------------------------------------------------------

def test_rgb_mask_is_refused_naming_the_file(voc_root):
    from voc12.dataloader import read_label_png

    path = voc_root / "SegmentationClass" / f"{_val_ids(voc_root)[0]}.png"
    rgb = Image.open(path).convert("RGB")
    rgb.save(path)
    with pytest.raises(DataError) as e:
        read_label_png(path)
    msg = _assert_user_error(e, DataError, path, "mode RGB", "palette", "SegmentationClass")
    assert "colours" in msg


@pytest.mark.parametrize("bad", [21, 77])
def test_mask_values_out_of_range_name_file_and_values(voc_root, bad):
    from step.eval_sem_seg import evaluate_masks
    from voc12.dataloader import read_label_png

    img_id = _val_ids(voc_root)[0]
    path = voc_root / "SegmentationClass" / f"{img_id}.png"
    arr = np.asarray(Image.open(path)).copy()
    arr[:2, :3] = bad
    _save_png(path, arr)
    with pytest.raises(DataError) as e:
        read_label_png(path)
    _assert_user_error(e, DataError, path, f"found {bad}", "0..20 or 255", "6 pixel(s)")
    # the deeplab reader checks the same way
    from voc12.deeplab_data import read_label

    with pytest.raises(DataError, match=str(bad)):
        read_label(path)
    # valid masks read as before (values, dtype)
    other = voc_root / "SegmentationClass" / f"{_val_ids(voc_root)[1]}.png"
    np.testing.assert_array_equal(read_label_png(other), np.asarray(Image.open(other)).astype(np.uint8))
    # the evaluation refuses such a label (with the id) instead of growing the confusion to 1 + the label
    gt = np.asarray(Image.open(path)).astype(np.uint8)
    with pytest.raises(DataError) as e:
        evaluate_masks([np.zeros_like(gt)], [gt], [img_id])
    _assert_user_error(e, DataError, img_id, str(bad))


def test_confusion_meter_refuses_labels_outside_range():
    from misc.eval.metrics import ConfusionMeter, semantic_confusion

    gt = np.array([[0, 1], [77, -1]])
    pred = np.array([[0, 1], [1, 0]])
    assert semantic_confusion([pred], [gt]).shape == (78, 78)  # chainercv semantics without a limit
    with pytest.raises(DataError) as e:
        ConfusionMeter(21).add(pred, gt, "2007_000001")
    _assert_user_error(e, DataError, "2007_000001", "77")
    with pytest.raises(DataError, match="prediction has labels \\[30\\]"):
        ConfusionMeter(21).add(np.full((2, 2), 30), np.zeros((2, 2)), "x")
    meter = ConfusionMeter(21)  # in range: grows as before
    meter.add(pred, np.array([[0, 1], [2, -1]]))
    assert meter.confusion.shape == (3, 3)


def test_size_mismatch_names_the_id(voc_root):
    from step.eval_cam import evaluate_seeds
    from step.eval_sem_seg import evaluate_masks
    from misc.eval.metrics import deeplab_scores
    from voc12.dataloader import VOC12SegmentationDataset

    img_id = _val_ids(voc_root)[0]
    path = voc_root / "SegmentationClass" / f"{img_id}.png"
    arr = np.asarray(Image.open(path))
    _save_png(path, arr[:-3])  # three rows short
    ds = VOC12SegmentationDataset([img_id], voc_root / "SegmentationClass", 32, voc_root, crop_method="top_left")
    with pytest.raises(DataError) as e:
        ds[0]
    _assert_user_error(e, DataError, img_id, path, f"{img_id}.jpg", "size")
    gt = np.asarray(Image.open(path))
    pred = np.zeros(arr.shape, np.uint8)
    for call in (lambda: evaluate_masks([pred], [gt], [img_id]),
                 lambda: deeplab_scores([gt], [pred], 21, [img_id]),
                 lambda: evaluate_seeds([{"high_res": np.zeros((1,) + arr.shape, np.float32),
                                          "keys": np.array([0])}], [gt], [0.15], [img_id])):
        with pytest.raises(DataError) as e:
            call()
        _assert_user_error(e, DataError, img_id, "differ in size")


# ---------------------------------------------------------------------------------------------------------------
# 2. labels and images of listed ids
# ---------------------------------------------------------------------------------------------------------------

def test_listed_id_without_label(voc_root, tmp_path):
    from voc12.dataloader import VOC12ClassificationDataset, open_voc

    voc = open_voc(voc_root, tmp_path / "cache")
    known = voc.ids("train")[0]
    shutil.copy(voc.image_path(known), voc_root / "JPEGImages" / "2099_000001.jpg")
    lst = tmp_path / "mine.txt"
    lst.write_text(f"{known}\n2099_000001\n")
    ids = voc.ids(str(lst))
    with pytest.raises(DataError) as e:
        voc.check_ids(ids, str(lst))
    msg = _assert_user_error(e, DataError, "'2099_000001'", lst, "Annotations", "SegmentationClassAug",
                             "SegmentationClass")
    assert known not in msg
    with pytest.raises(DataError, match="2099_000001"):
        voc.label("2099_000001")
    with pytest.raises(DataError, match="2099_000001"):
        VOC12ClassificationDataset(ids, voc_root, voc.labels)[1]


def test_listed_id_without_jpeg(voc_root, tmp_path):
    from voc12.dataloader import VOC12ImageDataset, open_voc

    voc = open_voc(voc_root, tmp_path / "cache")
    gone = voc.ids("train")[1]
    voc.image_path(gone).unlink()
    with pytest.raises(MissingDataFileError) as e:
        voc.check_ids(voc.ids("train"), "voc12/train.txt")
    _assert_user_error(e, MissingDataFileError, voc.image_path(gone), "voc12/train.txt", "1 image(s)")
    with pytest.raises(MissingDataFileError) as e:
        VOC12ImageDataset([gone], voc_root)[0]
    _assert_user_error(e, MissingDataFileError, gone, voc.image_path(gone))


def test_truncated_voc_image(voc_root):
    from voc12.dataloader import VOC12ImageDataset

    img_id = _val_ids(voc_root)[0]
    path = voc_root / "JPEGImages" / f"{img_id}.jpg"
    _truncate(path, 0.4)
    with pytest.raises(UnreadableFileError) as e:
        VOC12ImageDataset([img_id], voc_root)[0]
    _assert_user_error(e, UnreadableFileError, img_id, path, "truncated")


# ---------------------------------------------------------------------------------------------------------------
# 3. CUB metadata, classes, images
# ---------------------------------------------------------------------------------------------------------------

def _edit_line(path, lineno, new):
    lines = path.read_text().splitlines()
    lines[lineno - 1] = new
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("name,line,what", [
    ("bounding_boxes.txt", "2 12.0 x1 10.0 9.0", "box"),
    ("image_class_labels.txt", "2 two", "class id"),
    ("images.txt", "2", "expected 'id' + 1 field"),
    ("bounding_boxes.txt", "2 1 2 3", "expected 'id' + 4 field"),
])
def test_cub_metadata_line_that_does_not_parse(cub_root, name, line, what):
    from cub.dataset import CUBMetadata

    _edit_line(cub_root / name, 2, line)
    with pytest.raises(UserError) as e:
        CUBMetadata.load(cub_root)
    _assert_user_error(e, UserError, f"{cub_root / name}:2", repr(line), what)


def test_cub_class_beyond_num_classes(cub_root):
    from cub.dataset import CUBMetadata

    _edit_line(cub_root / "image_class_labels.txt", 3, "3 250")
    with pytest.raises(DataError) as e:  # classes.txt lists 3 classes
        CUBMetadata.load(cub_root)
    _assert_user_error(e, DataError, "image_class_labels.txt:3", "image id 3", "class id 250", "1..3")
    (cub_root / "classes.txt").unlink()
    meta = CUBMetadata.load(cub_root)  # no classes.txt: the labels define the classes ...
    with pytest.raises(DataError) as e:  # ... and the flag must cover them (checked before training / eval)
        meta.check_num_classes(3, "--wsol_num_classes")
    _assert_user_error(e, DataError, "image id 3", "class 250", "--wsol_num_classes", "image_class_labels.txt")
    meta.check_num_classes(250)


def test_cub_truncated_image(cub_root):
    from cub.dataset import CUBMetadata, build_eval_dataset

    meta = CUBMetadata.load(cub_root)
    ds = build_eval_dataset(meta)
    path = meta.image_path(ds.ids[0])
    _truncate(path, 0.4)
    with pytest.raises(UnreadableFileError) as e:
        ds[0]
    _assert_user_error(e, UnreadableFileError, path, f"id {ds.ids[0]}", "truncated")


# ---------------------------------------------------------------------------------------------------------------
# 4. corrupt per-image outputs
# ---------------------------------------------------------------------------------------------------------------

def test_output_problem_detects_damage(tmp_path):
    from misc.core.outputs import load_output_npz, output_problem, read_output_png
    from misc.core.io import save_png

    good = tmp_path / "a.npz"
    save_npz(good, keys=np.arange(3), cam=np.ones((3, 8, 8), np.float32))
    assert output_problem(good, ("keys", "cam")) is None
    assert "lacks" in output_problem(good, ("keys", "high_res"))
    cut = tmp_path / "b.npz"
    shutil.copy(good, cut)
    _truncate(cut)
    assert "BadZipFile" in output_problem(cut)
    # a member whose data is shorter than its header says (the zip itself intact)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        arr = io.BytesIO()
        np.lib.format.write_array(arr, np.ones((4, 4), np.float32))
        zf.writestr("cam.npy", arr.getvalue()[:-8])
    short = tmp_path / "c.npz"
    short.write_bytes(buf.getvalue())
    assert "header announces" in output_problem(short)
    with pytest.raises(CorruptOutputError) as e:
        load_output_npz(cut, "make_cam")
    _assert_user_error(e, CorruptOutputError, cut, "rerun make_cam")
    with pytest.raises(CorruptOutputError, match="lacks"):
        load_output_npz(good, "make_cam", ("high_res",))
    png = tmp_path / "d.png"
    save_png(png, np.zeros((20, 30), np.uint8))
    assert output_problem(png) is None
    _truncate(png)
    assert output_problem(png) is not None
    with pytest.raises(CorruptOutputError) as e:
        read_output_png(png, "make_sem_seg_labels")
    _assert_user_error(e, CorruptOutputError, png, "rerun make_sem_seg_labels")


class _Task(PerImageTask):
    """Writes one small npz per id, recording what it computes."""

    name = "toy"
    output_keys = ("v",)

    def __init__(self, out_dir):
        self.out_dir, self.done = Path(out_dir), []

    def output_path(self, img_id):
        return self.out_dir / f"{img_id}.npz"

    def load(self, img_id):
        if img_id == "bad":
            raise DataError("image id 'bad': its mask /x/bad.png is broken")
        return int(img_id)

    def process(self, img_id, inputs):
        self.done.append(img_id)
        save_npz(self.output_path(img_id), v=np.full(100, inputs))


def test_runner_recomputes_only_the_unreadable_output(tmp_path, caplog):
    from misc.engine.per_image import run_per_image

    ids = ["1", "2", "3"]
    task = _Task(tmp_path / "out")
    assert run_per_image(task, ids).processed == 3
    before = {i: (task.output_path(i).stat().st_mtime_ns, task.output_path(i).read_bytes()) for i in ids}
    _truncate(task.output_path("2"))
    task2 = _Task(tmp_path / "out")
    with caplog.at_level(logging.WARNING, logger="misc.engine.per_image"):
        summary = run_per_image(task2, ids)
    assert task2.done == ["2"] and summary.skipped == 2
    assert any("recomputing 2:" in r.getMessage() and "is unreadable" in r.getMessage() for r in caplog.records)
    for i in ("1", "3"):
        assert (task.output_path(i).stat().st_mtime_ns, task.output_path(i).read_bytes()) == before[i]
    assert task.output_path("2").read_bytes() == before["2"][1]
    # a UserError of one image's inputs reaches the caller as is (not wrapped in a RuntimeError)
    with pytest.raises(DataError, match="bad.png"):
        run_per_image(_Task(tmp_path / "out2"), ["bad"])


@pytest.mark.slow
def test_pipeline_recomputes_a_corrupt_cam(tmp_path):
    import run_sample
    from misc.core.outputs import output_problem

    work = tmp_path / "work"
    off = [x for flag in SEGMENTATION_SWITCHES if flag not in ("train_cam_pass", "make_cam_pass", "eval_cam_pass")
           for x in (f"--{flag}", "false")]
    argv = ["--demo", "--preset", "tiny", "--work_dir", str(work), "--device", "cpu", "--cam_num_epoches", "1", *off]
    assert run_sample.main(argv) == 0
    cam_dir = work / "result" / "cam"
    files = sorted(cam_dir.glob("*.npz"))
    args = run_sample.parse_args(argv)
    from step import eval_cam
    from step.cam_to_ir_label import IRLabelTask
    from voc12.dataloader import open_voc

    voc = open_voc(args.voc12_root, args.list_cache_dir)
    evaluated = voc.ids(args.chainer_eval_set)
    assert len(files) > 3 and len(evaluated) > 3
    victim = cam_dir / f"{evaluated[2]}.npz"
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    _truncate(victim)
    # a later step reading it names the file and the step to rerun
    with pytest.raises(CorruptOutputError) as e:
        IRLabelTask(args, voc).load(victim.stem)
    _assert_user_error(e, CorruptOutputError, victim, "rerun make_cam")
    with pytest.raises(CorruptOutputError) as e:
        eval_cam.run(args)
    _assert_user_error(e, CorruptOutputError, victim, "rerun make_cam")
    # the rerun recomputes exactly that CAM
    assert run_sample.main(argv + ["--train_cam_pass", "false"]) == 0
    for p in files:
        if p == victim:
            assert output_problem(p, ("keys", "cam", "high_res")) is None
            assert p.read_bytes() == before[p][1]  # same weights, same CAM
        else:
            assert (p.stat().st_mtime_ns, p.read_bytes()) == before[p], p
    log_text = "".join(f.read_text() for f in work.rglob("*.log"))
    assert f"recomputing {victim.stem}: {victim} is unreadable" in log_text
    assert "make_cam: 1 processed" in log_text
