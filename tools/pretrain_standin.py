"""Pretrain the demo's stand-in for ImageNet weights on a synthetic classification set of other object kinds.

The real recipe starts every network from ImageNet (IRNet's backbone even stays frozen); offline the demo cannot.
This script trains, on CPU, the demo-sized networks on :mod:`tools.standin_data` (32 classes of shapes that no demo
class has, single label, cluttered backgrounds) and writes them in the OFFICIAL layouts, so that the real flags and
loaders take them strictly:

=============================  ===============================================================  ===================
file                           what (layout)                                                    flag
=============================  ===============================================================  ===================
``deit_demo_p8.pth``           DeiT embed 64, depth 4, heads 2, patch 8 at 64 px (8×8 grid);     --deit_pretrained
                               ``{"model": state}`` with timm DeiT keys, ``head`` = Linear(64,
                               32) of the stand-in classes (dropped by the loader)
``deit_demo_p16.pth``          the same transformer with patch 16 at 128 px (8×8 grid), for the  --deit_pretrained
                               CUB demo (its L1 coupling needs patch = the ResNet's stride 16)   (CUB)
``resnet18_w16.pth``           torchvision ResNet-18 of base width 16 incl. ``fc`` (32 classes)  --cam_cnn_pretrained
                                                                                                --irn_pretrained
``deeplab_init_b1111_w16.pth`` torchvision-layout Bottleneck ResNet, blocks (1,1,1,1), width 16,  --deeplab_init
                               incl. ``fc``; trained on DeepLab's input (BGR, caffe mean, no
                               std) as the paper's caffe COCO init is
=============================  ===============================================================  ===================

ResNets are trained with ordinary BatchNorm (batch statistics) at output stride 16 (strides 2,2,2,1, as the steps
use them); their running statistics are re-estimated at the end on full training images. Floating tensors are
stored as float16 (the loaders copy them into float32 parameters), which halves the files; the held-out accuracies
reported are those of the stored (float16) weights.

Every model trains in one thread (in ``--jobs`` processes side by side), from seeds derived from ``--seed``: the
files are byte-identical for a seed whatever ``--jobs`` is.

    python tools/pretrain_standin.py                      # the shipped weights (weights/standin/), ~6 min
    python tools/pretrain_standin.py --tiny --out /tmp/x  # seconds: a smoke test (tests/test_standin.py)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

log = logging.getLogger("pretrain_standin")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ------------------------------------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class ModelSpec:
    """One network to pretrain. ``kind``: 'deit' (timm VisionTransformer, cls-token classifier, DeiT layout) or
    'resnet' (net.resnet.build_resnet with plain BatchNorm + GAP + ``fc``, torchvision layout). ``input_norm``:
    'imagenet' (RGB, ImageNet mean/std: the CAM, IRNet, DeiT and CUB loaders) or 'caffe_bgr' (BGR minus the caffe
    mean, no std: DeepLab's input)."""

    name: str
    kind: str
    input_size: int
    epochs: float
    lr: float
    patch_size: int = 8
    embed_dim: int = 64
    vit_depth: int = 4
    num_heads: int = 2
    depth: int = 18
    width: int = 16
    layers: tuple[int, int, int, int] | None = None
    input_norm: str = "imagenet"
    batch_size: int = 64
    flag: str = ""

    @property
    def filename(self) -> str:
        return f"{self.name}.pth"


#: The demo's transformer (run_sample.py PRESETS["demo"]: vit_embed_dim 64, vit_depth 4, vit_num_heads 2; the CUB
#: demo's 4 heads, PRESET_DATASET_OVERRIDES) and ResNet widths. In the order the worker processes pick them up
#: (with 2: each a ResNet, then a transformer).
#: Epochs: 3x those of the first shipped files (1.5 / 4), which gave a weaker start and a worse demo (numbers in
#: weights/standin/README.md).
MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("resnet18_w16", "resnet", 80, epochs=4.5, lr=2e-3, depth=18, width=16,
              flag="--cam_cnn_pretrained / --irn_pretrained"),
    ModelSpec("deeplab_init_b1111_w16", "resnet", 80, epochs=4.5, lr=2e-3, depth=50, width=16, layers=(1, 1, 1, 1),
              input_norm="caffe_bgr", flag="--deeplab_init"),
    ModelSpec("deit_demo_p16", "deit", 128, epochs=12.0, lr=2e-3, patch_size=16, num_heads=4, batch_size=32,
              flag="--deit_pretrained (CUB)"),
    ModelSpec("deit_demo_p8", "deit", 64, epochs=12.0, lr=2e-3, patch_size=8, batch_size=32,
              flag="--deit_pretrained (VOC)"),
)


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that shapes the weights (all defaults live here)."""

    seed: int = 0
    num_train: int = 6400  # 200 per class
    num_heldout: int = 960  # 30 per class, other images (another split of the generator)
    image_size: int = 128  # the rendered images; each model takes random resized crops at its input size
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    warmup_frac: float = 0.05
    crop_scale: tuple[float, float] = (0.4, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    bn_recal_images: int = 2048
    fp16: bool = True
    models: tuple[ModelSpec, ...] = field(default=MODELS)


DEFAULTS = PretrainConfig()
#: ``--tiny``: the same architectures (so the files load into the demo's models), a few images and steps.
TINY = replace(DEFAULTS, num_train=64, num_heldout=32, image_size=64, bn_recal_images=16,
               models=tuple(replace(m, epochs=0.25, batch_size=8) for m in MODELS))


# ------------------------------------------------------------------------------------------------ models
def _plain_batchnorm(module: nn.Module) -> nn.Module:
    """FixedBatchNorm (always running statistics) → nn.BatchNorm2d (batch statistics in train mode), in place; the
    parameters, buffers and key names stay."""
    from net.resnet import FixedBatchNorm

    for m in module.modules():
        if isinstance(m, FixedBatchNorm):
            m.__class__ = nn.BatchNorm2d
    return module


class ResNetClassifier(nn.Module):
    """A torchvision-layout ResNet (``backbone`` of net.resnet) + GAP + ``fc``, trained with plain BatchNorm."""

    def __init__(self, spec: ModelSpec, num_classes: int) -> None:
        super().__init__()
        from net.resnet import BasicBlock, Bottleneck, build_resnet

        self.backbone = _plain_batchnorm(build_resnet(spec.depth, (2, 2, 2, 1), base_width=spec.width,
                                                      layers=spec.layers))
        self.fc = nn.Linear(self.backbone.out_channels, num_classes)
        for m in self.backbone.modules():  # zero-init the last BN of each residual branch (fast start)
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)
            elif isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone(x).mean((2, 3)))

    def official_state(self) -> dict[str, torch.Tensor]:
        """torchvision layout: conv1, bn1, layer1..4 (incl. num_batches_tracked), fc."""
        state = dict(self.backbone.state_dict())
        state.update({f"fc.{k}": v for k, v in self.fc.state_dict().items()})
        return state


def build_deit(spec: ModelSpec, num_classes: int) -> nn.Module:
    """timm's VisionTransformer in DeiT-S's configuration (cls token, LayerNorm eps 1e-6, qkv bias, GELU MLP ×4),
    at the demo's sizes; its state dict has the official DeiT key names."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=spec.input_size, patch_size=spec.patch_size, embed_dim=spec.embed_dim,
                             depth=spec.vit_depth, num_heads=spec.num_heads, mlp_ratio=4.0, qkv_bias=True,
                             num_classes=num_classes)


