"""The report's image galleries: a few images of the run spread over its outputs, each beside its CAMs, labels,
predictions and ground truth (segmentation), or beside eval_wsol's box picture (WSOL). Pictures are downscaled and
embedded as PNG. Where a dataset keeps its images and ground truth is given by the caller (:class:`SegmentationLayout`,
:class:`BoxLayout`)."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Mapping, Sequence

import numpy as np

from misc.core.errors import UserError
from misc.core.paths import cam_path, deeplab_val_dirs, label_png, vis_dir
from misc.report import html as H
from misc.report.run_folder import RunFolder

THUMB_WIDTH = 240  # gallery pictures wider than this are shown downscaled


@dataclass(frozen=True)
class SegmentationLayout:
    """Where a segmentation dataset keeps an image and its class ground truth, given the dataset's folder."""

    root_flag: str  # the config flag of the dataset's folder
    image_path: Callable[[Path, str], Path]
    class_gt_path: Callable[[Path, str], Path]


@dataclass(frozen=True)
class BoxLayout:
    """Where a localisation dataset keeps its images, given the dataset's folder."""

    root_flag: str  # the config flag of the dataset's folder
    image_paths: Callable[[Path], Mapping[str, Path]]  # {image id: path}; empty when the listing is absent


# ------------------------------------------------------------------------------------------------ pictures
def encode_png(rgb: np.ndarray) -> bytes:
    """The PNG bytes of an (H, W, 3) picture."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb.astype(np.uint8))).save(buf, format="PNG")
    return buf.getvalue()


def shrink(arr: np.ndarray, width: int, nearest: bool) -> np.ndarray:
    """Downscale to ``width`` pixels wide (aspect kept) when wider."""
    if arr.shape[1] <= width:
        return arr
    from PIL import Image

    h = max(1, round(arr.shape[0] * width / arr.shape[1]))
    return np.asarray(Image.fromarray(arr).resize((width, h), Image.NEAREST if nearest else Image.BILINEAR))


def read_rgb(path: Path) -> np.ndarray | None:
    """The image as (H, W, 3) uint8, or None when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError):
        return None


def read_label(path: Path) -> np.ndarray | None:
    """A label PNG's values, or None when it cannot be read."""
    from misc.core.labels import read_label_png

    try:
        return read_label_png(path, num_classes=None)
    except (UserError, OSError):
        return None


# ------------------------------------------------------------------------------------------------ choosing images
def spread(ids: Sequence[str], n: int, numeric: bool = False) -> list[str]:
    """``n`` ids spread evenly over the sorted list (first and last included); ``numeric``: ids that are numbers
    sort as numbers (CUB)."""
    ids = sorted(ids, key=(lambda i: (len(i), i)) if numeric else None)
    if n <= 0 or not ids:
        return []
    if n >= len(ids):
        return list(ids)
    if n == 1:
        return [ids[0]]
    return [ids[round(i * (len(ids) - 1) / (n - 1))] for i in range(n)]


def stems(folder: Path | None, suffix: str) -> list[str]:
    """Names without ``suffix`` of the files in ``folder`` that end with it (hidden files left out)."""
    if folder is None or not folder.is_dir():
        return []
    return [p.name[: -len(suffix)] for p in folder.iterdir() if p.name.endswith(suffix) and not p.name.startswith(".")]


# ------------------------------------------------------------------------------------------------ rows
class GalleryRow:
    """One gallery row: pictures with captions, and the label values shown (for the legend)."""

    def __init__(self) -> None:
        self.cells: list[str] = []
        self.values: set[int] = set()

    def picture(self, rgb: np.ndarray | None, caption: str, nearest: bool = False) -> None:
        """A picture (None: a dash) with its caption; ``nearest``: a label map, scaled without blending."""
        if rgb is None:
            self.cells.append(f'<td class="muted">—<br>{H.esc(caption)}</td>')
            return
        picture = H.img(encode_png(shrink(rgb, THUMB_WIDTH, nearest)), caption, "lbl" if nearest else "")
        self.cells.append(f"<td>{picture}{H.esc(caption)}</td>")

    def label(self, label: np.ndarray | None, caption: str) -> None:
        """A label map in the palette's colours (None: a dash)."""
        from misc.core.labels import colorize_label

        if label is not None:
            self.values |= {int(v) for v in np.unique(label)}
        self.picture(None if label is None else colorize_label(label), caption, nearest=True)


def gallery_tables(rows: list[list[str]]) -> str:
    """One table per image row."""
    return "\n".join('<table class="gallery"><tr>' + "".join(r) + "</tr></table>" for r in rows)


def gallery_block(title: str, rows: list[list[str]]) -> list[str]:
    """A gallery heading and one table per image row; nothing when there are no rows."""
    if not rows:
        return []
    return [f"<h3>{title}</h3>", gallery_tables(rows)]


