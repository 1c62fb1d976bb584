"""The one place that turns the orchestrator's flags into models (docs/architecture.md).

``net/`` holds the modules, one factory per variant and the loaders of foreign state-dict layouts; it knows nothing
of flags. Every step, the preflight, the tests and the benchmarks build their models here, so a flag that shapes a
model is read in one place only.

Builders (``pretrained``: load the ImageNet / init weights named by the flags unless ``--no_pretrained``):

- :func:`build_cam_vit` / :func:`build_cam_cnn`: the two CAM branches of train_cam (DeiT TS-CAM, ResNet CAM), with
  the dataset's number of classes (``args.num_classes``: VOC 20, COCO 80);
- :func:`build_irn`: IRNet with its training loss (train_irn); :func:`load_irn` the trained inference wrapper;
- :func:`build_deeplab`: DeepLab-v2 MSC; :func:`load_deeplab` the trained one;
- :func:`build_wsol_vit` / :func:`build_wsol_cnn`: the CUB branches of train_wsol / eval_wsol.

:func:`vit_kwargs` and :func:`deeplab_arch` are the architecture entries of the steps' fingerprints.
"""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)



def cam_classes(args) -> int:
    """Foreground classes of the CAM branches: the dataset's (VOC 20, COCO 80; ``args.num_classes``, set by
    ``run_sample.parse_args`` from :func:`pipeline.datasets.num_classes_of`)."""
    return int(args.num_classes)


def seg_classes(args) -> int:
    """DeepLab's outputs: background + the dataset's classes (VOC 21, COCO 81)."""
    return int(args.num_classes) + 1


def _pretrained(args, pretrained: bool) -> bool:
    return pretrained and not args.no_pretrained


# ------------------------------------------------------------------------------------------------ VOC CAM branches
def vit_kwargs(args) -> dict:
    """The transformer CAM branch's architecture flags (also an entry of train_cam's and make_cam's fingerprints)."""
    return dict(embed_dim=args.vit_embed_dim, depth=args.vit_depth, num_heads=args.vit_num_heads,
                patch_size=args.vit_patch_size, tile_size=args.vit_tile_size, num_passes=args.vit_num_passes)


def build_cam_vit(args, pretrained: bool):
    """The transformer CAM branch (DeiT-S TS-CAM with progressive passes, tiled) for VOC or COCO."""
    from net.deit_cam import deit_cam_small, load_deit_imagenet

    model = deit_cam_small(num_classes=cam_classes(args), **vit_kwargs(args))
    if _pretrained(args, pretrained):
        load_deit_imagenet(model, args.deit_pretrained, flag="--deit_pretrained")
    return model


def build_cam_cnn(args, pretrained: bool):
    """The CNN CAM branch (ResNet-152 by default) used as the L1 regulariser during train_cam."""
    from net.resnet_cam import resnet_cam_voc

    model = resnet_cam_voc(depth=args.cam_cnn_depth, num_classes=cam_classes(args),
                           base_width=getattr(args, "cam_cnn_width", 64))
    if _pretrained(args, pretrained):
        from net.resnet import load_resnet_imagenet

        load_resnet_imagenet(model.backbone, args.cam_cnn_depth, args.cam_cnn_pretrained, flag="--cam_cnn_pretrained")
    return model


def load_cam_vit(args, device):
    """The trained transformer branch of ``--cam2_weights_name`` (also the original's ``.pth.pth``), in eval mode."""
    from misc.core.paths import cam_vit_weights
    from misc.core.weights import load_checkpoint

    path = cam_vit_weights(args)
    if not path.is_file():
        raise FileNotFoundError(f"make_cam: no transformer weights at {path}; run train_cam first "
                                "(or pass --cam2_weights_name)")
    model = build_cam_vit(args, pretrained=False)
    model.load_state_dict(load_checkpoint(path), strict=True)
    return model.to(device).eval()


# ------------------------------------------------------------------------------------------------ IRNet
def build_irn_net(args):
    """The bare IRNet (backbone + edge and displacement heads) of the IRNet flags, random init."""
    from net.resnet50_irn import IRNet

    return IRNet(depth=args.irn_backbone_depth, base_width=getattr(args, "irn_backbone_width", 64))


def build_irn(args, path_index):
    """IRNet with the train_irn loss terms on the feature grid of ``path_index`` (ImageNet backbone unless
    ``--no_pretrained``)."""
    from net.resnet50_irn import AffinityDisplacementLoss, load_imagenet_backbone

    model = AffinityDisplacementLoss(path_index, depth=args.irn_backbone_depth,
                                     base_width=getattr(args, "irn_backbone_width", 64))
    if not args.no_pretrained:
        load_imagenet_backbone(model, args.irn_pretrained, flag="--irn_pretrained")
    return model


