"""CUB-200-2011 data layer (docs/wsol_cub.md#data; TS-CAM lib/datasets/cub.py semantics).

Reads the official ``CUB_200_2011`` folder (``images.txt``, ``image_class_labels.txt``, ``train_test_split.txt``,
``bounding_boxes.txt``, ``images/``). Ids are strings (``"448"``), classes 0-based, boxes ``x y w h`` floats in
pixels of the original image. Nothing is read at import time: :meth:`CUBMetadata.load` validates the folder.

Samples are dicts: train ``{"name", "img" (3,224,224) float32, "label"}``; eval (test / held-out) adds
``"box"`` (4,) int64 ``[x1, y1, x2, y2]`` in the 224 frame (docs/wsol_cub.md#data; the original returned a string).
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms
from torchvision.transforms import InterpolationMode

from misc.core.errors import DataError, UnreadableFileError, UserError
from misc.core.io import atomic_write
from cub.layout import IMAGES_DIR, image_path

log = logging.getLogger(__name__)

METADATA_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_SIZE = 256
CROP_SIZE = 224
BOX_TOLERANCE_PX = 1.0  # a box may end one pixel past its image (x + w on the last pixel's far edge)

GET_CUB = (
    "Get CUB-200-2011 (CUB_200_2011.tgz, about 1.1 GB) from https://www.vision.caltech.edu/datasets/cub_200_2011/ "
    "(Caltech data repository: https://data.caltech.edu/records/65de6-vqm12), extract it and pass the "
    "CUB_200_2011 folder (the one holding images.txt and images/) as the CUB root."
)

Split = Literal["train", "test", "all"]


class CUBDatasetError(UserError, FileNotFoundError):
    """The CUB folder is missing something or is inconsistent; the message says what and how to get the data."""


def check_cub_root(root: str | os.PathLike) -> Path:
    """Raise one :class:`CUBDatasetError` listing every missing metadata file / folder under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise CUBDatasetError(f"CUB root {root} does not exist or is not a folder. {GET_CUB}")
    missing = [n for n in METADATA_FILES if not (root / n).is_file()]
    if not (root / IMAGES_DIR).is_dir():
        missing.append(IMAGES_DIR + "/")
    if missing:
        hint = ""
        if (root / "CUB_200_2011").is_dir():
            hint = f" (did you mean {root / 'CUB_200_2011'}?)"
        raise CUBDatasetError(f"CUB root {root}{hint} lacks: {', '.join(missing)}. {GET_CUB}")
    return root


def _read_table(path: Path, n_fields: int, linenos: dict[str, int] | None = None) -> dict[str, list[str]]:
    """'id v1 .. vk' lines -> {id: [v1..vk]} (the last field keeps inner spaces when n_fields == 1).

    ``linenos`` (when given) receives each id's line number, for the messages of later parse errors."""
    table: dict[str, list[str]] = {}
    try:
        with open(path) as f:
            lines = list(f)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not a text file ({exc}); {GET_CUB}") from exc
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        parts = line.split(maxsplit=1) if n_fields == 1 else line.split()
        if len(parts) != n_fields + 1:
            raise CUBDatasetError(f"{path}:{lineno}: expected 'id' + {n_fields} field(s), got {line!r}. Fix or "
                                  f"restore that line (the official file has it). {GET_CUB}")
        if parts[0] in table:
            first = linenos.get(parts[0]) if linenos is not None else None
            raise DataError(f"{path}:{lineno}: image id {parts[0]} appears twice (also on line {first}): {line!r}"
                            if first else f"{path}:{lineno}: id {parts[0]} appears twice: {line!r}")
        table[parts[0]] = parts[1:]
        if linenos is not None:
            linenos[parts[0]] = lineno
    return table


def _parse(path: Path, linenos: dict[str, int], image_id: str, fields: Sequence[str], convert, what: str):
    """``convert(fields)``, or a :class:`DataError` naming the file, the line number and the line."""
    try:
        return convert(fields)
    except ValueError as exc:
        line = " ".join([image_id, *fields])
        raise DataError(f"{path}:{linenos.get(image_id, '?')}: cannot read {what} of image id {image_id} from "
                        f"{line!r} ({exc}). Fix or restore that line (the official file has it).") from None


