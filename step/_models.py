"""Model construction from the orchestrator's flags (shared by the steps; nets know nothing of flags)."""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def vit_kwargs(args) -> dict:
    return dict(embed_dim=args.vit_embed_dim, depth=args.vit_depth, num_heads=args.vit_num_heads,
                patch_size=args.vit_patch_size, tile_size=args.vit_tile_size, num_passes=args.vit_num_passes)


def build_vit_branch(args, pretrained: bool):
    """The transformer CAM branch (DeiT-S TS-CAM with progressive passes, tiled) for VOC."""
    from net.deit_cam import DeiTCAM, load_deit_imagenet

    model = DeiTCAM(num_classes=20, **vit_kwargs(args))
    if pretrained and not args.no_pretrained:
        load_deit_imagenet(model, args.deit_pretrained, flag="--deit_pretrained")
    return model


def build_cnn_branch(args, pretrained: bool):
    """The CNN CAM branch (ResNet-152 by default) used as the L1 regulariser during train_cam."""
    from net.resnet_cam import ResNetCAM

    model = ResNetCAM(depth=args.cam_cnn_depth, num_classes=20, base_width=getattr(args, "cam_cnn_width", 64))
    if pretrained and not args.no_pretrained:
        from net.resnet import load_resnet_imagenet

        load_resnet_imagenet(model.backbone, args.cam_cnn_depth, args.cam_cnn_pretrained, flag="--cam_cnn_pretrained")
    return model


def load_edge_displacement(args, device):
    """The trained IRNet (``--irn_weights_name``) as the inference wrapper: [img, flip] → (edge, displacement)."""
    from pathlib import Path

    from misc.weights import load_checkpoint
    from net.resnet50_irn import EdgeDisplacement, load_irn_weights

    path = Path(args.irn_weights_name)
    if not path.is_file():
        raise FileNotFoundError(f"no IRNet weights at {path}; run train_irn first (or pass --irn_weights_name)")
    model = EdgeDisplacement(crop_size=args.irn_crop_size, stride=4, depth=args.irn_backbone_depth,
                             base_width=getattr(args, "irn_backbone_width", 64))
    load_irn_weights(model, load_checkpoint(path))
    return model.to(device).eval()


def image_pair(img):
    """RGB uint8 (H, W, 3) → the normalised [img, flip] pair (2, 3, H, W) as a tensor."""
    import torch

    from voc12.dataloader import multiscale_flip_inputs

    return torch.from_numpy(multiscale_flip_inputs(img, (1.0,))[0])
