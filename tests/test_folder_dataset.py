"""The folder dataset (--dataset folder, docs/data_folder.md): classes.txt, labels.csv, images, masks and splits
read into an index; every bad input named with its file and line; the index cache seeing edits; the flags and
checks around it; the synthetic generator."""
import logging

import numpy as np
import pytest
from PIL import Image

import run_sample
from folder.build import open_folder
from folder.facts import read_class_names
from folder.layout import FolderLayoutError, FolderSplitError
from misc.core.errors import DataError, FlagValueError, MissingDataFileError, UserError
from pipeline.config import parse_args

H, W = 16, 24
CLASSES = "cat\ndog\nbird\n"


def write_image(path, h=H, w=W, value=90):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


def write_mask(path, mask):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(mask, np.uint8), mode="L").save(path)


def make_folder(root, labels="image,labels\na.jpg,cat\nb.png,dog;bird\nc.jpg,\n", classes=CLASSES,
                images=("a.jpg", "b.png", "c.jpg"), masks=("a",)):
    """A folder of solid images; the mask of ``a`` holds cat (1) and an ignore band."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text(classes)
    (root / "labels.csv").write_text(labels)
    for name in images:
        write_image(root / "images" / name)
    for img_id in masks:
        mask = np.zeros((H, W), np.uint8)
        mask[4:10, 4:12] = 1
        mask[3, :] = 255
        write_mask(root / "masks" / f"{img_id}.png", mask)
    return root.resolve()


@pytest.fixture
def root(tmp_path):
    return make_folder(tmp_path / "data")


def message(exc_info) -> str:
    return str(exc_info.value)


def build_error(root, error=DataError) -> str:
    """The message of the ``error`` that building the index of ``root`` raises."""
    with pytest.raises(error) as exc:
        open_folder(root)
    return message(exc)


# ---------------------------------------------------------------------------------------------- the index
def test_index_reads_classes_labels_images_masks_and_default_splits(root, tmp_path):
    index = open_folder(root, tmp_path / "cache")
    assert (index.name, index.num_classes, index.num_labels, index.class_names) == ("folder", 3, 4,
                                                                                    ("cat", "dog", "bird"))
    assert index.splits == {"train": ["a", "b", "c"], "val": ["a"]}
    assert index.labels["a"].tolist() == [1, 0, 0] and index.labels["b"].tolist() == [0, 1, 1]
    assert index.label("c").tolist() == [0, 0, 0]  # an empty labels field: background only
    assert index.image_path("b") == root / "images" / "b.png"
    assert index.has_class_gt("a") and not index.has_class_gt("b")
    gt = index.read_class_gt("a")
    assert gt.shape == (H, W) and set(np.unique(gt).tolist()) == {0, 1, 255}
    assert index.gt_folders() == [root / "masks"] and index.gt_optional
    assert index.summary() == (f"folder dataset {root}: 3 classes, 3 images in labels.csv (1 with no class: "
                               "background only), 1 with a mask; splits: train 3, val 1")
    assert index.problems() == []
    entry = index.config_entry()
    assert entry["folder_root"] == str(root) and len(entry["folder_labels"]) == 16


def test_ids_take_split_names_list_files_and_refuse_the_rest(root, tmp_path):
    index = open_folder(root, tmp_path / "cache")
    assert index.ids("train") == ["a", "b", "c"] and index.ids("folder/val.txt") == ["a"]
    listed = tmp_path / "mine.txt"
    listed.write_text("b.png\n\nc\n")
    assert index.ids(str(listed)) == ["b", "c"]
    with pytest.raises(FolderSplitError) as exc:
        index.ids("test")
    assert message(exc) == (f"list 'test' is neither a file nor a split of {root} (splits: train, val); a split "
                            "<name> is the id list splits/<name>.txt under --folder_root")
    with pytest.raises(DataError, match=r"1 image id\(s\) listed in x.txt have no line in .*labels.csv: 'zz'"):
        index.check_ids(["a", "zz"], "x.txt")


def test_split_files_replace_the_default_splits_and_add_new_ones(root, tmp_path):
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("a\nb.png\n")
    (root / "splits" / "test.txt").write_text("c\n")
    index = open_folder(root, tmp_path / "cache")
    assert index.splits == {"train": ["a", "b"], "val": ["a"], "test": ["c"]}


def test_a_first_background_line_names_value_0(tmp_path):
    root = make_folder(tmp_path / "d", classes="background\ncat\ndog\nbird\n\n")
    assert read_class_names(root) == ("cat", "dog", "bird")
    assert open_folder(root).num_classes == 3


def test_the_index_cache_sees_edits_to_labels_classes_and_masks(root, tmp_path, caplog):
    cache = tmp_path / "cache"
    caplog.set_level(logging.INFO, logger="folder.build")
    open_folder(root, cache)
    assert open_folder(root, cache).labels["a"].tolist() == [1, 0, 0]
    assert not any("rebuilding" in r.getMessage() for r in caplog.records)  # read from the cache
    (root / "labels.csv").write_text("image,labels\na.jpg,cat;bird\nb.png,dog\nc.jpg,\n")
    assert open_folder(root, cache).labels["a"].tolist() == [1, 0, 1]
    (root / "classes.txt").write_text("cat\ndog\nbird\nfish\n")
    assert open_folder(root, cache).num_classes == 4
    write_mask(root / "masks" / "b.png", np.full((H, W), 2))
    assert open_folder(root, cache).splits["val"] == ["a", "b"]
    write_mask(root / "masks" / "a.png", np.zeros((4, 4)))  # edited in place
    with pytest.raises(DataError, match="masks/a.png is 4x4"):
        open_folder(root, cache)
    assert f"rebuilding folder index cache {cache}/folder_index.json: masks/a.png changed" in caplog.messages


# ---------------------------------------------------------------------------------------------- bad input
def test_an_id_without_an_image(tmp_path):
    root = make_folder(tmp_path / "d", labels="image,labels\na.jpg,cat\nb.png,dog\nc.jpg,\nzz.jpg,cat\n")
    assert build_error(root, MissingDataFileError) == (
        f"{root}/labels.csv: 1 image(s) not in {root}/images: line 5 'zz.jpg'; add the images (.jpg, .jpeg or .png) "
        "or remove their lines")


def test_a_file_name_of_another_suffix_is_no_match(tmp_path):
    root = make_folder(tmp_path / "d", labels="image,labels\na.png,cat\n")
    with pytest.raises(MissingDataFileError, match=r"line 2 'a.png' \(images/ has a.jpg\)"):
        open_folder(root)


def test_an_image_without_a_labels_line_is_left_out_with_a_warning(tmp_path):
    root = make_folder(tmp_path / "d", images=("a.jpg", "b.png", "c.jpg", "extra.jpg"))
    (root / "images" / "notes.txt").write_text("x")
    index = open_folder(root)
    assert "extra" not in index.ids("train")
    assert index.problems() == [
        f"{root}: 1 image(s) in images/ without a line in labels.csv, left out (add a line '<file name>,<classes>' "
        "to use them): extra.jpg",
        f"{root}: 1 file(s) in images/ or masks/ that are no image or mask (.jpg, .jpeg, .png; masks .png), "
        "ignored: images/notes.txt"]


def test_two_images_of_one_id(tmp_path):
    root = make_folder(tmp_path / "d", images=("a.jpg", "a.png", "b.png", "c.jpg"))
    assert build_error(root) == f"{root}/images: a.jpg and a.png have the same id 'a'; keep one of them"


@pytest.mark.parametrize("labels, expected", [
    ("image,labels\na.jpg,cat\nb.png,dgo;bird\n", "line 3: unknown class 'dgo' (did you mean 'dog'?); the classes "
                                                 "are those of {root}/classes.txt: cat, dog, bird"),
    ("image,labels\na.jpg,background\n", "line 2: 'background' is no class (value 0 is everything no class covers); "
                                         "leave the labels field empty for an image of background only"),
    ("image,labels\na.jpg,cat\nb.png,dog\na,bird\n", "line 4: image 'a' is also on line 2; give each image one line "
                                                    "with all its classes"),
    ("img,classes\na.jpg,cat\n", "line 1: the header must be 'image,labels', found 'img,classes'; the first line "
                                 "names the columns, the next lines are '<image>,<class>;<class>...'"),
    ("image,labels\na.jpg,cat,dog\n", "line 2: expected 2 fields (image,labels), found 3; separate the class names "
                                      "with ';', not ','"),
    ("image,labels\n,cat\n", "line 2: no image name in the first field"),
    ("image,labels\na.jpg\n", "line 2: expected 2 fields (image,labels), found 1; end the line with ',' for an image "
                              "of background only"),
    ("image,labels\na.jpg," + "x" * 140_000 + "\n", "line 2: not a CSV line (field larger than field limit (131072))"),
])
def test_a_bad_labels_csv_line_is_named(tmp_path, labels, expected):
    root = make_folder(tmp_path / "d", labels=labels)
    assert build_error(root) == f"{root}/labels.csv, {expected.format(root=root)}"


def test_labels_csv_without_images(tmp_path):
    root = make_folder(tmp_path / "d", labels="image,labels\n")
    assert build_error(root) == (f"{root}/labels.csv lists no image: after the header 'image,labels', write one "
                                 "line per image such as 'cat_01.jpg,cat;dog'")


def test_mask_of_the_wrong_size_names_the_file(tmp_path):
    root = make_folder(tmp_path / "d")
    write_mask(root / "masks" / "a.png", np.zeros((10, 10)))
    assert build_error(root) == (f"image id 'a': the mask {root}/masks/a.png is 10x10 (HxW) but the image "
                                 f"{root}/images/a.jpg is {H}x{W}; a mask must have its image's size (is it the mask "
                                 "of another image, or resized?)")


def test_mask_value_above_the_class_count_names_the_file(tmp_path):
    root = make_folder(tmp_path / "d")
    mask = np.zeros((H, W), np.uint8)
    mask[:2, :2] = 7
    write_mask(root / "masks" / "a.png", mask)
    assert build_error(root) == (f"{root}/masks/a.png: label values must be 0..3 or 255 (ignore), found 7 in 4 "
                                 "pixel(s). Is it a mask of this dataset (a palette PNG of class indices)? "
                                 "(classes.txt lists 3 classes: a mask holds 0 background, 1..3 the classes, 255 "
                                 "ignore)")


def test_masks_without_a_line_or_disagreeing_with_their_line_are_warned_about(tmp_path):
    root = make_folder(tmp_path / "d", masks=("a", "zz"))
    write_mask(root / "masks" / "a.png", np.full((H, W), 3))  # bird; labels.csv says cat
    index = open_folder(root)
    assert index.masks == {"a"}
    assert index.problems() == [
        f"{root}: 1 mask(s) in masks/ of images without a line in labels.csv, not used: masks/zz.png",
        f"{root}: 1 mask(s) holding classes their labels.csv line does not list (the labels train; the masks only "
        "score): masks/a.png (values 3)"]


def test_split_id_without_a_labels_line(root):
    (root / "splits").mkdir()
    (root / "splits" / "val.txt").write_text("a\n\nqq\n")
    assert build_error(root) == (f"{root}/splits/val.txt, line 3: 'qq' has no line in {root}/labels.csv; every id "
                                 "of a split needs one")


@pytest.mark.parametrize("classes, expected", [
    ("cat\n\ndog\n", "classes.txt, line 2: empty line between class names (it would shift the value of every later "
                     "class); remove it"),
    ("cat\ndog\ncat\n", "classes.txt, line 3: class 'cat' is also on line 1; list each class once"),
    ("cat\nbackground\n", "classes.txt, line 2: 'background' is value 0 and may only be the first line (or left out: "
                          "background needs no line)"),
    ("cat;dog\n", "classes.txt, line 1: class name 'cat;dog' holds ';', which separates the class names in "
                  "labels.csv; rename the class"),
    ("\n\n", "classes.txt lists no class: write one class name per line (line 1 is class 1, value 1 in the masks; 0 "
             "is background)"),
    ("".join(f"c{k}\n" for k in range(255)), "classes.txt lists 255 classes; at most 254 fit in a mask (values "
                                             "1..254: 0 is background, 255 ignore)"),
])
def test_malformed_classes_txt(tmp_path, classes, expected):
    root = make_folder(tmp_path / "d", classes=classes, masks=())
    with pytest.raises(DataError) as exc:
        read_class_names(root)
    assert message(exc) == f"{root}/{expected}"


def test_missing_parts_of_the_folder_are_named(tmp_path):
    with pytest.raises(FolderLayoutError) as exc:
        open_folder(None)
    assert message(exc) == ("--dataset folder needs --folder_root DIR: a folder holding classes.txt, images/ and "
                            "labels.csv (docs/data_folder.md)")
    (tmp_path / "d" / "images").mkdir(parents=True)
    with pytest.raises(FolderLayoutError) as exc:
        open_folder(tmp_path / "d")
    assert message(exc) == (f"--folder_root {tmp_path / 'd'} is missing classes.txt, labels.csv. classes.txt: one "
                            "class name per line (line 1 is class 1); images/: the images <id>.jpg (.jpeg, .png); "
                            "labels.csv: the header 'image,labels', then one line per image such as "
                            "'cat_01.jpg,cat;dog' (docs/data_folder.md)")


# ---------------------------------------------------------------------------------------------- flags and checks
def test_the_class_count_is_read_while_parsing(root):
    args = parse_args(["--dataset", "folder", "--folder_root", str(root)])
    assert args.num_classes == 3
    assert (args.train_list, args.val_list, args.infer_list, args.deeplab_train_list, args.chainer_eval_set) == (
        "train", "val", "train", "train", "train")
    assert not args.export_deeplab_test_pass and not args.make_ins_seg_pass


@pytest.mark.parametrize("argv, expected", [
    (["--dataset", "folder", "--folder_root", "{missing}"],
     "--folder_root {missing} does not exist; it must hold classes.txt, images/ and labels.csv (docs/data_folder.md)"),
    (["--dataset", "folder", "--demo"],
     "--demo has no folder dataset: pass --folder_root DIR of your own (docs/data_folder.md), or write a small "
     "synthetic one first with python -m folder.synthetic --out DIR"),
    (["--dataset", "folder", "--folder_root", "{root}", "--eval_ins_seg_pass", "true", "--make_cocoann_pass", "true"],
     "--dataset folder: eval_ins_seg and make_cocoann run on VOC and COCO only (they need instance ground truth, which "
     "a folder dataset does not have); switch them off with --eval_ins_seg_pass false --make_cocoann_pass false"),
])
def test_a_run_that_cannot_start_ends_with_one_line(root, tmp_path, capsys, argv, expected):
    fill = {"missing": str(tmp_path / "nope"), "root": str(root)}
    argv = [a.format(**fill) for a in argv] + ["--work_dir", str(tmp_path / "work"), "--device", "cpu"]
    assert run_sample.main(argv) == 2
    assert capsys.readouterr().err == f"crt: error: {expected.format(**fill)}\n"


def test_a_bad_labels_line_stops_the_run_before_the_first_step(tmp_path, capsys):
    root = make_folder(tmp_path / "d", labels="image,labels\na.jpg,cat\nb.png,dgo\n")
    argv = ["--dataset", "folder", "--folder_root", str(root), "--work_dir", str(tmp_path / "w"), "--device", "cpu",
            "--preset", "tiny"]
    assert run_sample.main(argv) == 2
    err = capsys.readouterr().err
    assert err == (f"crt: error: {root}/labels.csv, line 3: unknown class 'dgo' (did you mean 'dog'?); the classes "
                   f"are those of {root}/classes.txt: cat, dog, bird\n")
    assert not (tmp_path / "w" / "sess" / "train_cam.state.json").exists()


def test_instances_are_refused_by_name(root):
    index = open_folder(root)
    with pytest.raises(UserError, match="a folder dataset has no instance ground truth"):
        index.gt_instances("a")
    from pipeline.datasets import open_for_eval

    args = parse_args(["--dataset", "folder", "--folder_root", str(root)])
    with pytest.raises(FlagValueError, match="--dataset folder has no instance ground truth"):
        open_for_eval(args, instances=True)


def test_evaluations_score_the_images_with_a_mask_and_say_so(root, caplog):
    from pipeline.datasets import scored_ids

    index = open_folder(root)
    with caplog.at_level(logging.INFO, logger="crt"):
        assert scored_ids(index, ["a", "b", "c"], "eval_cam", "train") == ["a"]
        assert scored_ids(index, ["b", "c"], "eval_cam", "x.txt") == []
    assert [r.getMessage() for r in caplog.records] == [
        "eval_cam: scored 1 of 3 images of train: the ones with a mask",
        f"eval_cam: nothing to score: none of the 2 images of x.txt has a mask in {root}/masks"]


# ---------------------------------------------------------------------------------------------- background-only images
def test_an_image_without_classes_gets_all_background_labels_and_no_instance():
    import torch

    from misc.method.instances import ins_seg_from_cams
    from misc.method.ir_label import make_ir_label
    from misc.method.random_walk import sem_seg_from_cams

    img = np.full((H, W, 3), 100, np.uint8)
    ir = make_ir_label(img, np.zeros((0, H, W), np.float32), np.zeros(0, np.int64))
    assert ir.shape == (H, W) and ir.dtype == np.uint8 and not ir.any()
    sem = sem_seg_from_cams(torch.zeros(0, 4, 6), np.zeros(0, np.int64), torch.rand(1, 4, 6), (H, W))
    assert sem.shape == (H, W) and sem.dtype == np.uint8 and not sem.any()
    ins = ins_seg_from_cams(torch.zeros(0, 4, 6), np.zeros(0, np.int64), torch.rand(1, 4, 6), torch.rand(2, 4, 6),
                            (H, W))
    assert ins["mask"].shape == (0, H, W) and ins["score"].shape == ins["class"].shape == (0,)


# ---------------------------------------------------------------------------------------------- the generator
def test_the_synthetic_folder_is_a_valid_folder_dataset(tmp_path):
    from folder.synthetic import make_synthetic_folder

    root = make_synthetic_folder(tmp_path / "s", num_images=6, num_masks=3, num_background=1).resolve()
    index = open_folder(root)
    assert index.class_names == ("ring", "star", "box") and index.splits["val"] == ["img_000", "img_001", "img_002"]
    assert index.image_path("img_003").suffix == ".png" and index.labels["img_005"].sum() == 0
    assert index.problems() == []
    for img_id in index.splits["val"]:
        values = set(np.unique(index.read_class_gt(img_id)).tolist()) - {0, 255}
        assert values == {k + 1 for k in np.flatnonzero(index.labels[img_id])}
    again = make_synthetic_folder(tmp_path / "t", num_images=6, num_masks=3, num_background=1)
    assert (again / "labels.csv").read_text() == (root / "labels.csv").read_text()
