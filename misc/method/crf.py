"""Dense CRF (pydensecrf) refinements used by the IR-label step and the DeepLab stage."""
from __future__ import annotations

import numpy as np


def _densecrf():
    try:
        import pydensecrf.densecrf as dcrf
        from pydensecrf import utils as crf_utils
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "pydensecrf is required for the CRF steps: pip install pydensecrf2 (it imports as pydensecrf)"
        ) from exc
    return dcrf, crf_utils


def crf_inference_label(
    img: np.ndarray, labels: np.ndarray, t: int = 10, *, n_labels: int, gt_prob: float = 0.7
) -> np.ndarray:
    """IRNet's label CRF: unary from hard labels, Gaussian (sxy 3, compat 3) + bilateral (sxy 50, srgb 5, compat 10).

    img: (H, W, 3) uint8 RGB; labels: (H, W) ints in [0, n_labels) (make_ir_label: the image's classes + 1, padded
    keys). Label 0 is a real label (zero_unsure=False).
    Returns the (H, W) int64 argmax after ``t`` mean-field iterations.
    """
    dcrf, crf_utils = _densecrf()
    h, w = img.shape[:2]
    d = dcrf.DenseCRF2D(w, h, n_labels)
    unary = crf_utils.unary_from_labels(labels, n_labels, gt_prob=gt_prob, zero_unsure=False)
    d.setUnaryEnergy(unary)
    d.addPairwiseGaussian(sxy=3, compat=3)
    d.addPairwiseBilateral(sxy=50, srgb=5, rgbim=np.ascontiguousarray(np.copy(img)), compat=10)
    q = d.inference(t)
    return np.argmax(np.array(q).reshape((n_labels, h, w)), axis=0)


DEEPLAB_MEAN_BGR: tuple[float, float, float] = (104.008, 116.669, 122.675)


def wrap_to_uint8(x: np.ndarray) -> np.ndarray:
    """``x.astype(np.uint8)`` as numpy does it on x86-64, made explicit: truncate toward zero, then wrap mod 256.

    (-67.008 → 189, -0.4 → 0, -1.2 → 255, 0.9 → 0.) The plain C cast is undefined for negative floats, so other
    CPUs/compilers may saturate instead; this function gives the x86-64 result everywhere.
    """
    return (np.trunc(np.asarray(x, dtype=np.float64)).astype(np.int64) & 0xFF).astype(np.uint8)


def deeplab_crf_guide(image_bgr: np.ndarray, *, quirk: bool = True,
                      mean_bgr: tuple[float, float, float] = DEEPLAB_MEAN_BGR) -> np.ndarray:
    """Bilateral guide image (H, W, 3) uint8 for :func:`crf_inference_softmax` from a BGR uint8 image (H, W, 3).

    ``quirk=True`` (reproduction, docs/deeplab.md#crf-guide-image): deeplab-pytorch's guide, the mean-subtracted BGR image
    ``float32(float64(img) - mean)`` cast to uint8 with wrap-around (channel order B, G, R).
    ``quirk=False`` ("fair"): the original image in RGB order, as a dense CRF expects.
    """
    image_bgr = np.asarray(image_bgr)
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"expected a (H, W, 3) BGR image, got shape {image_bgr.shape}")
    if not quirk:
        return np.ascontiguousarray(image_bgr[..., ::-1].astype(np.uint8))
    centred = (image_bgr.astype(np.float64) - np.asarray(mean_bgr, dtype=np.float64)).astype(np.float32)
    return np.ascontiguousarray(wrap_to_uint8(centred))


def crf_inference_softmax(
    image_uint8: np.ndarray,
    probs: np.ndarray,
    *,
    pos_xy_std: float = 1,
    pos_w: float = 3,
    bi_xy_std: float = 67,
    bi_rgb_std: float = 3,
    bi_w: float = 4,
    iter_max: int = 10,
) -> np.ndarray:
    """deeplab-pytorch ``DenseCRF``: unary -log(clip(p, 1e-5, 1)), Gaussian (pos_xy_std, pos_w) + bilateral
    (bi_xy_std, bi_rgb_std, bi_w) kernels, ``iter_max`` mean-field steps.

    image_uint8: (H, W, 3) uint8 guide (see :func:`deeplab_crf_guide`); probs: (C, H, W) softmax probabilities.
    Returns Q (C, H, W) float32; the label map is ``Q.argmax(0)``.
    """
    dcrf, crf_utils = _densecrf()
    probs = np.asarray(probs, dtype=np.float32)
    image = np.ascontiguousarray(np.asarray(image_uint8, dtype=np.uint8))
    c, h, w = probs.shape
    if image.shape != (h, w, 3):
        raise ValueError(f"guide image {image.shape} does not match the probabilities {probs.shape}")
    d = dcrf.DenseCRF2D(w, h, c)
    d.setUnaryEnergy(np.ascontiguousarray(crf_utils.unary_from_softmax(probs)))
    d.addPairwiseGaussian(sxy=pos_xy_std, compat=pos_w)
    d.addPairwiseBilateral(sxy=bi_xy_std, srgb=bi_rgb_std, rgbim=image, compat=bi_w)
    q = d.inference(iter_max)
    return np.array(q, dtype=np.float32).reshape((c, h, w))
