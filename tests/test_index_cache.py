"""The dataset index caches (VOC, COCO; misc.core.index_cache) are keyed on every file they were built from and written
atomically; so is the CUB held-out list."""
from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import misc.core.io
from coco.dataset import open_coco
from coco.synthetic import make_synthetic_coco
from cub import dataset as cub_dataset
from cub.dataset import CUBMetadata, load_or_make_heldout, make_heldout_ids
from misc.core.index_cache import (FILES, ReadFiles, describe_changes, file_state, read_index_cache,
                                   write_index_cache)
from voc12 import dataloader
from voc12.dataloader import CACHE_VERSION, VOCSplitError, open_voc
from voc12.synthetic import make_synthetic_voc, split_ids

NUM_TRAIN, NUM_VAL, NUM_EXTRA, NUM_TEST = 4, 2, 3, 2
TRAIN_IDS = split_ids("train", NUM_TRAIN)
VAL_IDS = split_ids("val", NUM_VAL)
EXTRA_IDS = split_ids("extra", NUM_EXTRA)
TEST_IDS = split_ids("test", NUM_TEST)


@pytest.fixture(scope="module")
def full_voc(tmp_path_factory) -> Path:
    """A synthetic VOC root with SegmentationClassAug/ and test.txt (copied, never modified, by the tests)."""
    root = tmp_path_factory.mktemp("voc_template") / "VOC2012"
    make_synthetic_voc(root, num_train=NUM_TRAIN, num_val=NUM_VAL, num_extra_aug=NUM_EXTRA, num_test=NUM_TEST,
                       image_size=((48, 64), (48, 64)), seed=0, num_workers=0)
    return root


@pytest.fixture
def voc(full_voc, tmp_path) -> tuple[Path, Path, Path]:
    """(root without SegmentationClassAug/ and test.txt, stash holding both, cache dir)."""
    root = tmp_path / "VOC2012"
    shutil.copytree(full_voc, root)
    stash = tmp_path / "stash"
    stash.mkdir()
    shutil.move(str(root / "SegmentationClassAug"), stash / "SegmentationClassAug")
    shutil.move(str(root / "ImageSets" / "Segmentation" / "test.txt"), stash / "test.txt")
    return root, stash, tmp_path / "cache"


def _cache(cache_dir: Path) -> dict:
    return json.loads((cache_dir / "voc12_index.json").read_text())


def test_missing_train_aug_names_folder_and_sbd(voc):
    root, _, cache_dir = voc
    index = open_voc(root, cache_dir)
    assert index.ids("train") == TRAIN_IDS
    with pytest.raises(VOCSplitError) as e:
        index.ids("train_aug")
    msg = str(e.value)
    assert "SegmentationClassAug" in msg and "SBD" in msg and str(root) in msg
    with pytest.raises(ValueError, match="SegmentationClassAug"):  # existing callers catch ValueError
        index.ids("voc12/train_aug.txt")


def test_adding_train_aug_rebuilds_cache(voc, caplog):
    root, stash, cache_dir = voc
    open_voc(root, cache_dir)
    assert "train_aug" not in _cache(cache_dir)["splits"]
    shutil.move(str(stash / "SegmentationClassAug"), root / "SegmentationClassAug")
    with caplog.at_level(logging.INFO, logger="voc12.dataloader"):
        index = open_voc(root, cache_dir)
    assert index.ids("train_aug") == sorted(TRAIN_IDS + EXTRA_IDS)  # val ids excluded
    assert set(EXTRA_IDS) <= set(index.labels)  # labels of the new ids read from their Aug masks
    assert _cache(cache_dir)["splits"]["train_aug"] == sorted(TRAIN_IDS + EXTRA_IDS)
    assert any("rebuilding" in r.getMessage() and "SegmentationClassAug/ appeared" in r.getMessage()
               for r in caplog.records if r.levelno == logging.INFO)


def test_removing_train_aug_rebuilds_cache(voc):
    root, stash, cache_dir = voc
    shutil.move(str(stash / "SegmentationClassAug"), root / "SegmentationClassAug")
    assert len(open_voc(root, cache_dir).ids("train_aug")) == NUM_TRAIN + NUM_EXTRA
    shutil.rmtree(root / "SegmentationClassAug")
    with pytest.raises(VOCSplitError, match="SBD") as e:
        open_voc(root, cache_dir).ids("train_aug")
    assert "SegmentationClassAug" in str(e.value) and "does not exist" in str(e.value)