def build_irn_inference(args):
    """IRNet's inference wrapper ([img, flip] → (edge, displacement)), random init."""
    from net.resnet50_irn import EdgeDisplacement

    return EdgeDisplacement(crop_size=args.irn_crop_size, stride=4, depth=args.irn_backbone_depth,
                            base_width=getattr(args, "irn_backbone_width", 64))


def load_irn(args, device):
    """The trained IRNet (``--irn_weights_name``) as the inference wrapper: [img, flip] → (edge, displacement)."""
    from misc.core.weights import load_checkpoint
    from net.resnet50_irn import load_irn_weights

    path = Path(args.irn_weights_name)
    if not path.is_file():
        raise FileNotFoundError(f"no IRNet weights at {path}; run train_irn first (or pass --irn_weights_name)")
    model = build_irn_inference(args)
    load_irn_weights(model, load_checkpoint(path))
    return model.to(device).eval()


# ------------------------------------------------------------------------------------------------ DeepLab
def deeplab_arch(args) -> dict:
    """DeepLab's architecture flags (an entry of train_deeplab's and eval_deeplab's fingerprints)."""
    return {"depth": args.deeplab_depth, "blocks": args.deeplab_blocks, "base_width": args.deeplab_base_width}


def build_deeplab(args, msc: bool = True):
    """DeepLab-v2 (MSC wrapper unless ``msc=False``: the bare single-scale net), random init; the backbone init of
    ``--deeplab_init`` is loaded by train_deeplab (:func:`net.deeplab_v2.load_backbone_init`)."""
    from net.deeplab_v2 import MSC_SCALES, build_deeplab_v2

    return build_deeplab_v2(n_classes=seg_classes(args), depth=args.deeplab_depth, n_blocks=args.deeplab_blocks,
                            base_width=args.deeplab_base_width, scales=MSC_SCALES if msc else None)


def load_deeplab(args, device):
    """The trained DeepLab of ``--deeplab_weights_name`` (ours or deeplab-pytorch's layout), in eval mode."""
    from net.deeplab_v2 import load_deeplab_checkpoint

    path = Path(args.deeplab_weights_name)
    if not path.is_file():
        raise FileNotFoundError(f"no DeepLab weights at {path}; run train_deeplab first (or pass "
                                "--deeplab_weights_name, e.g. a deeplab-pytorch checkpoint)")
    model = build_deeplab(args)
    load_deeplab_checkpoint(model, path)
    return model.to(device).eval()


# ------------------------------------------------------------------------------------------------ CUB WSOL
def build_wsol_vit(args, pretrained: bool):
    """The CUB TS-CAM model (single pass, no tiling, drop path ``--wsol_drop_path``)."""
    from net.deit_cam import deit_wsol_small, load_deit_imagenet

    model = deit_wsol_small(num_classes=args.wsol_num_classes, embed_dim=args.vit_embed_dim, depth=args.vit_depth,
                            num_heads=args.vit_num_heads, patch_size=args.wsol_patch_size,
                            tile_size=args.wsol_image_size, drop_path_rate=args.wsol_drop_path)
    if _pretrained(args, pretrained):
        load_deit_imagenet(model, args.deit_pretrained, flag="--deit_pretrained")
    return model


def build_wsol_cnn(args, pretrained: bool):
    """The CUB CNN branch (ResNet-50 by default) coupled to the transformer by the L1 term."""
    from net.resnet_cam import resnet_cam_cub

    model = resnet_cam_cub(depth=args.wsol_cnn_depth, num_classes=args.wsol_num_classes,
                           base_width=getattr(args, "wsol_cnn_width", 64))
    if _pretrained(args, pretrained):
        from net.resnet import load_resnet_imagenet

        load_resnet_imagenet(model.backbone, args.wsol_cnn_depth, args.cam_cnn_pretrained, flag="--cam_cnn_pretrained")
    return model


def load_wsol_vit(args, device):
    """The selected CUB transformer of ``--wsol_weights_name``, in eval mode."""
    from misc.core.weights import load_checkpoint

    path = Path(args.wsol_weights_name)
    if not path.is_file():
        raise FileNotFoundError(f"eval_wsol: no weights at {path}; run train_wsol first (or pass --wsol_weights_name)")
    model = build_wsol_vit(args, pretrained=False)
    model.load_state_dict(load_checkpoint(path), strict=True)
    return model.to(device).eval()
