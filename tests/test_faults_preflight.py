"""Inputs checked before the first step (pipeline/inputs_check.py): a run whose lists, images, labels, ground truth
or earlier outputs are missing or unusable stops before anything is trained, naming every problem at once."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cub.dataset import CUBMetadata, box_problems
from dataset.images import read_image_bgr
from misc.core.errors import DataError, UnreadableFileError
from pipeline.config import parse_args
from pipeline.datasets import open_dataset
from pipeline.inputs_check import InputsError, _gt_problem, check_inputs
from tests.test_faults_cli import assert_one_line_error, call

ALL_VOC = ["train_cam", "make_cam", "eval_cam", "cam_to_ir_label", "train_irn", "make_sem_seg_labels", "eval_sem_seg",
           "train_deeplab", "eval_deeplab"]


@pytest.fixture
def voc_copy(tmp_path) -> Path:
    """The tiny synthetic VOC folder (XML annotations, SegmentationClass for train and val)."""
    from pipeline.demo import prepare_demo_data

    prepare_demo_data(parse_args(["--demo", "--preset", "tiny", "--work_dir", str(tmp_path / "demo")]))
    return tmp_path / "demo" / "data" / "demo_voc12"


def _args(root: Path, work: Path, *extra: str):
    return parse_args(["--voc12_root", str(root), "--work_dir", str(work), "--train_list", "train",
                       "--deeplab_train_list", "train", *extra])


def _problems(args, steps=ALL_VOC) -> str:
    with pytest.raises(InputsError) as info:
        check_inputs(args, steps, open_dataset(args))
    return str(info.value)


def test_a_voc_root_without_segmentation_class_aug_stops_before_train_cam(tmp_path, real_voc_root, capfd):
    """The default --deeplab_train_list train_aug needs SegmentationClassAug/: known before anything is trained."""
    rc, out, err = call(["--voc12_root", str(real_voc_root), "--work_dir", str(tmp_path), "--preset", "tiny",
                         "--device", "cpu", "--train_list", "train"], capfd)
    message = assert_one_line_error(rc, err, "--deeplab_train_list voc12/train_aug.txt", "SegmentationClassAug",
                                    "python -m voc12.prepare_sbd")
    assert message.endswith("nothing was run")
    log = (tmp_path / "sample_train_eval.log").read_text()
    assert "step.train_cam: start" not in log and not (tmp_path / "sess" / "res152_cam.pth").exists()


def test_every_problem_of_lists_images_labels_and_ground_truth_is_listed(voc_copy, tmp_path):
    val = (voc_copy / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    train = (voc_copy / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    (voc_copy / "JPEGImages" / f"{train[0]}.jpg").unlink()  # a train image gone
    gt = voc_copy / "SegmentationClass"
    Image.open(gt / f"{val[0]}.png").convert("RGB").save(gt / f"{val[0]}.png")  # a colour copy of a val mask
    mask = np.asarray(Image.open(gt / f"{val[1]}.png")).copy()
    mask[0, 0] = 40
    Image.fromarray(mask).save(gt / f"{val[1]}.png")  # a value beyond 20
    Image.fromarray(np.asarray(Image.open(gt / f"{train[2]}.png"))[:-3]).save(gt / f"{train[2]}.png")  # 3 rows short
    twice = tmp_path / "twice.txt"
    twice.write_text("\n".join(train + train[1:3]) + "\n")
    args = _args(voc_copy, tmp_path / "w", "--infer_list", str(twice), "--val_list", "val")
    message = _problems(args)
    assert message.splitlines()[0] == "3 problems with the inputs of the planned steps; nothing was run:"
    assert f"--infer_list {twice}: 2 id(s) are listed more than once: '{train[1]}', '{train[2]}'" in message
    assert (f"1 id(s) of --train_list train (train_cam, make_cam, cam_to_ir_label, train_irn), --infer_list {twice} "
            f"(train_irn, make_sem_seg_labels), --deeplab_train_list train (train_deeplab) have no usable image: "
            f"{voc_copy / 'JPEGImages' / train[0]}.jpg; add the images or remove the ids") in message
    line = next(x for x in message.splitlines() if "no usable ground truth" in x)
    assert line.startswith("  - 4 id(s) of --val_list val (eval_deeplab), --chainer_eval_set train (eval_cam, "
                           "eval_sem_seg) have no usable ground truth: ")  # the train image gone is the 4th
    assert f"{val[0]}.png has mode RGB" in line and "found 40 in 1 pixel(s)" in line and "; and 1 more;" in line
    w, h = Image.open(voc_copy / "JPEGImages" / f"{train[2]}.jpg").size
    assert _gt_problem(open_dataset(args), train[2]) == (f"{gt / train[2]}.png is {w}x{h - 3} (WxH) but its image is "
                                                          f"{w}x{h}")


def test_ids_outside_the_train_list_have_no_cams(voc_copy, tmp_path):
    message = _problems(_args(voc_copy, tmp_path / "w", "--chainer_eval_set", "val"))
    assert ("eval_cam: 6 id(s) of --chainer_eval_set val are not in --train_list train, so make_cam makes no CAM for "
            "them") in message


def test_later_steps_alone_need_the_earlier_outputs(voc_copy, tmp_path):
    off = [x for s in ("train_cam", "make_cam", "cam_to_ir_label", "train_irn", "train_deeplab") for x in
           (f"--{s}_pass", "false")]
    args = _args(voc_copy, tmp_path / "w", *off)
    message = _problems(args, ["eval_cam", "make_sem_seg_labels", "eval_sem_seg", "eval_deeplab"])
    assert f"eval_cam: no CAM for 12 id(s) of --chainer_eval_set train in --cam_out_dir {args.cam_out_dir}" in message
    assert f"make_sem_seg_labels reads {args.irn_weights_name} (--irn_weights_name), which does not exist: run " \
           f"train_irn (--train_irn_pass true)" in message
    assert f"eval_deeplab reads {args.deeplab_weights_name} (--deeplab_weights_name)" in message


def test_cub_boxes_of_no_size_or_outside_their_image_are_named_with_their_line(tmp_path, real_cub_root):
    root = tmp_path / "CUB_200_2011"
    shutil.copytree(real_cub_root, root)
    boxes = (root / "bounding_boxes.txt").read_text().splitlines()
    first_id = boxes[0].split()[0]
    lines = [f"{first_id} 69.0 57.0 -5.0 141.0", *boxes[1:]]
    (root / "bounding_boxes.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"bounding_boxes.txt:1: image id {first_id} has the box x 69 y 57 w -5 h "
                                        r"141; a box needs a positive width and height"):
        CUBMetadata.load(root)
    second_id = boxes[1].split()[0]
    lines = [boxes[0], f"{second_id} 152.0 86.0 900.0 141.0", *boxes[2:]]
    (root / "bounding_boxes.txt").write_text("\n".join(lines) + "\n")
    problems = box_problems(CUBMetadata.load(root))
    assert len(problems) == 1 and f"bounding_boxes.txt:2: the box of image id {second_id}" in problems[0]
    assert "reaches outside its" in problems[0]
    with pytest.raises(InputsError, match=f"bounding_boxes.txt:2: the box of image id {second_id}"):
        check_inputs(parse_args(["--dataset", "cub", "--cub_root", str(root), "--work_dir", str(tmp_path)]),
                     ["train_wsol", "eval_wsol"])


def test_deeplab_reader_names_a_truncated_jpeg(tmp_path, real_voc_root):
    data = (real_voc_root / "JPEGImages" / "2007_000032.jpg").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(UnreadableFileError, match=f"cannot read image {cut}: the JPEG is truncated"):
        read_image_bgr(cut)
    assert read_image_bgr(real_voc_root / "JPEGImages" / "2007_000032.jpg").shape == (281, 500, 3)


@pytest.mark.parametrize("name", ["logs/", "."])
def test_log_name_that_names_a_folder_is_a_user_error(tmp_path, capfd, name):
    rc, out, err = call(["--demo", "--preset", "tiny", "--device", "cpu", "--work_dir", str(tmp_path),
                         "--log_name", name], capfd)
    assert_one_line_error(rc, err, f"--log_name {name}: names a folder")


def test_log_name_with_subfolders_makes_them(tmp_path, capfd):
    off = [x for s in ("train_cam", "make_cam", "eval_cam", "cam_to_ir_label", "train_irn", "make_sem_seg",
                       "eval_sem_seg", "train_deeplab", "eval_deeplab", "export_deeplab_test") for x in
           (f"--{s}_pass", "false")]
    rc, out, err = call(["--demo", "--preset", "tiny", "--device", "cpu", "--work_dir", str(tmp_path),
                         "--log_name", "logs/run1", *off], capfd)
    assert rc == 0 and (tmp_path / "logs" / "run1.log").is_file()
