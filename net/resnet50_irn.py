"""IRNet: inter-pixel relation network on a frozen ResNet-50 (docs/networks.md#irnet), its training loss and inference wrapper.

State-dict key names are the original's: the backbone is ``resnet50.*`` (torchvision layout), the heads
``fc_edge1..6.*`` / ``fc_dp1..7.*`` and the mean shift ``mean_shift.running_mean``. The original checkpoint
(``sess/res50_irn.pth``) additionally holds aliases of the same tensors (``stage1.*``, ``backbone.*``,
``edge_layers.*``, ``dp_layers.*``, ``fc_dp7.4.running_mean``) and the loss buffers ``path_indices{i}`` /
``disp_target``; :func:`load_irn_weights` takes the keys this model has and ignores those extras, so both the
original file and our own saves load.
"""
from __future__ import annotations

import logging
from typing import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from misc.method.indexing import PathIndex
from net.resnet import build_resnet, load_resnet_imagenet

log = logging.getLogger(__name__)

__all__ = [
    "MeanShift",
    "IRNet",
    "AffinityDisplacementLoss",
    "EdgeDisplacement",
    "zero_pad_to_crop",
    "edge_displacement_post",
    "irn_total_loss",
    "load_irn_weights",
    "load_imagenet_backbone",
]


class MeanShift(nn.Module):
    """Identity in train mode; subtracts the buffer ``running_mean`` (2,) from a (B, 2, H, W) field in eval mode."""

    def __init__(self, num_features: int = 2) -> None:
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return x
        return x - self.running_mean.view(1, -1, 1, 1)