def test_empty_train_aug_folder_is_an_error(voc):
    root, _, cache_dir = voc
    (root / "SegmentationClassAug").mkdir()
    with pytest.raises(VOCSplitError, match="holds no masks") as e:
        open_voc(root, cache_dir).ids("train_aug")
    assert "SBD" in str(e.value)


def test_adding_test_list_rebuilds_cache(voc, caplog):
    root, stash, cache_dir = voc
    index = open_voc(root, cache_dir)
    with pytest.raises(VOCSplitError) as e:
        index.ids("test")
    msg = str(e.value)
    assert "ImageSets/Segmentation/test.txt" in msg and "test archive" in msg
    shutil.move(str(stash / "test.txt"), root / "ImageSets" / "Segmentation" / "test.txt")
    with caplog.at_level(logging.INFO, logger="voc12.dataloader"):
        assert open_voc(root, cache_dir).ids("test") == TEST_IDS
    assert any("test.txt appeared" in r.getMessage() for r in caplog.records)


def test_missing_voc_list_names_its_file(voc):
    root, _, cache_dir = voc
    (root / "ImageSets" / "Segmentation" / "val.txt").unlink()
    with pytest.raises(VOCSplitError) as e:
        open_voc(root, cache_dir).ids("val")
    assert "ImageSets/Segmentation/val.txt" in str(e.value) and "VOC 2012" in str(e.value)
    with pytest.raises(VOCSplitError, match="neither a file nor a known split"):
        open_voc(root, cache_dir).ids("nonsense")


def test_unchanged_root_reuses_cache(voc, monkeypatch):
    root, _, cache_dir = voc
    first = open_voc(root, cache_dir)
    before = (cache_dir / "voc12_index.json").read_text()

    def fail(_root):
        raise AssertionError("_build_index called although nothing changed")

    monkeypatch.setattr(dataloader, "_build_index", fail)
    again = open_voc(root, cache_dir)
    assert again.splits == first.splits
    assert sorted(again.labels) == sorted(first.labels)
    assert all((again.labels[k] == first.labels[k]).all() for k in first.labels)
    assert (cache_dir / "voc12_index.json").read_text() == before
    # a change to what the index is built from does reach _build_index
    (root / "Annotations" / "2099_000001.xml").write_text("<annotation/>")
    with pytest.raises(AssertionError, match="_build_index called"):
        open_voc(root, cache_dir)


def test_edited_list_and_old_cache_format_are_rebuilt(voc):
    root, _, cache_dir = voc
    open_voc(root, cache_dir)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("".join(f"{i}\n" for i in TRAIN_IDS[:2]))
    assert open_voc(root, cache_dir).ids("train") == TRAIN_IDS[:2]  # size changed -> rebuilt
    data = _cache(cache_dir)
    assert data["version"] == CACHE_VERSION
    assert data["source"]["lists"]["train.txt"][0] == (root / "ImageSets/Segmentation/train.txt").stat().st_size
    data["version"] = 1
    data["splits"]["train"] = ["stale"]
    (cache_dir / "voc12_index.json").write_text(json.dumps(data))
    assert open_voc(root, cache_dir).ids("train") == TRAIN_IDS[:2]
    (cache_dir / "voc12_index.json").write_text("{not json")
    assert open_voc(root, cache_dir).ids("train") == TRAIN_IDS[:2]
    assert _cache(cache_dir)["version"] == CACHE_VERSION


def test_concurrent_open_voc_leaves_valid_cache(full_voc, tmp_path, monkeypatch):
    """Many writers finishing at the same moment: no error, one valid JSON cache, no temp files left."""
    n = 8
    barrier = threading.Barrier(n)
    real_build = dataloader._build_index

    def build_then_wait(root):
        out = real_build(root)
        barrier.wait(timeout=30)  # every thread writes the cache at once
        return out

    monkeypatch.setattr(dataloader, "_build_index", build_then_wait)
    for round_ in range(3):
        cache_dir = tmp_path / f"cache{round_}"
        with ThreadPoolExecutor(n) as pool:
            results = list(pool.map(lambda _: open_voc(full_voc, cache_dir), range(n)))
        assert all(r.ids("train_aug") == sorted(TRAIN_IDS + EXTRA_IDS) for r in results)
        assert sorted(p.name for p in cache_dir.iterdir()) == ["voc12_index.json"]
        data = _cache(cache_dir)
        assert data["splits"]["test"] == TEST_IDS and data["version"] == CACHE_VERSION


