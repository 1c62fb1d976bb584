"""Every flag of ``run_sample.py``, declared once, with everything the program needs to know about it.

A :class:`Flag` gives its type, default, range, the original's spellings (aliases), its help, and which steps read
it and how:

* ``shapes``: steps whose outputs its value shapes; the value is an entry of their fingerprints;
* ``reads``: steps that read the file, folder, list or weights it names as an input; the input's identity (the
  fingerprint of the run that wrote it, a content hash, a list's id digest) is an entry of their fingerprints;
* ``writes``: steps that write their outputs there (its folder is checked for writing before the run);
* ``uses``: steps that read it without it shaping their outputs (which ids to process, how many pictures);
* ``setting``: no step's outputs depend on it (devices, processes, bookkeeping).

From these declarations come the parser (:func:`build_parser`), the range checks (:func:`value_problems`), the
paths resolved against ``--work_dir`` (:data:`PATH_FLAGS`), the output folders to probe (:func:`written_by`), the
flags the report names when they differ from their defaults (:mod:`pipeline.config`) and each step's fingerprint
(:func:`step_config`). ``tests/test_flags.py`` records the flags each step reads in the tiny pipelines and fails
when one is read by a step it does not name (and is no ``setting``): a new shaping flag is one declaration here.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from pipeline.steps import ALL_STEPS, BY_NAME

# ------------------------------------------------------------------------------------------------ value types
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
    """``K/N`` with 0 <= K < N, kept as given."""
    from misc.engine.per_image import parse_shard

    try:
        parse_shard(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--shard ")) from None
    return value


def device_spec(value: str) -> str:
    """``auto`` or a device torch can name (``cpu``, ``cuda``, ``cuda:N``); whether it is usable is checked by the
    preflight (:mod:`pipeline.preflight`)."""
    if value == "auto":
        return value
    import torch

    try:
        torch.device(value)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {value!r}") from None
    return value


class FloatListAction(argparse.Action):
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


# ------------------------------------------------------------------------------------------------ ranges
@dataclass(frozen=True)
class Bounds:
    """Allowed values: ``low`` .. ``high``, each end closed unless ``*_open``; NaN and infinities are never in."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, v: float) -> bool:
        v = float(v)
        return (math.isfinite(v) and (self.low < v if self.low_open else self.low <= v)
                and (v < self.high if self.high_open else v <= self.high))

    def text(self) -> str:
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


AT_LEAST_0, AT_LEAST_1 = Bounds(0), Bounds(1)
UNIT = Bounds(0.0, 1.0)  # thresholds, momenta
POSITIVE = Bounds(0.0, low_open=True)  # learning rates, scales, beta
NON_NEGATIVE = Bounds(0.0)  # weight decays, loss weights


# ------------------------------------------------------------------------------------------------ identities of inputs
def _path_identity(name: str) -> Callable[[Any, Any], Any]:
    def identify(args, dataset) -> Any:
        from misc.core.fingerprint import identity

        return identity(getattr(args, name))
    return identify


def _cam_vit_weights_identity(args, dataset) -> Any:
    from misc.core.fingerprint import identity
    from misc.core.paths import cam_vit_weights

    return identity(cam_vit_weights(args))


def _pretrained_identity(name: str, default: str) -> Callable[[Any, Any], Any]:
    def identify(args, dataset) -> Any:
        from misc.core.fingerprint import source_identity

        return None if args.no_pretrained else source_identity(getattr(args, name), default)
    return identify


def _list_identity(name: str) -> Callable[[Any, Any], Any]:
    def identify(args, dataset) -> Any:
        from misc.core.fingerprint import ids_digest

        return None if dataset is None else ids_digest(dataset.ids(getattr(args, name)))
    return identify


def _dataset_identity(dataset_name: str) -> Callable[[Any, Any], Any]:
    def identify(args, dataset) -> Any:
        return dataset.config_entry() if args.dataset == dataset_name and dataset is not None else None
    return identify


def _resolved_path(name: str) -> Callable[[Any, Any], Any]:
    def identify(args, dataset) -> Any:
        from pathlib import Path

        return str(Path(getattr(args, name)).resolve())
    return identify


