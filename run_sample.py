"""crt orchestrator: parse flags → resolve a plan (dataset, preset, steps) → run each step's ``run(args)`` in order.

    python run_sample.py --voc12_root /data/VOC2012            # the full VOC pipeline
    python run_sample.py --demo                                # the same on the built-in synthetic dataset
    python run_sample.py --dataset cub --cub_root /data/CUB_200_2011
    python run_sample.py --dataset coco --coco_root /data/coco2014   # MS COCO 2014 (docs/data_coco.md)
    python run_sample.py --demo --dry_run --train_cam_pass false   # show the plan, write nothing

All defaults live in :func:`build_parser`; :data:`DATASET_DEFAULTS` names where COCO's differ from VOC's, presets
(``--demo``, the tiny test preset) are named overrides of both, and any flag given on the command line wins.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Sequence

log = logging.getLogger("crt")

# The run report (result/report.html) comes last in every pipeline; it only reads what the run left.
REPORT_STEP = ("report_pass", "step.report")
# (step flag, module) in the order they run.
VOC_STEPS: tuple[tuple[str, str], ...] = (
    ("train_cam_pass", "step.train_cam"),
    ("make_cam_pass", "step.make_cam"),
    ("eval_cam_pass", "step.eval_cam"),
    ("cam_to_ir_label_pass", "step.cam_to_ir_label"),
    ("train_irn_pass", "step.train_irn"),
    ("make_ins_seg_pass", "step.make_ins_seg_labels"),
    ("eval_ins_seg_pass", "step.eval_ins_seg"),
    ("make_cocoann_pass", "step.make_cocoann"),
    ("make_sem_seg_pass", "step.make_sem_seg_labels"),
    ("eval_sem_seg_pass", "step.eval_sem_seg"),
    ("train_deeplab_pass", "step.train_deeplab"),
    ("eval_deeplab_pass", "step.eval_deeplab"),
    ("export_deeplab_test_pass", "step.export_deeplab_test"),
    REPORT_STEP,
)
CUB_STEPS: tuple[tuple[str, str], ...] = (
    ("train_wsol_pass", "step.train_wsol"),
    ("eval_wsol_pass", "step.eval_wsol"),
    REPORT_STEP,
)
DEFAULT_OFF = {"make_ins_seg_pass", "eval_ins_seg_pass", "make_cocoann_pass"}
# Steps that only read what earlier steps wrote: a run of these alone leaves the run's records (config.json, run.json,
# timings.json) as the run that made the outputs wrote them.
READ_ONLY_STEPS = {"step.report"}

# Under torchrun: training steps run on every rank (DDP), per-image steps split their ids by rank, and the metric
# steps run on rank 0 only while the other ranks wait.
TRAIN_STEPS = {"step.train_cam", "step.train_irn", "step.train_deeplab", "step.train_wsol"}
PER_IMAGE_STEPS = {"step.make_cam", "step.cam_to_ir_label", "step.make_sem_seg_labels", "step.make_ins_seg_labels",
                   "step.export_deeplab_test"}

REPO_ROOT = Path(__file__).resolve().parent
STANDIN_DIR = REPO_ROOT / "weights" / "standin"  # the demo's stand-in for ImageNet weights (tools/pretrain_standin.py)
DEMO_VOC_DIR = "data/demo_voc12"
DEMO_CUB_DIR = "data/demo_cub/CUB_200_2011"
DEMO_COCO_DIR = "data/demo_coco"

# The demo's transformer differs by dataset: patch 8 on VOC's 64-px tiles, patch 16 (= the CNN's stride, for the L1
# coupling) on CUB's 128-px images.
DEMO_DEIT = {"voc": STANDIN_DIR / "deit_demo_p8.pth", "coco": STANDIN_DIR / "deit_demo_p8.pth",
             "cub": STANDIN_DIR / "deit_demo_p16.pth"}

# Where COCO's defaults differ from VOC's (applied with --dataset coco, before a preset and the command line), each
# with its source. The VOC values of every other flag carry over (the same method and schedule per image).
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
    # The CUB demo's transformer has 4 heads, as its stand-in weights/standin/deit_demo_p16.pth has (the probes
    # behind it: README, the CUB demo).
    ("demo", "cub"): dict(vit_num_heads=4),
}

# Flags of the original that named modules (net.resnet50_cam, net.deit_cam, net.resnet50_irn): the models are chosen
# by --cam_cnn_depth, --vit_* and --irn_backbone_depth, so these are accepted (users' scripts pass them) and dropped.
IGNORED_FLAGS = ("cam_network_branch1", "cam_network_branch2", "irn_network")

_TRUE, _FALSE = {"true", "1", "yes", "y", "on"}, {"false", "0", "no", "n", "off"}


def str2bool(value: str | bool) -> bool:
    """true/false/1/0/yes/no (any case) → bool."""
    if isinstance(value, bool):
        return value
    v = str(value).strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false/1/0/yes/no), got {value!r}")


def amp_mode(value: str) -> str:
    """off / bf16 / fp16; the booleans of earlier versions map to off / bf16."""
    v = str(value).strip().lower()
    if v in ("off", "bf16", "fp16"):
        return v
    if v in _TRUE | _FALSE:
        return "bf16" if v in _TRUE else "off"
    raise argparse.ArgumentTypeError(f"expected off, bf16 or fp16, got {value!r}")


def float_list(value: str) -> tuple[float, ...]:
    """``"1.0,0.5"`` or ``"(1.0, 0.5)"`` → (1.0, 0.5)."""
    parts = [p for p in str(value).replace("(", " ").replace(")", " ").replace(",", " ").split() if p]
    try:
        return tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a list of numbers, got {value!r}") from None


def shard_spec(value: str) -> str:
    """``K/N`` with 0 <= K < N (checked by :func:`misc.engine.per_image.parse_shard`), kept as given."""
    from misc.engine.per_image import parse_shard

    try:
        parse_shard(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--shard ")) from None
    return value


def device_spec(value: str) -> str:
    """``auto`` or a device torch can name (``cpu``, ``cuda``, ``cuda:N``); whether it is usable is checked by
    :func:`pipeline.preflight.validate_args`."""
    if value == "auto":
        return value
    import torch

    try:
        torch.device(value)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {value!r}") from None
    return value


class _FloatList(argparse.Action):
    """Accepts ``--flag 1.0 0.5 1.5`` and ``--flag 1.0,0.5,1.5``."""

    def __call__(self, parser, namespace, values, option_string=None):
        out: list[float] = []
        for v in values if isinstance(values, list) else [values]:
            try:
                out.extend(float_list(v))
            except argparse.ArgumentTypeError as exc:  # a usage error (rc 2), as for the type= flags
                raise argparse.ArgumentError(self, str(exc)) from None
        if not out:
            raise argparse.ArgumentError(self, "needs at least one number")
        setattr(namespace, self.dest, tuple(out))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument

    g = p.add_argument_group("run")
    g.add_argument("--dataset", choices=("voc", "coco", "cub"), default="voc",
                   help="voc: PASCAL VOC 2012 (--voc12_root); coco: MS COCO 2014 (--coco_root); cub: CUB-200-2011 "
                        "WSOL (--cub_root)")
    g.add_argument("--demo", action="store_true", help="use the built-in synthetic dataset and the demo preset")
    g.add_argument("--preset", choices=sorted(PRESETS), default=None, help="named overrides (--demo implies demo)")
    g.add_argument("--dry_run", action="store_true", help="print the resolved configuration and steps; write nothing")
    g.add_argument("--debug", action="store_true",
                   help="on a user error (bad flag, file, device, no space...) also print the traceback (it is "
                        "always in the log file)")
    g.add_argument("--work_dir", default=".", help="relative sess/, result/, log and data paths resolve here")
    g.add_argument("--sess_dir", default="sess",
                   help="resume checkpoints and training state files (weights go where their *_weights_name flags say)")
    g.add_argument("--device", type=device_spec, default="auto",
                   help="auto (every visible GPU, else CPU), cpu, cuda, cuda:N")
    g.add_argument("--amp", type=amp_mode, default="off",
                   help="mixed precision on GPU: off, bf16 (Ampere and newer) or fp16 (with a gradient scaler, e.g. "
                        "the paper's RTX 2080 Ti); true = bf16")
    g.add_argument("--tf32", type=str2bool, default=True,
                   help="TF32 matmuls/convolutions on Ampere+ GPUs (no effect on the CPU)")
    g.add_argument("--nproc", type=int, default=None,
                   help="processes of the plain launch (default: every visible GPU, 1 on the CPU); with --device cpu "
                        "N>1 runs N gloo processes, a rehearsal of the multi-GPU path")
    g.add_argument("--overwrite", type=str2bool, default=False, help="redo per-image outputs that already exist")
    g.add_argument("--shard", type=shard_spec, default=None,
                   help="K/N: per-image steps take every N-th id from the K-th")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--result_dir", default="result", help="metrics.json, config.json and vis/ go here")
    g.add_argument("--vis_num", type=int, default=8, help="number of images for the PNG overlays in result/vis")
    g.add_argument("--report_num_images", type=int, default=4,
                   help="images per gallery of result/report.html (0: no gallery)")

    g = p.add_argument_group("environment")
    g.add_argument("--num_workers", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    g.add_argument("--voc12_root", default="../../VOC2012", type=str)
    g.add_argument("--coco_root", default="../../coco2014", type=str,
                   help="MS COCO 2014: holds train2014/, val2014/ and annotations/instances_{train,val}2014.json")
    g.add_argument("--coco_mask_dir", default=None,
                   help="COCO ground-truth class masks: a folder of ready <id>.png (values 0..80, 255) is used as "
                        "is; otherwise they are built there from the annotations (default <work_dir>/result/"
                        "coco_gt_masks)")

    g = p.add_argument_group("dataset")
    g.add_argument("--train_list", default="voc12/train_aug.txt", help="list file or split name")
    g.add_argument("--val_list", default="voc12/val.txt")
    g.add_argument("--infer_list", default="voc12/train.txt",
                   help="images whose pseudo masks eval_sem_seg scores (and IRNet's mean shift is estimated on)")
    g.add_argument("--test_list", default="voc12/test.txt")
    g.add_argument("--chainer_eval_set", default="train")

    g = p.add_argument_group("pretrained weights (timm name or local file)")
    g.add_argument("--no_pretrained", type=str2bool, nargs="?", const=True, default=False,
                   help="random init instead of ImageNet weights (experiments, tests, demo)")
    g.add_argument("--deit_pretrained", default=None, help="default timm deit_small_patch16_224.fb_in1k")
    g.add_argument("--cam_cnn_pretrained", default=None, help="default timm resnet{depth}.tv_in1k")
    g.add_argument("--irn_pretrained", default=None, help="default timm resnet50.tv_in1k")

    g = p.add_argument_group("class activation maps")
    for flag in IGNORED_FLAGS:  # the original's module-name flags: accepted, never read, not recorded
        g.add_argument(f"--{flag}", default=argparse.SUPPRESS, help="(ignored, kept for the original's scripts)")
    g.add_argument("--cam_crop_size", type=int, default=336, help="train crop (the original hard-coded 336)")
    g.add_argument("--cam_resize_long", type=int, nargs=2, default=(210, 420))
    g.add_argument("--cam_batch_size", type=int, default=16)
    g.add_argument("--cam_num_epoches", "--cam_num_epochs", type=int, default=10)
    g.add_argument("--cam_learning_rate", "--cam_lr", type=float, default=0.1,
                   help="lr of both backbones (the heads: x --cam_head_lr_mult); --cam_lr is the same flag")
    g.add_argument("--cam_weight_decay", type=float, default=1e-4)
    g.add_argument("--cam_optimizer", choices=("poly_sgd", "adamw"), default="poly_sgd",
                   help="poly_sgd: the original's (paper); adamw: for training from random weights (demo)")
    g.add_argument("--cam_head_lr_mult", type=float, default=10.0, help="lr multiplier of both classifier heads")
    g.add_argument("--cam_momentum", type=float, default=1e-4,
                   help="SGD momentum; the original's PolyOptimizer had 1e-4 in effect (its weight decay value)")
    g.add_argument("--cam_eval_thres", type=float, default=0.15)
    g.add_argument("--cam_eval_sweep", action=_FloatList, nargs="+",
                   default=tuple(round(0.05 * i, 2) for i in range(1, 13)),
                   help="background thresholds swept by eval_cam")
    g.add_argument("--cam_scales", action=_FloatList, nargs="+", default=(1.0, 0.5, 1.5, 2.0, 0.75, 1.25, 1.75))
    g.add_argument("--cam_lambda", type=float, default=0.1)
    g.add_argument("--cam_loss_rule", choices=("committed", "shipped"), default="committed",
                   help="committed: loss1+loss2+λ·L1 after epoch 1; shipped (the released bytecode): "
                        "loss1+0·loss2+5λ·L1")
    g.add_argument("--cam_cnn_depth", type=int, default=152)
    g.add_argument("--cam_cnn_width", type=int, default=64,
                   help="base width of the CNN branch's ResNet (64 = torchvision; 16: the demo's stand-in weights)")
    g.add_argument("--vit_embed_dim", type=int, default=384)
    g.add_argument("--vit_depth", type=int, default=12)
    g.add_argument("--vit_num_heads", type=int, default=6)
    g.add_argument("--vit_patch_size", type=int, default=16)
    g.add_argument("--vit_tile_size", type=int, default=224)
    g.add_argument("--vit_num_passes", type=int, default=3)

    g = p.add_argument_group("IR labels")
    g.add_argument("--conf_fg_thres", type=float, default=0.35)
    g.add_argument("--conf_bg_thres", type=float, default=0.15)

    g = p.add_argument_group("IRNet")
    g.add_argument("--irn_backbone_depth", type=int, default=50)
    g.add_argument("--irn_backbone_width", type=int, default=64,
                   help="base width of IRNet's ResNet backbone (64 = torchvision; 16: the demo's stand-in weights)")
    g.add_argument("--irn_crop_size", type=int, default=512)
    g.add_argument("--irn_batch_size", type=int, default=32)
    g.add_argument("--irn_num_epoches", "--irn_num_epochs", type=int, default=3)
    g.add_argument("--irn_learning_rate", "--irn_lr", type=float, default=0.1,
                   help="lr of the edge layers (the displacement layers: x10); --irn_lr is the same flag")
    g.add_argument("--irn_weight_decay", type=float, default=1e-4)
    g.add_argument("--irn_momentum", type=float, default=1e-4, help="as --cam_momentum")

    g = p.add_argument_group("random walk")
    g.add_argument("--beta", type=float, default=10.0)
    g.add_argument("--exp_times", type=int, default=8, help="the walk runs 2**exp_times steps")
    g.add_argument("--ins_seg_bg_thres", type=float, default=0.25)
    g.add_argument("--sem_seg_bg_thres", type=float, default=0.25)
    g.add_argument("--cocoann_min_score", type=float, default=0.0,
                   help="make_cocoann's training annotations keep the instances with score > this (0: all but the "
                        "fragments under 1%% of the image, which make_ins_seg_labels scores 0); its results file "
                        "keeps all")

    g = p.add_argument_group("DeepLab-v2")
    g.add_argument("--deeplab_depth", type=int, default=101, choices=(50, 101, 152))
    g.add_argument("--deeplab_blocks", type=int, nargs=4, default=None,
                   help="custom bottleneck counts per stage (overrides --deeplab_depth; small demo nets)")
    g.add_argument("--deeplab_base_width", type=int, default=64, help="64 = the real widths (ASPP input 2048)")
    g.add_argument("--deeplab_init", default=None,
                   help="deeplabv1_resnet101-coco.pth (the paper's COCO init), a torchvision ResNet file, or a timm "
                        "name (default resnet101.tv_in1k, ImageNet)")
    g.add_argument("--deeplab_label_dir", default=None, help="pseudo masks to train on (default --sem_seg_out_dir)")
    g.add_argument("--deeplab_train_list", default="voc12/train_aug.txt",
                   help="images DeepLab trains on (the paper: train_aug, 10,582); make_sem_seg_labels also writes "
                        "their masks")
    g.add_argument("--allow_gt_training", type=str2bool, default=False,
                   help="allow training DeepLab on a ground-truth folder (not weakly supervised!)")
    g.add_argument("--deeplab_iters", type=int, default=20000)
    g.add_argument("--deeplab_batch_size", type=int, default=5)
    g.add_argument("--deeplab_iter_size", type=int, default=2, help="gradient accumulation steps")
    g.add_argument("--deeplab_lr", type=float, default=2.5e-4)
    g.add_argument("--deeplab_momentum", type=float, default=0.9)
    g.add_argument("--deeplab_weight_decay", type=float, default=5e-4)
    g.add_argument("--deeplab_poly_power", type=float, default=0.9)
    g.add_argument("--deeplab_poly_step", type=int, default=10)
    g.add_argument("--deeplab_crop_size", type=int, default=321)
    g.add_argument("--deeplab_scales", action=_FloatList, nargs="+", default=(0.5, 0.75, 1.0, 1.25, 1.5))
    g.add_argument("--deeplab_checkpoint_every", type=int, default=5000)
    g.add_argument("--deeplab_crf", type=str2bool, default=True, help="also score val after the dense CRF")
    g.add_argument("--deeplab_crf_guide", choices=("original", "rgb"), default="original",
                   help="original: the quirky mean-subtracted BGR uint8 guide (reproduces numbers); rgb: the image")

    g = p.add_argument_group("CUB WSOL")
    g.add_argument("--cub_root", default="data/CUB_200_2011")
    g.add_argument("--wsol_num_classes", type=int, default=200)
    g.add_argument("--wsol_epochs", type=int, default=60)
    g.add_argument("--wsol_batch_size", type=int, default=64)
    g.add_argument("--wsol_lr", type=float, default=5e-5)
    g.add_argument("--wsol_weight_decay", type=float, default=0.05)
    g.add_argument("--wsol_lr_decay_epochs", type=int, default=30)
    g.add_argument("--wsol_cnn_lr", type=float, default=0.005)
    g.add_argument("--wsol_cnn_cls_lr", type=float, default=0.05)
    g.add_argument("--wsol_cnn_weight_decay", type=float, default=1e-4)
    g.add_argument("--wsol_cnn_depth", type=int, default=50)
    g.add_argument("--wsol_cnn_width", type=int, default=64,
                   help="base width of the CUB CNN branch's ResNet (64 = torchvision; 16: the demo's stand-in weights)")
    g.add_argument("--wsol_l1_window", type=int, default=5, help="L1 on in odd windows of this many epochs")
    g.add_argument("--wsol_drop_path", type=float, default=0.1)
    g.add_argument("--wsol_cam_thr", type=float, default=0.1)
    g.add_argument("--wsol_seed", type=int, default=26)
    g.add_argument("--wsol_image_size", type=int, default=224)
    g.add_argument("--wsol_patch_size", type=int, default=16, help="DeiT patch (= the ResNet's stride 16 for the L1)")
    g.add_argument("--wsol_resize_size", type=int, default=256)
    g.add_argument("--wsol_select_on", choices=("heldout", "test"), default="heldout",
                   help="model selection: held-out train images (default) or the test set (the original)")
    g.add_argument("--wsol_heldout_per_class", type=int, default=2)
    g.add_argument("--wsol_box_rule", choices=("original", "wsolevaluation"), default="original")
    g.add_argument("--wsol_out_dir", default="result/wsol")
    g.add_argument("--wsol_weights_name", default="sess/wsol_deit.pth")
    g.add_argument("--wsol_cnn_weights_name", default="sess/wsol_cnn.pth")

    g = p.add_argument_group("output")
    g.add_argument("--log_name", default="sample_train_eval")
    g.add_argument("--cam1_weights_name", default="sess/res152_cam.pth")
    g.add_argument("--cam2_weights_name", default="sess/deits_cam.pth")
    g.add_argument("--irn_weights_name", default="sess/res50_irn.pth")
    g.add_argument("--deeplab_weights_name", default="sess/deeplab_v2.pth")
    g.add_argument("--cam_out_dir", default="result/cam")
    g.add_argument("--ir_label_out_dir", default="result/ir_label")
    g.add_argument("--sem_seg_out_dir", default="result/sem_seg")
    g.add_argument("--ins_seg_out_dir", default="result/ins_seg")
    g.add_argument("--cocoann_out_dir", default="result/cocoann",
                   help="make_cocoann's COCO JSON files (pseudo_instances_<list>.json, ..._results.json, "
                        "gt_instances_<eval set>.json)")
    g.add_argument("--deeplab_out_dir", default="result/deeplab")

    g = p.add_argument_group("steps (true/false/1/0/yes/no)")
    for flag in dict.fromkeys(flag for flag, _ in VOC_STEPS + CUB_STEPS):  # report_pass is in both
        g.add_argument(f"--{flag}", type=str2bool, default=flag not in DEFAULT_OFF)

    # demo dataset sizes (used by --demo only)
    for name, default in (("demo_num_train", 120), ("demo_num_val", 40), ("demo_num_extra", 160),
                          ("demo_num_test", 8), ("cub_demo_classes", 10)):
        a(f"--{name}", type=int, default=default, help=argparse.SUPPRESS)
    a("--demo_image_size", type=int, nargs=2, default=(112, 160), help=argparse.SUPPRESS)
    a("--demo_max_objects", type=int, default=3, help=argparse.SUPPRESS)
    a("--cub_demo_train_per_class", type=int, default=8, help=argparse.SUPPRESS)
    a("--cub_demo_test_per_class", type=int, default=4, help=argparse.SUPPRESS)
    a("--coco_demo_categories", type=int, default=12, help=argparse.SUPPRESS)
    a("--demo_data_seed", type=int, default=0,
      help="seed of the built-in synthetic dataset (--seed seeds training only, so seeds compare on the same data)")
    return p


PATH_ARGS = ("sess_dir", "coco_mask_dir",
             "cam1_weights_name", "cam2_weights_name", "irn_weights_name", "deeplab_weights_name",
             "cam_out_dir", "ir_label_out_dir", "sem_seg_out_dir", "ins_seg_out_dir", "cocoann_out_dir",
             "deeplab_out_dir", "result_dir", "wsol_out_dir", "wsol_weights_name", "wsol_cnn_weights_name")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` with the preset's overrides applied as defaults, then resolve paths against ``--work_dir``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    first, _ = parser.parse_known_args(argv)
    preset = first.preset or ("demo" if first.demo else None)
    parser.set_defaults(**DATASET_DEFAULTS.get(first.dataset, {}))
    if preset:
        parser.set_defaults(**PRESETS[preset])
        parser.set_defaults(**PRESET_DATASET_OVERRIDES.get((preset, first.dataset), {}))
        if preset == "demo":
            parser.set_defaults(deit_pretrained=str(DEMO_DEIT[first.dataset]))
    args = parser.parse_args(argv)
    for name in IGNORED_FLAGS:
        if hasattr(args, name):
            log.info("--%s is ignored (the models are chosen by the depth and --vit_* flags)", name)
            delattr(args, name)
    args.preset = preset
    work = Path(args.work_dir)
    for name in PATH_ARGS:
        value = getattr(args, name)
        if value and not os.path.isabs(value):
            setattr(args, name, str(work / value))
    if args.demo:
        args.voc12_root = str(work / DEMO_VOC_DIR)
        args.cub_root = str(work / DEMO_CUB_DIR)
        args.coco_root = str(work / DEMO_COCO_DIR)
    if args.deeplab_label_dir is None:
        args.deeplab_label_dir = args.sem_seg_out_dir
    args.list_cache_dir = str(work / "result")  # lists/labels cache (rebuilt when missing)
    # the dataset's number of classes, known before its folder is read (the preflight builds the models first)
    if args.dataset == "cub":
        args.num_classes = args.wsol_num_classes
    else:
        from pipeline.datasets import num_classes_of

        args.num_classes = num_classes_of(args.dataset)
    return args


def planned_steps(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(flag, module) of the steps that will run, in order."""
    steps = CUB_STEPS if args.dataset == "cub" else VOC_STEPS
    return [(flag, module) for flag, module in steps if getattr(args, flag)]


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
    import shutil

    from misc.core.io import write_json

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