def build_model(spec: ModelSpec, num_classes: int) -> nn.Module:
    if spec.kind == "deit":
        return build_deit(spec, num_classes)
    if spec.kind == "resnet":
        return ResNetClassifier(spec, num_classes).to(memory_format=torch.channels_last)
    raise ValueError(f"unknown model kind {spec.kind!r}")


def official_state(spec: ModelSpec, model: nn.Module) -> dict[str, torch.Tensor]:
    return model.official_state() if spec.kind == "resnet" else dict(model.state_dict())


def to_storage(state: dict[str, torch.Tensor], fp16: bool) -> dict[str, torch.Tensor]:
    """Float tensors → float16 (those beyond float16's range stay float32); others as they are; contiguous copies."""
    out = {}
    for k, v in state.items():
        v = v.detach().to("cpu")
        if fp16 and v.is_floating_point() and (v.numel() == 0 or float(v.abs().max()) < 6e4):
            v = v.half()
        out[k] = v.contiguous().clone()
    return out


# ------------------------------------------------------------------------------------------------ data
def normalise(x: torch.Tensor, how: str) -> torch.Tensor:
    """(B,3,H,W) float RGB in [0, 255] → the network's input."""
    if how == "imagenet":
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
        return (x - mean) / std
    if how == "caffe_bgr":
        from dataset.deeplab_data import MEAN_BGR

        return x.flip(1) - torch.tensor(MEAN_BGR, dtype=x.dtype).view(1, 3, 1, 1)
    raise ValueError(f"unknown input normalisation {how!r}")