# ------------------------------------------------------------------------------------------------ the declaration
@dataclass(frozen=True)
class Flag:
    """One command-line flag and what the program knows about it (see the module docstring)."""

    name: str
    default: Any
    help: str = ""
    group: str = ""
    type: Callable[[str], Any] | None = None
    choices: tuple | None = None
    nargs: int | str | None = None
    const: Any = None
    action: Any = None
    aliases: tuple[str, ...] = ()
    bounds: Bounds | None = None
    shapes: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()
    setting: bool = False
    path: bool = False
    hidden: bool = False
    identify: Callable[[Any, Any], Any] | None = field(default=None, compare=False)

    @property
    def steps(self) -> set[str]:
        """Steps that read this flag (every step for a ``setting``)."""
        if self.setting:
            return {s.name for s in ALL_STEPS}
        return set(self.shapes) | set(self.reads) | set(self.writes) | set(self.uses)

    def identity(self, args, dataset) -> Any:
        """The fingerprint entry of the input this flag names (``reads``)."""
        return (self.identify or _path_identity(self.name))(args, dataset)


# step groups, by what they read
TRAIN = ("train_cam", "train_irn", "train_deeplab", "train_wsol")
MODEL = ("train_cam", "make_cam", "train_irn", "make_ins_seg_labels", "make_sem_seg_labels", "train_deeplab",
         "eval_deeplab", "export_deeplab_test", "train_wsol", "eval_wsol")
SEGMENTATION = ("train_cam", "make_cam", "eval_cam", "cam_to_ir_label", "train_irn", "make_ins_seg_labels",
                "eval_ins_seg", "make_cocoann", "make_sem_seg_labels", "eval_sem_seg", "train_deeplab", "eval_deeplab",
                "export_deeplab_test")
GT_EVALS = ("eval_cam", "eval_sem_seg", "eval_ins_seg", "make_cocoann")
RANDOM_WALK = ("make_sem_seg_labels", "make_ins_seg_labels")
IRN_NET = ("train_irn",) + RANDOM_WALK
CAM_VIT = ("train_cam", "make_cam")
VIT = CAM_VIT + ("train_wsol", "eval_wsol")
DEEPLAB_NET = ("train_deeplab", "eval_deeplab", "export_deeplab_test")
DEEPLAB_CRF = ("eval_deeplab", "export_deeplab_test")
WSOL = ("train_wsol", "eval_wsol")
DEIT_DEFAULT, RESNET_DEFAULT = "deit_small_patch16_224.fb_in1k", "resnet{depth}.tv_in1k"


def _declare(group: str, *flags: Flag) -> list[Flag]:
    return [Flag(**{**f.__dict__, "group": group}) for f in flags]


F = Flag
# Flags of the original that named modules (net.resnet50_cam, net.deit_cam, net.resnet50_irn): the models are chosen
# by --cam_cnn_depth, --vit_* and --irn_backbone_depth, so these are accepted (users' scripts pass them) and dropped.
IGNORED = ("cam_network_branch1", "cam_network_branch2", "irn_network")

