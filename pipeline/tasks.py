"""Per-image tasks that two steps share (docs/architecture.md): they live here, not in a step. They take the
dataset's index (``voc``: a VOC or COCO index of :mod:`pipeline.datasets`) and read images through it.

- :class:`IRNetTask`: image + CAMs in, IRNet's (edge, displacement) on the device; make_sem_seg_labels and
  make_ins_seg_labels subclass it.
- :class:`DeepLabLogitsTask` and :func:`probs_from_logits`: DeepLab's stride-8 MSC-max logits of one image;
  eval_deeplab runs it, export_deeplab_test subclasses it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from misc.core.fingerprint import identity
from pipeline.models import deeplab_arch, load_deeplab, load_irn
from misc.core.outputs import load_output_npz
from misc.core.paths import cam_path, per_image
from misc.core.io import save_npz
from misc.engine.per_image import PerImageTask
from misc.method.torchutils import autocast
from dataset.images import read_image
from misc.method.imutils import multiscale_flip_inputs

WALK_RADIUS = 5  # the random walk's radius (make_sem_seg_labels, make_ins_seg_labels)


def image_pair(img):
    """RGB uint8 (H, W, 3) → the normalised [img, flip] pair (2, 3, H, W) as a tensor."""
    return torch.from_numpy(multiscale_flip_inputs(img, (1.0,))[0])


class IRNetTask(PerImageTask):
    """Shared by the semantic and instance steps: image + CAMs in, IRNet (edge, displacement) on the device."""

    def __init__(self, args, voc, out_dir: str) -> None:
        self.args, self.voc, self.out_dir = args, voc, Path(out_dir)
        self.cam_dir = Path(args.cam_out_dir)

    def output_path(self, img_id: str) -> Path:
        return per_image(self.out_dir, img_id, self.suffix)

    def config(self) -> dict:
        a = self.args
        return {**self.voc.config_entry(), "cams": identity(a.cam_out_dir), "irn": identity(a.irn_weights_name),
                "irn_depth": a.irn_backbone_depth, "irn_width": a.irn_backbone_width, "irn_crop": a.irn_crop_size,
                "beta": a.beta,
                "exp_times": a.exp_times, "amp": a.amp, **self.own_config()}

    def own_config(self) -> dict:
        return {}

    def setup(self, device: torch.device) -> None:
        self.device = device
        self.model = load_irn(self.args, device)

    def load(self, img_id: str):
        path = cam_path(self.cam_dir, img_id)
        if not path.is_file():
            raise FileNotFoundError(f"no CAM at {path}; make_cam covers --train_list, which must include "
                                    "--infer_list")
        return read_image(self.voc.image_path(img_id), img_id), load_output_npz(path, "make_cam", ("keys", "cam"))

    def edge_and_displacement(self, img) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(self.device, self.args.amp):
            edge, dp = self.model(image_pair(img).to(self.device))
        return edge.float(), dp.float()


class DeepLabLogitsTask(PerImageTask):
    """Stride-8 MSC-max logits (C + 1, h, w) float32 of one image (21 on VOC, 81 on COCO)."""

    name = "deeplab_logits"
    output_keys = ("logits", "size")

    def __init__(self, args, voc, out_dir: Path) -> None:
        self.args, self.voc, self.out_dir = args, voc, Path(out_dir)

    def output_path(self, img_id: str) -> Path:
        return per_image(self.out_dir, img_id, self.suffix)

    def config(self) -> dict:
        return {**self.voc.config_entry(), "weights": identity(self.args.deeplab_weights_name),
                "arch": deeplab_arch(self.args), "amp": self.args.amp, **self.own_config()}

    def own_config(self) -> dict:
        return {}

    def setup(self, device: torch.device) -> None:
        self.device = device
        self.model = load_deeplab(self.args, device)

    def load(self, img_id: str):
        from dataset.deeplab_data import subtract_mean
        from dataset.images import read_image_bgr

        return np.ascontiguousarray(subtract_mean(read_image_bgr(self.voc.image_path(img_id))).transpose(2, 0, 1))

    def process(self, img_id: str, img) -> None:
        x = torch.as_tensor(np.asarray(img))[None].to(self.device)
        with autocast(self.device, self.args.amp):
            logits = self.model(x)
        save_npz(self.output_path(img_id), logits=logits[0].float().cpu().numpy(),
                 size=np.asarray(img.shape[1:], np.int64))


def probs_from_logits(logits_npz: dict) -> np.ndarray:
    """Softmax of the logits bilinearly resized to the image size (C + 1, H, W)."""
    from misc.method.deeplab_utils import logits_to_probs

    return logits_to_probs(logits_npz["logits"], tuple(int(v) for v in logits_npz["size"]))