def run(args: argparse.Namespace, argv: Sequence[str] | None = None) -> dict[str, float]:
    """Run the planned steps in order; returns {step module: seconds}.

    A run records itself in ``result/``: ``config.json``, ``run.json`` (``argv``, commit, devices), ``timings.json``
    (after each step) and its warnings in ``warnings.jsonl``. A run of read-only steps alone (the report of an
    earlier run) leaves those records as they are."""
    import contextlib

    from misc.engine.distributed import barrier, under_torchrun
    from misc.core.log import StepTimer, collect_warnings
    from misc.core.paths import config_json, run_json, timings_json, warnings_jsonl
    from pipeline.preflight import validate_args
    from misc.core.io import write_json
    from misc.core.results import prune_stale_metrics

    steps = planned_steps(args)
    modules = [m for _, m in steps]
    validate_args(args, modules)  # flags, device, writable folders: before anything is written
    records = any(m not in READ_ONLY_STEPS for m in modules)
    rank = int(os.environ.get("RANK", "0"))
    os.environ["CRT_TF32"] = "1" if args.tf32 else "0"
    if under_torchrun():
        from misc.engine.distributed import init_from_env

        init_from_env(args.device)
    if rank == 0:
        check_pretrained(args, modules)  # before the demo data and the dataset index (seconds, not minutes)
    for d in (args.sess_dir, args.result_dir):
        os.makedirs(d, exist_ok=True)
    timings: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        warnings = stack.enter_context(collect_warnings(warnings_jsonl(args.result_dir))) if records else None
        current = "start"
        try:
            if rank == 0:
                if records:
                    from misc.core.runinfo import run_record

                    write_json(run_json(args.result_dir), run_record(
                        sys.argv[1:] if argv is None else argv, args.device, modules, REPO_ROOT,
                        non_default_settings(args)))
                    if args.demo:
                        prepare_demo_data(args)
                    write_json(config_json(args.result_dir), vars(args))
                log.info("configuration: %s", json.dumps(vars(args), default=str, sort_keys=True))
                prepare_shared_state(args, [m for m in modules if m not in READ_ONLY_STEPS])
            barrier()  # shared state (index, held-out list) exists before any other process reads it
            for _, module_name in steps:
                current = module_name
                module = importlib.import_module(module_name)
                if module_name in READ_ONLY_STEPS and rank == 0:
                    prune_stale_metrics(args.result_dir)  # what the report shows is what the run leaves
                if rank == 0 or module_name in TRAIN_STEPS | PER_IMAGE_STEPS:
                    with StepTimer(module_name.split(".")[-1], quiet=rank != 0) as timer:
                        module.run(args)
                    timings[module_name] = round(timer.elapsed, 2)
                    if rank == 0 and records:  # after each step: the report (last) shows the steps before it
                        write_json(timings_json(args.result_dir), timings)
                barrier()
        except Exception as exc:
            if warnings is not None:  # the run report lists why the run stopped (not printed twice)
                warnings.handle(logging.makeLogRecord({
                    "name": "crt", "levelno": logging.ERROR, "levelname": "ERROR",
                    "msg": f"run stopped in {current.split('.')[-1]}: {type(exc).__name__}: {exc}"}))
            raise
    if rank == 0:
        prune_stale_metrics(args.result_dir)
    return timings