FLAGS: list[Flag] = [
    *_declare(
        "run",
        F("dataset", "voc", "voc: PASCAL VOC 2012 (--voc12_root); coco: MS COCO 2014 (--coco_root); folder: your own "
          "images, labels and masks (--folder_root, docs/data_folder.md); cub: CUB-200-2011 WSOL (--cub_root)",
          choices=("voc", "coco", "folder", "cub"), setting=True),
        F("demo", False, "use the built-in synthetic dataset and the demo preset", action="store_true",
          setting=True),
        F("preset", None, "named overrides of the defaults (--demo implies demo)", choices=("demo", "tiny"),
          setting=True),
        F("dry_run", False, "print the resolved configuration and steps; write nothing", action="store_true",
          setting=True),
        F("debug", False, "on a user error (bad flag, file, device, no space...) also print the traceback (it is "
          "always in the log file)", action="store_true", setting=True),
        F("work_dir", ".", "relative sess/, result/, log and data paths resolve here", setting=True),
        F("sess_dir", "sess", "resume checkpoints and training state files (weights go where their *_weights_name "
          "flags say)", path=True, setting=True),
        F("device", "auto", "auto (every visible GPU, else CPU), cpu, cuda, cuda:N", type=device_spec, setting=True),
        F("amp", "off", "mixed precision on GPU: off, bf16 (Ampere and newer) or fp16 (with a gradient scaler, e.g. "
          "the paper's RTX 2080 Ti); true = bf16", type=amp_mode, shapes=MODEL),
        F("tf32", True, "TF32 matmuls/convolutions on Ampere+ GPUs (no effect on the CPU)", type=str2bool,
          setting=True),
        F("nproc", None, "processes of the plain launch (default: every visible GPU, 1 on the CPU); with --device cpu "
          "N>1 runs N gloo processes, a rehearsal of the multi-GPU path", type=int, bounds=AT_LEAST_1, setting=True),
        F("overwrite", False, "redo per-image outputs that already exist", type=str2bool, setting=True),
        F("shard", None, "K/N: per-image steps take every N-th id from the K-th", type=shard_spec, setting=True),
        F("seed", 0, "seeds the training steps (not the demo data: --demo_data_seed)", type=int,
          shapes=("train_cam", "train_irn", "train_deeplab")),
        F("result_dir", "result", "metrics.json, config.json and vis/ go here", path=True, setting=True),
        F("vis_num", 8, "number of images for the PNG overlays in result/vis", type=int, bounds=AT_LEAST_0,
          setting=True),
        F("report_num_images", 4, "images per gallery of result/report.html (0: no gallery)", type=int,
          bounds=AT_LEAST_0, setting=True),
    ),
    *_declare(
        "environment",
        F("num_workers", None, "DataLoader workers (default: half the CPU cores, at least 1)", type=int,
          bounds=AT_LEAST_0, setting=True),
        F("voc12_root", "../../VOC2012", "PASCAL VOC 2012 folder (JPEGImages/, ImageSets/, SegmentationClass/, ...)",
          reads=SEGMENTATION, identify=_dataset_identity("voc")),
        F("coco_root", "../../coco2014", "MS COCO 2014: holds train2014/, val2014/ and "
          "annotations/instances_{train,val}2014.json", reads=SEGMENTATION, identify=_dataset_identity("coco")),
        F("coco_mask_dir", None, "COCO ground-truth class masks: a folder of ready <id>.png (values 0..80, 255) is "
          "used as is; otherwise they are built there from the annotations (default <work_dir>/result/"
          "coco_gt_masks)", path=True, setting=True),
        F("folder_root", None, "a dataset of your own (--dataset folder): holds classes.txt, images/, labels.csv and "
          "optionally masks/ and splits/ (docs/data_folder.md)", reads=SEGMENTATION,
          identify=_dataset_identity("folder")),
    ),
    *_declare(
        "dataset",
        F("train_list", "voc12/train_aug.txt", "list file or split name: the images the CAM networks and IRNet "
          "train on, and make_cam's images", reads=("train_cam", "train_irn"), uses=("make_cam", "cam_to_ir_label"),
          identify=_list_identity("train_list")),
        F("val_list", "voc12/val.txt", "images train_cam validates on and eval_deeplab scores",
          uses=("train_cam", "eval_deeplab")),
        F("infer_list", "voc12/train.txt", "images whose pseudo masks eval_sem_seg scores (and IRNet's mean shift is "
          "estimated on)", reads=("train_irn",), uses=RANDOM_WALK + ("make_cocoann",),
          identify=_list_identity("infer_list")),
        F("test_list", "voc12/test.txt", "images export_deeplab_test predicts", uses=("export_deeplab_test",)),
        F("chainer_eval_set", "train", "the ground-truth split seeds and masks are scored on", uses=GT_EVALS),
    ),
    *_declare(
        "pretrained weights (timm name or local file)",
        F("no_pretrained", False, "random init instead of ImageNet weights (experiments, tests, demo)",
          type=str2bool, nargs="?", const=True, shapes=TRAIN),
        F("deit_pretrained", None, f"default timm {DEIT_DEFAULT}", reads=("train_cam", "train_wsol"),
          identify=_pretrained_identity("deit_pretrained", DEIT_DEFAULT)),
        F("cam_cnn_pretrained", None, "default timm resnet{depth}.tv_in1k", reads=("train_cam", "train_wsol"),
          identify=_pretrained_identity("cam_cnn_pretrained", RESNET_DEFAULT)),
        F("irn_pretrained", None, "default timm resnet50.tv_in1k", reads=("train_irn",),
          identify=_pretrained_identity("irn_pretrained", RESNET_DEFAULT)),
    ),
    *_declare(
        "class activation maps",
        *(F(name, argparse.SUPPRESS, "(ignored, kept for the original's scripts)", setting=True) for name in IGNORED),
        F("cam_crop_size", 336, "train crop (the original hard-coded 336)", type=int, bounds=AT_LEAST_1,
          shapes=("train_cam",)),
        F("cam_resize_long", (210, 420), "random resize of the long side to [min, max]", type=int, nargs=2,
          bounds=AT_LEAST_1, shapes=("train_cam",)),
        F("cam_batch_size", 16, type=int, bounds=AT_LEAST_1, shapes=("train_cam",)),
        F("cam_num_epoches", 10, type=int, bounds=AT_LEAST_1, aliases=("cam_num_epochs",), shapes=("train_cam",)),
        F("cam_learning_rate", 0.1, "lr of both backbones (the heads: x --cam_head_lr_mult); --cam_lr is the same "
          "flag", type=float, bounds=POSITIVE, aliases=("cam_lr",), shapes=("train_cam",)),
        F("cam_weight_decay", 1e-4, type=float, bounds=NON_NEGATIVE, shapes=("train_cam",)),
        F("cam_optimizer", "poly_sgd", "poly_sgd: the original's (paper); adamw: for training from random weights "
          "(demo)", choices=("poly_sgd", "adamw"), shapes=("train_cam",)),
        F("cam_head_lr_mult", 10.0, "lr multiplier of both classifier heads", type=float, bounds=POSITIVE,
          shapes=("train_cam",)),
        F("cam_momentum", 1e-4, "SGD momentum; the original's PolyOptimizer had 1e-4 in effect (its weight decay "
          "value)", type=float, bounds=UNIT, shapes=("train_cam",)),
        F("cam_eval_thres", 0.15, "background threshold of the seed mIoU", type=float, bounds=UNIT,
          shapes=("eval_cam",)),
        F("cam_eval_sweep", tuple(round(0.05 * i, 2) for i in range(1, 13)), "background thresholds swept by "
          "eval_cam", action=FloatListAction, nargs="+", bounds=UNIT, shapes=("eval_cam",)),
        F("cam_scales", (1.0, 0.5, 1.5, 2.0, 0.75, 1.25, 1.75), "make_cam's scales (each with its flip)",
          action=FloatListAction, nargs="+", bounds=POSITIVE, shapes=("make_cam",)),
        F("cam_lambda", 0.1, "weight of the L1 coupling of the two branches", type=float, bounds=NON_NEGATIVE,
          shapes=("train_cam",)),
        F("cam_loss_rule", "committed", "committed: loss1+loss2+λ·L1 after epoch 1; shipped (the released "
          "bytecode): loss1+0·loss2+5λ·L1", choices=("committed", "shipped"), shapes=("train_cam",)),
        F("cam_cnn_depth", 152, "depth of the CNN branch's ResNet", type=int, choices=(18, 34, 50, 101, 152),
          shapes=("train_cam",)),
        F("cam_cnn_width", 64, "base width of the CNN branch's ResNet (64 = torchvision; 16: the demo's stand-in "
          "weights)", type=int, bounds=AT_LEAST_1, shapes=("train_cam",)),
        F("vit_embed_dim", 384, type=int, bounds=AT_LEAST_1, shapes=VIT),
        F("vit_depth", 12, type=int, bounds=AT_LEAST_1, shapes=VIT),
        F("vit_num_heads", 6, type=int, bounds=AT_LEAST_1, shapes=VIT),
        F("vit_patch_size", 16, type=int, bounds=AT_LEAST_1, shapes=CAM_VIT),
        F("vit_tile_size", 224, type=int, bounds=AT_LEAST_1, shapes=CAM_VIT),
        F("vit_num_passes", 3, "progressive passes of the transformer", type=int, bounds=AT_LEAST_1,
          shapes=CAM_VIT),
    ),
    *_declare(
        "IR labels",
        F("conf_fg_thres", 0.35, "CAM score above which a pixel is confident foreground", type=float, bounds=UNIT,
          shapes=("cam_to_ir_label",)),
        F("conf_bg_thres", 0.15, "CAM score below which a pixel is confident background", type=float, bounds=UNIT,
          shapes=("cam_to_ir_label",)),
    ),
    *_declare(
        "IRNet",
        F("irn_backbone_depth", 50, "depth of IRNet's ResNet backbone", type=int, choices=(18, 34, 50, 101, 152),
          shapes=IRN_NET),
        F("irn_backbone_width", 64, "base width of IRNet's ResNet backbone (64 = torchvision; 16: the demo's "
          "stand-in weights)", type=int, bounds=AT_LEAST_1, shapes=IRN_NET),
        F("irn_crop_size", 512, type=int, bounds=AT_LEAST_1, shapes=IRN_NET),
        F("irn_batch_size", 32, type=int, bounds=AT_LEAST_1, shapes=("train_irn",)),
        F("irn_num_epoches", 3, type=int, bounds=AT_LEAST_1, aliases=("irn_num_epochs",), shapes=("train_irn",)),
        F("irn_learning_rate", 0.1, "lr of the edge layers (the displacement layers: x10); --irn_lr is the same "
          "flag", type=float, bounds=POSITIVE, aliases=("irn_lr",), shapes=("train_irn",)),
        F("irn_weight_decay", 1e-4, type=float, bounds=NON_NEGATIVE, shapes=("train_irn",)),
        F("irn_momentum", 1e-4, "as --cam_momentum", type=float, bounds=UNIT, shapes=("train_irn",)),
    ),
    *_declare(
        "random walk",
        F("beta", 10.0, "exponent of the affinities", type=float, bounds=POSITIVE, shapes=RANDOM_WALK),
        F("exp_times", 8, "the walk runs 2**exp_times steps (at most 2**12)", type=int, bounds=Bounds(0, 12),
          shapes=RANDOM_WALK),
        F("ins_seg_bg_thres", 0.25, type=float, bounds=UNIT, shapes=("make_ins_seg_labels",)),
        F("sem_seg_bg_thres", 0.25, type=float, bounds=UNIT, shapes=("make_sem_seg_labels",)),
        F("cocoann_min_score", 0.0, "make_cocoann's training annotations keep the instances with score > this (0: "
          "all but the fragments under 1%% of the image, which make_ins_seg_labels scores 0); its results file "
          "keeps all", type=float, bounds=UNIT, shapes=("make_cocoann",)),
    ),
    *_declare(
        "DeepLab-v2",
        F("deeplab_depth", 101, type=int, choices=(50, 101, 152), shapes=DEEPLAB_NET),
        F("deeplab_blocks", None, "custom bottleneck counts per stage (overrides --deeplab_depth; small demo nets)",
          type=int, nargs=4, bounds=AT_LEAST_1, shapes=DEEPLAB_NET),
        F("deeplab_base_width", 64, "64 = the real widths (ASPP input 2048)", type=int, bounds=AT_LEAST_1,
          shapes=DEEPLAB_NET),
        F("deeplab_init", None, "deeplabv1_resnet101-coco.pth (the paper's COCO init), a torchvision ResNet file, "
          "or a timm name (default resnet101.tv_in1k, ImageNet)", reads=("train_deeplab",),
          identify=_pretrained_identity("deeplab_init", RESNET_DEFAULT)),
        F("deeplab_label_dir", None, "pseudo masks to train on (default --sem_seg_out_dir)", path=True,
          reads=("train_deeplab",), uses=("make_sem_seg_labels", "eval_deeplab")),
        F("deeplab_train_list", "voc12/train_aug.txt", "images DeepLab trains on (the paper: train_aug, 10,582); "
          "make_sem_seg_labels also writes their masks", reads=("train_deeplab",), uses=("make_sem_seg_labels",),
          identify=_list_identity("deeplab_train_list")),
        F("allow_gt_training", False, "allow training DeepLab on a ground-truth folder (not weakly supervised!)",
          type=str2bool, uses=("train_deeplab",)),
        F("deeplab_iters", 20000, type=int, bounds=AT_LEAST_1, shapes=("train_deeplab",)),
        F("deeplab_batch_size", 5, type=int, bounds=AT_LEAST_1, shapes=("train_deeplab",)),
        F("deeplab_iter_size", 2, "gradient accumulation steps", type=int, bounds=AT_LEAST_1,
          shapes=("train_deeplab",)),
        F("deeplab_lr", 2.5e-4, type=float, bounds=POSITIVE, shapes=("train_deeplab",)),
        F("deeplab_momentum", 0.9, type=float, bounds=UNIT, shapes=("train_deeplab",)),
        F("deeplab_weight_decay", 5e-4, type=float, bounds=NON_NEGATIVE, shapes=("train_deeplab",)),
        F("deeplab_poly_power", 0.9, type=float, bounds=NON_NEGATIVE, shapes=("train_deeplab",)),
        F("deeplab_poly_step", 10, type=int, bounds=AT_LEAST_1, shapes=("train_deeplab",)),
        F("deeplab_crop_size", 321, type=int, bounds=AT_LEAST_1, shapes=("train_deeplab",)),
        F("deeplab_scales", (0.5, 0.75, 1.0, 1.25, 1.5), "random rescales of the training images",
          action=FloatListAction, nargs="+", bounds=POSITIVE, shapes=("train_deeplab",)),
        F("deeplab_checkpoint_every", 5000, "iterations between resume checkpoints", type=int, bounds=AT_LEAST_1,
          uses=("train_deeplab",)),
        F("deeplab_crf", True, "also score val (and export the test set) after the dense CRF", type=str2bool,
          shapes=DEEPLAB_CRF),
        F("deeplab_crf_guide", "original", "original: the quirky mean-subtracted BGR uint8 guide (reproduces "
          "numbers); rgb: the image", choices=("original", "rgb"), shapes=DEEPLAB_CRF),
    ),
    *_declare(
        "CUB WSOL",
        F("cub_root", "data/CUB_200_2011", "the CUB_200_2011 folder", reads=WSOL, identify=_resolved_path("cub_root")),
        F("wsol_num_classes", 200, type=int, bounds=AT_LEAST_1, shapes=WSOL),
        F("wsol_epochs", 60, type=int, bounds=AT_LEAST_1, shapes=("train_wsol",)),
        F("wsol_batch_size", 64, type=int, bounds=AT_LEAST_1, shapes=("train_wsol",), uses=("eval_wsol",)),
        F("wsol_lr", 5e-5, type=float, bounds=POSITIVE, shapes=("train_wsol",)),
        F("wsol_weight_decay", 0.05, type=float, bounds=NON_NEGATIVE, shapes=("train_wsol",)),
        F("wsol_lr_decay_epochs", 30, type=int, bounds=AT_LEAST_1, shapes=("train_wsol",)),
        F("wsol_cnn_lr", 0.005, type=float, bounds=POSITIVE, shapes=("train_wsol",)),
        F("wsol_cnn_cls_lr", 0.05, type=float, bounds=POSITIVE, shapes=("train_wsol",)),
        F("wsol_cnn_weight_decay", 1e-4, type=float, bounds=NON_NEGATIVE, shapes=("train_wsol",)),
        F("wsol_cnn_depth", 50, type=int, choices=(18, 34, 50, 101, 152), shapes=("train_wsol",)),
        F("wsol_cnn_width", 64, "base width of the CUB CNN branch's ResNet (64 = torchvision; 16: the demo's "
          "stand-in weights)", type=int, bounds=AT_LEAST_1, shapes=("train_wsol",)),
        F("wsol_l1_window", 5, "L1 on in odd windows of this many epochs", type=int, bounds=AT_LEAST_1,
          shapes=("train_wsol",)),
        F("wsol_drop_path", 0.1, type=float, bounds=Bounds(0.0, 1.0, high_open=True), shapes=WSOL),
        F("wsol_cam_thr", 0.1, type=float, bounds=UNIT, shapes=WSOL),
        F("wsol_seed", 26, "seeds train_wsol (the original's flag)", type=int, shapes=("train_wsol",)),
        F("wsol_image_size", 224, type=int, bounds=AT_LEAST_1, shapes=WSOL),
        F("wsol_patch_size", 16, "DeiT patch (= the ResNet's stride 16 for the L1)", type=int, bounds=AT_LEAST_1,
          shapes=WSOL),
        F("wsol_resize_size", 256, type=int, bounds=AT_LEAST_1, shapes=WSOL),
        F("wsol_select_on", "heldout", "model selection: held-out train images (default) or the test set (the "
          "original)", choices=("heldout", "test"), shapes=WSOL),
        F("wsol_heldout_per_class", 2, type=int, bounds=AT_LEAST_0, shapes=WSOL),
        F("wsol_box_rule", "original", choices=("original", "wsolevaluation"), shapes=WSOL),
        F("wsol_out_dir", "result/wsol", path=True, writes=WSOL),
        F("wsol_weights_name", "sess/wsol_deit.pth", path=True, writes=("train_wsol",), reads=("eval_wsol",)),
        F("wsol_cnn_weights_name", "sess/wsol_cnn.pth", path=True, writes=("train_wsol",)),
    ),
    *_declare(
        "output",
        F("log_name", "sample_train_eval", "the run's log file: <work_dir>/<log_name>.log", setting=True),
        F("cam1_weights_name", "sess/res152_cam.pth", path=True, writes=("train_cam",)),
        F("cam2_weights_name", "sess/deits_cam.pth", path=True, writes=("train_cam",), reads=("make_cam",),
          identify=_cam_vit_weights_identity),
        F("irn_weights_name", "sess/res50_irn.pth", path=True, writes=("train_irn",), reads=RANDOM_WALK),
        F("deeplab_weights_name", "sess/deeplab_v2.pth", path=True, writes=("train_deeplab",), reads=DEEPLAB_CRF),
        F("cam_out_dir", "result/cam", path=True, writes=("make_cam",),
          reads=("eval_cam", "cam_to_ir_label") + RANDOM_WALK),
        F("ir_label_out_dir", "result/ir_label", path=True, writes=("cam_to_ir_label",), reads=("train_irn",)),
        F("sem_seg_out_dir", "result/sem_seg", path=True, writes=("make_sem_seg_labels",), reads=("eval_sem_seg",)),
        F("ins_seg_out_dir", "result/ins_seg", path=True, writes=("make_ins_seg_labels",),
          reads=("eval_ins_seg", "make_cocoann")),
        F("cocoann_out_dir", "result/cocoann", "make_cocoann's COCO JSON files (pseudo_instances_<list>.json, "
          "..._results.json, gt_instances_<eval set>.json)", path=True, writes=("make_cocoann",)),
        F("deeplab_out_dir", "result/deeplab", path=True, writes=DEEPLAB_CRF),
    ),
    *_declare(
        "steps (true/false/1/0/yes/no)",
        *(F(s.switch, s.default_on, f"run {s.name}", type=str2bool, setting=True) for s in ALL_STEPS),
    ),
    *_declare(
        "demo data (--demo only)",
        *(F(name, default, type=int, bounds=bounds, hidden=True, setting=True) for name, default, bounds in (
            ("demo_num_train", 120, AT_LEAST_1), ("demo_num_val", 40, AT_LEAST_1), ("demo_num_extra", 160, AT_LEAST_0),
            ("demo_num_test", 8, AT_LEAST_0), ("demo_max_objects", 3, Bounds(1, 255)),
            ("cub_demo_classes", 10, AT_LEAST_1), ("cub_demo_train_per_class", 8, AT_LEAST_1),
            ("cub_demo_test_per_class", 4, AT_LEAST_1), ("coco_demo_categories", 12, Bounds(1, 80)))),
        F("demo_image_size", (112, 160), type=int, nargs=2, bounds=AT_LEAST_1, hidden=True, setting=True),
        F("demo_data_seed", 0, "seed of the built-in synthetic dataset (--seed seeds training only, so seeds compare "
          "on the same data)", type=int, setting=True),
    ),
]
BY_FLAG: dict[str, Flag] = {f.name: f for f in FLAGS}
# Set by the orchestrator after parsing (not flags): the dataset's number of classes (recorded through the dataset's
# entry, or --wsol_num_classes) and the folder of the dataset index caches (<work_dir>/result).
DERIVED_SETTINGS = ("num_classes", "list_cache_dir")
PATH_FLAGS: tuple[str, ...] = tuple(f.name for f in FLAGS if f.path)


