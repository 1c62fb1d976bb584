"""Image-level labels as a mapping id → multi-hot vector, stored as class lists (a dataset of 100k images would
otherwise hold its labels as vectors)."""
from __future__ import annotations

from typing import Iterator, Mapping

import numpy as np


class MultiHotLabels(Mapping):
    """id → (num_classes,) float32 multi-hot, built on access from the stored 0-based class lists."""

    def __init__(self, classes: Mapping[str, list[int]], num_classes: int) -> None:
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
