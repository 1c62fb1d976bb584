"""Joint loss of the two CAM branches in train_cam (docs/train_cam.md#loss).

Provenance: the committed source uses ``loss1 + loss2 + cam_lambda * loss3`` after the first epoch; the shipped
bytecode of train_cam used ``loss1 + 0 * loss2 + 5 * cam_lambda * loss3``. Both are selectable with
``(cls2_weight_after_warmup, l1_multiplier)`` = (1, 1) (default, committed rule) or (0, 5) (bytecode rule).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from misc.method.torchutils import gap2d


def train_cam_losses(cam_cnn: torch.Tensor, cam_vit: torch.Tensor, labels: torch.Tensor, epoch: int,
                     cam_lambda: float, crop_size: int, cls2_weight_after_warmup: float = 1.0,
                     l1_multiplier: float = 1.0) -> dict[str, torch.Tensor]:
    """Losses of one batch.

    cam_cnn, cam_vit: raw score maps (B,C,h,w) of the ResNet and DeiT branches; labels: multi-hot (B,C) float;
    epoch: 0-based epoch index (epoch 0 = warm-up without the L1 term).
    Returns ``loss_cls_cnn`` and ``loss_cls_vit`` (multi-label soft margin on GAP logits), ``loss_l1`` (mean |up(cnn) −
    up(vit)| with both maps bilinearly upsampled to crop_size², align_corners=True; always computed, for logging) and
    ``total``.
    """
    labels = labels.to(cam_cnn.dtype) if labels.dtype != cam_cnn.dtype else labels
    loss_cls_cnn = F.multilabel_soft_margin_loss(gap2d(cam_cnn), labels)
    loss_cls_vit = F.multilabel_soft_margin_loss(gap2d(cam_vit), labels.to(cam_vit.dtype))
    size = (crop_size, crop_size)
    up_cnn = F.interpolate(cam_cnn, size, mode="bilinear", align_corners=True)
    up_vit = F.interpolate(cam_vit, size, mode="bilinear", align_corners=True)
    loss_l1 = torch.mean(torch.abs(up_cnn - up_vit))
    if epoch == 0:
        total = loss_cls_cnn + loss_cls_vit
    else:
        total = loss_cls_cnn + cls2_weight_after_warmup * loss_cls_vit + l1_multiplier * cam_lambda * loss_l1
    return {"loss_cls_cnn": loss_cls_cnn, "loss_cls_vit": loss_cls_vit, "loss_l1": loss_l1, "total": total}
