"""A small synthetic folder dataset for tests and trials, in the layout of ``--dataset folder`` (docs/data_folder.md)::

    classes.txt           ring, star, box (one per line: classes 1, 2, 3)
    images/img_<k>.jpg    every fourth image a .png
    labels.csv            image,labels; the classes drawn in each image, separated by ';'
    masks/img_<k>.png     for the first ``num_masks`` images: class values, 255 on a band along object borders

Objects are drawn by :mod:`misc.synth` (the demos' renderer) in three of the demo's styles; the last
``num_background`` images hold no object (an empty labels field: background only). Deterministic: image k is drawn
from its own generator seeded by (seed, k). CLI: ``python -m folder.synthetic --out DIR [--num_images N ...]``.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import numpy as np
from PIL import Image

from folder.layout import CLASSES_FILE, IMAGES_DIR, LABELS_FILE, MASKS_DIR
from misc.core.labels import IGNORE_INDEX, label_palette
from misc.synth.render import draw_background, render_image
from misc.synth.styles import DEMO_STYLES

CLASS_STYLES = (dataclasses.replace(DEMO_STYLES[1], name="ring"), dataclasses.replace(DEMO_STYLES[2], name="star"),
                dataclasses.replace(DEMO_STYLES[5], name="box"))
SEED_CODE = 30  # distinct from the other synthetic datasets' seeds


def image_name(k: int) -> str:
    return f"img_{k:03d}" + (".png" if k % 4 == 3 else ".jpg")


def make_synthetic_folder(root: str | os.PathLike, num_images: int = 12, num_masks: int = 4, num_background: int = 1,
                          image_size: tuple[int, int] = (64, 96), seed: int = 0, max_objects: int = 2) -> Path:
    """Write the dataset at ``root`` (see the module docstring) and return it. Image k < ``num_images -
    num_background`` has class ``k % 3`` first; the labels list every class drawn."""
    if not 0 <= num_background <= num_images or not 0 <= num_masks <= num_images:
        raise ValueError("need 0 <= num_background, num_masks <= num_images")
    root = Path(root)
    for sub in (IMAGES_DIR, MASKS_DIR):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / CLASSES_FILE).write_text("".join(f"{s.name}\n" for s in CLASS_STYLES))
    h, w = image_size
    lines = ["image,labels"]
    for k in range(num_images):
        rng = np.random.default_rng([seed, SEED_CODE, k])
        if k < num_images - num_background:
            drawn = render_image(rng, h, w, k % len(CLASS_STYLES), max_objects, CLASS_STYLES)
            image, mask = drawn.image, drawn.class_map()
            mask[drawn.border()] = IGNORE_INDEX
            present = sorted(set(drawn.classes))
        else:
            image = np.clip(np.rint(draw_background(rng, h, w)), 0, 255).astype(np.uint8)
            mask, present = np.zeros((h, w), np.uint8), []
        name = image_name(k)
        path = root / IMAGES_DIR / name
        Image.fromarray(image).save(path, **({"quality": 95} if path.suffix == ".jpg" else {}))
        lines.append(f"{name},{';'.join(CLASS_STYLES[c - 1].name for c in present)}")
        if k < num_masks:
            png = Image.fromarray(mask, mode="P")
            png.putpalette(label_palette())
            png.save(root / MASKS_DIR / f"{Path(name).stem}.png")
    (root / LABELS_FILE).write_text("\n".join(lines) + "\n")
    return root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m folder.synthetic", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="the folder to write (then: --dataset folder --folder_root OUT)")
    p.add_argument("--num_images", type=int, default=12)
    p.add_argument("--num_masks", type=int, default=4)
    p.add_argument("--num_background", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    print(make_synthetic_folder(a.out, a.num_images, a.num_masks, a.num_background, seed=a.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