# Settings that do not shape the numbers (paths, devices, bookkeeping, seeds); the report names every other flag
# that differs from its default. The pretrained sources are judged by the report itself (random, stand-in, DeepLab's
# COCO init), and so are the images each metric was scored on.
NOT_SHAPING = set(PATH_ARGS) | {
    "work_dir", "device", "amp", "tf32", "nproc", "num_workers", "overwrite", "shard", "debug", "dry_run", "vis_num",
    "report_num_images", "log_name", "voc12_root", "cub_root", "list_cache_dir", "preset", "demo", "dataset", "seed",
    "wsol_seed", "deeplab_label_dir", "deeplab_checkpoint_every", "deeplab_crf", "cam_eval_sweep", "test_list",
    "deit_pretrained", "cam_cnn_pretrained", "irn_pretrained", "deeplab_init", "no_pretrained", "demo_data_seed",
}


def non_default_settings(args: argparse.Namespace) -> dict[str, list]:
    """{flag: [default, value]} for every flag that shapes the numbers and differs from :func:`build_parser`'s
    default (a preset's overrides included): why a run may not compare with the paper."""
    defaults = vars(build_parser().parse_args([]))

    def norm(v):
        return list(v) if isinstance(v, tuple) else v

    out = {}
    for name, value in sorted(vars(args).items()):
        if (name in NOT_SHAPING or name.endswith("_pass") or name.startswith(("demo_", "cub_demo_"))
                or name not in defaults):
            continue
        if norm(value) != norm(defaults[name]):
            out[name] = [norm(defaults[name]), norm(value)]
    return out