@dataclass(frozen=True)
class CUBMetadata:
    """Parsed metadata of a CUB_200_2011 folder; ``image_ids`` keeps the order of images.txt."""

    root: Path
    image_ids: tuple[str, ...]
    rel_paths: dict[str, str]
    labels: dict[str, int]
    is_train: dict[str, bool]
    boxes: dict[str, tuple[float, float, float, float]]
    class_names: tuple[str, ...] = ()
    box_lines: dict[str, int] = field(default_factory=dict)  # line of each id's box in bounding_boxes.txt

    @classmethod
    def load(cls, root: str | os.PathLike) -> "CUBMetadata":
        root = check_cub_root(root)
        label_lines: dict[str, int] = {}
        box_lines: dict[str, int] = {}
        images = _read_table(root / "images.txt", 1)
        labels = _read_table(root / "image_class_labels.txt", 1, label_lines)
        splits = _read_table(root / "train_test_split.txt", 1)
        boxes = _read_table(root / "bounding_boxes.txt", 4, box_lines)
        problems = []
        for name, table in (("image_class_labels.txt", labels), ("train_test_split.txt", splits),
                            ("bounding_boxes.txt", boxes)):
            absent = [i for i in images if i not in table]
            if absent:
                problems.append(f"{name} has no line for {len(absent)} id(s) of images.txt, e.g. {absent[:5]}")
        bad_split = sorted({v[0] for v in splits.values()} - {"0", "1"})
        if bad_split:
            problems.append(f"train_test_split.txt has values {bad_split} (expected 1 = train, 0 = test)")
        if problems:
            raise CUBDatasetError(f"CUB metadata in {root} is inconsistent: " + "; ".join(problems))
        class_names: tuple[str, ...] = ()
        if (root / "classes.txt").is_file():
            class_lines: dict[str, int] = {}
            names = _read_table(root / "classes.txt", 1, class_lines)
            order = {k: _parse(root / "classes.txt", class_lines, k, [], lambda _, k=k: int(k), "the class id")
                     for k in names}
            class_names = tuple(v[0] for _, v in sorted(names.items(), key=lambda kv: order[kv[0]]))
        ids = tuple(images)
        label_file = root / "image_class_labels.txt"
        parsed_labels = {i: _parse(label_file, label_lines, i, labels[i], lambda f: int(f[0]), "the class id")
                         for i in ids}
        for i, c in parsed_labels.items():
            if c < 1 or (class_names and c > len(class_names)):
                limit = f"1..{len(class_names)} (the classes of classes.txt)" if class_names else "1 or more"
                raise DataError(f"{label_file}:{label_lines[i]}: image id {i} has class id {c}; class ids are "
                                f"{limit}. Fix or restore that line.")
        parsed_boxes = {i: _parse(root / "bounding_boxes.txt", box_lines, i, boxes[i],
                                  lambda f: tuple(float(v) for v in f), "the box (x y w h)") for i in ids}
        for i, (x, y, w, h) in parsed_boxes.items():
            if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0 or x < 0 or y < 0:
                raise DataError(f"{root / 'bounding_boxes.txt'}:{box_lines[i]}: image id {i} has the box x {x:g} y "
                                f"{y:g} w {w:g} h {h:g}; a box needs a positive width and height and x, y >= 0. Fix "
                                f"or restore that line (the official file has it).")
        return cls(
            root=root,
            image_ids=ids,
            rel_paths={i: images[i][0] for i in ids},
            labels={i: c - 1 for i, c in parsed_labels.items()},
            is_train={i: splits[i][0] == "1" for i in ids},
            boxes=parsed_boxes,
            class_names=class_names,
            box_lines={i: box_lines[i] for i in ids},
        )

    def check_num_classes(self, num_classes: int, flag: str = "--wsol_num_classes") -> None:
        """:class:`DataError` naming the image id, its class and ``flag`` when a label is not below ``num_classes``
        (the model's classifier has ``num_classes`` outputs)."""
        beyond = [(i, c) for i, c in self.labels.items() if c >= num_classes]
        if beyond:
            i, c = max(beyond, key=lambda ic: ic[1])
            raise DataError(
                f"{self.root}/image_class_labels.txt: image id {i} has class {c + 1} (1-based), beyond {flag} "
                f"{num_classes} ({len(beyond)} image(s) have a class above {num_classes}); pass {flag} "
                f"{max(self.labels.values()) + 1} (the number of classes of this dataset) or fix the labels."
            )

    @property
    def num_classes(self) -> int:
        """Number of classes: len(classes.txt) when present, else 1 + the largest label."""
        return len(self.class_names) or (max(self.labels.values()) + 1 if self.labels else 0)

    def split_ids(self, split: Split) -> list[str]:
        """Ids of 'train' (split flag 1), 'test' (flag 0) or 'all', in images.txt order."""
        if split == "all":
            return list(self.image_ids)
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
        want = split == "train"
        return [i for i in self.image_ids if self.is_train[i] == want]

    def image_path(self, image_id: str) -> Path:
        return image_path(self.root, self.rel_paths[image_id])

    def missing_images(self, ids: Iterable[str] | None = None) -> list[tuple[str, Path]]:
        """(id, path) of every listed image whose file does not exist."""
        ids = self.image_ids if ids is None else ids
        return [(i, self.image_path(i)) for i in ids if not self.image_path(i).is_file()]

    def check_images(self, ids: Iterable[str] | None = None) -> None:
        missing = self.missing_images(ids)
        if missing:
            shown = "; ".join(f"id {i}: {p}" for i, p in missing[:10])
            more = f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
            raise CUBDatasetError(f"{len(missing)} CUB image file(s) missing: {shown}{more}. {GET_CUB}")