def _conv_gn(c_in: int, c_out: int, groups: int, upscale: int = 1) -> nn.Sequential:
    """Conv1×1 (no bias) → GroupNorm → [bilinear ×upscale] → ReLU (indices match the original Sequential)."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 1, bias=False), nn.GroupNorm(groups, c_out)]
    if upscale > 1:
        layers.append(nn.Upsample(scale_factor=upscale, mode="bilinear", align_corners=False))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class IRNet(nn.Module):
    """Edge (class boundary) and displacement branches on a frozen ResNet-50 (strides 2,2,2,1).

    ``depth`` / ``base_width`` choose another backbone (the demo: ResNet-18 of width 16); the heads keep their widths
    (32 / 64-256 channels, GroupNorm groups as the original), only their input channels follow the backbone.

    forward: (B, 3, H, W) → (edge_out (B, 1, h, w) logits, dp_out (B, 2, h, w)) with h = ceil(H/4), w = ceil(W/4)
    for H, W multiples of 16. dp channel 0 = dy, 1 = dx (stride-4 pixels).
    """

    def __init__(self, depth: int = 50, base_width: int = 64) -> None:
        super().__init__()
        # The backbone is a ResNet of any depth (18/34 serve small demos); read it as ``self.backbone``. It is
        # registered under the original's name ``resnet50`` so that the state-dict keys stay ``resnet50.*``: the
        # original checkpoints, the fixtures and every saved IRNet load unchanged. Do not rename the registration.
        self.resnet50 = build_resnet(depth, strides=(2, 2, 2, 1), base_width=base_width)
        self.backbone.requires_grad_(False)
        self.depth = depth
        self.base_width = base_width
        self.mean_shift = MeanShift(2)
        w = base_width  # 64 = torchvision; narrower backbones (the demo's) shrink the heads' input channels only
        e = self.backbone.out_channels // (8 * w)  # block expansion: 4 for ResNet-50/101/152, 1 for 18/34
        c1, c2, c3, c4, c5 = w, w * e, 2 * w * e, 4 * w * e, 8 * w * e

        self.fc_edge1 = _conv_gn(c1, 32, 4)
        self.fc_edge2 = _conv_gn(c2, 32, 4)
        self.fc_edge3 = _conv_gn(c3, 32, 4, upscale=2)
        self.fc_edge4 = _conv_gn(c4, 32, 4, upscale=4)
        self.fc_edge5 = _conv_gn(c5, 32, 4, upscale=4)
        self.fc_edge6 = nn.Conv2d(160, 1, 1, bias=True)

        self.fc_dp1 = _conv_gn(c1, 64, 8)
        self.fc_dp2 = _conv_gn(c2, 128, 16)
        self.fc_dp3 = _conv_gn(c3, 256, 16)
        self.fc_dp4 = _conv_gn(c4, 256, 16, upscale=2)
        self.fc_dp5 = _conv_gn(c5, 256, 16, upscale=2)
        self.fc_dp6 = _conv_gn(768, 256, 16, upscale=2)
        self.fc_dp7 = nn.Sequential(  # the original appends mean_shift as element 4 (same module)
            nn.Conv2d(448, 256, 1, bias=False),
            nn.GroupNorm(16, 256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 2, 1, bias=False),
        )

    @property
    def backbone(self) -> nn.Module:
        """The ResNet backbone (any depth; its state-dict keys are ``resnet50.*``, the original's name)."""
        return self.resnet50

    def edge_modules(self) -> list[nn.Module]:
        return [self.fc_edge1, self.fc_edge2, self.fc_edge3, self.fc_edge4, self.fc_edge5, self.fc_edge6]

    def dp_modules(self) -> list[nn.Module]:
        return [self.fc_dp1, self.fc_dp2, self.fc_dp3, self.fc_dp4, self.fc_dp5, self.fc_dp6, self.fc_dp7]

    def backbone_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Detached stage outputs [x1 (64, /4), x2 (256, /4), x3 (512, /8), x4 (1024, /16), x5 (2048, /16)]."""
        r = self.backbone
        x1 = r.maxpool(r.relu(r.bn1(r.conv1(x)))).detach()
        x2 = r.layer1(x1).detach()
        x3 = r.layer2(x2).detach()
        x4 = r.layer3(x3).detach()
        x5 = r.layer4(x4).detach()
        return [x1, x2, x3, x4, x5]

    def heads(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Edge logits (B, 1, h, w) and displacement (B, 2, h, w) from the five backbone features."""
        x1, x2, x3, x4, x5 = feats
        edge1 = self.fc_edge1(x1)
        edge2 = self.fc_edge2(x2)
        h, w = edge2.shape[-2:]
        edge3 = self.fc_edge3(x3)[..., :h, :w]
        edge4 = self.fc_edge4(x4)[..., :h, :w]
        edge5 = self.fc_edge5(x5)[..., :h, :w]
        edge_out = self.fc_edge6(torch.cat([edge1, edge2, edge3, edge4, edge5], dim=1))

        dp1 = self.fc_dp1(x1)
        dp2 = self.fc_dp2(x2)
        dp3 = self.fc_dp3(x3)
        h3, w3 = dp3.shape[-2:]
        dp4 = self.fc_dp4(x4)[..., :h3, :w3]
        dp5 = self.fc_dp5(x5)[..., :h3, :w3]
        h2, w2 = dp2.shape[-2:]
        dp_up3 = self.fc_dp6(torch.cat([dp3, dp4, dp5], dim=1))[..., :h2, :w2]
        dp_out = self.mean_shift(self.fc_dp7(torch.cat([dp1, dp2, dp_up3], dim=1)))
        return edge_out, dp_out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.backbone_features(x))

    def trainable_parameters(self) -> tuple[tuple[nn.Parameter, ...], tuple[nn.Parameter, ...]]:
        """(edge-branch params, displacement-branch params) — the two PolyOptimizer groups (lr, 10·lr)."""
        edge = tuple(p for m in self.edge_modules() for p in m.parameters())
        dp = tuple(p for m in self.dp_modules() for p in m.parameters())
        return edge, dp

    def train(self, mode: bool = True) -> "IRNet":
        """Heads follow ``mode``; the backbone always stays in eval mode (and frozen)."""
        super().train(mode)
        self.backbone.eval()
        return self