def check_pretrained(args: argparse.Namespace, modules: Sequence[str]) -> None:
    """Check every pretrained source the planned training steps load (a missing file, a file of another model or
    an unreachable name fails now, in seconds, with one line per problem; not hours later)."""
    training = [m for m in modules if m in TRAIN_STEPS]
    if training and not args.no_pretrained:
        from pipeline.preflight import check_pretrained_sources

        check_pretrained_sources(args, training)


def prepare_shared_state(args: argparse.Namespace, modules: Sequence[str]) -> None:
    """Once, in one process, before any step: the dataset index (or CUB held-out list) every process reads.
    (The pretrained sources are checked earlier, by :func:`check_pretrained`.)"""
    if args.dataset == "cub":
        if any(m in modules for m in ("step.train_wsol", "step.eval_wsol")):
            from cub.dataset import CUBMetadata, load_or_make_heldout

            from misc.core.paths import wsol_heldout_ids

            load_or_make_heldout(CUBMetadata.load(args.cub_root), wsol_heldout_ids(args),
                                 args.wsol_heldout_per_class, leave_train=args.wsol_select_on == "heldout")
    elif modules:
        from pipeline.datasets import open_dataset

        index = open_dataset(args)
        if args.dataset == "coco":  # the contiguous label -> official category mapping, next to the outputs
            from coco.dataset import write_category_map

            log.info("COCO category mapping written to %s", write_category_map(index, args.result_dir))