def random_boxes(n: int, size: int, scale: Sequence[float], ratio: Sequence[float],
                 gen: torch.Generator) -> torch.Tensor:
    """(n, 4) random-resized-crop boxes (x0, y0, x1, y1) in pixels of a size×size image (area fraction ``scale``,
    aspect ``ratio`` log-uniform; clipped to the image)."""
    area = torch.empty(n).uniform_(*scale, generator=gen) * size * size
    log_r = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=gen)
    r = torch.exp(log_r)
    w = torch.sqrt(area * r).clamp(max=size)
    h = torch.sqrt(area / r).clamp(max=size)
    x0 = torch.rand(n, generator=gen) * (size - w)
    y0 = torch.rand(n, generator=gen) * (size - h)
    return torch.stack([x0, y0, x0 + w, y0 + h], 1)


def crop_resize(images: torch.Tensor, boxes: torch.Tensor, out: int) -> torch.Tensor:
    """uint8 (B,H,W,3) images and (B,4) boxes → float (B,3,out,out) bilinear crops (roi_align, 2×2 samples/bin)."""
    from torchvision.ops import roi_align

    x = images.permute(0, 3, 1, 2).float()
    rois = torch.cat([torch.arange(len(boxes), dtype=torch.float32)[:, None], boxes], 1)
    return roi_align(x, rois, output_size=(out, out), spatial_scale=1.0, sampling_ratio=2, aligned=True)


def full_view(images: torch.Tensor, out: int) -> torch.Tensor:
    size = images.shape[1]
    boxes = torch.tensor([[0.0, 0.0, float(size), float(size)]]).expand(len(images), 4)
    return crop_resize(images, boxes, out)


# ------------------------------------------------------------------------------------------------ training
def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no decay on biases, norms (1-D) and pos_embed / cls_token."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name in ("pos_embed", "cls_token") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def accuracy(model: nn.Module, spec: ModelSpec, images: np.ndarray, labels: np.ndarray, batch: int = 128) -> float:
    model.eval()
    correct = 0
    for a in range(0, len(images), batch):
        x = normalise(full_view(torch.from_numpy(np.array(images[a:a + batch])), spec.input_size),
                      spec.input_norm)
        if spec.kind == "resnet":
            x = x.contiguous(memory_format=torch.channels_last)
        correct += int((model(x).argmax(1) == torch.from_numpy(labels[a:a + batch])).sum())
    return correct / max(1, len(images))


