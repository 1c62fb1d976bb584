"""DeepLab-v2 (caffe-style ResNet + ASPP) with the multi-scale (MSC) wrapper of deeplab-pytorch (docs/deeplab.md#model).

Module names follow deeplab-pytorch exactly, so its checkpoints load as is:

* ``base.layer1.conv1.{conv,bn}``: stem conv7x7/2 + BN + ReLU, then MaxPool(3, 2, pad 1, ceil_mode) (``pool``,
  no parameters);
* ``base.layer{2..5}.block{k}.{reduce,conv3x3,increase,shortcut}.{conv,bn}``: bottlenecks, the stride sits on the
  first 1x1 (``reduce``) and on the ``shortcut``; layer3 has stride 2, layer4 dilation 2, layer5 dilation 4
  (output stride 8);
* ``base.aspp.c{0..3}.{weight,bias}``: four 3x3 convs (dilations 6/12/18/24), outputs summed.

``DeepLabV2MSC`` returns ``[logit@1, logit@0.5, logit@0.75, max]`` in train mode and the max only in eval mode.
BatchNorm is frozen by default (always in eval mode, affine parameters not trained), as deeplab-pytorch's training.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from net.resnet import TORCHVISION_URLS  # the ImageNet inits of the backbone (one table for every ResNet)

log = logging.getLogger(__name__)

BLOCKS_PER_DEPTH: dict[int, tuple[int, int, int, int]] = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
ATROUS_RATES: tuple[int, ...] = (6, 12, 18, 24)
MSC_SCALES: tuple[float, ...] = (0.5, 0.75)
BN_EPS = 1e-5
BN_MOMENTUM = 0.001  # deeplab-pytorch: 1 - 0.999 (irrelevant: BN is frozen)
BOTTLENECK_EXPANSION = 4

COCO_INIT_HINT = (
    "deeplabv1_resnet101-coco.pth: the MS-COCO init of deeplab-pytorch (converted from DeepLab's init.caffemodel, "
    "Google Drive link in kazuto1011/deeplab-pytorch README)"
)


class ConvBnReLU(nn.Sequential):
    """conv (no bias) → BN(eps 1e-5, momentum 0.001) → optional ReLU. Keys: ``conv.weight``, ``bn.*``."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int, padding: int, dilation: int,
                 relu: bool = True) -> None:
        super().__init__()
        self.add_module("conv", nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, dilation, bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_ch, eps=BN_EPS, momentum=BN_MOMENTUM))
        if relu:
            self.add_module("relu", nn.ReLU())


