"""make_sem_seg_labels: random-walk pseudo masks for every id of ``--infer_list`` (docs/sem_seg_labels.md#pseudo-masks).

IRNet's boundary map turns the stride-4 CAMs into a transition matrix; 2**exp_times walk steps (computed as banded
propagation on the device, not by squaring a dense N×N matrix), ×4 upsampling, global max normalisation, background
``--sem_seg_bg_thres``, argmax. Output: ``<sem_seg_out_dir>/<id>.png`` (class indices 0..20, VOC palette).
"""
from __future__ import annotations

from pathlib import Path

import torch

from misc.imutils import voc_palette
from misc.random_walk import sem_seg_from_cams
from misc.outputs import load_output_npz
from misc.results import save_png
from misc.fingerprint import identity
from misc.runner import PerImageTask, device_workers, run_per_image
from misc.torchutils import autocast
from step._models import image_pair, load_edge_displacement
from voc12.dataloader import open_voc, read_image

WALK_RADIUS = 5


class IRNetTask(PerImageTask):
    """Shared by the semantic and instance steps: image + CAMs in, IRNet (edge, displacement) on the device."""

    def __init__(self, args, voc, out_dir: str) -> None:
        self.args, self.voc, self.out_dir = args, voc, Path(out_dir)
        self.cam_dir = Path(args.cam_out_dir)

    def config(self) -> dict:
        a = self.args
        return {"voc12_root": str(self.voc.root), "cams": identity(a.cam_out_dir), "irn": identity(a.irn_weights_name),
                "irn_depth": a.irn_backbone_depth, "irn_width": a.irn_backbone_width, "irn_crop": a.irn_crop_size,
                "beta": a.beta,
                "exp_times": a.exp_times, "amp": a.amp, **self.own_config()}

    def own_config(self) -> dict:
        return {}

    def setup(self, device: torch.device) -> None:
        self.device = device
        self.model = load_edge_displacement(self.args, device)

    def load(self, img_id: str):
        cam_path = self.cam_dir / f"{img_id}.npz"
        if not cam_path.is_file():
            raise FileNotFoundError(f"no CAM at {cam_path}; make_cam covers --train_list, which must include "
                                    "--infer_list")
        return read_image(self.voc.image_path(img_id), img_id), load_output_npz(cam_path, "make_cam",
                                                                                 ("keys", "cam"))

    def edge_and_displacement(self, img) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(self.device, self.args.amp):
            edge, dp = self.model(image_pair(img).to(self.device))
        return edge.float(), dp.float()


class SemSegTask(IRNetTask):
    name = "make_sem_seg_labels"
    suffix = ".png"

    def own_config(self) -> dict:
        return {"sem_seg_bg_thres": self.args.sem_seg_bg_thres}

    def output_path(self, img_id: str) -> Path:
        return self.out_dir / f"{img_id}.png"

    def process(self, img_id: str, inputs) -> None:
        img, cam = inputs
        edge, _ = self.edge_and_displacement(img)
        label = sem_seg_from_cams(torch.from_numpy(cam["cam"]).to(self.device), cam["keys"], edge, img.shape[:2],
                                  beta=self.args.beta, exp_times=self.args.exp_times, radius=WALK_RADIUS,
                                  bg_thres=self.args.sem_seg_bg_thres)
        save_png(self.output_path(img_id), label, palette=voc_palette())


def mask_ids(args, voc) -> list[str]:
    """``--infer_list`` (scored by eval_sem_seg), then the ids of ``--deeplab_train_list`` not in it (DeepLab's
    training masks) when train_deeplab trains on these masks."""
    ids = voc.ids(args.infer_list)
    if getattr(args, "train_deeplab_pass", False) and Path(args.deeplab_label_dir) == Path(args.sem_seg_out_dir):
        seen = set(ids)
        ids += [i for i in voc.ids(args.deeplab_train_list) if i not in seen]
    return ids


def run(args) -> None:
    from misc.distributed import barrier, is_main_process

    voc = open_voc(args.voc12_root, args.list_cache_dir)
    ids = mask_ids(args, voc)
    run_per_image(SemSegTask(args, voc, args.sem_seg_out_dir), ids, overwrite=args.overwrite, shard=args.shard,
                  **device_workers(args))
    barrier()
    if is_main_process():
        from misc.vis import save_label_panels

        save_label_panels(voc, ids[: args.vis_num], [args.sem_seg_out_dir], Path(args.result_dir) / "vis" /
                          "sem_seg")
