"""The folder of ground-truth class masks of a COCO index: built ones (lazily, one image at a time when first read,
into ``<cache_dir>/coco_gt_masks/<id>.png`` or ``--coco_mask_dir``) or a given folder of ready masks.

A built folder's manifest records the annotation signature and :data:`~coco.annotations.MASK_RULE` (a change clears
the folder); ``python -m coco.dataset --build_masks`` builds them ahead, sharded and resumable. A ``--coco_mask_dir``
that exists without a crt manifest is a folder of ready class-index PNGs (``<id>.png`` or
``<split folder>/<id>.png``, values 0..80 and 255), used as is.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from coco.annotations import MASK_RULE
from coco.layout import MASK_DIR
from misc.core.errors import UserError

if TYPE_CHECKING:
    from coco.index import COCOIndex


def mask_folder(cache_dir: Path, mask_dir: str | os.PathLike | None) -> tuple[Path, bool]:
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