@torch.no_grad()
def recalibrate_bn(model: nn.Module, spec: ModelSpec, images: np.ndarray, count: int, batch: int = 128) -> None:
    """Re-estimate every BatchNorm's running statistics (cumulative average) on ``count`` full training images."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns or count <= 0:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for a in range(0, min(count, len(images)), batch):
        x = normalise(full_view(torch.from_numpy(np.array(images[a:min(a + batch, count)])),
                                spec.input_size), spec.input_norm)
        model(x.contiguous(memory_format=torch.channels_last))
    for m in bns:
        m.momentum = 0.1
    model.eval()


def train_one(spec: ModelSpec, cfg: PretrainConfig, data_dir: str, index: int) -> dict:
    """Train ``spec`` on the arrays in ``data_dir``; returns {"state": stored tensors, "metrics": {...}}."""
    from tools.standin_data import NUM_STANDIN_CLASSES

    torch.set_num_threads(1)
    start = time.perf_counter()
    d = Path(data_dir)
    train_x = np.load(d / "train_images.npy", mmap_mode="r")
    train_y = np.load(d / "train_labels.npy")
    held_x = np.load(d / "heldout_images.npy", mmap_mode="r")
    held_y = np.load(d / "heldout_labels.npy")
    seed = cfg.seed * 1000 + index
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    model = build_model(spec, NUM_STANDIN_CLASSES)
    opt = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=spec.lr, betas=(0.9, 0.999))
    n = len(train_y)
    steps = max(1, math.ceil(spec.epochs * n / spec.batch_size))
    warmup = max(1, int(cfg.warmup_frac * steps))

    def lr_at(step: int) -> float:  # linear warmup, cosine to 0
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    order = torch.empty(0, dtype=torch.long)
    losses = []
    model.train()
    for step in range(steps):
        if len(order) < spec.batch_size:
            order = torch.cat([order, torch.randperm(n, generator=gen)])
        idx, order = order[:spec.batch_size], order[spec.batch_size:]
        rows = idx.numpy()
        imgs = torch.from_numpy(np.stack([train_x[i] for i in rows]))
        x = crop_resize(imgs, random_boxes(len(idx), imgs.shape[1], cfg.crop_scale, cfg.crop_ratio, gen),
                        spec.input_size)
        flip = torch.rand(len(idx), generator=gen) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        x = normalise(x, spec.input_norm)
        if spec.kind == "resnet":
            x = x.contiguous(memory_format=torch.channels_last)
        y = torch.from_numpy(train_y[rows])
        loss = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % max(1, steps // 10) == 0 or step + 1 == steps:
            log.info("%s: step %d/%d loss %.3f (%.0f s)", spec.name, step + 1, steps,
                     float(np.mean(losses[-max(1, steps // 10):])), time.perf_counter() - start)
    if spec.kind == "resnet":
        recalibrate_bn(model, spec, train_x, cfg.bn_recal_images)
    acc_fp32 = accuracy(model, spec, held_x, held_y)
    stored = to_storage(official_state(spec, model), cfg.fp16)
    # the held-out accuracy of what is written: the stored values loaded back into the model
    if spec.kind == "resnet":
        model.backbone.load_state_dict({k: v for k, v in stored.items() if not k.startswith("fc.")})
        model.fc.load_state_dict({k[len("fc."):]: v for k, v in stored.items() if k.startswith("fc.")})
    else:
        model.load_state_dict(stored)
    acc_stored = accuracy(model, spec, held_x, held_y)
    metrics = {"steps": steps, "images_seen": steps * spec.batch_size, "final_loss": float(np.mean(losses[-20:])),
               "heldout_top1": round(acc_stored, 4), "heldout_top1_fp32": round(acc_fp32, 4),
               "train_seconds": round(time.perf_counter() - start, 1)}
    log.info("%s: held-out top-1 %.4f (stored weights; %.4f before storing) in %.0f s", spec.name, acc_stored,
             acc_fp32, metrics["train_seconds"])
    return {"state": stored, "metrics": metrics}


def _train_task(task: tuple[ModelSpec, PretrainConfig, str, int]) -> tuple[str, dict]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec, cfg, data_dir, index = task
    return spec.name, train_one(spec, cfg, data_dir, index)


# ------------------------------------------------------------------------------------------------ files
def write_file(path: Path, obj: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pretrain(cfg: PretrainConfig, out: str | os.PathLike, *, jobs: int = 2, models: Sequence[str] | None = None,
             command: str | None = None) -> dict:
    """Render the stand-in set, train the selected models (all by default) and write their files, ``MANIFEST.json``
    included, into ``out``. Returns the manifest."""
    from tools.standin_data import STANDIN_STYLES, StandinConfig, make_standin_set

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    specs = [m for m in cfg.models if models is None or m.name in models]
    unknown = set(models or ()) - {m.name for m in cfg.models}
    if unknown:
        raise ValueError(f"unknown model(s) {sorted(unknown)}; choose from {[m.name for m in cfg.models]}")
    data_cfg = StandinConfig(image_size=cfg.image_size)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="standin_data_") as tmp:
        log.info("rendering %d train + %d held-out stand-in images (%d px)", cfg.num_train, cfg.num_heldout,
                 cfg.image_size)
        for split, count in (("train", cfg.num_train), ("heldout", cfg.num_heldout)):
            images, labels = make_standin_set(count, split=split, seed=cfg.seed, cfg=data_cfg, num_workers=jobs)
            np.save(Path(tmp) / f"{split}_images.npy", images)
            np.save(Path(tmp) / f"{split}_labels.npy", labels)
        data_s = time.perf_counter() - t0
        log.info("data ready in %.1f s", data_s)
        tasks = [(spec, cfg, tmp, cfg.models.index(spec)) for spec in specs]
        if jobs > 1 and len(tasks) > 1:
            with multiprocessing.get_context("spawn").Pool(min(jobs, len(tasks))) as pool:
                for name, result in pool.imap_unordered(_train_task, tasks):
                    results[name] = result
        else:
            threads = torch.get_num_threads()
            try:
                for task in tasks:
                    results[task[0].name] = train_one(*task)
            finally:
                torch.set_num_threads(threads)
    files = {}
    for spec in specs:
        state = results[spec.name]["state"]
        path = out / spec.filename
        write_file(path, {"model": state} if spec.kind == "deit" else state)
        arch = ({"kind": "DeiT (timm VisionTransformer, cls token)", "embed_dim": spec.embed_dim,
                 "depth": spec.vit_depth, "num_heads": spec.num_heads, "patch_size": spec.patch_size,
                 "img_size": spec.input_size, "grid": spec.input_size // spec.patch_size}
                if spec.kind == "deit" else
                {"kind": "torchvision ResNet", "block": "Bottleneck" if spec.depth >= 50 else "BasicBlock",
                 "layers": list(spec.layers) if spec.layers else None, "depth": spec.depth,
                 "base_width": spec.width, "strides": [2, 2, 2, 1]})
        files[spec.filename] = {
            "sha256": sha256(path), "bytes": path.stat().st_size, "flag": spec.flag, "architecture": arch,
            "input": {"size": spec.input_size, "normalisation": spec.input_norm},
            "recipe": {"epochs": spec.epochs, "lr": spec.lr}, **results[spec.name]["metrics"]}
    old = out / "MANIFEST.json"
    if models is not None and old.is_file():  # a partial run keeps the other files' entries
        kept = json.loads(old.read_text()).get("files", {})
        files = {**{k: v for k, v in kept.items() if k not in files and (out / k).is_file()}, **files}
    manifest = {
        "what": "stand-in pretrained weights (NOT ImageNet): trained by tools/pretrain_standin.py on a synthetic "
                "classification set of 32 object kinds that no demo class has (tools/standin_data.py)",
        "command": command, "torch": torch.__version__,
        "classes": [s.name for s in STANDIN_STYLES],
        "config": {k: v for k, v in asdict(cfg).items() if k != "models"},
        "files": files, "data_seconds": round(data_s, 1), "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("wrote %s in %.0f s: %s", out, manifest["wall_seconds"],
             ", ".join(f"{k} {v['heldout_top1']:.3f}" for k, v in files.items()))
    return manifest


# ------------------------------------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python tools/pretrain_standin.py", description=(__doc__ or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="weights/standin", help="folder for the .pth files and MANIFEST.json")
    p.add_argument("--tiny", action="store_true", help="a few images and steps (tests): same architectures")
    p.add_argument("--seed", type=int, default=None, help=f"default {DEFAULTS.seed}")
    p.add_argument("--jobs", type=int, default=2,
                   help="processes (each model trains in one thread; the files do not depend on this)")
    p.add_argument("--models", nargs="+", default=None, choices=[m.name for m in MODELS],
                   help="only these (default: all)")
    p.add_argument("--num_train", type=int, default=None, help=f"default {DEFAULTS.num_train}")
    p.add_argument("--epochs_scale", type=float, default=1.0, help="multiply every model's epochs")
    return p


def config_from_args(args: argparse.Namespace) -> PretrainConfig:
    cfg = TINY if args.tiny else DEFAULTS
    if args.seed is not None:
        cfg = replace(cfg, seed=args.seed)
    if args.num_train is not None:
        cfg = replace(cfg, num_train=args.num_train)
    if args.epochs_scale != 1.0:
        cfg = replace(cfg, models=tuple(replace(m, epochs=m.epochs * args.epochs_scale) for m in cfg.models))
    return cfg


def main(argv: Sequence[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return pretrain(config_from_args(args), args.out, jobs=args.jobs, models=args.models,
                    command=" ".join(["python tools/pretrain_standin.py", *argv]))


if __name__ == "__main__":
    main()