# ------------------------------------------------------------------------------------------------ galleries
def segmentation_gallery(folder: RunFolder, n: int, layout: SegmentationLayout, label_names: Sequence[str]) -> str:
    """Train images: image | CAM of each GT class | IR label | pseudo mask | GT; val images: image | DeepLab
    without / with CRF | GT. ``label_names``: the names of label values 0, 1, ... (background first)."""
    from misc.core.io import load_npz
    from misc.core.labels import label_palette
    from misc.report.vis import overlay

    root = folder.path(layout.root_flag)
    if root is None or not root.is_dir():
        return H.note(f"The dataset folder ({root}) is not there any more: no gallery.")
    cam_dir, ir_dir, sem_dir = (folder.path(f) for f in ("cam_out_dir", "ir_label_out_dir", "sem_seg_out_dir"))
    names = list(label_names)
    out, values = [], set()

    train = stems(sem_dir, ".png") or stems(cam_dir, ".npz") or stems(ir_dir, ".png")
    train = [i for i in train if layout.class_gt_path(root, i).is_file()]
    rows = []
    for img_id in spread(train, n):
        img = read_rgb(layout.image_path(root, img_id))
        row = GalleryRow()
        row.picture(img, img_id)
        cam_file = cam_path(cam_dir, img_id) if cam_dir else None
        if img is not None and cam_file is not None and cam_file.is_file():
            try:
                cam = load_npz(cam_file)
                for key, c in zip(cam["keys"], cam["high_res"]):
                    if c.shape == img.shape[:2]:
                        name = names[int(key) + 1] if int(key) + 1 < len(names) else key
                        row.picture(overlay(img, c), f"CAM: {name}")
            except (OSError, ValueError, KeyError):
                row.picture(None, "CAM unreadable")
        else:
            row.picture(None, "no CAM")
        row.label(read_label(label_png(ir_dir, img_id)) if ir_dir else None, "IR label")
        row.label(read_label(label_png(sem_dir, img_id)) if sem_dir else None, "pseudo mask")
        row.label(read_label(layout.class_gt_path(root, img_id)), "ground truth")
        values |= row.values
        rows.append(row.cells)
    out.extend(gallery_block("Train images: CAMs, IR labels, pseudo masks", rows))
    dl = folder.path("deeplab_out_dir")
    if dl is not None:
        _, pred_dir, crf_dir = deeplab_val_dirs(SimpleNamespace(deeplab_out_dir=dl))
        val = stems(pred_dir, ".png") or stems(crf_dir, ".png")
        val = [i for i in val if layout.class_gt_path(root, i).is_file()]
        rows = []
        for img_id in spread(val, n):
            row = GalleryRow()
            row.picture(read_rgb(layout.image_path(root, img_id)), img_id)
            row.label(read_label(label_png(pred_dir, img_id)), "DeepLab")
            row.label(read_label(label_png(crf_dir, img_id)), "DeepLab + CRF")
            row.label(read_label(layout.class_gt_path(root, img_id)), "ground truth")
            values |= row.values
            rows.append(row.cells)
        out.extend(gallery_block("Val images: DeepLab predictions", rows))
    if not out:
        return H.note("No per-image outputs with ground truth yet (make_cam, make_sem_seg_labels, eval_deeplab).")
    pal = np.asarray(label_palette(), np.uint8).reshape(256, 3)
    out.append(H.legend({v: tuple(pal[v]) for v in values},
                        lambda v: "ignore" if v == 255 else names[v] if v < len(names) else str(v)))
    return "\n".join(out)


def box_gallery(folder: RunFolder, n: int, layout: BoxLayout) -> str:
    """Test images: the image | eval_wsol's picture (GT-class CAM, GT box green, predicted box red)."""
    pictures = vis_dir(SimpleNamespace(result_dir=folder.result_dir), "wsol")
    ids = spread(stems(pictures, ".png"), n, numeric=True)
    if not ids:
        return H.note("No eval_wsol pictures (result/vis/wsol) yet.")
    root, size = folder.path(layout.root_flag), int(folder.config.get("wsol_image_size", 224))
    paths = layout.image_paths(root) if root is not None and root.is_dir() else {}
    rows = []
    for img_id in ids:
        row = GalleryRow()
        image = read_rgb(paths[img_id]) if img_id in paths else None
        if image is not None:  # eval_wsol's frame: the whole image resized to size x size
            from PIL import Image

            image = np.asarray(Image.fromarray(image).resize((size, size)))
        row.picture(image, f"image {img_id}")
        row.picture(read_rgb(label_png(pictures, img_id)), "CAM, GT box (green), predicted box (red)")
        rows.append(row.cells)
    return (gallery_tables(rows)
            + '<p class="src">The CAM of the ground-truth class; the predicted box is the one GT-known scores.</p>')
