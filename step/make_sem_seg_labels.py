"""make_sem_seg_labels: random-walk pseudo masks for every id of ``--infer_list`` (docs/sem_seg_labels.md#pseudo-masks).

IRNet's boundary map turns the stride-4 CAMs into a transition matrix; 2**exp_times walk steps (computed as banded
propagation on the device, not by squaring a dense N×N matrix), ×4 upsampling, global max normalisation, background
``--sem_seg_bg_thres``, argmax. Output: ``<sem_seg_out_dir>/<id>.png`` (class indices 0..C: 20 on VOC, 80 on COCO; VOC palette).
"""
from __future__ import annotations

import torch

from misc.core.paths import vis_dir
from misc.method.random_walk import sem_seg_from_cams
from misc.core.io import save_png
from misc.engine.per_image import device_workers, run_per_image
from pipeline.datasets import open_dataset
from pipeline.tasks import WALK_RADIUS, IRNetTask, mask_ids


class SemSegTask(IRNetTask):
    name = "make_sem_seg_labels"
    suffix = ".png"

    def process(self, img_id: str, inputs) -> None:
        img, cam = inputs
        edge, _ = self.edge_and_displacement(img)
        label = sem_seg_from_cams(torch.from_numpy(cam["cam"]).to(self.device), cam["keys"], edge, img.shape[:2],
                                  beta=self.args.beta, exp_times=self.args.exp_times, radius=WALK_RADIUS,
                                  bg_thres=self.args.sem_seg_bg_thres)
        save_png(self.output_path(img_id), label, palette=self.index.palette())


def run(args) -> None:
    from misc.engine.distributed import barrier, is_main_process

    index = open_dataset(args)
    ids = mask_ids(args, index)
    run_per_image(SemSegTask(args, index, args.sem_seg_out_dir), ids, overwrite=args.overwrite, shard=args.shard,
                  **device_workers(args))
    barrier()
    if is_main_process():
        from dataset.vis import save_label_panels

        save_label_panels(index, ids[: args.vis_num], [args.sem_seg_out_dir], vis_dir(args, "sem_seg"))