def _rewrite_in_place(path: Path, text: str, keep_mtime: bool) -> None:
    """Write ``text``, of the file's size, into ``path``; with ``keep_mtime`` restore its mtime afterwards (as
    ``touch -r`` or ``cp -p`` leave it). Rewritten until the ctime moves (coarse clocks tick every few ms)."""
    before = path.stat()
    assert len(text.encode()) == before.st_size
    for _ in range(100):
        path.write_text(text)
        if keep_mtime:
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        if path.stat().st_ctime_ns != before.st_ctime_ns:
            return
        time.sleep(0.01)
    raise AssertionError(f"the ctime of {path} did not move")


def _one_object_xml(name: str, size: int) -> str:
    head = f"<annotation><object><name>{name}</name></object>"
    return head + " " * (size - len(head) - len("</annotation>\n")) + "</annotation>\n"


@pytest.mark.parametrize("keep_mtime", [False, True])
def test_annotation_edited_in_place_rebuilds_cache(voc, caplog, keep_mtime):
    """Same size (new mtime, or the old mtime restored): the label comes from the edited XML, the log names it."""
    root, _, cache_dir = voc
    img_id = TRAIN_IDS[0]
    xml = root / "Annotations" / f"{img_id}.xml"
    before = open_voc(root, cache_dir).label(img_id)
    new_class = next(k for k in range(20) if not before[k])
    name = dataloader.CLASS_NAMES[new_class]
    _rewrite_in_place(xml, _one_object_xml(name, xml.stat().st_size), keep_mtime)
    if keep_mtime:
        assert file_state(xml)[:2] == _cache(cache_dir)["source"][FILES][f"Annotations/{img_id}.xml"][:2]
    with caplog.at_level(logging.INFO, logger="voc12.dataloader"):
        after = open_voc(root, cache_dir).label(img_id)
    assert after.nonzero()[0].tolist() == [new_class]
    assert any("rebuilding" in r.getMessage() and f"Annotations/{img_id}.xml changed" in r.getMessage()
               for r in caplog.records)
    assert open_voc(root, cache_dir).label(img_id).nonzero()[0].tolist() == [new_class]  # and cached so


def test_label_mask_edited_in_place_rebuilds_cache(voc):
    """An id without XML takes its label from its mask: that file is in the signature too."""
    root, _, cache_dir = voc
    img_id = VAL_IDS[0]
    (root / "Annotations" / f"{img_id}.xml").unlink()
    mask = root / "SegmentationClass" / f"{img_id}.png"
    first = open_voc(root, cache_dir).label(img_id)
    assert f"SegmentationClass/{img_id}.png" in _cache(cache_dir)["source"][FILES]
    other = root / "SegmentationClass" / f"{VAL_IDS[1]}.png"
    shutil.copy(other, mask)  # cp over it: new content, the folder's entries unchanged
    again = open_voc(root, cache_dir)
    assert (again.label(img_id) == again.label(VAL_IDS[1])).all()
    assert not (first == again.label(VAL_IDS[1])).all()


def test_coco_annotation_file_edited_in_place_rebuilds_cache(tmp_path, caplog):
    """Same size and mtime, another category for one annotation: the labels are rebuilt."""
    root = make_synthetic_coco(tmp_path / "coco", num_train=6, num_val=2, image_size=((48, 56), (48, 56)))
    cache_dir = tmp_path / "cache"
    index = open_coco(root, cache_dir)
    path = root / "annotations" / "instances_train2014.json"
    data = json.loads(path.read_text())
    ann = data["annotations"][0]
    stem = {r["id"]: Path(r["file_name"]).stem for r in index.image_records(index.ids("train"))}[ann["image_id"]]
    old_id = ann["category_id"]
    new_id = next(c["id"] for c in data["categories"] if len(str(c["id"])) == len(str(old_id)) and c["id"] != old_id
                  and c["id"] not in {a["category_id"] for a in data["annotations"] if a["image_id"] == ann["image_id"]})
    ann["category_id"] = new_id
    _rewrite_in_place(path, json.dumps(data, separators=(",", ":")), keep_mtime=True)
    with caplog.at_level(logging.INFO):
        rebuilt = open_coco(root, cache_dir)
    assert "annotations/instances_train2014.json changed" in caplog.text
    new_class = [c["id"] for c in rebuilt.category_records()].index(new_id)
    assert rebuilt.label(stem)[new_class] == 1 and index.label(stem)[new_class] == 0


