"""MS COCO 2014 data layer (docs/data_coco.md): lists, image-level labels, category mapping, image records and the
ground truth built from the instance annotations.

``--coco_root`` holds the official layout::

    train2014/COCO_train2014_<image id:012d>.jpg      82,783 images
    val2014/COCO_val2014_<image id:012d>.jpg          40,504 images
    annotations/instances_train2014.json, annotations/instances_val2014.json

**Ids** are the file-name stems (``"COCO_train2014_000000000009"``): unique over both splits, the form peers'
list files use, and the name of every per-image output. :meth:`COCOIndex.image_records` maps them back to the real
image id, file name, width and height; :meth:`COCOIndex.category_records` gives the official category ids.

**Classes**: the 80 categories sorted by their official id map to the contiguous labels 1..80 (0 background, 255
ignore); the mapping is written to ``<result_dir>/coco_categories.json`` (:func:`write_category_map`). The
image-level label of an image is the set of categories of all its annotations (``iscrowd`` ones too: the objects
are in the image). Split lists ``train`` / ``val`` hold the images with at least one annotation (82,081 / 40,137 on
the real data), as peers' lists do.

**Index cache.** The two JSON files (≈ 450 MB and 220 MB) are read once: :func:`open_coco` writes
``<cache_dir>/coco_index.json`` (lists, labels, records, categories) and one line of annotations per image into
``<cache_dir>/coco_annotations/<split>.jsonl`` (with the byte offset of each line in the index), keyed on each
annotation file's size, mtime and a hash of its first and last MiB. Later opens read only the index (seconds) and
an image's annotations by one seek.

**Ground-truth class masks** (:func:`class_mask`): crowd regions (``iscrowd=1``) are 255 (ignored); every other
instance is painted in order of decreasing pixel area (ties: annotation order), so smaller objects stay on top of
larger ones they overlap and an instance covering part of a crowd region wins there. Masks are built lazily, one
image at a time when first read, into ``<cache_dir>/coco_gt_masks/<id>.png`` (or ``--coco_mask_dir``), whose
manifest records the annotation signature and the rule (a change clears the folder); ``python -m coco.dataset
--build_masks`` builds them ahead, sharded and resumable. A ``--coco_mask_dir`` that exists without a crt manifest is
a folder of ready class-index PNGs (``<id>.png`` or ``<split folder>/<id>.png``, values 0..80 and 255), used as is.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from misc.core.errors import DataError, MissingDataFileError, UserError
from misc.core.fingerprint import index_cache_mismatch
from misc.core.io import atomic_write, write_json
from misc.core.labels import IGNORE_INDEX

log = logging.getLogger(__name__)

NUM_CLASSES = 80
NUM_LABELS = NUM_CLASSES + 1  # values of a class mask: 0 background, 1..80 the categories (and 255 ignore)
SPLIT_DIRS: dict[str, str] = {"train": "train2014", "val": "val2014"}
ANNOTATION_FILES: dict[str, str] = {s: f"annotations/instances_{d}.json" for s, d in SPLIT_DIRS.items()}
CACHE_VERSION = 1
INDEX_NAME = "coco_index.json"
STORE_DIR = "coco_annotations"
MASK_DIR = "coco_gt_masks"
CATEGORY_MAP_NAME = "coco_categories.json"
# What decides the pixels of a built mask (recorded in the mask folder's manifest; a change rebuilds the masks).
MASK_RULE = ("v1: iscrowd regions 255; other instances painted by decreasing decoded pixel area (ties: annotation "
             "order, later on top); polygons with fewer than 3 points skipped")
_HASH_SPAN = 1 << 20  # the quick hash reads the first and the last MiB of an annotation file

GET_COCO = (
    "Get MS COCO 2014 from https://cocodataset.org/#download (train2014.zip, val2014.zip and "
    "annotations_trainval2014.zip), unzip them into one folder so that it holds train2014/, val2014/ and "
    "annotations/instances_train2014.json, annotations/instances_val2014.json, and pass that folder as --coco_root."
)

# The 80 categories of the COCO 2014 instance annotations: (official id, name), in official id order. The index
# takes ids and names from the annotation files; this table is what the synthetic generator writes.
COCO_2014_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
    (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"),
    (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"),
    (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"), (27, "backpack"),
    (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"),
    (36, "snowboard"), (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"), (46, "wine glass"), (47, "cup"),
    (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"), (54, "sandwich"),
    (55, "orange"), (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"),
    (62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"), (70, "toilet"),
    (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"), (77, "cell phone"),
    (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"), (82, "refrigerator"), (84, "book"),
    (85, "clock"), (86, "vase"), (87, "scissors"), (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"),
)


class COCOLayoutError(UserError, FileNotFoundError):
    """The COCO folder lacks something a step needs; the message names it and how to get it."""


class COCOSplitError(UserError, ValueError):
    """A ``--*_list`` value is neither a list file nor a split the COCO folder provides."""


# ------------------------------------------------------------------------------------------------ folder and files
def check_coco_root(root: str | os.PathLike) -> Path:
    """``root`` as a Path when it holds at least one of the instance annotation files; else one
    :class:`COCOLayoutError` naming what is missing."""
    root = Path(root)
    if not root.is_dir():
        raise COCOLayoutError(f"--coco_root {root} does not exist. {GET_COCO} Or run with --demo --dataset coco "
                              "for synthetic data.")
    if not any((root / f).is_file() for f in ANNOTATION_FILES.values()):
        hint = ""
        for sub in ("coco", "coco2014", "COCO"):
            if (root / sub / "annotations").is_dir():
                hint = f" (did you mean {root / sub}?)"
        raise COCOLayoutError(f"--coco_root {root}{hint} holds neither {ANNOTATION_FILES['train']} nor "
                              f"{ANNOTATION_FILES['val']}. {GET_COCO}")
    return root


def _quick_hash(path: Path, size: int) -> str:
    """sha256 of the size and the first and last MiB of ``path`` (16 hex digits): catches an annotation file
    replaced by another of the same size and mtime, without reading hundreds of MB."""
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(_HASH_SPAN))
        if size > _HASH_SPAN:
            f.seek(max(_HASH_SPAN, size - _HASH_SPAN))
            h.update(f.read(_HASH_SPAN))
    return h.hexdigest()[:16]


def source_signature(root: Path) -> dict[str, list | None]:
    """{split: [size, mtime_ns, quick hash] of its annotation file, or None when absent} (JSON-native)."""
    out: dict[str, list | None] = {}
    for split, rel in ANNOTATION_FILES.items():
        path = root / rel
        try:
            st = path.stat()
        except OSError:
            out[split] = None
            continue
        out[split] = [st.st_size, st.st_mtime_ns, _quick_hash(path, st.st_size)]
    return out


def _signature_changes(old: object, new: dict) -> str:
    if not isinstance(old, dict):
        return "it has no readable source signature"
    changes = []
    for split, rel in ANNOTATION_FILES.items():
        a, b = old.get(split), new.get(split)
        if a != b:
            changes.append(f"{rel} {'appeared' if a is None else 'disappeared' if b is None else 'changed'}")
    return ", ".join(changes) or "its source signature differs"


def read_annotation_file(path: Path) -> dict:
    """The parsed instances JSON, checked for its three lists; errors name the file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not a COCO annotation file (not valid JSON: {exc}). {GET_COCO}") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path} is not a COCO annotation file (a JSON object with images, annotations and "
                        f"categories is expected). {GET_COCO}")
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing:
        raise DataError(f"{path} has no list {', '.join(repr(k) for k in missing)}: it is not an instances_*.json "
                        f"file of COCO (captions or keypoints files do not carry the categories). {GET_COCO}")
    return data


