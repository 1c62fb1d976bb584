"""Pretrained-weight files named and laid out exactly like the official downloads, with random values.

They let the real loaders (``--deit_pretrained``, ``--cam_cnn_pretrained``, ``--irn_pretrained``,
``--deeplab_init``) and the preflight be exercised offline at real widths:

==========================================  ====================================================================
file                                        layout
==========================================  ====================================================================
``deit_small_patch16_224-cd65a155.pth``     ``{"model": state}`` of timm ``deit_small_patch16_224`` (152 tensors,
                                            Linear head 1000), zip format (DeiT release, PyTorch 1.7)
``resnet50-19c8e357.pth``                   torchvision ``resnet50().state_dict()`` incl. ``fc``, without
``resnet101-5d3b4d8f.pth``                  ``num_batches_tracked`` (the 2017 files predate it), legacy
``resnet152-b121ed2d.pth``                  (non-zip) format
``deeplabv1_resnet101-coco.pth``            deeplab-pytorch ``DeepLabV1_ResNet101(n_classes=91).state_dict()``:
                                            ``layer1..5.*`` incl. ``num_batches_tracked`` + ``fc.{weight,bias}``
                                            (626 entries), legacy format
==========================================  ====================================================================

Values: the architecture's init under ``torch.manual_seed(seed)`` for tensors of ≥ 2 dims; 1-dim tensors are
perturbed so that a loader that skips them is caught (norm weights 1 + 0.1·N, biases / running means 0.1·N,
running variances U(0.5, 1.5)).

CLI: ``python -m bench.official_weights OUT_DIR [--which deit_small resnet50 ...] [--seed 0]``.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

import torch

log = logging.getLogger(__name__)

FILENAMES: dict[str, str] = {
    "deit_small": "deit_small_patch16_224-cd65a155.pth",
    "resnet50": "resnet50-19c8e357.pth",
    "resnet101": "resnet101-5d3b4d8f.pth",
    "resnet152": "resnet152-b121ed2d.pth",
    "deeplab_coco": "deeplabv1_resnet101-coco.pth",
}
ALL: tuple[str, ...] = tuple(FILENAMES)
COCO_CLASSES = 91  # deeplab-pytorch's convert.py: DeepLabV1_ResNet101(n_classes=91) from DeepLab's COCO caffemodel


def _randomise(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Perturb the 1-dim float tensors of an init state (see the module docstring); others are kept."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        value = value.detach().clone()
        if value.is_floating_point() and value.dim() == 1:
            noise = torch.randn(value.shape, generator=gen)
            if key.endswith("running_var"):
                value = 0.5 + torch.rand(value.shape, generator=gen)
            elif key.endswith(".weight"):
                value = 1.0 + 0.1 * noise
            else:
                value = 0.1 * noise
        out[key] = value.contiguous()
    return out


def deit_small_state(seed: int = 0) -> dict[str, object]:
    """``{"model": state}`` of timm ``deit_small_patch16_224`` (cls_token (1,1,384), pos_embed (1,197,384), ...,
    head (1000,384))."""
    import timm

    torch.manual_seed(seed)
    model = timm.create_model("deit_small_patch16_224", pretrained=False)
    return {"model": _randomise(model.state_dict(), seed)}


def torchvision_resnet_state(depth: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """torchvision ``resnet{depth}(weights=None).state_dict()`` with ``fc`` (1000 classes), without
    ``num_batches_tracked``."""
    import torchvision

    torch.manual_seed(seed)
    model = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    return _randomise(state, seed)


def deeplab_coco_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """deeplab-pytorch's ``deeplabv1_resnet101-coco.pth``: ``layer1.conv1.{conv,bn}``, ``layer2..5.block{k}.*``
    (bottleneck counts 3/4/23/3, BN buffers incl. ``num_batches_tracked``), then ``fc.weight`` (91,2048,1,1) and
    ``fc.bias`` (91,): 626 entries."""
    from net.deeplab_v2 import build_deeplab_v2

    torch.manual_seed(seed)
    base = build_deeplab_v2(n_classes=21, depth=101, scales=None)
    state = {k: v for k, v in base.state_dict().items() if not k.startswith("aspp.")}
    fc = torch.nn.Conv2d(2048, COCO_CLASSES, 1)
    torch.nn.init.normal_(fc.weight, std=0.01)
    state["fc.weight"], state["fc.bias"] = fc.weight.detach(), fc.bias.detach()
    return _randomise(state, seed)


BUILDERS: dict[str, tuple[Callable[[int], dict], bool]] = {  # name → (state builder, legacy (non-zip) format)
    "deit_small": (deit_small_state, False),
    "resnet50": (lambda seed: torchvision_resnet_state(50, seed), True),
    "resnet101": (lambda seed: torchvision_resnet_state(101, seed), True),
    "resnet152": (lambda seed: torchvision_resnet_state(152, seed), True),
    "deeplab_coco": (deeplab_coco_state, True),
}


def write_official_weights(out_dir: str | os.PathLike, which: Sequence[str] = ALL, seed: int = 0,
                           overwrite: bool = False) -> dict[str, Path]:
    """Write the files of ``which`` (keys of :data:`FILENAMES`) into ``out_dir``; returns {name: path}.

    An existing file is kept unless ``overwrite`` (files are deterministic for a seed).
    """
    unknown = [w for w in which if w not in BUILDERS]
    if unknown:
        raise ValueError(f"unknown weights {unknown}; choose from {list(BUILDERS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name in which:
        path = out / FILENAMES[name]
        if overwrite or not path.is_file():
            build, legacy = BUILDERS[name]
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            torch.save(build(seed), tmp, _use_new_zipfile_serialization=not legacy)
            tmp.replace(path)
            log.info("wrote %s (%.0f MB)", path, path.stat().st_size / 2**20)
        paths[name] = path
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir")
    p.add_argument("--which", nargs="+", default=list(ALL), choices=list(ALL))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name, path in write_official_weights(args.out_dir, args.which, args.seed, args.overwrite).items():
        log.info("%-13s %s", name, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