def test_index_cache_round_trip_and_changes(tmp_path):
    """misc.core.index_cache knows no dataset: stated groups compared as given, the files read re-stated."""
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    for k in range(5):
        (root / "sub" / f"{k}.txt").write_text(f"{k}\n")
    read = ReadFiles(root)
    assert [read.stat(root / "sub" / f"{k}.txt") for k in range(5)] == [True] * 5
    assert not read.stat(root / "sub" / "absent.txt") and not read.stat(root / "sub")
    stated = {"lists": {"a.txt": [1, 2, 3]}}
    cache = tmp_path / "cache" / "index.json"
    assert read_index_cache(cache, 1, root, stated) == (None, "")
    write_index_cache(cache, 1, root, {**stated, FILES: dict(read)}, {"payload": [1, 2]})
    data, why = read_index_cache(cache, 1, root, stated)
    assert why == "" and data["payload"] == [1, 2] and sorted(data["source"][FILES]) == [f"sub/{k}.txt" for k in range(5)]
    assert read_index_cache(cache, 2, root, stated)[1] == "it has format version 1, this code writes 2"
    assert read_index_cache(cache, 1, tmp_path, stated)[1] == f"it was built for {root}"
    assert read_index_cache(cache, 1, root, {"lists": {}}, {"lists": "L/"})[1] == "L/a.txt disappeared"
    for k in range(4):
        _rewrite_in_place(root / "sub" / f"{k}.txt", f"{k + 5}\n", keep_mtime=True)
    assert read_index_cache(cache, 1, root, stated)[1] == ("sub/0.txt changed, sub/1.txt changed, sub/2.txt changed "
                                                          "and 1 more")
    (root / "sub" / "4.txt").unlink()
    assert read_index_cache(cache, 1, root, stated)[1].endswith("sub/2.txt changed and 2 more")
    assert describe_changes({"g": {"x": [1]}}, {"g": {"x": None, "y": [2]}}) == "x disappeared, y appeared"
    assert describe_changes(None, stated) == "it has no readable source signature"
    cache.write_text("[1, 2]")
    assert read_index_cache(cache, 1, root, stated) == (None, "it is unreadable")


# ---------------------------------------------------------------------------------------------------------------
# CUB held-out list
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture
def cub_meta(tmp_path) -> CUBMetadata:
    """Metadata of 3 classes x 4 images (ids 1..12; ids 1, 2 of each class train), no files needed."""
    ids = tuple(str(i) for i in range(1, 13))
    return CUBMetadata(
        root=tmp_path,
        image_ids=ids,
        rel_paths={i: f"{i}.jpg" for i in ids},
        labels={i: (int(i) - 1) // 4 for i in ids},
        is_train={i: (int(i) - 1) % 4 < 2 for i in ids},
        boxes={i: (0.0, 0.0, 1.0, 1.0) for i in ids},
    )


def test_heldout_write_is_atomic(cub_meta, tmp_path, monkeypatch):
    path = tmp_path / "lists" / "heldout_ids.txt"
    ids = load_or_make_heldout(cub_meta, path, n_per_class=1)
    assert ids == ["1", "5", "9"]
    assert path.read_text() == "1\n5\n9\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["heldout_ids.txt"]

    # a writer that dies before the rename leaves the old list intact and no temp file behind
    def crash(src, dst):
        raise OSError("killed before rename")

    monkeypatch.setattr(misc.core.io.os, "replace", crash)
    with pytest.raises(OSError, match="killed before rename"):
        cub_dataset.write_id_list(path, ["2", "6"])
    monkeypatch.undo()
    assert path.read_text() == "1\n5\n9\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["heldout_ids.txt"]


def test_concurrent_heldout_writers(cub_meta, tmp_path, monkeypatch):
    n = 8
    path = tmp_path / "heldout_ids.txt"
    expected = make_heldout_ids(cub_meta, 2)
    barrier = threading.Barrier(n)
    real_make = cub_dataset.make_heldout_ids

    def make_then_wait(meta, n_per_class=1):
        out = real_make(meta, n_per_class)
        barrier.wait(timeout=30)  # every thread writes the list at once
        return out

    monkeypatch.setattr(cub_dataset, "make_heldout_ids", make_then_wait)
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(lambda _: load_or_make_heldout(cub_meta, path, 2), range(n)))
    assert results == [expected] * n and expected == ["1", "2", "5", "6", "9", "10"]
    assert path.read_text() == "".join(f"{i}\n" for i in expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heldout_ids.txt"]