def _user_error_message(exc: BaseException) -> str | None:
    """The message shown for ``exc`` when the user can fix its cause (a :class:`misc.core.errors.UserError`, or no
    space / no permission / a read-only file system while writing), else None: a bug."""
    from misc.core.errors import UserError, os_error_message

    return str(exc) if isinstance(exc, UserError) else os_error_message(exc)


def _report_user_error(message: str, trace: str, debug: bool, log_path: Path | None) -> int:
    """``crt: error: <message>`` on stderr (and the traceback with ``--debug``); both into the log file."""
    text = f"crt: error: {message}\n"
    if log_path is not None:
        try:
            with open(log_path, "a") as f:
                f.write(trace + text)
        except OSError:
            pass  # the log itself cannot be written (e.g. a full disk): the console still has the message
    sys.stderr.write((trace if debug else "") + text)
    sys.stderr.flush()
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, check and run; returns the exit code: 0 done, 2 a usage or user error (one line on stderr, the
    traceback in the log file and, with ``--debug``, on the console), 1 a bug (its traceback on the console)."""
    import traceback

    args = parse_args(argv)
    steps = planned_steps(args)
    try:
        from pipeline.preflight import validate_args

        validate_args(args, [m for _, m in steps])
    except Exception as exc:  # noqa: BLE001 (a bug re-raises below)
        message = _user_error_message(exc)
        if message is None:
            raise
        return _report_user_error(message, traceback.format_exc(), args.debug, None)
    if args.dry_run:
        config = {k: v for k, v in vars(args).items() if not k.endswith("_pass")}
        print("resolved configuration:")
        print(json.dumps(config, indent=2, default=str, sort_keys=True))
        print("steps that would run, in order: " + (", ".join(m.split(".")[-1] for _, m in steps) or "(none)"))
        return 0
    from misc.core.log import setup_logging, tee_output

    log_path = Path(args.work_dir) / f"{args.log_name}.log"
    header = f"crt run {time.strftime('%Y-%m-%d %H:%M:%S')}  argv: {' '.join(sys.argv if argv is None else argv)}"
    failure: tuple[str, str] | None = None
    try:
        os.makedirs(args.work_dir, exist_ok=True)
        with tee_output(log_path, header if int(os.environ.get("RANK", "0")) == 0 else None):
            setup_logging()
            try:
                timings = run(args, argv)
            except Exception as exc:
                message = _user_error_message(exc)
                if message is None:
                    log.exception("run failed")
                    return 1
                failure = (message, traceback.format_exc())
            else:
                log.info("all steps done: %s", timings)
    except OSError as exc:  # only the work dir or the log itself (the run's own errors are handled above)
        message = _user_error_message(exc)
        if message is None:
            raise
        return _report_user_error(message, traceback.format_exc(), args.debug, None)
    if failure is not None:  # after the tee: the traceback goes to the log file only (unless --debug)
        return _report_user_error(*failure, args.debug, log_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
