"""Reading a dataset's images (RGB for the CAM / IRN steps, float BGR for DeepLab) and checking a mask against its
image; errors name the id and the file."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from misc.core.errors import DataError, MissingDataFileError, UnreadableFileError


def read_image(path: str | os.PathLike, img_id: str | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3); grayscale/CMYK/RGBA converted. Errors name the id and the file."""
    path = Path(path)
    who = f"image id {img_id!r}: " if img_id else ""
    if not path.is_file():
        raise MissingDataFileError(f"{who}no image at {path}; put the JPEG there or remove the id from the list")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as exc:
        raise UnreadableFileError(f"{who}cannot read image {path} ({type(exc).__name__}: {exc}); replace the file "
                                  "with an intact copy or remove the id from the list") from exc


def jpeg_cut_short(path: str | os.PathLike, tail: int = 4096) -> bool:
    """Whether ``path`` is a JPEG that ends before its end-of-image marker (a download or copy cut short). OpenCV
    decodes such a file partly, without an error; the marker is looked for in the last ``tail`` bytes (trailing
    zero padding allowed)."""
    with open(path, "rb") as f:
        if f.read(2) != b"\xff\xd8":
            return False
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - tail))
        end = f.read().rstrip(b"\x00")
    return b"\xff\xd9" not in end


def read_image_bgr(path: str | os.PathLike) -> np.ndarray:
    """``cv2.imread(path, IMREAD_COLOR)`` as float32 (H, W, 3) BGR; a clear error when the file is unreadable or a
    JPEG cut short (which OpenCV would decode partly)."""
    import cv2

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingDataFileError(f"no image at {path}; put the JPEG there or remove the id from the list")
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise UnreadableFileError(f"OpenCV cannot decode the image {path}; replace it with an intact copy or remove "
                                  "the id from the list")
    if jpeg_cut_short(path):
        raise UnreadableFileError(f"cannot read image {path}: the JPEG is truncated (it ends before its end marker); "
                                  "replace it with an intact copy or remove the id from the list")
    return img.astype(np.float32)


def check_same_size(img_id: str, label: np.ndarray, label_path: Path, img_shape: Sequence[int], img_path: Path,
                    what: str = "mask") -> None:
    """:class:`~misc.core.errors.DataError` naming the id and both files when ``label`` is not ``img_shape[:2]``."""
    if tuple(label.shape[:2]) != tuple(img_shape[:2]):
        raise DataError(
            f"image id {img_id!r}: the {what} {label_path} is {label.shape[0]}x{label.shape[1]} (HxW) but the image "
            f"{img_path} is {img_shape[0]}x{img_shape[1]}; a {what} must have its image's size (is it the mask of "
            f"another image, or resized?)"
        )


class ImageFiles:
    """Mixin of the datasets: the image of an id is ``image_path(id)``; a subclass may give a default."""

    root: Path
    image_path: Callable[[str], Path] | None

    def image_file(self, img_id: str) -> Path:
        if self.image_path is None:
            raise TypeError(f"{type(self).__name__} of {self.root}: no image_path given (the dataset's image of an id)")
        return self.image_path(img_id)
