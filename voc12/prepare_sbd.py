"""Build VOC 2012's ``train_aug`` from SBD (docs/data_voc.md#preparing-train_aug-from-sbd).

    python -m voc12.prepare_sbd --sbd_root /data/benchmark_RELEASE --voc12_root /data/VOC2012

SBD (Semantic Boundaries Dataset, Hariharan et al. 2011) ships its masks as MATLAB files,
``benchmark_RELEASE/dataset/cls/<id>.mat`` (a struct ``GTcls`` whose ``Segmentation`` is the HxW class map). This
writes into ``--voc12_root``:

- ``SegmentationClassAug/<id>.png``: a palette PNG of class indices for every id of SBD (train + val) and of VOC's
  ``SegmentationClass/``; VOC's own mask wins for ids both have (its 255 borders kept);
- ``ImageSets/Segmentation/train_aug.txt``: (SBD train ∪ SBD val ∪ VOC train) − VOC val, sorted, which
  :func:`voc12.dataloader.open_voc` reads as the split ``train_aug``.

Every mask is checked against its image's size and for values 0..20 or 255; the problems are collected and reported
together at the end (the good masks are written). Reruns skip the masks already written; writes are atomic.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import scipy.io
from PIL import Image
from tqdm import tqdm

from misc.core.errors import DataError, MissingDataFileError, UnreadableFileError, UserError, os_error_message
from misc.core.io import atomic_write, save_png
from misc.core.labels import label_palette, read_label_png  # label_palette: the VOC colour map of the written PNGs

log = logging.getLogger(__name__)

NUM_LABELS = 21  # 0 background, 1..20 the VOC classes
IGNORE = 255
SBD_DOWNLOAD = "home.bharathh.info/pubs/codes/SBD/download.html"
SBD_ENTRIES = ("cls", "train.txt", "val.txt")
AUG_DIR = "SegmentationClassAug"
TRAIN_AUG_LIST = Path("ImageSets") / "Segmentation" / "train_aug.txt"
VOC_NEEDS = ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation/train.txt", "ImageSets/Segmentation/val.txt")
# The full sets: SBD train 8,498 + val 2,857 ids, VOC 2012 val 1,449 ids, giving these two counts.
FULL_SBD_IDS, FULL_VOC_VAL_IDS = 11_355, 1_449
FULL_TRAIN_AUG_IDS, FULL_MASKS = 10_582, 12_031
SHOWN_PROBLEMS = 50


class SBDLayoutError(UserError, FileNotFoundError):
    """``--sbd_root`` holds no SBD ``dataset/`` folder; the message names what is missing and where SBD comes from."""


def find_sbd_dataset(root: str | os.PathLike) -> Path:
    """SBD's ``dataset/`` folder (holding ``cls/``, ``train.txt``, ``val.txt``) given as itself, as
    ``benchmark_RELEASE/`` or as the folder holding ``benchmark_RELEASE/``."""
    root = Path(root)
    get = (f"Download benchmark.tgz from {SBD_DOWNLOAD}, unpack it and pass its benchmark_RELEASE/ folder (or "
           f"benchmark_RELEASE/dataset/) as --sbd_root.")
    if not root.is_dir():
        raise SBDLayoutError(f"--sbd_root {root} does not exist. {get}")
    candidates = [root, root / "dataset", root / "benchmark_RELEASE" / "dataset"]
    for folder in candidates:
        if all((folder / entry).exists() for entry in SBD_ENTRIES):
            return folder
    looked = []
    for folder in candidates:
        if folder.is_dir():
            missing = [entry for entry in SBD_ENTRIES if not (folder / entry).exists()]
            looked.append(f"{folder} lacks {', '.join(missing)}")
    raise SBDLayoutError(f"--sbd_root {root} holds no SBD dataset folder with {', '.join(SBD_ENTRIES)} "
                         f"(looked in it, dataset/ and benchmark_RELEASE/dataset/: {'; '.join(looked)}). {get}")


def _unwrap(value: object) -> object:
    """The element of MATLAB's 1x1 wrappers (object arrays of one element)."""
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.item()
    return value


def segmentation_field(gtcls: object) -> np.ndarray | None:
    """``GTcls.Segmentation`` of a loaded ``GTcls`` in any of scipy's forms (``struct_as_record`` True: a record
    array; False: a ``mat_struct``; ``simplify_cells``: a dict), or None when it has no such field."""
    gtcls = _unwrap(gtcls)
    if isinstance(gtcls, np.ndarray) and gtcls.dtype.names and gtcls.size == 1:
        value = gtcls["Segmentation"] if "Segmentation" in gtcls.dtype.names else None
    elif isinstance(gtcls, dict):
        value = gtcls.get("Segmentation")
    else:
        value = getattr(gtcls, "Segmentation", None)
    value = _unwrap(value)
    return value if isinstance(value, np.ndarray) else None


