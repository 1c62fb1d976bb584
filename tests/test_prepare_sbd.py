"""python -m voc12.prepare_sbd on a tiny SBD tree of hand-made .mat files next to a tiny synthetic VOC folder."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse
from PIL import Image

from misc.core.labels import label_palette as voc_palette
from voc12.dataloader import read_label_png
from voc12 import prepare_sbd
from voc12.dataloader import open_voc
from voc12.prepare_sbd import (PrepareSummary, full_set_warnings, main, read_sbd_segmentation, segmentation_field,
                               train_aug_ids)
from voc12.synthetic import make_synthetic_voc, split_ids

REPO_ROOT = Path(__file__).resolve().parents[1]
VOC_TRAIN, VOC_VAL = split_ids("train", 3), split_ids("val", 2)
SBD_ONLY = ["2095_000001", "2095_000002", "2095_000003"]
SBD_TRAIN = [SBD_ONLY[0], SBD_ONLY[1], VOC_TRAIN[0]]  # VOC_TRAIN[0]: in both, VOC's mask wins
SBD_VAL = [SBD_ONLY[2], VOC_VAL[0]]  # VOC_VAL[0]: in SBD's val and VOC's val, not in train_aug
TRAIN_AUG = sorted(VOC_TRAIN + SBD_ONLY)
ALL_MASKS = sorted(VOC_TRAIN + VOC_VAL + SBD_ONLY)
SBD_SIZES = {SBD_ONLY[0]: (40, 56), SBD_ONLY[1]: (48, 36), SBD_ONLY[2]: (33, 47)}


def save_gtcls(path: Path, segmentation: np.ndarray) -> None:
    """An SBD ``cls/<id>.mat``: struct GTcls with Segmentation, Boundaries (20x1 cell of sparse) and
    CategoriesPresent."""
    boundaries = np.empty((20, 1), dtype=object)
    for k in range(20):
        boundaries[k, 0] = scipy.sparse.csc_matrix(segmentation == k + 1, dtype=np.float64)
    present = np.array([[v] for v in np.unique(segmentation) if 0 < v <= 20], dtype=np.uint8)
    scipy.io.savemat(path, {"GTcls": {"Segmentation": segmentation, "Boundaries": boundaries,
                                      "CategoriesPresent": present}})


def class_map(seed: int, size: tuple[int, int]) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 21, size=size, dtype=np.uint8)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """``<dir>/VOC2012`` (synthetic, without its own SegmentationClassAug/) and ``<dir>/benchmark_RELEASE``."""
    base = tmp_path_factory.mktemp("sbd_template")
    voc = make_synthetic_voc(base / "VOC2012", num_train=3, num_val=2, num_extra_aug=0,
                             image_size=((40, 48), (40, 56)), seed=0)
    shutil.rmtree(voc / "SegmentationClassAug")
    dataset = base / "benchmark_RELEASE" / "dataset"
    (dataset / "cls").mkdir(parents=True)
    (dataset / "img").mkdir()
    for n, img_id in enumerate(sorted(set(SBD_TRAIN + SBD_VAL))):
        if img_id in SBD_SIZES:
            h, w = SBD_SIZES[img_id]
            pixels = np.random.default_rng(100 + n).integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(dataset / "img" / f"{img_id}.jpg")
            shutil.copy(dataset / "img" / f"{img_id}.jpg", voc / "JPEGImages" / f"{img_id}.jpg")
        else:  # an id VOC has too: SBD's copy of the image, and a mask that differs from VOC's
            shutil.copy(voc / "JPEGImages" / f"{img_id}.jpg", dataset / "img" / f"{img_id}.jpg")
            w, h = Image.open(voc / "JPEGImages" / f"{img_id}.jpg").size
        save_gtcls(dataset / "cls" / f"{img_id}.mat", class_map(n, (h, w)))
    (dataset / "train.txt").write_text("".join(f"{i}\n" for i in SBD_TRAIN))
    (dataset / "val.txt").write_text("".join(f"{i}\n" for i in SBD_VAL))
    return base


@pytest.fixture
def trees(template, tmp_path) -> tuple[Path, Path]:
    """(benchmark_RELEASE, VOC2012): a fresh copy of the template."""
    shutil.copytree(template, tmp_path, dirs_exist_ok=True)
    return tmp_path / "benchmark_RELEASE", tmp_path / "VOC2012"


def run_cli(capsys, *argv: str | Path) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv] + (["--num_workers", "0"] if "--num_workers" not in argv else []))
    out, err = capsys.readouterr()
    return rc, out, err


def error_message(err: str) -> str:
    """The ``crt: error:`` message (and its continuation lines) of stderr."""
    lines = err.splitlines()
    start = [i for i, line in enumerate(lines) if line.startswith("crt: error: ")]
    assert len(start) == 1, err
    return "\n".join(lines[start[0]:])


def test_masks_list_and_index(trees, capsys):
    sbd, voc = trees
    open_voc(voc, voc.parent / "cache")  # an index cached before: it must notice the new files
    rc, out, err = run_cli(capsys, "--sbd_root", sbd, "--voc12_root", voc)
    assert rc == 0, err
    assert "8 masks (3 from SBD, 5 from VOC): 8 written, 0 already there, 0 failed" in out
    assert f"train_aug: 6 ids in {voc / 'ImageSets/Segmentation/train_aug.txt'} (written)" in out
    aug = voc / "SegmentationClassAug"
    assert sorted(p.stem for p in aug.glob("*.png")) == ALL_MASKS
    for img_id in SBD_ONLY:
        expected = read_sbd_segmentation(sbd / "dataset" / "cls" / f"{img_id}.mat")
        with Image.open(aug / f"{img_id}.png") as im:
            assert im.mode == "P" and im.getpalette()[:768] == voc_palette()
            np.testing.assert_array_equal(np.asarray(im), expected)
        assert expected.shape == SBD_SIZES[img_id]
    for img_id in VOC_TRAIN + VOC_VAL:  # VOC's own masks, 255 borders included, also where SBD has the id
        voc_mask = read_label_png(voc / "SegmentationClass" / f"{img_id}.png")
        np.testing.assert_array_equal(read_label_png(aug / f"{img_id}.png"), voc_mask)
        assert (voc_mask == 255).any()
    sbd_mask = read_sbd_segmentation(sbd / "dataset" / "cls" / f"{VOC_TRAIN[0]}.mat")
    assert not np.array_equal(sbd_mask, read_label_png(aug / f"{VOC_TRAIN[0]}.png"))

    assert TRAIN_AUG == train_aug_ids(SBD_TRAIN, SBD_VAL, VOC_TRAIN, VOC_VAL)
    assert (voc / "ImageSets/Segmentation/train_aug.txt").read_text().split() == TRAIN_AUG
    index = open_voc(voc, voc.parent / "cache")
    assert index.ids("train_aug") == TRAIN_AUG
    assert index.ids("voc12/train_aug.txt") == TRAIN_AUG
    assert set(TRAIN_AUG) <= set(index.labels)


def test_rerun_skips_and_overwrite_rewrites(trees, capsys):
    sbd, voc = trees
    assert run_cli(capsys, "--sbd_root", sbd, "--voc12_root", voc)[0] == 0
    files = sorted((voc / "SegmentationClassAug").glob("*.png")) + [voc / "ImageSets/Segmentation/train_aug.txt"]
    for path in files:
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    rc, out, _ = run_cli(capsys, "--sbd_root", sbd, "--voc12_root", voc)
    assert rc == 0 and "0 written, 8 already there, 0 failed" in out and "(unchanged)" in out
    assert all(p.stat().st_mtime_ns == 1_000_000_000 for p in files)  # nothing rewritten

    (voc / "SegmentationClassAug" / f"{SBD_ONLY[0]}.png").write_bytes(b"cut short")  # an unreadable mask is redone
    rc, out, _ = run_cli(capsys, "--sbd_root", sbd, "--voc12_root", voc)
    assert rc == 0 and "1 written, 7 already there" in out
    assert read_label_png(voc / "SegmentationClassAug" / f"{SBD_ONLY[0]}.png").shape == SBD_SIZES[SBD_ONLY[0]]

    rc, out, _ = run_cli(capsys, "--sbd_root", sbd, "--voc12_root", voc, "--overwrite")
    assert rc == 0 and "8 written, 0 already there" in out
    assert all(p.stat().st_mtime_ns != 1_000_000_000 for p in files[:-1])


@pytest.mark.parametrize("level", ["dataset", "benchmark_RELEASE", "parent"])
def test_sbd_root_at_each_level(trees, capsys, level):
    sbd, voc = trees
    root = {"dataset": sbd / "dataset", "benchmark_RELEASE": sbd, "parent": sbd.parent}[level]
    rc, out, err = run_cli(capsys, "--sbd_root", root, "--voc12_root", voc)
    assert rc == 0, err
    assert f"SBD {sbd / 'dataset'}: 3 train + 2 val ids" in out


def test_missing_sbd_parts_are_named(trees, capsys):
    sbd, voc = trees
    (sbd / "dataset" / "val.txt").unlink()
    rc, _, err = run_cli(capsys, "--sbd_root", sbd, "--voc12_root", voc)
    message = error_message(err)
    assert rc == 2 and f"{sbd / 'dataset'} lacks val.txt" in message and "benchmark.tgz" in message
    assert "home.bharathh.info/pubs/codes/SBD/download.html" in message
    rc, _, err = run_cli(capsys, "--sbd_root", sbd.parent / "nowhere", "--voc12_root", voc)
    assert rc == 2 and "does not exist" in error_message(err)
    shutil.rmtree(voc / "SegmentationClass")
    (sbd / "dataset" / "val.txt").write_text("")
    rc, _, err = run_cli(capsys, "--sbd_root", sbd, "--voc12_root", voc)
    assert rc == 2 and f"--voc12_root {voc} is missing: SegmentationClass" in error_message(err)


def test_bad_masks_are_named_and_the_others_written(trees, capsys):
    sbd, voc = trees
    cls = sbd / "dataset" / "cls"
    corrupt, wrong_size, value_30 = (cls / f"{i}.mat" for i in SBD_ONLY)
    corrupt.write_bytes(b"MATLAB 5.0 MAT-file, cut short")
    save_gtcls(wrong_size, class_map(1, (10, 12)))
    bad_values = class_map(2, SBD_SIZES[SBD_ONLY[2]])
    bad_values[3, 4] = 30
    save_gtcls(value_30, bad_values)
    rc, out, err = run_cli(capsys, "--sbd_root", sbd, "--voc12_root", voc)
    message = error_message(err)
    assert rc == 2 and message.splitlines()[0] == (
        "crt: error: 3 mask(s) could not be written (the others were); fix these files and run again (the written "
        "masks are skipped):")
    assert f"cannot read {corrupt}" in message
    assert (f"the mask {wrong_size} is 10x12 (HxW) but its image {sbd / 'dataset/img' / f'{SBD_ONLY[1]}.jpg'} "
            f"is 48x36") in message
    assert f"{value_30}: class values must be 0..20 or 255, found 30 in 1 pixel(s)" in message
    assert "5 written, 0 already there, 3 failed" in out
    assert sorted(p.stem for p in (voc / "SegmentationClassAug").glob("*.png")) == sorted(VOC_TRAIN + VOC_VAL)
    assert (voc / "ImageSets/Segmentation/train_aug.txt").read_text().split() == TRAIN_AUG


def test_missing_image_mat_and_field_are_named(trees, capsys):
    sbd, voc = trees
    dataset = sbd / "dataset"
    no_image, no_mat, no_field = SBD_ONLY
    (dataset / "img" / f"{no_image}.jpg").unlink()
    (voc / "JPEGImages" / f"{no_image}.jpg").unlink()
    (dataset / "cls" / f"{no_mat}.mat").unlink()
    scipy.io.savemat(dataset / "cls" / f"{no_field}.mat", {"GTinst": {"Segmentation": class_map(0, (4, 4))}})
    (voc / "SegmentationClass" / f"{VOC_TRAIN[1]}.png").unlink()  # a VOC train id that SBD does not have
    rc, _, err = run_cli(capsys, "--sbd_root", sbd, "--voc12_root", voc)
    message = error_message(err)
    assert rc == 2 and "4 mask(s) could not be written" in message
    assert (f"train_aug id {VOC_TRAIN[1]!r} (of {voc / 'ImageSets/Segmentation/train.txt'}) has no mask: neither "
            f"{voc / 'SegmentationClass' / f'{VOC_TRAIN[1]}.png'} nor {dataset / 'cls' / f'{VOC_TRAIN[1]}.mat'} "
            f"exists") in message
    assert (f"image id {no_image!r}: no image for the mask {dataset / 'cls' / f'{no_image}.mat'} (looked for "
            f"{dataset / 'img' / f'{no_image}.jpg'} and {voc / 'JPEGImages' / f'{no_image}.jpg'})") in message
    assert f"{dataset / 'cls' / f'{no_mat}.mat'} does not exist" in message
    assert f"{dataset / 'cls' / f'{no_field}.mat'} has no GTcls.Segmentation (its variables: GTinst)" in message


def test_image_only_in_sbd_is_used_and_warned(trees, capsys, caplog):
    sbd, voc = trees
    (voc / "JPEGImages" / f"{SBD_ONLY[0]}.jpg").unlink()
    rc, out, _ = run_cli(capsys, "--sbd_root", sbd, "--voc12_root", voc)
    assert rc == 0 and "8 written" in out
    assert f"1 train_aug id(s) have no image in {voc / 'JPEGImages'} (e.g. {SBD_ONLY[0]})" in caplog.text


def test_segmentation_field_in_every_loadmat_form(trees):
    path = trees[0] / "dataset" / "cls" / f"{SBD_ONLY[0]}.mat"
    expected = read_sbd_segmentation(path)
    for options in ({}, {"struct_as_record": False}, {"struct_as_record": False, "squeeze_me": True},
                    {"squeeze_me": True}, {"simplify_cells": True}):
        np.testing.assert_array_equal(segmentation_field(scipy.io.loadmat(path, **options)["GTcls"]), expected)
    assert segmentation_field(None) is None


def test_full_set_counts_are_checked():
    def summary(sbd_train: int, voc_val: int, train_aug: int, masks: int) -> PrepareSummary:
        return PrepareSummary(Path("sbd"), Path("voc"), sbd_train, 2_857, 1_464, voc_val, 0, 0, masks, 0,
                              ["x"] * train_aug, Path("list"), True)

    assert full_set_warnings(summary(8_498, 1_449, 10_582, 12_031)) == []
    assert full_set_warnings(summary(8_497, 1_449, 10_000, 12_000)) == []  # not the full sets: nothing expected
    warnings = full_set_warnings(summary(8_498, 1_449, 10_581, 12_030))
    assert len(warnings) == 2 and "10582 train_aug ids, this run has 10581" in warnings[0]
    assert "12031 masks, this run has 12030" in warnings[1]


def test_workers_write_the_same_masks(trees, tmp_path, capsys):
    sbd, voc = trees
    assert run_cli(capsys, "--sbd_root", sbd, "--voc12_root", voc)[0] == 0
    serial = {p.name: p.read_bytes() for p in (voc / "SegmentationClassAug").glob("*.png")}
    shutil.rmtree(voc / "SegmentationClassAug")
    assert run_cli(capsys, "--sbd_root", sbd, "--voc12_root", voc, "--num_workers", "2")[0] == 0
    assert {p.name: p.read_bytes() for p in (voc / "SegmentationClassAug").glob("*.png")} == serial


def test_command_line_exit_codes(trees):
    sbd, voc = trees
    command = [sys.executable, "-m", "voc12.prepare_sbd", "--voc12_root", str(voc), "--num_workers", "0"]
    bad = subprocess.run(command + ["--sbd_root", str(voc)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("crt: error: --sbd_root ")
    assert "Traceback" not in bad.stderr
    good = subprocess.run(command + ["--sbd_root", str(sbd)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    assert prepare_sbd.AUG_DIR in good.stdout


def test_index_reads_the_written_list_before_the_folder(trees, capsys):
    sbd, voc = trees
    assert run_cli(capsys, "--sbd_root", sbd, "--voc12_root", voc)[0] == 0
    shutil.copy(voc / "SegmentationClassAug" / f"{SBD_ONLY[0]}.png", voc / "SegmentationClassAug" / "2099_000001.png")
    assert open_voc(voc, voc.parent / "cache").ids("train_aug") == TRAIN_AUG  # the list, not the stray mask
    (voc / "ImageSets/Segmentation/train_aug.txt").unlink()  # a folder prepared by hand: its masks minus val
    assert open_voc(voc, voc.parent / "cache").ids("train_aug") == sorted(TRAIN_AUG + ["2099_000001"])
