"""Where a CUB_200_2011 folder keeps its images, spelled once (no torch: the run report reads images without the
data layer of :mod:`cub.dataset`, which validates the whole folder)."""
from __future__ import annotations

import os
from pathlib import Path

IMAGES_LIST = "images.txt"  # "<image id> <path under images/>" per line
IMAGES_DIR = "images"


def image_path(root: str | os.PathLike, rel_path: str) -> Path:
    """``<root>/images/<rel_path>`` (``rel_path`` as images.txt lists it)."""
    return Path(root) / IMAGES_DIR / rel_path


def image_paths(root: str | os.PathLike) -> dict[str, Path]:
    """{image id: path} from ``images.txt``, lines that do not parse skipped (``CUBMetadata.load`` names them);
    empty when the file is absent."""
    listing = Path(root) / IMAGES_LIST
    if not listing.is_file():
        return {}
    out = {}
    for line in listing.read_text().splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) == 2:
            out[parts[0]] = image_path(root, parts[1].strip())
    return out
