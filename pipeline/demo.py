"""The built-in synthetic datasets of ``--demo``: what shapes them, and writing them when missing or different."""
from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

from misc.core.io import write_json

log = logging.getLogger("crt")


def demo_data_spec(args: argparse.Namespace) -> dict:
    """What shapes the built-in synthetic dataset (recorded beside it; another spec rewrites it)."""
    if args.dataset == "cub":
        from cub.synthetic import GENERATOR_VERSION

        return {"dataset": "cub", "classes": args.cub_demo_classes, "train_per_class": args.cub_demo_train_per_class,
                "test_per_class": args.cub_demo_test_per_class, "seed": args.demo_data_seed,
                "generator_version": GENERATOR_VERSION}
    if args.dataset == "coco":
        from coco.synthetic import GENERATOR_VERSION

        return {"dataset": "coco", "train": args.demo_num_train, "val": args.demo_num_val,
                "image_size": list(args.demo_image_size), "categories": args.coco_demo_categories,
                "max_objects": args.demo_max_objects, "seed": args.demo_data_seed, "generator_version": GENERATOR_VERSION}
    from voc12.synthetic import GENERATOR_VERSION

    return {"dataset": "voc", "train": args.demo_num_train, "val": args.demo_num_val, "extra": args.demo_num_extra,
            "test": args.demo_num_test, "image_size": list(args.demo_image_size),
            "max_objects": args.demo_max_objects, "seed": args.demo_data_seed, "generator_version": GENERATOR_VERSION}


def prepare_demo_data(args: argparse.Namespace) -> None:
    """Write the synthetic dataset for --demo unless it is there with the same spec (deterministic for
    ``--demo_data_seed``; ``--seed`` does not change the data)."""
    spec = demo_data_spec(args)
    folder = {"cub": Path(args.cub_root).parent, "coco": Path(args.coco_root)}.get(args.dataset, Path(args.voc12_root))
    marker = folder / "crt_demo_data.json"
    if marker.is_file():
        if json.loads(marker.read_text()) == spec:
            return
        log.info("the synthetic demo data at %s was written with another spec: rewriting it", folder)
    if folder.exists():
        shutil.rmtree(folder)
    log.info("writing the synthetic %s demo dataset to %s", args.dataset.upper(), folder)
    if args.dataset == "cub":
        from cub.synthetic import make_synthetic_cub

        make_synthetic_cub(folder, num_classes=args.cub_demo_classes, seed=args.demo_data_seed,
                           train_per_class=args.cub_demo_train_per_class,
                           test_per_class=args.cub_demo_test_per_class)
    elif args.dataset == "coco":
        from coco.synthetic import make_synthetic_coco

        h, w = args.demo_image_size
        make_synthetic_coco(folder, num_train=args.demo_num_train, num_val=args.demo_num_val,
                            image_size=((h, w), (h, w)), seed=args.demo_data_seed,
                            num_categories=args.coco_demo_categories, max_objects=args.demo_max_objects)
    else:
        from voc12.synthetic import make_synthetic_voc

        h, w = args.demo_image_size
        make_synthetic_voc(folder, num_train=args.demo_num_train, num_val=args.demo_num_val,
                           num_extra_aug=args.demo_num_extra, num_test=args.demo_num_test,
                           image_size=((h, w), (h, w)), seed=args.demo_data_seed, max_objects=args.demo_max_objects)
    write_json(marker, spec)