def box_problems(meta: CUBMetadata, ids: Iterable[str] | None = None, limit: int = 3) -> list[str]:
    """One line per box of ``ids`` that reaches outside its image (read from the image's header, no decoding),
    naming bounding_boxes.txt and the line; at most ``limit`` lines, then a count."""
    bad = []
    for i in meta.image_ids if ids is None else ids:
        x, y, w, h = meta.boxes[i]
        with Image.open(meta.image_path(i)) as im:
            width, height = im.size
        if x + w > width + BOX_TOLERANCE_PX or y + h > height + BOX_TOLERANCE_PX:
            bad.append(f"{meta.root / 'bounding_boxes.txt'}:{meta.box_lines.get(i, '?')}: the box of image id {i} "
                       f"(x {x:g} y {y:g} w {w:g} h {h:g}) reaches outside its {width}x{height} image "
                       f"{meta.image_path(i)}; fix or restore that line")
    if len(bad) > limit:
        bad = bad[:limit] + [f"and {len(bad) - limit} more box(es) outside their images"]
    return bad


def load_image_rgb(meta: CUBMetadata, image_id: str) -> Image.Image:
    """PIL RGB image of ``image_id`` (grayscale / CMYK / palette converted); clear error naming id and path."""
    path = meta.image_path(image_id)
    if not path.is_file():
        raise CUBDatasetError(f"CUB image id {image_id}: file not found: {path}. {GET_CUB}")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception as exc:
        raise UnreadableFileError(f"CUB image id {image_id}: cannot read {path} ({type(exc).__name__}: {exc}); "
                                  f"replace it with an intact copy (e.g. re-extract CUB_200_2011.tgz)") from exc


def box_to_crop_frame(box_xywh: Sequence[float], image_size: tuple[int, int], crop_size: int = CROP_SIZE
                      ) -> np.ndarray:
    """CUB box (x, y, w, h) in pixels of an image of size (W, H) -> (4,) int64 [x1, y1, x2, y2] in the crop frame.

    As TS-CAM: values truncated with int(float(v)), then x1 = int(max(x/W·S, 0)), x2 = int(min((x+w)/W·S, S-1)).
    """
    x, y, w, h = (int(float(v)) for v in box_xywh)
    width, height = image_size
    x1 = int(max(x / width * crop_size, 0))
    y1 = int(max(y / height * crop_size, 0))
    x2 = int(min((x + w) / width * crop_size, crop_size - 1))
    y2 = int(min((y + h) / height * crop_size, crop_size - 1))
    return np.array([x1, y1, x2, y2], dtype=np.int64)


