"""Per-image tasks of the pipeline steps, and those that two steps share (docs/architecture.md). They take the
dataset's index (a VOC or COCO index of :mod:`pipeline.datasets`) and read images through it.

- :class:`StepTask`: the base of every step's per-image task: its outputs' fingerprint is the step's
  (:func:`pipeline.flags.step_config`), so a flag that shapes the step is recorded by its declaration alone;
- :class:`IRNetTask`: image + CAMs in, IRNet's (edge, displacement) on the device; make_sem_seg_labels and
  make_ins_seg_labels subclass it.
- :func:`mask_ids`: the ids make_sem_seg_labels writes pseudo masks for;
- :class:`DeepLabLogitsTask` and :func:`probs_from_logits`: DeepLab's stride-8 MSC-max logits of one image;
  eval_deeplab runs it, export_deeplab_test subclasses it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.flags import step_config
from pipeline.models import load_deeplab, load_irn
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


class StepTask(PerImageTask):
    """A per-image task of the pipeline step ``name``: ``<out_dir>/<id><suffix>`` outputs whose fingerprint is the
    step's flags and inputs (:func:`pipeline.flags.step_config`) plus :meth:`inputs`."""

    def __init__(self, args, index, out_dir: str | Path) -> None:
        self.args, self.index, self.out_dir = args, index, Path(out_dir)

    def output_path(self, img_id: str) -> Path:
        return per_image(self.out_dir, img_id, self.suffix)

    def inputs(self) -> dict:
        """Identities of inputs no flag names (e.g. an intermediate folder of the same step)."""
        return {}

    def config(self) -> dict:
        return step_config(self.args, self.name, self.index, **self.inputs())


class IRNetTask(StepTask):
    """Shared by the semantic and instance steps: image + CAMs in, IRNet (edge, displacement) on the device."""

    def __init__(self, args, index, out_dir: str) -> None:
        super().__init__(args, index, out_dir)
        self.cam_dir = Path(args.cam_out_dir)

    def setup(self, device: torch.device) -> None:
        self.device = device
        self.model = load_irn(self.args, device)

    def load(self, img_id: str):
        path = cam_path(self.cam_dir, img_id)
        if not path.is_file():
            raise FileNotFoundError(f"no CAM at {path}; make_cam covers --train_list, which must include "
                                    "--infer_list")
        return read_image(self.index.image_path(img_id), img_id), load_output_npz(path, "make_cam", ("keys", "cam"))

    def edge_and_displacement(self, img) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(self.device, self.args.amp):
            edge, dp = self.model(image_pair(img).to(self.device))
        return edge.float(), dp.float()


class DeepLabLogitsTask(StepTask):
    """Stride-8 MSC-max logits (C + 1, h, w) float32 of one image (21 on VOC, 81 on COCO), for eval_deeplab."""

    name = "eval_deeplab"
    output_keys = ("logits", "size")

    def setup(self, device: torch.device) -> None:
        self.device = device
        self.model = load_deeplab(self.args, device)

    def load(self, img_id: str):
        from dataset.deeplab_data import subtract_mean
        from dataset.images import read_image_bgr

        return np.ascontiguousarray(subtract_mean(read_image_bgr(self.index.image_path(img_id))).transpose(2, 0, 1))

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


def mask_ids(args, index) -> list[str]:
    """``--infer_list`` (scored by eval_sem_seg), then the ids of ``--deeplab_train_list`` not in it (DeepLab's
    training masks) when train_deeplab trains on these masks."""
    ids = index.ids(args.infer_list)
    if getattr(args, "train_deeplab_pass", False) and Path(args.deeplab_label_dir) == Path(args.sem_seg_out_dir):
        seen = set(ids)
        ids += [i for i in index.ids(args.deeplab_train_list) if i not in seen]
    return ids
