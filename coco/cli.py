"""``python -m coco.dataset``: index a COCO 2014 folder and (optionally) build its class masks ahead."""
from __future__ import annotations

import argparse
import logging
from typing import Sequence

from coco.build import open_coco
from coco.gt_masks import build_masks

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, open (index) the folder, build the masks of the asked splits; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m coco.dataset",
                                description="Index a COCO 2014 folder and (optionally) build its class masks ahead.")
    p.add_argument("--coco_root", required=True)
    p.add_argument("--cache_dir", default="result", help="where the index, the annotation store and the masks go "
                                                          "(run_sample.py uses <work_dir>/result)")
    p.add_argument("--coco_mask_dir", default=None)
    p.add_argument("--build_masks", nargs="*", default=None, metavar="SPLIT",
                   help="build the class masks of these splits (default: all)")
    p.add_argument("--shard", default=None, help="K/N: every N-th id from the K-th")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    index = open_coco(args.coco_root, args.cache_dir, args.coco_mask_dir)
    log.info("splits: %s", {k: len(v) for k, v in index.splits.items()})
    if args.build_masks is not None:
        for split in args.build_masks or sorted(index.splits):
            built, skipped = build_masks(index, index.ids(split), args.shard)
            log.info("%s: %d masks built, %d already there, in %s", split, built, skipped, index.mask_dir)
    return 0