class Bottleneck(nn.Module):
    """Caffe-style bottleneck: 1x1 (stride) → 3x3 (dilation) → 1x1 (×4), plus the projection shortcut in block 1."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, dilation: int, downsample: bool) -> None:
        super().__init__()
        mid_ch = out_ch // BOTTLENECK_EXPANSION
        self.reduce = ConvBnReLU(in_ch, mid_ch, 1, stride, 0, 1, True)
        self.conv3x3 = ConvBnReLU(mid_ch, mid_ch, 3, 1, dilation, dilation, True)
        self.increase = ConvBnReLU(mid_ch, out_ch, 1, 1, 0, 1, False)
        self.shortcut = ConvBnReLU(in_ch, out_ch, 1, stride, 0, 1, False) if downsample else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.increase(self.conv3x3(self.reduce(x)))
        return F.relu(h + self.shortcut(x))


class ResLayer(nn.Sequential):
    """``n_blocks`` bottlenecks ``block1..blockN``; the first one carries the stride and the shortcut conv."""

    def __init__(self, n_blocks: int, in_ch: int, out_ch: int, stride: int, dilation: int) -> None:
        super().__init__()
        for i in range(n_blocks):
            self.add_module(f"block{i + 1}", Bottleneck(in_ch if i == 0 else out_ch, out_ch,
                                                        stride if i == 0 else 1, dilation, i == 0))


class Stem(nn.Sequential):
    """conv7x7/2 pad 3 + BN + ReLU (``conv1``), MaxPool(3, 2, pad 1, ceil_mode=True) (``pool``)."""

    def __init__(self, out_ch: int) -> None:
        super().__init__()
        self.add_module("conv1", ConvBnReLU(3, out_ch, 7, 2, 3, 1))
        self.add_module("pool", nn.MaxPool2d(3, 2, 1, ceil_mode=True))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling of DeepLab-v2: sum of 3x3 convs ``c0..c{n-1}`` (padding = dilation = rate)."""

    def __init__(self, in_ch: int, out_ch: int, rates: Sequence[int]) -> None:
        super().__init__()
        for i, rate in enumerate(rates):
            self.add_module(f"c{i}", nn.Conv2d(in_ch, out_ch, 3, 1, padding=rate, dilation=rate, bias=True))
        for conv in self.children():
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)
            nn.init.constant_(conv.bias, 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_ch, h, w) → (B, out_ch, h, w)."""
        out = None
        for conv in self.children():
            y = conv(x)
            out = y if out is None else out + y
        return out


class DeepLabV2(nn.Sequential):
    """DeepLab-v2: (B,3,H,W) BGR mean-subtracted → logits (B, n_classes, h, w), h = ceil-ish(H/8).

    ``base_width`` = 64 gives the real channel widths (ASPP input 2048); smaller values only serve tests/demos.
    ``frozen_bn``: BatchNorm layers stay in eval mode whatever ``train()`` says and their affine parameters get
    ``requires_grad = False`` (deeplab-pytorch's ``freeze_bn`` + optimiser without BN parameters).
    """

    def __init__(self, n_classes: int = 21, n_blocks: Sequence[int] = BLOCKS_PER_DEPTH[101],
                 atrous_rates: Sequence[int] = ATROUS_RATES, base_width: int = 64, frozen_bn: bool = True) -> None:
        super().__init__()
        if len(n_blocks) != 4 or min(n_blocks) < 1:
            raise ValueError(f"n_blocks must be 4 positive block counts, got {tuple(n_blocks)}")
        ch = [base_width * 2**p for p in range(6)]
        self.add_module("layer1", Stem(ch[0]))
        self.add_module("layer2", ResLayer(n_blocks[0], ch[0], ch[2], 1, 1))
        self.add_module("layer3", ResLayer(n_blocks[1], ch[2], ch[3], 2, 1))
        self.add_module("layer4", ResLayer(n_blocks[2], ch[3], ch[4], 1, 2))
        self.add_module("layer5", ResLayer(n_blocks[3], ch[4], ch[5], 1, 4))
        self.add_module("aspp", ASPP(ch[5], n_classes, atrous_rates))
        self.n_classes = n_classes
        self.frozen_bn = frozen_bn
        if frozen_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.requires_grad_(False)
                    m.bias.requires_grad_(False)
            self.freeze_bn()

    def freeze_bn(self) -> None:
        """Put every BatchNorm layer in eval mode (running statistics)."""
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()

    def train(self, mode: bool = True) -> "DeepLabV2":
        super().train(mode)
        if self.frozen_bn:
            self.freeze_bn()
        return self


class DeepLabV2MSC(nn.Module):
    """Multi-scale wrapper: the base on the input and on bilinear downscales ``F.interpolate(x, scale_factor=p)``.

    Train mode: ``[logits@1 (B,C,h,w), logits@p for each scale, max (B,C,h,w)]``; eval mode: the max only, where the
    max is the pixel-wise maximum of all logits bilinearly resized (align_corners=False) to the full-scale size.
    """

    def __init__(self, base: DeepLabV2, scales: Sequence[float] = MSC_SCALES) -> None:
        super().__init__()
        self.base = base
        self.scales = tuple(float(s) for s in scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        logits = self.base(x)
        size = logits.shape[-2:]
        pyramid = [self.base(F.interpolate(x, scale_factor=p, mode="bilinear", align_corners=False))
                   for p in self.scales]
        resized = [logits] + [F.interpolate(l, size=size, mode="bilinear", align_corners=False) for l in pyramid]
        logits_max = torch.stack(resized).max(dim=0).values
        if self.training:
            return [logits] + pyramid + [logits_max]
        return logits_max


def blocks_for_depth(depth: int) -> tuple[int, int, int, int]:
    """Bottleneck counts of ResNet-{50,101,152}."""
    if depth not in BLOCKS_PER_DEPTH:
        raise ValueError(f"unsupported DeepLab ResNet depth {depth}; choose from {sorted(BLOCKS_PER_DEPTH)} "
                         "or pass n_blocks=(a, b, c, d)")
    return BLOCKS_PER_DEPTH[depth]


def build_deeplab_v2(n_classes: int = 21, depth: int = 101, n_blocks: Sequence[int] | None = None,
                     scales: Sequence[float] | None = MSC_SCALES, atrous_rates: Sequence[int] = ATROUS_RATES,
                     base_width: int = 64, frozen_bn: bool = True) -> DeepLabV2MSC | DeepLabV2:
    """DeepLabV2_ResNet{depth}_MSC; ``n_blocks`` overrides the depth (e.g. ``(1, 1, 1, 1)`` for a demo);
    ``scales=None`` returns the bare :class:`DeepLabV2` (single scale)."""
    blocks = tuple(n_blocks) if n_blocks is not None else blocks_for_depth(depth)
    base = DeepLabV2(n_classes, blocks, atrous_rates, base_width, frozen_bn)
    return base if scales is None else DeepLabV2MSC(base, scales)


def _base_of(model: nn.Module) -> DeepLabV2:
    base = model.base if isinstance(model, DeepLabV2MSC) else model
    if not isinstance(base, DeepLabV2):
        raise TypeError(f"expected DeepLabV2 or DeepLabV2MSC, got {type(model).__name__}")
    return base


# ------------------------------------------------------------------------------------------------ optimiser groups
def named_param_groups(model: nn.Module) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """deeplab-pytorch ``get_params``: '1x' = weights of the convs under ``layer*``, '10x' = ASPP conv weights,
    '20x' = ASPP conv biases. BN parameters are in no group. Names as in ``model.named_parameters()``."""
    groups: dict[str, list[tuple[str, nn.Parameter]]] = {"1x": [], "10x": [], "20x": []}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv2d):
            continue
        prefix = f"{name}." if name else ""
        if "aspp" in name:
            groups["10x"].append((prefix + "weight", module.weight))
            if module.bias is not None:
                groups["20x"].append((prefix + "bias", module.bias))
        elif "layer" in name:
            groups["1x"].extend((prefix + n, p) for n, p in module.named_parameters())
    return groups


def param_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """SGD parameter groups (docs/deeplab.md#solver): backbone convs (lr, wd), ASPP weights (10 lr, wd), ASPP biases (20 lr, wd 0)."""
    named = named_param_groups(model)
    return [
        {"params": [p for _, p in named["1x"]], "lr": lr, "weight_decay": weight_decay},
        {"params": [p for _, p in named["10x"]], "lr": 10 * lr, "weight_decay": weight_decay},
        {"params": [p for _, p in named["20x"]], "lr": 20 * lr, "weight_decay": 0.0},
    ]


# ------------------------------------------------------------------------------------------------ initialisation
_TV_BLOCK = re.compile(r"^layer(\d)\.(\d+)\.(conv1|bn1|conv2|bn2|conv3|bn3|downsample\.0|downsample\.1)\.(.+)$")
_TV_PART = {"conv1": "reduce.conv", "bn1": "reduce.bn", "conv2": "conv3x3.conv", "bn2": "conv3x3.bn",
            "conv3": "increase.conv", "bn3": "increase.bn", "downsample.0": "shortcut.conv",
            "downsample.1": "shortcut.bn"}


def torchvision_to_deeplab(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision/timm ResNet state dict to deeplab-pytorch's base names (``fc.*`` dropped).

    ``conv1/bn1`` → ``layer1.conv1.{conv,bn}``; ``layer{i}.{j}.conv1/2/3, bn1/2/3, downsample.0/1`` →
    ``layer{i+1}.block{j+1}.reduce/conv3x3/increase/shortcut .conv/.bn``. Note: torchvision (V1.5) strides the 3x3
    conv of a downsampling block while the caffe-style DeepLab strides the first 1x1, so the ImageNet weights run
    in a slightly different network than they were trained in (only layer3's first block is affected here).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("fc."):
            continue
        if key.startswith("conv1."):
            out["layer1.conv1.conv." + key[len("conv1."):]] = value
        elif key.startswith("bn1."):
            out["layer1.conv1.bn." + key[len("bn1."):]] = value
        else:
            m = _TV_BLOCK.match(key)
            if m is None:
                raise KeyError(f"unexpected key in a torchvision ResNet state dict: {key}")
            layer, block, part, rest = m.groups()
            out[f"layer{int(layer) + 1}.block{int(block) + 1}.{_TV_PART[part]}.{rest}"] = value
    return out


def backbone_init_state(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], *, flag: str,
                        source: str, depth: int) -> tuple[str, dict[str, torch.Tensor]]:
    """(layout 'coco' / 'imagenet', the base-named tensors to load) for a backbone init ``state`` and a DeepLabV2
    whose state dict is ``own`` (base names, shapes only: may be ``meta``), checked strictly.

    deeplab-pytorch layout (``layer1.conv1.conv.weight``, ...; ``base.`` prefix of a trained checkpoint removed) is
    'coco' (e.g. ``deeplabv1_resnet101-coco.pth``, whose 91-class ``fc.*`` is ignored); a torchvision/timm ResNet is
    'imagenet' (renamed by :func:`torchvision_to_deeplab`). Every non-ASPP key must be there with its shape
    (``num_batches_tracked`` may be absent: torchvision's 2017 files; set to 0), else
    :class:`misc.core.weights.PretrainedWeightsError` naming ``flag``, ``source`` and the keys.
    """
    from misc.core.weights import PretrainedWeightsError, check_state_fits, optional_buffer

    if any(k.startswith("base.") for k in state):
        state = {k[len("base."):]: v for k, v in state.items() if k.startswith("base.")}
    if "layer1.conv1.conv.weight" in state:
        layout = "coco"
    elif "conv1.weight" in state:
        try:
            layout, state = "imagenet", torchvision_to_deeplab(dict(state))
        except KeyError as exc:
            raise PretrainedWeightsError(f"{flag} {source}: {exc.args[0]}") from exc
    else:
        raise PretrainedWeightsError(
            f"{flag} {source}: neither a deeplab-pytorch (layer1.conv1.conv.weight, ...) nor a torchvision ResNet "
            f"(conv1.weight, ...) state dict; first keys: {list(state)[:3]}. {_init_hint(depth)}")
    out = {k: v for k, v in state.items() if k in own and not k.startswith("aspp.")}
    check_state_fits(own, state, flag=flag, source=source, what=f"{layout} DeepLab-v2 backbone",
                     may_miss=lambda k: k.startswith("aspp.") or optional_buffer(k),
                     may_extra=lambda k: k.startswith(("fc.", "aspp.")),
                     hint=f"Check --deeplab_depth / --deeplab_blocks / --deeplab_base_width. {_init_hint(depth)}")
    for key in own:
        if key not in out and not key.startswith("aspp."):  # only num_batches_tracked reaches here
            out[key] = torch.zeros((), dtype=torch.long)
    return layout, out


def _init_hint(depth: int) -> str:
    url = TORCHVISION_URLS.get(depth, "")
    return (f"For the paper's init get {COCO_INIT_HINT}; for an ImageNet init get {url}" if url
            else f"For the paper's init get {COCO_INIT_HINT}")


def _depth_of(base: DeepLabV2) -> int:
    blocks = tuple(len(getattr(base, f"layer{i}")) for i in range(2, 6))
    return next((d for d, b in BLOCKS_PER_DEPTH.items() if b == blocks), 101)


def load_backbone_init(model: nn.Module, source: str | None, *, depth: int | None = None,
                       flag: str = "--deeplab_init") -> str:
    """Initialise the backbone (not ASPP) of a DeepLabV2[MSC] and return the layout found ('coco' / 'imagenet').

    ``source``: a local file in deeplab-pytorch's layout (``deeplabv1_resnet101-coco.pth``, the paper's COCO init,
    loaded like the original's ``base.load_state_dict(strict=False)`` but checked), a local torchvision/timm
    ResNet file (e.g. ``resnet101-5d3b4d8f.pth``), or a timm name / None (``resnet{depth}.tv_in1k``, depth inferred
    from the model's block counts when not given). The ImageNet
    init is mapped by :func:`torchvision_to_deeplab`; expect a few mIoU points below the paper's COCO init
    (not measured here). Checks: :func:`backbone_init_state`.
    """
    from misc.core.weights import load_pretrained

    base = _base_of(model)
    if depth is None:
        depth = _depth_of(base)
    name = source or f"resnet{depth}.tv_in1k"
    state = load_pretrained(source, f"resnet{depth}.tv_in1k", flag=flag, download_hint=_init_hint(depth))
    layout, state = backbone_init_state(base.state_dict(), state, flag=flag, source=name, depth=depth)
    base.load_state_dict(state, strict=False)  # only aspp.* is left out (checked)
    log.info("loaded the %s init %s into the DeepLab backbone (%d tensors, ASPP left at its init)", layout,
             os.path.basename(name), len(state))
    return layout


def load_deeplab_checkpoint(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a trained checkpoint (deeplab-pytorch's ``checkpoint_final.pth`` layout, ``base.*`` keys) strictly."""
    from misc.core.weights import load_checkpoint

    state = load_checkpoint(path)
    if isinstance(model, DeepLabV2) and all(k.startswith("base.") for k in state):
        state = {k[len("base."):]: v for k, v in state.items()}
    model.load_state_dict(state, strict=True)
