"""CNN CAM branch (docs/networks.md#cnn-branch; CUB: docs/wsol_cub.md#models): ResNet (FixedBatchNorm, output stride 16) + 1×1 classifier."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from misc.method.torchutils import gap2d
from net.resnet import ResNet, build_resnet


class ResNetCAM(nn.Module):
    """ResNet-{50,101,152} CAM network (any depth of :func:`net.resnet.build_resnet`; ``base_width`` < 64 gives the
    narrow backbones of the demo, the classifier's in-channels follow).

    forward: stage1 → stage2 → detach → stage3 → stage4 → Conv1×1(→C, no bias) = raw score map (B,C,H/16,W/16).
    Because of the detach, conv1..layer2 never receive gradients; conv1/bn1 are also frozen (requires_grad False).
    ``channels_last`` stores the conv weights in NHWC layout (same values and state-dict keys; ~15% faster convs on
    CPU, and the layout tensor cores want under autocast); outputs are numerically equivalent.
    """

    def __init__(self, depth: int = 152, num_classes: int = 20, strides: Sequence[int] = (2, 2, 2, 1),
                 channels_last: bool = True, base_width: int = 64) -> None:
        super().__init__()
        self.backbone: ResNet = build_resnet(depth, strides, base_width=base_width)
        self.classifier = nn.Conv2d(self.backbone.out_channels, num_classes, 1, bias=False)
        self._freeze_stem()
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def _freeze_stem(self) -> None:
        for module in (self.backbone.conv1, self.backbone.bn1):
            for p in module.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> "ResNetCAM":
        """Standard ``nn.Module.train`` (the original never called it) and the stem stays frozen."""
        super().train(mode)
        self._freeze_stem()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) → layer4 features (B,2048,h,w); layers up to layer2 are detached."""
        b = self.backbone
        x = b.layer1(b.maxpool(b.relu(b.bn1(b.conv1(x)))))
        x = b.layer2(x).detach()
        return b.layer4(b.layer3(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) → raw (pre-ReLU) class score map (B,C,h,w), stride 16 with the default strides."""
        return self.classifier(self.features(x))

    def forward_wsol(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CUB interface (docs/wsol_cub.md#models): (logits = classifier(GAP(features)) (B,C), score map classifier(features) (B,C,h,w))."""
        feats = self.features(x)
        logits = self.classifier(gap2d(feats, keepdims=True)).flatten(1)
        return logits, self.classifier(feats)

    def trainable_parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone params that receive gradients = layer3 + layer4, classifier params).

        The original listed every backbone parameter, but conv1..layer2 never get a gradient (detach / frozen stem),
        and SGD skips parameters without gradients, so the optimisation is the same.
        """
        backbone = [p for m in (self.backbone.layer3, self.backbone.layer4) for p in m.parameters() if p.requires_grad]
        return backbone, list(self.classifier.parameters())


def resnet_cam_voc(depth: int = 152, num_classes: int = 20, base_width: int = 64) -> ResNetCAM:
    """VOC CAM branch: ResNet-152, 20 classes, strides (2,2,2,1)."""
    return ResNetCAM(depth=depth, num_classes=num_classes, base_width=base_width)


def resnet_cam_cub(depth: int = 50, num_classes: int = 200, base_width: int = 64) -> ResNetCAM:
    """CUB CNN branch: ResNet-50, 200 classes; use ``forward_wsol``."""
    return ResNetCAM(depth=depth, num_classes=num_classes, base_width=base_width)


def freeze_lower_stages(model: ResNetCAM) -> None:
    """conv1..layer2 of a CAM branch never get a gradient (the original detaches them); marking them frozen spares
    DDP the search for unused parameters."""
    b = model.backbone
    for m in (b.conv1, b.bn1, b.layer1, b.layer2):
        for p in m.parameters():
            p.requires_grad_(False)