# ------------------------------------------------------------------------------------------------ masks
def decode_segmentation(seg: Any, height: int, width: int, where: str = "") -> np.ndarray:
    """(H, W) bool mask of one COCO ``segmentation``: polygons (a list of flat [x0, y0, x1, y1, ...] lists),
    uncompressed RLE (``counts`` a list, as COCO's crowd regions) or compressed RLE (``counts`` a string).

    Polygons with fewer than 3 points (or an odd number of coordinates) have no area and are skipped.
    ``where`` names the annotation in errors."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        polys = [[float(v) for v in p] for p in seg if isinstance(p, (list, tuple)) and len(p) >= 6 and len(p) % 2 == 0]
        if not polys:
            return np.zeros((height, width), bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
        if [int(v) for v in seg["size"]] != [height, width]:
            raise DataError(f"{where}: RLE of size {list(seg['size'])} on an image of {height}x{width} (HxW)")
        counts = seg["counts"]
        if isinstance(counts, list):
            rle = mask_utils.frPyObjects(seg, height, width)
        else:
            rle = {"size": [height, width], "counts": counts.encode() if isinstance(counts, str) else counts}
    else:
        raise DataError(f"{where}: segmentation is neither a list of polygons nor an RLE dict (size, counts)")
    return np.asarray(mask_utils.decode(rle), dtype=bool).reshape(height, width)


def _decoded(anns: Sequence[dict], height: int, width: int, where: str) -> list[tuple[dict, np.ndarray]]:
    return [(a, decode_segmentation(a["segmentation"], height, width, f"{where}, annotation {a.get('id')}"))
            for a in anns]


def class_mask(anns: Sequence[dict], height: int, width: int, where: str = "") -> np.ndarray:
    """The semantic ground truth (H, W) uint8 of one image from its annotations (each with ``label`` 1..80,
    ``iscrowd``, ``segmentation``): 0 background; crowd regions 255; the other instances painted in order of
    decreasing decoded pixel area (ties: annotation order, the later on top), so smaller objects stay on top and
    an instance over a crowd region takes those pixels."""
    out = np.zeros((height, width), np.uint8)
    decoded = _decoded(anns, height, width, where)
    for ann, m in decoded:
        if ann.get("iscrowd"):
            out[m] = IGNORE_INDEX
    objects = [(ann, m) for ann, m in decoded if not ann.get("iscrowd")]
    order = sorted(range(len(objects)), key=lambda k: -int(objects[k][1].sum()))  # stable: ties keep their order
    for k in order:
        ann, m = objects[k]
        out[m] = int(ann["label"])
    return out


def instance_masks(anns: Sequence[dict], height: int, width: int, where: str = "") -> tuple[np.ndarray, np.ndarray]:
    """GT instances of one image for eval_ins_seg: (masks (R, H, W) bool, labels (R,) int32 0-based) of the
    non-crowd annotations with a non-empty mask, in annotation order (crowd regions are no instances)."""
    masks, labels = [], []
    for ann, m in _decoded([a for a in anns if not a.get("iscrowd")], height, width, where):
        if m.any():
            masks.append(m)
            labels.append(int(ann["label"]) - 1)
    if not masks:
        return np.zeros((0, height, width), bool), np.zeros((0,), np.int32)
    return np.stack(masks), np.asarray(labels, np.int32)


# ------------------------------------------------------------------------------------------------ the index
class _MultiHot(Mapping):
    """id → (num_classes,) float32 multi-hot, built on access from the stored 0-based class lists (123k images
    would otherwise hold 40 MB of vectors)."""

    def __init__(self, classes: dict[str, list[int]], num_classes: int) -> None:
        self._classes, self._n = classes, num_classes

    def __getitem__(self, img_id: str) -> np.ndarray:
        vec = np.zeros(self._n, np.float32)
        vec[self._classes[img_id]] = 1.0
        return vec

    def __contains__(self, img_id: object) -> bool:
        return img_id in self._classes

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)


@dataclass
class COCOIndex:
    """A validated COCO 2014 folder: split lists, labels, image records and where each image's annotations are.

    ``records[id] = [image id, width, height, split, file name]``; ``offsets[id] = [byte offset, length]`` of the
    image's line in ``<store_dir>/<split>.jsonl`` (images without annotations have none)."""

    root: Path
    splits: dict[str, list[str]]
    classes: dict[str, list[int]] = field(repr=False)
    records: dict[str, list] = field(repr=False)
    categories: list[list] = field(repr=False)  # [official id, name, supercategory] in contiguous order
    offsets: dict[str, list[int]] = field(repr=False)
    store_dir: Path
    mask_dir: Path
    masks_given: bool
    signature: dict = field(repr=False)

    name = "coco"
    num_classes = NUM_CLASSES
    num_labels = NUM_LABELS

    def __post_init__(self) -> None:
        self.labels: Mapping[str, np.ndarray] = _MultiHot(self.classes, NUM_CLASSES)
        self._by_image_id: dict[int, str] | None = None

    # ---- facts
    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(str(c[1]) for c in self.categories)

    def content_signature(self) -> dict:
        """{split: [size, quick hash]} of the annotation files: their content, not their mtime (a copied folder
        keeps its outputs)."""
        return {k: None if v is None else [v[0], v[2]] for k, v in self.signature.items()}

    def config_entry(self) -> dict:
        """What of the dataset shapes a step's outputs (an entry of their fingerprints)."""
        from misc.core.fingerprint import fingerprint

        return {"coco_root": str(self.root), "coco_annotations": fingerprint(self.content_signature())}

    def palette(self) -> list[int]:
        from misc.core.labels import label_palette

        return label_palette()

    # ---- lists and labels
    def _read_list(self, path: str) -> list[str]:
        """Ids of a list file: one per line, first token; ``.jpg`` and folder decorations tolerated; a bare number
        is a COCO image id."""
        ids = []
        with open(path) as f:
            for lineno, line in enumerate(f, 1):
                tok = line.strip().split()
                if not tok:
                    continue
                stem = Path(tok[0]).stem
                if stem.isdigit():
                    if self._by_image_id is None:
                        self._by_image_id = {int(r[0]): k for k, r in self.records.items()}
                    if int(stem) not in self._by_image_id:
                        raise DataError(f"{path}, line {lineno}: image id {stem} is in neither annotation file "
                                        f"under {self.root}/annotations")
                    stem = self._by_image_id[int(stem)]
                ids.append(stem)
        return ids

    def ids(self, list_arg: str) -> list[str]:
        """Ids of a ``--*_list`` value: an existing list file, or a split name (``train``, ``val``; also
        ``train2014`` / ``val2014`` or a path whose stem is one of them)."""
        if os.path.isfile(list_arg):
            return self._read_list(list_arg)
        name = Path(list_arg).stem
        name = {d: s for s, d in SPLIT_DIRS.items()}.get(name, name)
        if name in self.splits:
            return list(self.splits[name])
        have = ", ".join(sorted(self.splits)) or "none"
        if name in SPLIT_DIRS:
            raise COCOSplitError(f"list {list_arg!r} is not a file, and split {name!r} needs "
                                 f"{self.root / ANNOTATION_FILES[name]} (available splits: {have}). {GET_COCO}")
        extra = (" COCO 2014 has no test split with annotations (test2014 is scored by the evaluation server)."
                 if name.startswith("test") else "")
        raise COCOSplitError(f"list {list_arg!r} is neither a file nor a split of {self.root} (available splits: "
                             f"{have}: the train2014 / val2014 images with at least one annotation).{extra}")

    def label(self, img_id: str, list_arg: str | None = None) -> np.ndarray:
        """(80,) float32 multi-hot image-level label."""
        if img_id not in self.classes:
            raise DataError(self._missing_labels_message([img_id], list_arg))
        return self.labels[img_id]

    def _missing_labels_message(self, ids: Sequence[str], list_arg: str | None) -> str:
        where = f" listed in {list_arg}" if list_arg else ""
        unknown = [i for i in ids if i not in self.records]
        shown = ", ".join(repr(i) for i in ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        why = (f"{len(unknown)} of them are images of neither annotation file" if unknown else
               "they are images without any annotation (left out of the split lists)")
        return (f"{len(ids)} image id(s){where} have no class label: {shown}; {why}. Labels come from "
                f"{self.root}/annotations/instances_*2014.json; remove these ids from the list. (The index cache "
                f"{INDEX_NAME} is rebuilt when the annotation files change.)")

    def check_ids(self, ids: Sequence[str], list_arg: str, labels: bool = True, images: bool = True) -> list[str]:
        """``ids`` unchanged, after checking that each has a label (:class:`DataError`) and an image
        (:class:`MissingDataFileError`); offending ids are counted and the first ones named."""
        if labels:
            unlabelled = [i for i in ids if i not in self.classes]
            if unlabelled:
                raise DataError(self._missing_labels_message(unlabelled, list_arg))
        if images:
            absent = [i for i in ids if not self.image_path(i).is_file()]
            if absent:
                shown = ", ".join(str(self.image_path(i)) for i in absent[:5])
                more = f" and {len(absent) - 5} more" if len(absent) > 5 else ""
                raise MissingDataFileError(f"{len(absent)} image(s) listed in {list_arg} do not exist: {shown}{more}. "
                                           f"Unzip train2014.zip / val2014.zip into {self.root}. {GET_COCO}")
        return list(ids)

    # ---- files
    def _record(self, img_id: str) -> list:
        try:
            return self.records[img_id]
        except KeyError:
            raise DataError(f"image id {img_id!r} is in neither annotation file under {self.root}/annotations") from None

    def image_path(self, img_id: str) -> Path:
        rec = self.records.get(img_id)
        if rec is None:  # not in the annotations: where the official naming would put it (check_ids names it)
            split = "val" if "_val2014_" in img_id else "train"
            return self.root / SPLIT_DIRS[split] / f"{img_id}.jpg"
        return self.root / SPLIT_DIRS[rec[3]] / rec[4]

    def image_size(self, img_id: str) -> tuple[int, int]:
        """(height, width) from the annotation file."""
        rec = self._record(img_id)
        return int(rec[2]), int(rec[1])

    def annotations(self, img_id: str) -> list[dict]:
        """The image's annotations (``id``, ``category_id``, ``label`` 1..80, ``iscrowd``, ``segmentation``,
        ``bbox``, ``area``), read from the store by one seek; [] for an image without annotations."""
        rec = self._record(img_id)
        span = self.offsets.get(img_id)
        if span is None:
            return []
        path = self.store_dir / f"{SPLIT_DIRS[rec[3]]}.jsonl"
        with open(path, "rb") as f:
            f.seek(span[0])
            line = f.read(span[1])
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict) or entry.get("id") != img_id:
            raise DataError(f"the annotation store {path} does not match the index {INDEX_NAME} at {img_id!r}; "
                            f"delete {self.store_dir} and the index so that they are rebuilt")
        return entry["anns"]

    def class_gt_path(self, img_id: str) -> Path:
        """The class mask of ``img_id``: in a ready folder ``<dir>/<id>.png`` or ``<dir>/<split folder>/<id>.png``,
        else the built one ``<mask_dir>/<id>.png`` (which may not exist yet: :meth:`read_class_gt` builds it)."""
        flat = self.mask_dir / f"{img_id}.png"
        if self.masks_given and not flat.is_file():
            rec = self.records.get(img_id)
            nested = self.mask_dir / SPLIT_DIRS[rec[3] if rec else "train"] / f"{img_id}.png"
            if nested.is_file():
                return nested
        return flat

    def has_class_gt(self, img_id: str) -> bool:
        """Whether :meth:`read_class_gt` can give a mask (built ones: every annotated image of the files)."""
        return self.class_gt_path(img_id).is_file() if self.masks_given else img_id in self.records

    def build_class_gt(self, img_id: str) -> Path:
        """Build (or rebuild) the class mask of ``img_id`` into the mask folder, atomically; returns its path."""
        from misc.core.io import save_png

        h, w = self.image_size(img_id)
        mask = class_mask(self.annotations(img_id), h, w, f"image {img_id!r}")
        path = self.mask_dir / f"{img_id}.png"
        save_png(path, mask, palette=self.palette())
        return path

    def read_class_gt(self, img_id: str) -> np.ndarray:
        """(H, W) uint8 class mask, values 0..80 or 255; built on first use unless the masks are a given folder."""
        from misc.method.imutils import read_label_png
        from misc.core.outputs import output_problem

        path = self.class_gt_path(img_id)
        if self.masks_given:
            if not path.is_file():
                raise MissingDataFileError(f"image id {img_id!r}: no ground-truth mask at {path} (nor in "
                                           f"{self.mask_dir}/<split folder>/) in the --coco_mask_dir of ready masks; "
                                           "add it, or omit --coco_mask_dir to build the masks from the annotations")
        elif not path.is_file() or output_problem(path) is not None:
            path = self.build_class_gt(img_id)
        mask = read_label_png(path, NUM_LABELS)
        h, w = self.image_size(img_id)
        if mask.shape != (h, w):
            raise DataError(f"image id {img_id!r}: the mask {path} is {mask.shape[0]}x{mask.shape[1]} (HxW) but the "
                            f"annotation file gives the image {h}x{w}")
        return mask

    def gt_instances(self, img_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(masks (R, H, W) bool, labels (R,) int32 0-based): the non-crowd instances (:func:`instance_masks`)."""
        h, w = self.image_size(img_id)
        return instance_masks(self.annotations(img_id), h, w, f"image {img_id!r}")

    def gt_folders(self) -> list[Path]:
        """Folders of ground truth (train_deeplab refuses to train on them)."""
        return [self.mask_dir]

    # ---- records for exports (COCO JSON)
    def image_records(self, ids: Iterable[str]) -> list[dict]:
        """``[{"id": image id (int), "file_name", "width", "height"}]`` of ``ids``, in order (the ``images`` entries
        of a COCO results / annotation file)."""
        out = []
        for img_id in ids:
            rec = self._record(img_id)
            out.append({"id": int(rec[0]), "file_name": str(rec[4]), "width": int(rec[1]), "height": int(rec[2])})
        return out

    def category_records(self) -> list[dict]:
        """``[{"id": official category id, "name", "supercategory"}]`` in contiguous order: entry k is label k+1."""
        return [{"id": int(c[0]), "name": str(c[1]), "supercategory": str(c[2])} for c in self.categories]

    def label_to_category_id(self) -> dict[int, int]:
        """Contiguous label (1..80) → official COCO category id."""
        return {k + 1: int(c[0]) for k, c in enumerate(self.categories)}


# ------------------------------------------------------------------------------------------------ building
def _categories_of(data: dict, path: Path) -> list[list]:
    cats = []
    for c in data["categories"]:
        try:
            cats.append([int(c["id"]), str(c["name"]), str(c.get("supercategory", ""))])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: category entry {c!r} has no integer 'id' and 'name'") from None
    cats.sort(key=lambda c: c[0])
    if len(cats) != NUM_CLASSES or len({c[0] for c in cats}) != NUM_CLASSES:
        raise DataError(f"{path} has {len(cats)} categories ({len({c[0] for c in cats})} distinct ids); the COCO 2014 "
                        f"instance annotations have {NUM_CLASSES}. {GET_COCO}")
    return cats


def _build(root: Path, cache_dir: Path) -> dict:
    """Read each annotation file once; write the per-image annotation store; return the index payload."""
    store_dir = cache_dir / STORE_DIR
    splits: dict[str, list[str]] = {}
    classes: dict[str, list[int]] = {}
    records: dict[str, list] = {}
    offsets: dict[str, list[int]] = {}
    categories: list[list] | None = None
    cat_source: Path | None = None
    for split, rel in ANNOTATION_FILES.items():
        path = root / rel
        if not path.is_file():
            continue
        log.info("reading %s (once; later runs read the index cache)", path)
        data = read_annotation_file(path)
        cats = _categories_of(data, path)
        if categories is None:
            categories, cat_source = cats, path
        elif [c[:2] for c in cats] != [c[:2] for c in categories]:
            raise DataError(f"{path} and {cat_source} list different categories; both must be the COCO 2014 ones")
        label_of = {c[0]: k + 1 for k, c in enumerate(categories)}
        by_image: dict[int, str] = {}
        for im in data["images"]:
            try:
                image_id, file_name = int(im["id"]), str(im["file_name"])
                width, height = int(im["width"]), int(im["height"])
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{path}: image entry {im!r} lacks an integer id, width, height or a file_name") from None
            stem = Path(file_name).stem
            if stem in records:
                raise DataError(f"{path}: image file name {file_name!r} appears twice (ids are file-name stems)")
            records[stem] = [image_id, width, height, split, Path(file_name).name]
            by_image[image_id] = stem
        anns: dict[str, list[dict]] = {}
        for a in data["annotations"]:
            try:
                image_id, category_id = int(a["image_id"]), int(a["category_id"])
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{path}: annotation {a.get('id')!r} lacks an integer image_id or category_id") from None
            if image_id not in by_image:
                raise DataError(f"{path}: annotation {a.get('id')!r} refers to image_id {image_id}, which is not in "
                                "its images list")
            if category_id not in label_of:
                raise DataError(f"{path}: annotation {a.get('id')!r} has category_id {category_id}, which is not in "
                                "its categories list")
            stem, label = by_image[image_id], label_of[category_id]
            if "segmentation" not in a:
                raise DataError(f"{path}: annotation {a.get('id')!r} has no segmentation")
            anns.setdefault(stem, []).append({
                "id": a.get("id"), "category_id": category_id, "label": label,
                "iscrowd": int(a.get("iscrowd", 0)), "segmentation": a["segmentation"], "bbox": a.get("bbox"),
                "area": a.get("area")})
        del data
        ordered = sorted(anns)
        splits[split] = ordered

        def write_store(tmp: str, ordered=ordered, anns=anns) -> None:
            pos = 0
            with open(tmp, "wb") as f:
                for stem in ordered:
                    line = (json.dumps({"id": stem, "anns": anns[stem]}, separators=(",", ":")) + "\n").encode()
                    offsets[stem] = [pos, len(line)]
                    f.write(line)
                    pos += len(line)

        atomic_write(store_dir / f"{SPLIT_DIRS[split]}.jsonl", write_store)
        for stem in ordered:
            classes[stem] = sorted({a["label"] - 1 for a in anns[stem]})
        log.info("%s: %d images, %d with annotations", rel, len(by_image), len(ordered))
    assert categories is not None  # check_coco_root saw at least one annotation file
    return {"splits": splits, "classes": classes, "records": records, "categories": categories, "offsets": offsets}


def _store_state(cache_dir: Path, splits: Iterable[str]) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for split in splits:
        try:
            out[split] = (cache_dir / STORE_DIR / f"{SPLIT_DIRS[split]}.jsonl").stat().st_size
        except OSError:
            out[split] = None
    return out


def _read_cache(cache: Path, root: Path, signature: dict) -> tuple[dict | None, str]:
    try:
        data = json.loads(cache.read_text())
        why = index_cache_mismatch(data, CACHE_VERSION, root, signature, _signature_changes)
        if why:
            return None, why
        if data.get("store") != _store_state(cache.parent, data["splits"]):
            return None, f"its annotation store {cache.parent / STORE_DIR} is missing or changed"
        return data, ""
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring unreadable COCO index cache %s (%s); rebuilding it", cache, exc)
        return None, "it is unreadable"


def _mask_folder(cache_dir: Path, mask_dir: str | os.PathLike | None) -> tuple[Path, bool]:
    """(folder, given): a ``--coco_mask_dir`` that exists without a crt manifest holds ready masks (given);
    otherwise masks are built into it (default ``<cache_dir>/coco_gt_masks``)."""
    from misc.core.fingerprint import MANIFEST_NAME

    if mask_dir is None:
        return cache_dir / MASK_DIR, False
    folder = Path(mask_dir)
    given = folder.is_dir() and not (folder / MANIFEST_NAME).is_file() and any(folder.iterdir())
    return folder, given


def prepare_mask_dir(index: COCOIndex) -> None:
    """Make the built-mask folder hold masks of the current annotations and rule only (a no-op for ready masks or
    when the manifest matches)."""
    from misc.core.fingerprint import Manifest, fingerprint, prepare_output_dir

    if index.masks_given:
        return
    config = {"annotations": index.content_signature(), "rule": MASK_RULE}
    old = Manifest.read(index.mask_dir)
    if old is None or old["fingerprint"] != fingerprint(config):
        prepare_output_dir(index.mask_dir, "coco_gt_masks", config, (".png",))


def open_coco(root: str | os.PathLike, cache_dir: str | os.PathLike,
              mask_dir: str | os.PathLike | None = None) -> COCOIndex:
    """Validate ``root`` and return its index, read from ``<cache_dir>/coco_index.json`` when current, else
    built from the annotation files (and cached, atomically). ``mask_dir``: ``--coco_mask_dir`` (see
    :func:`_mask_folder`)."""
    root = check_coco_root(root).resolve()
    cache_dir = Path(cache_dir)
    cache = cache_dir / INDEX_NAME
    signature = source_signature(root)
    data = None
    if cache.is_file():
        data, why = _read_cache(cache, root, signature)
        if data is None:
            log.info("rebuilding COCO index cache %s: %s", cache, why)
    if data is None:
        data = _build(root, cache_dir)
        payload = {"version": CACHE_VERSION, "root": str(root), "source": signature,
                   "store": _store_state(cache_dir, data["splits"]), **data}
        text = json.dumps(payload, separators=(",", ":"))
        atomic_write(cache, lambda tmp: Path(tmp).write_text(text))
        log.info("built COCO lists/labels for %s: %s", root, {k: len(v) for k, v in data["splits"].items()})
    folder, given = _mask_folder(cache_dir, mask_dir)
    index = COCOIndex(root=root, splits={k: list(v) for k, v in data["splits"].items()}, classes=data["classes"],
                      records=data["records"], categories=data["categories"], offsets=data["offsets"],
                      store_dir=cache_dir / STORE_DIR, mask_dir=folder, masks_given=given, signature=signature)
    prepare_mask_dir(index)
    return index


def _open_from_args(args) -> COCOIndex:
    return open_coco(args.coco_root, args.list_cache_dir, getattr(args, "coco_mask_dir", None))


# ------------------------------------------------------------------------------------------------ export hooks
def coco_image_records(args, ids: Iterable[str]) -> list[dict]:
    """``[{"id": COCO image id (int), "file_name", "width", "height"}]`` of ``ids`` (file-name stems), in order."""
    return _open_from_args(args).image_records(ids)


def coco_categories(args) -> list[dict]:
    """``[{"id": official COCO category id, "name", "supercategory"}]``; entry k is the contiguous label k+1
    (class index k of the CAMs and instance outputs)."""
    return _open_from_args(args).category_records()


def category_map(index: COCOIndex) -> dict:
    """The contiguous ↔ official mapping as written to ``coco_categories.json``."""
    return {"background": 0, "ignore": IGNORE_INDEX,
            "annotations": [str(index.root / ANNOTATION_FILES[s]) for s in sorted(index.splits)],
            "categories": [{"label": k + 1, **c} for k, c in enumerate(index.category_records())]}


def write_category_map(index: COCOIndex, result_dir: str | os.PathLike) -> Path:
    """Write :func:`category_map` to ``<result_dir>/coco_categories.json`` (atomically); returns the path."""
    path = Path(result_dir) / CATEGORY_MAP_NAME
    write_json(path, category_map(index))
    return path


# ------------------------------------------------------------------------------------------------ CLI: build masks
def build_masks(index: COCOIndex, ids: Sequence[str], shard: str | None = None) -> tuple[int, int]:
    """Build the class masks of ``ids`` (every N-th from the K-th with ``shard`` "K/N") that are missing or
    unreadable; returns (built, skipped). Resumable: each mask is written atomically."""
    from misc.core.outputs import output_problem
    from misc.engine.per_image import parse_shard

    if index.masks_given:
        raise UserError(f"{index.mask_dir} is a folder of ready masks (no crt manifest): nothing to build")
    k, n = parse_shard(shard)
    built = skipped = 0
    for img_id in list(ids)[k::n]:
        path = index.class_gt_path(img_id)
        if path.is_file() and output_problem(path) is None:
            skipped += 1
            continue
        index.build_class_gt(img_id)
        built += 1
    return built, skipped


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m coco.dataset",
                                description="Index a COCO 2014 folder and (optionally) build its class masks ahead.")
    p.add_argument("--coco_root", required=True)
    p.add_argument("--cache_dir", default="result", help="where the index, the annotation store and the masks go "
                                                          "(run_sample.py uses <work_dir>/result)")
    p.add_argument("--coco_mask_dir", default=None)
    p.add_argument("--build_masks", nargs="*", default=None, metavar="SPLIT",
                   help="build the class masks of these splits (default: all)")
    p.add_argument("--shard", default=None, help="K/N: every N-th id from the K-th")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    index = open_coco(args.coco_root, args.cache_dir, args.coco_mask_dir)
    log.info("splits: %s", {k: len(v) for k, v in index.splits.items()})
    if args.build_masks is not None:
        for split in args.build_masks or sorted(index.splits):
            built, skipped = build_masks(index, index.ids(split), args.shard)
            log.info("%s: %d masks built, %d already there, in %s", split, built, skipped, index.mask_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