def check_label_values(label: np.ndarray, path: Path) -> np.ndarray:
    """``label`` as uint8 when it is 2-D with integer values 0..20 or 255, else a :class:`DataError` naming ``path``."""
    if label.ndim != 2 or label.size == 0:
        raise DataError(f"{path}: the class map must be a 2-D array, this one has shape {label.shape}")
    if not (np.issubdtype(label.dtype, np.integer) or np.issubdtype(label.dtype, np.floating)):
        raise DataError(f"{path}: the class map must hold numbers, this one holds {label.dtype}")
    bad = ~(((label >= 0) & (label < NUM_LABELS)) | (label == IGNORE)) | (label != np.round(label))
    if bad.any():
        values = np.unique(label[bad])
        shown = ", ".join(f"{v:g}" for v in values[:10]) + (" ..." if len(values) > 10 else "")
        raise DataError(f"{path}: class values must be 0..{NUM_LABELS - 1} or {IGNORE}, found {shown} in "
                        f"{int(bad.sum())} pixel(s); replace it with the file of SBD's benchmark.tgz")
    return label.astype(np.uint8)


def read_sbd_segmentation(path: str | os.PathLike) -> np.ndarray:
    """The (H, W) uint8 class map ``GTcls.Segmentation`` of an SBD ``cls/<id>.mat``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataFileError(f"{path} does not exist; SBD's cls/ folder has a .mat for every id of its "
                                   f"train.txt and val.txt (unpack benchmark.tgz again)")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as exc:  # any decoding failure of the user's file (truncated, not a .mat, HDF5 v7.3)
        raise UnreadableFileError(f"cannot read {path} ({type(exc).__name__}: {exc}); replace it with the file of "
                                  f"SBD's benchmark.tgz") from exc
    label = segmentation_field(mat.get("GTcls"))
    if label is None:
        names = ", ".join(k for k in mat if not k.startswith("__")) or "none"
        raise DataError(f"{path} has no GTcls.Segmentation (its variables: {names}); is it a file of SBD's "
                        f"dataset/cls/ folder?")
    return check_label_values(label, path)


@dataclass(frozen=True)
class MaskJob:
    """One mask to write: its source (VOC's ``.png`` or SBD's ``.mat``), the images it may belong to (first
    existing wins) and the output PNG."""

    img_id: str
    source: Path
    images: tuple[Path, ...]
    out: Path
    overwrite: bool


@dataclass(frozen=True)
class MaskResult:
    img_id: str
    status: str  # "written", "skipped" or "failed"
    problem: str = ""


def _image_size(job: MaskJob) -> tuple[Path, tuple[int, int]]:
    """The first existing image of ``job`` and its (H, W); errors name the id and every path looked at."""
    for path in job.images:
        if path.is_file():
            try:
                with Image.open(path) as im:
                    return path, (im.height, im.width)
            except Exception as exc:  # an undecodable image header
                raise UnreadableFileError(f"cannot read image {path} ({type(exc).__name__}: {exc})") from exc
    raise MissingDataFileError(f"image id {job.img_id!r}: no image for the mask {job.source} (looked for "
                               f"{' and '.join(str(p) for p in job.images)})")


def _is_done(out: Path, size: tuple[int, int]) -> bool:
    """Whether ``out`` is a readable mask of ``size`` with valid values."""
    try:
        return read_label_png(out, NUM_LABELS).shape == size
    except (DataError, MissingDataFileError, UnreadableFileError):
        return False


def write_mask(job: MaskJob) -> MaskResult:
    """Check and write one mask (skipped when already written, unless ``job.overwrite``); a problem of the inputs
    is returned, not raised, so that the caller can report all of them."""
    try:
        image, size = _image_size(job)
        if not job.overwrite and job.out.is_file() and _is_done(job.out, size):
            return MaskResult(job.img_id, "skipped")
        if job.source.suffix == ".mat":
            label = read_sbd_segmentation(job.source)
        else:
            label = read_label_png(job.source, NUM_LABELS)
        if label.shape != size:
            raise DataError(f"image id {job.img_id!r}: the mask {job.source} is {label.shape[0]}x{label.shape[1]} "
                            f"(HxW) but its image {image} is {size[0]}x{size[1]}")
    except (DataError, MissingDataFileError, UnreadableFileError) as exc:
        return MaskResult(job.img_id, "failed", str(exc))
    save_png(job.out, label, label_palette())
    return MaskResult(job.img_id, "written")


def train_aug_ids(sbd_train: Iterable[str], sbd_val: Iterable[str], voc_train: Iterable[str],
                  voc_val: Iterable[str]) -> list[str]:
    """(SBD train ∪ SBD val ∪ VOC train) − VOC val, sorted."""
    return sorted((set(sbd_train) | set(sbd_val) | set(voc_train)) - set(voc_val))


def write_id_list(path: Path, ids: Sequence[str]) -> bool:
    """Write ``ids`` one per line (atomically); False, writing nothing, when ``path`` already holds exactly that."""
    text = "".join(f"{i}\n" for i in ids)
    if path.is_file() and path.read_text() == text:
        return False
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return True


@dataclass
class PrepareSummary:
    """What :func:`prepare_sbd` found and did."""

    sbd_dir: Path
    voc_root: Path
    sbd_train: int
    sbd_val: int
    voc_train: int
    voc_val: int
    from_sbd: int
    from_voc: int
    written: int
    skipped: int
    train_aug: list[str]
    list_path: Path
    list_written: bool
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def masks(self) -> int:
        return self.from_sbd + self.from_voc

    def lines(self) -> list[str]:
        """The summary printed by the command."""
        aug = self.voc_root / AUG_DIR
        return [
            f"SBD {self.sbd_dir}: {self.sbd_train} train + {self.sbd_val} val ids",
            f"VOC 2012 {self.voc_root}: {self.voc_train} train + {self.voc_val} val ids, {self.from_voc} masks in "
            f"SegmentationClass/",
            f"{aug}/: {self.masks} masks ({self.from_sbd} from SBD, {self.from_voc} from VOC): {self.written} "
            f"written, {self.skipped} already there, {len(self.problems)} failed",
            f"train_aug: {len(self.train_aug)} ids in {self.list_path} "
            f"({'written' if self.list_written else 'unchanged'})",
        ]


def _mask_jobs(sbd_dir: Path, voc_root: Path, sbd_ids: Iterable[str], overwrite: bool) -> tuple[list[MaskJob], int]:
    """One job per id of SBD and of VOC's ``SegmentationClass/`` (VOC's mask first), sorted; and how many of them
    come from SBD."""
    voc_ids = {p.stem for p in (voc_root / "SegmentationClass").glob("*.png")}
    sbd_only = set(sbd_ids) - voc_ids
    jobs = []
    for img_id in sorted(voc_ids | sbd_only):
        voc_image, sbd_image = voc_root / "JPEGImages" / f"{img_id}.jpg", sbd_dir / "img" / f"{img_id}.jpg"
        if img_id in voc_ids:
            source, images = voc_root / "SegmentationClass" / f"{img_id}.png", (voc_image, sbd_image)
        else:
            source, images = sbd_dir / "cls" / f"{img_id}.mat", (sbd_image, voc_image)
        jobs.append(MaskJob(img_id, source, images, voc_root / AUG_DIR / f"{img_id}.png", overwrite))
    return jobs, len(sbd_only)


def _run_jobs(jobs: Sequence[MaskJob], num_workers: int) -> list[MaskResult]:
    bar = dict(total=len(jobs), desc="masks", unit="mask", mininterval=1.0)
    if num_workers <= 1:
        return [write_mask(job) for job in tqdm(jobs, **bar)]
    with ProcessPoolExecutor(num_workers) as pool:
        return list(tqdm(pool.map(write_mask, jobs, chunksize=64), **bar))


def full_set_warnings(summary: PrepareSummary) -> list[str]:
    """On the full SBD and VOC 2012 sets, a line per count that is not the expected one."""
    if summary.sbd_train + summary.sbd_val != FULL_SBD_IDS or summary.voc_val != FULL_VOC_VAL_IDS:
        return []
    done = summary.written + summary.skipped
    checks = [("train_aug ids", len(summary.train_aug), FULL_TRAIN_AUG_IDS), ("masks", done, FULL_MASKS)]
    return [f"the full SBD ({FULL_SBD_IDS} ids) and VOC 2012 val ({FULL_VOC_VAL_IDS} ids) give {expected} "
            f"{what}, this run has {got}" for what, got, expected in checks if got != expected]


def prepare_sbd(sbd_root: str | os.PathLike, voc12_root: str | os.PathLike, overwrite: bool = False,
                num_workers: int = 0) -> PrepareSummary:
    """Write ``SegmentationClassAug/`` and ``train_aug.txt`` into ``voc12_root`` (see the module docstring)."""
    from voc12.dataloader import check_voc_root, read_id_list  # here: worker processes need no torch

    sbd_dir = find_sbd_dataset(sbd_root)
    voc_root = check_voc_root(voc12_root, VOC_NEEDS)
    seg_sets = voc_root / "ImageSets" / "Segmentation"
    sbd_train, sbd_val = read_id_list(sbd_dir / "train.txt"), read_id_list(sbd_dir / "val.txt")
    voc_train, voc_val = read_id_list(seg_sets / "train.txt"), read_id_list(seg_sets / "val.txt")
    jobs, from_sbd = _mask_jobs(sbd_dir, voc_root, sbd_train + sbd_val, overwrite)
    results = _run_jobs(jobs, num_workers)
    problems = [r.problem for r in results if r.status == "failed"]
    train_aug = train_aug_ids(sbd_train, sbd_val, voc_train, voc_val)
    without_mask = sorted(set(train_aug) - {job.img_id for job in jobs})
    problems += [f"train_aug id {i!r} (of {seg_sets / 'train.txt'}) has no mask: neither "
                 f"{voc_root / 'SegmentationClass' / f'{i}.png'} nor {sbd_dir / 'cls' / f'{i}.mat'} exists"
                 for i in without_mask]
    list_path = voc_root / TRAIN_AUG_LIST
    summary = PrepareSummary(
        sbd_dir=sbd_dir, voc_root=voc_root, sbd_train=len(sbd_train), sbd_val=len(sbd_val),
        voc_train=len(voc_train), voc_val=len(voc_val), from_sbd=from_sbd, from_voc=len(jobs) - from_sbd,
        written=sum(r.status == "written" for r in results), skipped=sum(r.status == "skipped" for r in results),
        train_aug=train_aug, list_path=list_path, list_written=write_id_list(list_path, train_aug),
        problems=problems)
    summary.warnings = full_set_warnings(summary)
    no_jpeg = [i for i in train_aug if not (voc_root / "JPEGImages" / f"{i}.jpg").is_file()]
    if no_jpeg:
        summary.warnings.append(
            f"{len(no_jpeg)} train_aug id(s) have no image in {voc_root / 'JPEGImages'} (e.g. {no_jpeg[0]}), where "
            f"the pipeline reads them: copy them there from SBD's img/ folder")
    return summary


def problems_message(problems: Sequence[str]) -> str:
    """One error listing ``problems`` (the first :data:`SHOWN_PROBLEMS` of them)."""
    shown = [f"  {p}" for p in problems[:SHOWN_PROBLEMS]]
    if len(problems) > SHOWN_PROBLEMS:
        shown.append(f"  and {len(problems) - SHOWN_PROBLEMS} more")
    return "\n".join([f"{len(problems)} mask(s) could not be written (the others were); fix these files and run "
                      f"again (the written masks are skipped):", *shown])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m voc12.prepare_sbd", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--sbd_root", required=True, help="SBD's benchmark_RELEASE/ folder, its dataset/ folder or the "
                                                     "folder holding benchmark_RELEASE/")
    p.add_argument("--voc12_root", required=True, help="the VOC2012 folder (JPEGImages/, SegmentationClass/, ...)")
    p.add_argument("--overwrite", action="store_true", help="rewrite masks already written")
    p.add_argument("--num_workers", type=int, default=0,
                   help="processes converting the masks (0 or 1: in this process, about a minute for the full sets)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Exit code 0 done, 2 a user error (``crt: error: ...`` on stderr; the good masks are written)."""
    args = build_parser().parse_args(argv)
    from misc.core.log import setup_logging

    setup_logging()
    try:
        summary = prepare_sbd(args.sbd_root, args.voc12_root, args.overwrite, args.num_workers)
        print("\n".join(summary.lines()))
        for warning in summary.warnings:
            log.warning(warning)
        if summary.problems:
            raise UserError(problems_message(summary.problems))
    except Exception as exc:  # noqa: BLE001 (a bug re-raises below)
        message = str(exc) if isinstance(exc, UserError) else os_error_message(exc)
        if message is None:
            raise
        sys.stdout.flush()
        sys.stderr.write(f"crt: error: {message}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
