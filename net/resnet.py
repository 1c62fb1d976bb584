"""torchvision-layout ResNet backbone with FixedBatchNorm (docs/networks.md#cnn-branch).

Key names are exactly torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0`` ...), so the
ImageNet state dicts ``resnet{50,101,152}`` of torchvision / timm ``*.tv_in1k`` load as is once ``fc.*`` is dropped.
"""
from __future__ import annotations

import logging
from typing import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

log = logging.getLogger(__name__)

BLOCKS_PER_DEPTH: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}

TORCHVISION_URLS: dict[int, str] = {
    18: "https://download.pytorch.org/models/resnet18-5c106cde.pth",
    34: "https://download.pytorch.org/models/resnet34-333f7ec4.pth",
    50: "https://download.pytorch.org/models/resnet50-19c8e357.pth",
    101: "https://download.pytorch.org/models/resnet101-5d3b4d8f.pth",
    152: "https://download.pytorch.org/models/resnet152-b121ed2d.pth",
}


class FixedBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d that always normalises with its running statistics (train or eval); γ/β stay trainable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, momentum=0.0, eps=self.eps)


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = FixedBatchNorm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = FixedBatchNorm(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 → 3x3 (carries the stride) → 1x1 (x4 channels), torchvision V1.5 layout."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = FixedBatchNorm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = FixedBatchNorm(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = FixedBatchNorm(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet without fc. ``strides`` = (conv1, layer2, layer3, layer4) strides; maxpool always /2.

    With the default (2, 2, 2, 1) the output stride is 16: (B,3,H,W) → (B, 8·base_width·expansion, ceil(H/16)…).
    ``base_width`` (64 = torchvision) sets the stem width and the stage widths base_width·(1, 2, 4, 8); narrower
    nets (e.g. 16, the demo's stand-in pretrained ResNets) keep the same key names with smaller shapes.
    """

    def __init__(self, block: type[nn.Module], layers: Sequence[int], strides: Sequence[int] = (2, 2, 2, 1),
                 base_width: int = 64) -> None:
        super().__init__()
        if len(strides) != 4:
            raise ValueError(f"strides must have 4 entries, got {strides}")
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"layers must be 4 positive block counts, got {tuple(layers)}")
        if base_width < 1:
            raise ValueError(f"base_width must be >= 1, got {base_width}")
        w = int(base_width)
        self.base_width = w
        self.inplanes = w
        self.conv1 = nn.Conv2d(3, w, 7, strides[0], 3, bias=False)
        self.bn1 = FixedBatchNorm(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, w, layers[0], 1)
        self.layer2 = self._make_layer(block, 2 * w, layers[1], strides[1])
        self.layer3 = self._make_layer(block, 4 * w, layers[2], strides[2])
        self.layer4 = self._make_layer(block, 8 * w, layers[3], strides[3])
        self.out_channels = 8 * w * block.expansion  # type: ignore[attr-defined]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block: type[nn.Module], planes: int, blocks: int, stride: int) -> nn.Sequential:
        expansion = block.expansion  # type: ignore[attr-defined]
        downsample = None
        if stride != 1 or self.inplanes != planes * expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * expansion, 1, stride, bias=False),
                FixedBatchNorm(planes * expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def stages(self) -> list[nn.Module]:
        """[stage1, stage2, stage3, stage4]: stage1 = conv1,bn1,relu,maxpool,layer1; stage2..4 = layer2..4.

        The returned modules share parameters with this network (views, not copies).
        """
        stem = nn.Sequential(self.conv1, self.bn1, self.relu, self.maxpool, self.layer1)
        return [stem, self.layer2, self.layer3, self.layer4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) → layer4 features (B, out_channels, h, w)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def build_resnet(depth: int, strides: Sequence[int] = (2, 2, 2, 1), base_width: int = 64,
                 layers: Sequence[int] | None = None) -> ResNet:
    """ResNet-{18,34,50,101,152} with FixedBatchNorm, no fc, random init.

    ``base_width``: stem / first-stage width (64 = torchvision; stages base_width·(1, 2, 4, 8)). ``layers``: block
    counts per stage overriding those of ``depth``, whose block kind is kept (e.g. depth 50 with layers (1, 1, 1, 1):
    a 1-block-per-stage Bottleneck ResNet, the backbone of the demo's DeepLab).
    """
    if depth not in BLOCKS_PER_DEPTH:
        raise ValueError(f"unsupported ResNet depth {depth}; choose from {sorted(BLOCKS_PER_DEPTH)}")
    kind, default_layers = BLOCKS_PER_DEPTH[depth]
    return ResNet(Bottleneck if kind == "bottleneck" else BasicBlock,
                  tuple(layers) if layers is not None else default_layers, strides, base_width)


def _file_depth(state: Mapping[str, torch.Tensor]) -> int | None:
    """The depth whose block counts match the ``layer{1..4}.N`` keys of a torchvision-layout state, if any."""
    counts = tuple(len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}) for i in range(1, 5))
    kinds = "bottleneck" if any(".conv3." in k for k in state) else "basic"
    return next((d for d, (kind, layers) in BLOCKS_PER_DEPTH.items() if layers == counts and kind == kinds), None)


def resnet_state_for(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], *, depth: int, flag: str,
                     source: str) -> dict[str, torch.Tensor]:
    """The part of a torchvision-layout ResNet ``state`` to load into a backbone whose state dict is ``own`` (shapes
    only, may be ``meta``), checked strictly.

    A ResNetCAM checkpoint (``backbone.*`` + ``classifier.*``) gives its ``backbone.*``; ``fc.*`` is dropped;
    BatchNorm's ``num_batches_tracked`` may be absent (torchvision's 2017 files) and is then set to 0. Anything
    else missing, unexpected or of another shape raises :class:`misc.core.weights.PretrainedWeightsError` naming
    ``flag``, ``source``, a few keys, and the depth the file seems to have.
    """
    from misc.core.weights import check_state_fits

    if any(k.startswith("backbone.") for k in state):  # a ResNetCAM checkpoint (e.g. the CNN branch of train_cam)
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    out = {k: v for k, v in state.items() if not k.startswith("fc.")}
    found = _file_depth(out)
    seems = f" The file looks like a ResNet-{found}." if found is not None and found != depth else ""
    if "conv1.weight" in out and "conv1.weight" in own and out["conv1.weight"].shape[0] != own["conv1.weight"].shape[0]:
        seems += (f" Its base width is {out['conv1.weight'].shape[0]} (conv1 channels), the model's "
                  f"{own['conv1.weight'].shape[0]}: set the model's width flag (--cam_cnn_width, "
                  f"--irn_backbone_width or --wsol_cnn_width) to the file's.")
    url = TORCHVISION_URLS.get(depth, "")
    hint = (f"Expected a torchvision-layout ResNet-{depth} (conv1, bn1, layer1.0.conv1, ..., fc), e.g. "
            f"{url or f'timm resnet{depth}.tv_in1k'}; or pass --no_pretrained.{seems}")
    check_state_fits(own, out, flag=flag, source=source, what=f"ResNet-{depth}", hint=hint)
    for key in own:
        if key not in out:  # only num_batches_tracked reaches here
            out[key] = torch.zeros((), dtype=torch.long)
    return out


def load_resnet_imagenet(model: ResNet, depth: int, source: str | None, flag: str) -> None:
    """Load ImageNet weights (torchvision layout, ``fc.*`` dropped) strictly into ``model``.

    ``source``: local ``.pth`` file (e.g. resnet152-b121ed2d.pth), a ResNetCAM checkpoint, a timm name, or
    None → ``resnet{depth}.tv_in1k`` (the torchvision weights the original used). See :func:`resnet_state_for`.
    """
    from misc.core.weights import load_pretrained

    url = TORCHVISION_URLS.get(depth, "")
    hint = f"{url} (file {url.rsplit('/', 1)[-1]})" if url else f"timm resnet{depth}.tv_in1k"
    state = load_pretrained(source, f"resnet{depth}.tv_in1k", flag=flag, download_hint=hint)
    state = resnet_state_for(model.state_dict(), state, depth=depth, flag=flag,
                             source=source or f"resnet{depth}.tv_in1k")
    model.load_state_dict(state, strict=True)
    log.info("loaded ResNet-%d backbone weights from %s (%d tensors)", depth, source or f"resnet{depth}.tv_in1k",
             len(state))
