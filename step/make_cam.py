"""make_cam: multi-scale + flip CAMs of the transformer branch for every id of ``--train_list`` (docs/make_cam.md#make_cam).

Per image (H, W) and scale s: the [img, flip] pair → per-image CAMs → flip fused → (C, ceil(Hs/16), ceil(Ws/16)).
Summed over scales at stride 4 (``cam``) and at full resolution (``high_res``, resized to the stride-16 up size and
cropped), restricted to the GT classes and max-normalised per class. Output ``<cam_out_dir>/<id>.npz`` with keys
``keys`` (K,) int64, ``cam`` (K, ceil(H/4), ceil(W/4)) and ``high_res`` (K, H, W) float32 (no pickle).
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from misc.method.imutils import get_strided_size, get_strided_up_size
from pipeline.models import load_cam_vit
from misc.core.io import save_npz
from misc.engine.per_image import device_workers, run_per_image
from net.deit_cam import fuse_flip_pair
from pipeline.datasets import open_dataset
from dataset.images import read_image
from misc.method.imutils import multiscale_flip_inputs
from pipeline.tasks import StepTask

log = logging.getLogger(__name__)
CAM_STRIDE = 4


def fuse_scales(outs: Sequence[torch.Tensor], size: tuple[int, int], keys: torch.Tensor,
                high_res_stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """outs: per-scale flip-fused CAMs (C, hs, ws) → (cam (K, ceil(H/4), ceil(W/4)), high_res (K, H, W)), GT classes
    only (``keys`` 0-based), each divided by its own spatial max + 1e-5."""
    h, w = size
    strided = get_strided_size(size, CAM_STRIDE)
    up = get_strided_up_size(size, high_res_stride)
    cam = sum(F.interpolate(o[None].float(), strided, mode="bilinear", align_corners=False)[0] for o in outs)
    high = sum(F.interpolate(o[:, None].float(), up, mode="bilinear", align_corners=False)[:, 0, :h, :w]
               for o in outs)
    cam, high = cam[keys], high[keys]
    cam = cam / (F.adaptive_max_pool2d(cam, (1, 1)) + 1e-5)
    high = high / (F.adaptive_max_pool2d(high, (1, 1)) + 1e-5)
    return cam, high


def pair_cams(model, pairs: Sequence[np.ndarray], size: tuple[int, int], label: np.ndarray, device: torch.device,
              amp: bool | str = False) -> dict[str, np.ndarray]:
    """The make_cam output dict of one image from its per-scale [img, flip] pairs (2, 3, Hs, Ws) (no grad)."""
    from misc.method.torchutils import autocast

    keys = torch.nonzero(torch.from_numpy(np.asarray(label)))[:, 0]
    outs = []
    for pair in pairs:
        x = torch.from_numpy(pair).to(device)
        with torch.inference_mode(), autocast(device, amp):
            cams = model.forward_cam(x)
        outs.append(fuse_flip_pair(cams).float())
    cam, high = fuse_scales(outs, size, keys.to(device), model.patch_size)
    return {"keys": keys.numpy().astype(np.int64), "cam": cam.cpu().numpy(), "high_res": high.cpu().numpy()}


def image_cams(model, img: np.ndarray, label: np.ndarray, scales: Sequence[float], device: torch.device,
               amp: bool | str = False) -> dict[str, np.ndarray]:
    """The make_cam output dict of one RGB uint8 image (no grad)."""
    return pair_cams(model, multiscale_flip_inputs(img, scales), img.shape[:2], label, device, amp)


class MakeCamTask(StepTask):
    name = "make_cam"
    output_keys = ("keys", "cam", "high_res")

    def setup(self, device: torch.device) -> None:
        self.device = device
        self.model = load_cam_vit(self.args, device)

    def load(self, img_id: str):
        """In the loader worker: the image rescaled to every scale, with its flip (the GPU process only infers)."""
        img = read_image(self.index.image_path(img_id), img_id)
        return multiscale_flip_inputs(img, self.args.cam_scales), img.shape[:2], self.index.label(img_id)

    def process(self, img_id: str, inputs) -> None:
        pairs, size, label = inputs
        out = pair_cams(self.model, pairs, tuple(size), label, self.device, self.args.amp)
        save_npz(self.output_path(img_id), **out)


def run(args) -> None:
    index = open_dataset(args)
    ids = index.check_ids(index.ids(args.train_list), args.train_list)
    task = MakeCamTask(args, index, args.cam_out_dir)
    run_per_image(task, ids, overwrite=args.overwrite, shard=args.shard, **device_workers(args))