def train_transform(resize_size: int = RESIZE_SIZE, crop_size: int = CROP_SIZE) -> transforms.Compose:
    """Resize((r, r)) PIL bilinear (aspect not kept) -> RandomCrop c -> HorizontalFlip -> ToTensor -> Normalize."""
    return transforms.Compose([
        transforms.Resize((resize_size, resize_size), interpolation=InterpolationMode.BILINEAR),
        transforms.RandomCrop((crop_size, crop_size)),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def eval_transform(crop_size: int = CROP_SIZE) -> transforms.Compose:
    """Resize((c, c)) PIL bilinear -> ToTensor -> Normalize (no ten-crop)."""
    return transforms.Compose([
        transforms.Resize((crop_size, crop_size), interpolation=InterpolationMode.BILINEAR),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def _as_meta(root_or_meta: str | os.PathLike | CUBMetadata) -> CUBMetadata:
    return root_or_meta if isinstance(root_or_meta, CUBMetadata) else CUBMetadata.load(root_or_meta)


class CUBTrainDataset(Dataset):
    """Training images: ``{"name": id, "img": (3, crop, crop) float32, "label": int}``."""

    def __init__(self, meta: CUBMetadata, ids: Sequence[str], resize_size: int = RESIZE_SIZE,
                 crop_size: int = CROP_SIZE) -> None:
        meta.check_images(ids)
        self.meta, self.ids = meta, list(ids)
        self.transform = train_transform(resize_size, crop_size)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, idx: int) -> dict:
        image_id = self.ids[idx]
        img = self.transform(load_image_rgb(self.meta, image_id))
        return {"name": image_id, "img": img, "label": self.meta.labels[image_id]}


class CUBEvalDataset(Dataset):
    """Test / held-out images: train's dict plus ``"box"`` (4,) int64 [x1, y1, x2, y2] in the crop frame."""

    def __init__(self, meta: CUBMetadata, ids: Sequence[str], crop_size: int = CROP_SIZE) -> None:
        meta.check_images(ids)
        self.meta, self.ids, self.crop_size = meta, list(ids), crop_size
        self.transform = eval_transform(crop_size)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, idx: int) -> dict:
        image_id = self.ids[idx]
        image = load_image_rgb(self.meta, image_id)
        box = box_to_crop_frame(self.meta.boxes[image_id], image.size, self.crop_size)
        return {"name": image_id, "img": self.transform(image), "label": self.meta.labels[image_id],
                "box": torch.from_numpy(box)}


# ---------------------------------------------------------------------------------------------------------------
# held-out split for model selection
# ---------------------------------------------------------------------------------------------------------------

def make_heldout_ids(meta: CUBMetadata, n_per_class: int = 1) -> list[str]:
    """The first ``n_per_class`` TRAIN images of every class by numeric id, sorted by id."""
    per_class: dict[int, list[str]] = {}
    for i in sorted(meta.split_ids("train"), key=int):
        chosen = per_class.setdefault(meta.labels[i], [])
        if len(chosen) < n_per_class:
            chosen.append(i)
    return sorted((i for ids in per_class.values() for i in ids), key=int)


def write_id_list(path: str | os.PathLike, ids: Iterable[str]) -> None:
    """Write one id per line atomically (unique temp file beside ``path``, then rename): concurrent writers
    (e.g. torchrun ranks) and readers never see a partial list."""
    text = "".join(f"{i}\n" for i in ids)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def read_id_list(path: str | os.PathLike) -> list[str]:
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def check_heldout_per_class(meta: CUBMetadata, n_per_class: int) -> None:
    """Raise :class:`CUBDatasetError` naming ``--wsol_heldout_per_class`` unless every class keeps at least one
    train image after ``n_per_class`` of its train images are held out."""
    counts: dict[int, int] = {}
    for i in meta.split_ids("train"):
        counts[meta.labels[i]] = counts.get(meta.labels[i], 0) + 1
    if not counts:
        raise CUBDatasetError(f"{meta.root} has no train images (train_test_split.txt marks none with 1)")
    fewest = min(counts.values())
    if n_per_class < 0 or n_per_class >= fewest:
        label = min(counts, key=counts.get)
        allowed = f"must be in [1, {fewest - 1}]" if fewest > 1 else "no image can be held out"
        raise CUBDatasetError(
            f"--wsol_heldout_per_class {n_per_class}: {allowed} for {meta.root} (class {label} has only {fewest} "
            f"train image(s), and every class needs at least one left to train on); or select on the test set: "
            f"--wsol_select_on test")


def load_or_make_heldout(meta: CUBMetadata, path: str | os.PathLike, n_per_class: int = 1, *,
                         leave_train: bool = False) -> list[str]:
    """Read the held-out id list at ``path``, or build it (first n_per_class train ids per class) and write it
    atomically (two ranks building it at once both write the same complete list). ``leave_train`` (the list is
    held out of training): a new list must leave every class a train image (:func:`check_heldout_per_class`).

    Every listed id must be a train image of ``meta``.
    """
    path = Path(path)
    if path.is_file():
        ids = read_id_list(path)
        bad = [i for i in ids if i not in meta.is_train or not meta.is_train[i]]
        if bad:
            raise CUBDatasetError(f"held-out list {path} names ids that are not train images of {meta.root}: "
                                  f"{bad[:10]}; delete it to rebuild")
        return ids
    if leave_train:
        check_heldout_per_class(meta, n_per_class)
    ids = make_heldout_ids(meta, n_per_class)
    write_id_list(path, ids)
    log.info("wrote held-out list %s (%d images, %d per class)", path, len(ids), n_per_class)
    return ids


# ---------------------------------------------------------------------------------------------------------------
# factories
# ---------------------------------------------------------------------------------------------------------------

def build_train_dataset(root_or_meta: str | os.PathLike | CUBMetadata, exclude_ids: Iterable[str] = (),
                        resize_size: int = RESIZE_SIZE, crop_size: int = CROP_SIZE) -> CUBTrainDataset:
    """Train split minus ``exclude_ids`` (the held-out list)."""
    meta = _as_meta(root_or_meta)
    exclude = set(exclude_ids)
    return CUBTrainDataset(meta, [i for i in meta.split_ids("train") if i not in exclude], resize_size, crop_size)


def build_eval_dataset(root_or_meta: str | os.PathLike | CUBMetadata, ids: Sequence[str] | None = None,
                       crop_size: int = CROP_SIZE) -> CUBEvalDataset:
    """Test split (default) or the given ids (e.g. the held-out list) with the test transform and GT boxes."""
    meta = _as_meta(root_or_meta)
    return CUBEvalDataset(meta, meta.split_ids("test") if ids is None else list(ids), crop_size)
