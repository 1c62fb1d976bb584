"""Named overrides of the flags' declared defaults: per dataset, and the presets (``--demo``, the tests' ``tiny``).

Order of application (later wins): the declared defaults (:mod:`pipeline.flags`), :data:`DATASET_DEFAULTS` of
``--dataset``, the preset, the preset's overrides for the dataset, then the command line. Every name and value here
is checked against the declarations (:func:`check_all`, run by the tests and by :func:`overrides_for`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.flags import check_overrides

REPO_ROOT = Path(__file__).resolve().parents[1]
STANDIN_DIR = REPO_ROOT / "weights" / "standin"  # the demo's stand-in for ImageNet weights (tools/pretrain_standin.py)
DEMO_VOC_DIR = "data/demo_voc12"
DEMO_CUB_DIR = "data/demo_cub/CUB_200_2011"
DEMO_COCO_DIR = "data/demo_coco"

# The demo's transformer differs by dataset: patch 8 on VOC's 64-px tiles, patch 16 (= the CNN's stride, for the L1
# coupling) on CUB's 128-px images.
DEMO_DEIT = {"voc": STANDIN_DIR / "deit_demo_p8.pth", "coco": STANDIN_DIR / "deit_demo_p8.pth",
             "folder": STANDIN_DIR / "deit_demo_p8.pth", "cub": STANDIN_DIR / "deit_demo_p16.pth"}

# Where COCO's and a folder's defaults differ from VOC's (applied with --dataset coco / folder, before a preset and
# the command line), each with its source. The VOC values of every other flag carry over (the same method and
# schedule per image).
DATASET_DEFAULTS: dict[str, dict] = {
    "coco": dict(
        # Split names of coco/dataset.py: the train2014 / val2014 images with at least one annotation (82,081 /
        # 40,137 of 82,783 / 40,504), the sets WSSS work on COCO 2014 trains on and reports val mIoU on.
        train_list="train", val_list="val", deeplab_train_list="train",
        # Our choice: seeds and masks are scored on the whole train set and IRNet's mean shift is estimated on it
        # (VOC uses its 1,464-image train split, a subset of train_aug; COCO has no such subset).
        infer_list="train", chainer_eval_set="train",
        # Our choice, not checked against a peer: 5 epochs of 82,081 images = 25,650 updates of 16 (VOC: 10 epochs
        # of 10,582 = 6,610 updates).
        cam_num_epoches=5,
        # Our choice, not checked against a peer: 100,000 iterations of 10 crops = 12 epochs of 82,081 (VOC: 20,000
        # iterations = 19 epochs of 10,582).
        deeplab_iters=100_000, deeplab_checkpoint_every=10_000,
        # COCO 2014's test split has no public masks and no server format here.
        export_deeplab_test_pass=False,
    ),
    # A folder of the user's own (docs/data_folder.md): its splits train (every image of labels.csv, or
    # splits/train.txt) and val (the images with a mask, or splits/val.txt). Everything trains on train; seeds and
    # masks are scored on train's masked images, DeepLab on val's. No test export (no server format).
    "folder": dict(
        train_list="train", val_list="val", infer_list="train", deeplab_train_list="train",
        chainer_eval_set="train", test_list="test", export_deeplab_test_pass=False,
    ),
}

# Named overrides of the defaults. "demo" finishes the whole pipeline on a 2-core CPU in minutes; "tiny" is the
# test preset (seconds). Model widths shrink, schedules shorten; every rule of the pipeline stays the same.
PRESETS: dict[str, dict] = {
    "demo": dict(
        no_pretrained=False, num_workers=2, cam_cnn_width=16, irn_backbone_width=16, wsol_cnn_width=16,
        cam_cnn_pretrained=str(STANDIN_DIR / "resnet18_w16.pth"), irn_pretrained=str(STANDIN_DIR / "resnet18_w16.pth"),
        deeplab_init=str(STANDIN_DIR / "deeplab_init_b1111_w16.pth"),
        demo_num_train=120, demo_num_val=80, demo_num_extra=360, demo_num_test=8, demo_image_size=(128, 176),
        vit_embed_dim=64, vit_depth=4, vit_num_heads=2, vit_patch_size=8, vit_tile_size=64, vit_num_passes=3,
        cam_cnn_depth=18, cam_batch_size=8, cam_num_epoches=20, cam_optimizer="adamw", cam_learning_rate=1e-3,
        cam_head_lr_mult=3.0,
        cam_resize_long=(64, 112), cam_crop_size=64, cam_scales=(1.0, 0.5),
        irn_backbone_depth=18, irn_crop_size=96, irn_batch_size=8, irn_num_epoches=5, irn_momentum=0.9, exp_times=4,
        deeplab_blocks=(1, 1, 1, 1), deeplab_base_width=16, deeplab_iters=750, deeplab_batch_size=5,
        deeplab_iter_size=1, deeplab_crop_size=97, deeplab_checkpoint_every=375,
        cub_demo_classes=10, cub_demo_train_per_class=128, cub_demo_test_per_class=30, wsol_epochs=30,
        wsol_batch_size=16, wsol_num_classes=10, wsol_lr=1e-3, wsol_lr_decay_epochs=20, wsol_l1_window=5,
        wsol_cnn_depth=18, wsol_heldout_per_class=8,
        wsol_image_size=128, wsol_resize_size=146,
    ),
    "tiny": dict(
        no_pretrained=True, num_workers=0,
        demo_num_train=12, demo_num_val=6, demo_num_extra=6, demo_num_test=2, demo_image_size=(64, 96),
        vit_embed_dim=32, vit_depth=2, vit_num_heads=2, vit_patch_size=16, vit_tile_size=64, vit_num_passes=3,
        cam_cnn_depth=18, cam_batch_size=4, cam_num_epoches=2, cam_resize_long=(64, 128), cam_crop_size=96,
        cam_scales=(1.0, 0.5),
        irn_backbone_depth=18, irn_crop_size=96, irn_batch_size=4, irn_num_epoches=1,
        deeplab_blocks=(1, 1, 1, 1), deeplab_base_width=8, deeplab_iters=4, deeplab_batch_size=2, deeplab_iter_size=2, deeplab_crop_size=65,
        deeplab_checkpoint_every=2,
        cub_demo_classes=3, wsol_epochs=2, wsol_batch_size=4, wsol_num_classes=3, wsol_l1_window=1,
        wsol_cnn_depth=18, wsol_heldout_per_class=1, wsol_image_size=64, wsol_resize_size=72,
    ),
}

# Overrides of a preset for one dataset, applied after the preset.
PRESET_DATASET_OVERRIDES: dict[tuple[str, str], dict] = {
    # The COCO demo: 360 train / 60 val synthetic images of 12 categories (in an 80-category file); the instance
    # steps and their COCO-JSON export run too.
    ("demo", "coco"): dict(demo_num_train=360, demo_num_val=60, coco_demo_categories=12,
                           make_ins_seg_pass=True, eval_ins_seg_pass=True, make_cocoann_pass=True),
    ("tiny", "coco"): dict(coco_demo_categories=6),
    # The CUB demo's transformer has 4 heads, as its stand-in weights/standin/deit_demo_p16.pth has (docs/demo.md).
    ("demo", "cub"): dict(vit_num_heads=4),
}


def overrides_for(preset: str | None, dataset: str) -> dict[str, Any]:
    """The defaults that replace the declared ones for ``dataset`` and ``preset`` (None: no preset)."""
    out = dict(DATASET_DEFAULTS.get(dataset, {}))
    if preset:
        out.update(PRESETS[preset])
        out.update(PRESET_DATASET_OVERRIDES.get((preset, dataset), {}))
        if preset == "demo":
            out["deit_pretrained"] = str(DEMO_DEIT[dataset])
    return out


def demo_roots(work_dir: str | Path) -> dict[str, str]:
    """``--demo``'s dataset folders under ``work_dir``, by root flag."""
    work = Path(work_dir)
    return {"voc12_root": str(work / DEMO_VOC_DIR), "cub_root": str(work / DEMO_CUB_DIR),
            "coco_root": str(work / DEMO_COCO_DIR)}


def check_all() -> None:
    """Every override names a declared flag with an allowed value (raises ``ValueError`` naming each problem)."""
    for dataset, values in DATASET_DEFAULTS.items():
        check_overrides(values, f"DATASET_DEFAULTS[{dataset!r}]")
    for preset, values in PRESETS.items():
        check_overrides(values, f"PRESETS[{preset!r}]")
    for key, values in PRESET_DATASET_OVERRIDES.items():
        check_overrides(values, f"PRESET_DATASET_OVERRIDES[{key!r}]")