# ------------------------------------------------------------------------------------------------ uses of the table
def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    """The argparse parser of every declared flag, in its group, with its declared default."""
    import os

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in FLAGS:
        group = groups.get(f.group) or groups.setdefault(f.group, parser.add_argument_group(f.group))
        kwargs: dict[str, Any] = {"default": f.default, "help": argparse.SUPPRESS if f.hidden else (f.help or None)}
        if f.name == "num_workers":
            kwargs["default"] = max(1, (os.cpu_count() or 2) // 2)
        if f.action is not None:
            kwargs["action"] = f.action
        if f.type is not None:
            kwargs["type"] = f.type
        for key in ("choices", "nargs", "const"):
            if getattr(f, key) is not None:
                kwargs[key] = getattr(f, key)
        group.add_argument(f"--{f.name}", *(f"--{a}" for a in f.aliases), **kwargs)
    return parser


def _shown(value: Any) -> str:
    return " ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


def value_problem(flag: Flag, value: Any) -> str | None:
    """Why ``value`` is not allowed for ``flag`` (choices, count, type, range); None when it is."""
    if value is None or value is argparse.SUPPRESS:
        return None
    if flag.choices is not None and value not in flag.choices:
        return f"--{flag.name} {_shown(value)}: must be one of {', '.join(map(str, flag.choices))}"
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    every = "every value " if len(values) > 1 or isinstance(value, (list, tuple)) else ""
    if isinstance(flag.nargs, int) and len(values) != flag.nargs:
        return f"--{flag.name} {_shown(value)}: needs {flag.nargs} values"
    if flag.type is int and not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return f"--{flag.name} {_shown(value)}: {every}must be an integer"
    if (flag.type is float or flag.action is FloatListAction) and not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return f"--{flag.name} {_shown(value)}: {every}must be a number"
    if flag.type is str2bool and not isinstance(value, bool):
        return f"--{flag.name} {_shown(value)}: must be true or false"
    if flag.bounds is not None and not all(v in flag.bounds for v in values):
        kind = "an integer " if flag.type is int else ""
        return f"--{flag.name} {_shown(value)}: {every}must be {kind}{flag.bounds.text()}"
    return None


def value_problems(args: argparse.Namespace) -> list[str]:
    """Every declared flag of ``args`` against its choices, type and range (one line per bad flag)."""
    return [p for f in FLAGS if hasattr(args, f.name) for p in [value_problem(f, getattr(args, f.name))] if p]


def check_overrides(overrides: dict[str, Any], where: str) -> None:
    """Raise ``ValueError`` when ``overrides`` (a preset, a dataset's defaults) names an undeclared flag or gives a
    value its declaration does not allow."""
    problems = [f"{where}: --{name} is not a declared flag" for name in overrides if name not in BY_FLAG]
    problems += [f"{where}: {p}" for name, value in overrides.items() if name in BY_FLAG
                 for p in [value_problem(BY_FLAG[name], value)] if p]
    if problems:
        raise ValueError("; ".join(problems))


def written_by(step: str) -> list[str]:
    """The flags naming where ``step`` writes (``*_dir``: a folder; otherwise a file)."""
    return [f.name for f in FLAGS if step in f.writes]


def step_config(args: argparse.Namespace, step: str, dataset: Any = None, **extra: Any) -> dict:
    """The fingerprint of ``step``'s outputs: the value of every flag that shapes them, the identity of every input
    flag it reads (``dataset``: the opened dataset index, for lists and the dataset entry), and ``extra`` (inputs
    that no flag names, e.g. an intermediate folder)."""
    if step not in BY_NAME and step != "predict":
        raise KeyError(f"unknown step {step!r}")
    config: dict[str, Any] = {}
    for f in FLAGS:
        if step in f.shapes:
            config[f.name] = getattr(args, f.name)
        elif step in f.reads:
            config[f.name] = f.identity(args, dataset)
    return {**config, **extra}


def declaration_problems(steps: Iterable[str] = tuple(BY_NAME)) -> list[str]:
    """Declarations that name an unknown step or contradict themselves (checked by the tests)."""
    known = set(steps) | {"predict"}
    problems = []
    for f in FLAGS:
        for kind in ("shapes", "reads", "writes", "uses"):
            problems += [f"--{f.name}: {kind} names unknown step {s!r}" for s in getattr(f, kind) if s not in known]
        if f.setting and (f.shapes or f.reads or f.writes or f.uses):
            problems.append(f"--{f.name}: a setting names steps")
        if f.default is not argparse.SUPPRESS and f.name != "num_workers":
            problem = value_problem(f, f.default)
            if problem:
                problems.append(f"--{f.name} default: {problem}")
    return problems


def undeclared_reads(reads: dict[str, Sequence[str]]) -> list[str]:
    """``reads``: {step: flags it read} → the (step, flag) pairs that no declaration covers."""
    out = []
    for step, names in reads.items():
        for name in names:
            f = BY_FLAG.get(name)
            if f is None:
                if name not in DERIVED_SETTINGS:
                    out.append(f"{step} reads {name!r}, which is no declared flag")
            elif step not in f.steps:
                out.append(f"{step} reads --{name}, whose declaration names neither it (shapes/reads/writes/uses) "
                           f"nor is a setting")
    return out


def markdown_reference() -> str:
    """docs/flags.md: every flag of run_sample.py by group, with its default, range and the steps it shapes."""
    lines = ["# Flags of run_sample.py", "",
             "Generated from the declarations in `pipeline/flags.py` by `python -m pipeline.flags > docs/flags.md`",
             "(a test checks that this page is current). *Shapes*: the steps whose outputs the value shapes (a change",
             "recomputes them); *reads*: the steps that record the identity of the input it names."]
    group = None
    for f in FLAGS:
        if f.hidden or f.default is argparse.SUPPRESS:
            continue
        if f.group != group:
            group = f.group
            lines += ["", f"## {group}", "", "| flag | default | allowed | shapes / reads | help |", "|---|---|---|---|---|"]
        names = " ".join(f"`--{n}`" for n in (f.name, *f.aliases))
        default = "half the CPU cores" if f.name == "num_workers" else f"`{_shown(f.default)}`"
        allowed = (", ".join(map(str, f.choices)) if f.choices else f.bounds.text() if f.bounds else
                   "true / false" if f.type is str2bool else "")
        steps = "; ".join(x for x in (", ".join(f.shapes), f"reads: {', '.join(f.reads)}" if f.reads else "") if x)
        lines.append(f"| {names} | {default} | {allowed} | {steps} | {f.help.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_reference(), end="")
