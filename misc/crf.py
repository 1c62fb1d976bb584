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
    img: np.ndarray, labels: np.ndarray, t: int = 10, n_labels: int = 21, gt_prob: float = 0.7
) -> np.ndarray:
    """IRNet's label CRF: unary from hard labels, Gaussian (sxy 3, compat 3) + bilateral (sxy 50, srgb 5, compat 10).

    img: (H, W, 3) uint8 RGB; labels: (H, W) ints in [0, n_labels). Label 0 is a real label (zero_unsure=False).
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