class AffinityDisplacementLoss(IRNet):
    """IRNet + the per-pair loss terms of train_irn on a fixed feature size (that of ``path_index``).

    Buffers ``path_indices{i}`` (the PathIndex groups, non-persistent unless ``persistent_indices``: they are
    recomputable and ~200 MB at 128², the original saved them) and ``disp_target`` (1, 2, D, 1) = search_dst^T.
    """

    path_indices_prefix = "path_indices"

    def __init__(self, path_index: PathIndex, persistent_indices: bool = False, depth: int = 50,
                 base_width: int = 64) -> None:
        super().__init__(depth, base_width)
        self.radius_floor = path_index.radius_floor
        self.search_dst = [(int(dy), int(dx)) for dy, dx in path_index.search_dst]
        self.n_path_lengths = len(path_index.path_indices)
        for i, indices in enumerate(path_index.path_indices):
            self.register_buffer(f"{self.path_indices_prefix}{i}", torch.from_numpy(indices),
                                 persistent=persistent_indices)
        target = torch.from_numpy(path_index.search_dst).transpose(1, 0)[None, :, :, None].float()
        self.register_buffer("disp_target", target)

    def path_index_buffers(self) -> list[torch.Tensor]:
        return [getattr(self, f"{self.path_indices_prefix}{i}") for i in range(self.n_path_lengths)]

    def to_affinity(self, edge: torch.Tensor) -> torch.Tensor:
        """edge probabilities (B, 1, S, S) → affinity (B, D, N) = 1 - max of the edge along each path."""
        flat = edge.reshape(edge.shape[0], -1)
        groups = []
        for ind in self.path_index_buffers():
            values = flat.index_select(1, ind.reshape(-1)).view(flat.shape[0], *ind.shape)
            groups.append(1 - values.amax(dim=2))
        return torch.cat(groups, dim=1)

    def to_pair_displacement(self, disp: torch.Tensor) -> torch.Tensor:
        """disp (B, 2, H, W) → disp[src] - disp[src + d] (B, 2, D, N) over the source window."""
        height, width = disp.shape[-2:]
        rf = self.radius_floor
        ch, cw = height - rf, width - 2 * rf
        src = disp[:, :, :ch, rf:rf + cw]
        dst = torch.stack([disp[:, :, dy:dy + ch, rf + dx:rf + dx + cw] for dy, dx in self.search_dst], dim=2)
        pair = src.unsqueeze(2) - dst
        return pair.reshape(pair.shape[0], pair.shape[1], pair.shape[2], -1)

    def to_displacement_loss(self, pair_disp: torch.Tensor) -> torch.Tensor:
        """|pair - (dy, dx)| (B, 2, D, N): for pixels of one instance D(src) - D(dst) should equal d."""
        return torch.abs(pair_disp - self.disp_target)

    def loss_terms(
        self, edge_out: torch.Tensor, dp_out: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw outputs → (pos_aff_loss (B,D,N), neg_aff_loss (B,D,N), dp_fg_loss (B,2,D,N), dp_bg_loss (B,2,D,N))."""
        aff = self.to_affinity(torch.sigmoid(edge_out))
        pos_aff_loss = -torch.log(aff + 1e-5)
        neg_aff_loss = -torch.log(1.0 + 1e-5 - aff)
        pair_disp = self.to_pair_displacement(dp_out)
        dp_fg_loss = self.to_displacement_loss(pair_disp)
        dp_bg_loss = torch.abs(pair_disp)
        return pos_aff_loss, neg_aff_loss, dp_fg_loss, dp_bg_loss

    def forward(self, x: torch.Tensor, return_loss: bool = True):  # type: ignore[override]
        """(B,3,S·4,S·4) → the four loss terms (``return_loss``) or the raw (edge_out, dp_out)."""
        edge_out, dp_out = super().forward(x)
        if not return_loss:
            return edge_out, dp_out
        return self.loss_terms(edge_out, dp_out)


def irn_total_loss(
    pos_aff_loss: torch.Tensor,
    neg_aff_loss: torch.Tensor,
    dp_fg_loss: torch.Tensor,
    dp_bg_loss: torch.Tensor,
    bg_pos_label: torch.Tensor,
    fg_pos_label: torch.Tensor,
    neg_label: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """train_irn's scalar losses (docs/ir_labels_and_irnet.md#losses). Labels (B, D, N) float; returns 0-d tensors.

    Keys: bg_pos_aff_loss, fg_pos_aff_loss, pos_aff_loss (= bg/2 + fg/2), neg_aff_loss, dp_fg_loss, dp_bg_loss,
    total_loss = (pos + neg)/2 + (dp_fg + dp_bg)/2.
    """
    bg_pos = torch.sum(bg_pos_label * pos_aff_loss) / (torch.sum(bg_pos_label) + 1e-5)
    fg_pos = torch.sum(fg_pos_label * pos_aff_loss) / (torch.sum(fg_pos_label) + 1e-5)
    pos = bg_pos / 2 + fg_pos / 2
    neg = torch.sum(neg_label * neg_aff_loss) / (torch.sum(neg_label) + 1e-5)
    dp_fg = torch.sum(dp_fg_loss * fg_pos_label.unsqueeze(1)) / (2 * torch.sum(fg_pos_label) + 1e-5)
    dp_bg = torch.sum(dp_bg_loss * bg_pos_label.unsqueeze(1)) / (2 * torch.sum(bg_pos_label) + 1e-5)
    total = (pos + neg) / 2 + (dp_fg + dp_bg) / 2
    return {
        "bg_pos_aff_loss": bg_pos,
        "fg_pos_aff_loss": fg_pos,
        "pos_aff_loss": pos,
        "neg_aff_loss": neg,
        "dp_fg_loss": dp_fg,
        "dp_bg_loss": dp_bg,
        "total_loss": total,
    }


def zero_pad_to_crop(x: torch.Tensor, crop_size: int, multiple: int = 16) -> torch.Tensor:
    """Zero-pad (B, C, H, W) at the right/bottom to crop_size² (the original's fixed 512 input).

    A side longer than ``crop_size`` is padded to the next multiple of ``multiple`` instead (the original cropped
    it and then failed downstream); images up to crop_size are unaffected.
    """
    def target(side: int) -> int:
        return crop_size if side <= crop_size else -(-side // multiple) * multiple

    height, width = target(x.shape[2]), target(x.shape[3])
    return F.pad(x, [0, width - x.shape[3], 0, height - x.shape[2]])


pad_to_crop = zero_pad_to_crop  # the earlier name (the fixture tests import it); voc12.deeplab_data has another pad


def edge_displacement_post(
    edge_out: torch.Tensor, dp_out: torch.Tensor, feat_size: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw outputs on the padded [image, flipped image] pair → (edge (1, h, w), dp (2, h, w)).

    Both maps are cropped to ``feat_size`` = (h, w) first; edge = sigmoid(e[0]/2 + flip_W(e[1])/2); dp = dp[0].
    """
    h, w = int(feat_size[0]), int(feat_size[1])
    edge_out = edge_out[..., :h, :w]
    dp_out = dp_out[..., :h, :w]
    edge = torch.sigmoid(edge_out[0] / 2 + edge_out[1].flip(-1) / 2)
    return edge, dp_out[0]


class EdgeDisplacement(IRNet):
    """Inference wrapper: x = [image, flipped image] (2, 3, H, W) → (edge (1, h, w), dp (2, h, w)), h = ceil(H/4)."""

    def __init__(self, crop_size: int = 512, stride: int = 4, depth: int = 50, base_width: int = 64) -> None:
        super().__init__(depth, base_width)
        self.crop_size = crop_size
        self.stride = stride

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        feat_size = ((x.shape[2] - 1) // self.stride + 1, (x.shape[3] - 1) // self.stride + 1)
        edge_out, dp_out = super().forward(zero_pad_to_crop(x, self.crop_size))
        return edge_displacement_post(edge_out, dp_out, feat_size)


def load_irn_weights(model: IRNet, state: Mapping[str, torch.Tensor]) -> None:
    """Load an IRNet checkpoint (original ``res50_irn.pth`` or ours) into any IRNet subclass.

    Every key of ``model.state_dict()`` must be present (else KeyError); extra keys (original aliases, loss
    buffers ``path_indices*`` / ``disp_target``) are ignored. ``disp_target`` is loaded only if the model has it
    and the shapes match (it is derived from the PathIndex anyway).
    """
    own = model.state_dict()
    derived = {"disp_target"}
    missing = [k for k in own if k not in state and k not in derived]
    if missing:
        raise KeyError(f"IRNet checkpoint lacks {len(missing)} keys, e.g. {missing[:5]}")
    picked = {k: state[k] for k in own if k in state and not (k in derived and state[k].shape != own[k].shape)}
    model.load_state_dict(picked, strict=False)
    log.info("loaded IRNet weights: %d tensors (%d extra keys ignored)", len(picked), len(state) - len(picked))


def load_imagenet_backbone(model: IRNet, source: str | None = None, flag: str = "--irn_pretrained") -> None:
    """Fill ``model.backbone`` with ImageNet weights (resnet50-19c8e357 / timm resnet50.tv_in1k at depth 50)."""
    load_resnet_imagenet(model.backbone, model.depth, source, flag)
    model.backbone.requires_grad_(False)
