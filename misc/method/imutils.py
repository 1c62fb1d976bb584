"""Image operations of the original data layer (docs/data_voc.md#image-operations), exact to the pixel.

Random draws use Python's ``random`` module as the original does, so a seeded run reproduces its crops.
Arrays are HWC (images) or HW (labels) numpy arrays unless stated.
"""
from __future__ import annotations

import random
from typing import Sequence

import numpy as np
from PIL import Image


_PIL_ORDER = {0: Image.NEAREST, 1: Image.BILINEAR, 3: Image.BICUBIC}


def pil_resize(img: np.ndarray, size: tuple[int, int], order: int) -> np.ndarray:
    """Resize to ``size`` = (H, W) with PIL (order 3 bicubic, 0 nearest); no-op when the size already matches."""
    if img.shape[:2] == tuple(size):
        return img
    resample = _PIL_ORDER[order]
    return np.asarray(Image.fromarray(img).resize((int(size[1]), int(size[0])), resample))


def rescaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """(round(h·s), round(w·s)) with numpy's half-to-even rounding."""
    return int(np.round(h * scale)), int(np.round(w * scale))


def pil_rescale(img: np.ndarray, scale: float, order: int) -> np.ndarray:
    h, w = img.shape[:2]
    return pil_resize(img, rescaled_size(h, w, scale), order)


def random_resize_long(img: np.ndarray, min_long: int, max_long: int) -> np.ndarray:
    """Bicubic rescale so the long side becomes L ~ randint(min_long, max_long) (inclusive)."""
    target_long = random.randint(min_long, max_long)
    h, w = img.shape[:2]
    scale = target_long / h if w < h else target_long / w
    return pil_rescale(img, scale, 3)


def random_scale(img, scale_range: tuple[float, float], order):
    """One scale s ~ U[a, b) for an image or an (image, label) tuple (orders per element).

    The original's non-tuple path rescaled ``img[0]`` (a latent bug, unused); here a single array is rescaled whole.
    """
    target_scale = scale_range[0] + random.random() * (scale_range[1] - scale_range[0])
    if isinstance(img, tuple):
        return tuple(pil_rescale(i, target_scale, o) for i, o in zip(img, order))
    return pil_rescale(img, target_scale, order)


def random_lr_flip(img):
    """Flip along W with p = 0.5 (``random.getrandbits(1)``); a tuple is flipped jointly."""
    if bool(random.getrandbits(1)):
        if isinstance(img, tuple):
            return tuple(np.fliplr(m) for m in img)
        return np.fliplr(img)
    return img


def get_random_crop_box(imgsize: tuple[int, int], cropsize: int) -> tuple[int, ...]:
    """(cont_top, cont_bottom, cont_left, cont_right, img_top, img_bottom, img_left, img_right), IRNet's rule."""
    h, w = imgsize
    ch, cw = min(cropsize, h), min(cropsize, w)
    w_space, h_space = w - cropsize, h - cropsize
    if w_space > 0:
        cont_left, img_left = 0, random.randrange(w_space + 1)
    else:
        cont_left, img_left = random.randrange(-w_space + 1), 0
    if h_space > 0:
        cont_top, img_top = 0, random.randrange(h_space + 1)
    else:
        cont_top, img_top = random.randrange(-h_space + 1), 0
    return (cont_top, cont_top + ch, cont_left, cont_left + cw, img_top, img_top + ch, img_left, img_left + cw)


def random_crop(images, cropsize: int, default_values):
    """One random crop box shared by all arrays; smaller sides are pasted into a filled cropsize container."""
    single = isinstance(images, np.ndarray)
    if single:
        images, default_values = (images,), (default_values,)
    box = get_random_crop_box(images[0].shape[:2], cropsize)
    out = []
    for img, fill in zip(images, default_values):
        shape = (cropsize, cropsize) + img.shape[2:]
        cont = np.full(shape, fill, dtype=img.dtype)
        cont[box[0]:box[1], box[2]:box[3]] = img[box[4]:box[5], box[6]:box[7]]
        out.append(cont)
    return out[0] if single else tuple(out)


def top_left_crop(img: np.ndarray, cropsize: int, default_value) -> np.ndarray:
    """cropsize² container filled with ``default_value``; ``img[:min(cs,h), :min(cs,w)]`` copied to its top-left."""
    h, w = img.shape[:2]
    ch, cw = min(cropsize, h), min(cropsize, w)
    cont = np.full((cropsize, cropsize) + img.shape[2:], default_value, dtype=img.dtype)
    cont[:ch, :cw] = img[:ch, :cw]
    return cont


def hwc_to_chw(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(img, (2, 0, 1)))


def get_strided_size(size: Sequence[int], stride: int) -> tuple[int, int]:
    return (size[0] - 1) // stride + 1, (size[1] - 1) // stride + 1


def get_strided_up_size(size: Sequence[int], stride: int) -> tuple[int, int]:
    h, w = get_strided_size(size, stride)
    return h * stride, w * stride


def compress_range(arr: np.ndarray) -> np.ndarray:
    """Relabel the unique values of ``arr`` to 0..k-1 (order preserved)."""
    uniques = np.unique(arr)
    lookup = np.zeros(int(uniques[-1]) + 1, dtype=arr.dtype)
    lookup[uniques] = np.arange(uniques.shape[0], dtype=arr.dtype)
    return lookup[arr]


class TorchvisionNormalize:
    """(x/255 - mean)/std per RGB channel, computed in float64 and stored float32 (the original's exact rounding)."""

    def __init__(self, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)) -> None:
        self.mean, self.std = mean, std

    def __call__(self, img: np.ndarray) -> np.ndarray:
        imgarr = np.asarray(img)
        out = np.empty(imgarr.shape, np.float32)
        for c in range(3):
            out[..., c] = (imgarr[..., c] / 255.0 - self.mean[c]) / self.std[c]
        return out


# ------------------------------------------------------------------------------------------------ network inputs
def multiscale_flip_inputs(img: np.ndarray, scales: Sequence[float], normalize=None) -> list[np.ndarray]:
    """For each scale: bicubic rescale (none at 1.0), normalise, CHW, stacked with its W-flip -> (2, 3, Hs, Ws)."""
    normalize = normalize or TorchvisionNormalize()
    out = []
    for s in scales:
        im = img if s == 1.0 else pil_rescale(img, s, 3)
        chw = hwc_to_chw(normalize(im))
        out.append(np.stack([chw, np.flip(chw, -1)], axis=0).copy())
    return out
