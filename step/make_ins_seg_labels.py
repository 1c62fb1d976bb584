"""make_ins_seg_labels: instance pseudo labels from IRNet's displacement field (docs/instances.md), for ``--infer_list``.

Output: ``<ins_seg_out_dir>/<id>.npz`` with ``score`` (R,), ``mask`` (R, H, W) bool and ``class`` (R,) 0-based.
"""
from __future__ import annotations

import numpy as np
import torch

from misc.method.instances import ins_seg_from_cams
from misc.core.io import save_npz
from misc.engine.per_image import device_workers, run_per_image
from pipeline.datasets import open_dataset
from pipeline.tasks import WALK_RADIUS, IRNetTask


class InsSegTask(IRNetTask):
    name = "make_ins_seg_labels"

    output_keys = ("score", "mask", "class")

    def process(self, img_id: str, inputs) -> None:
        img, cam = inputs
        edge, dp = self.edge_and_displacement(img)
        det = ins_seg_from_cams(torch.from_numpy(cam["cam"]).to(self.device), cam["keys"], edge, dp, img.shape[:2],
                                beta=self.args.beta, exp_times=self.args.exp_times, radius=WALK_RADIUS,
                                bg_thres=self.args.ins_seg_bg_thres)
        save_npz(self.output_path(img_id), score=np.asarray(det["score"], np.float64),
                 mask=np.asarray(det["mask"], bool), **{"class": np.asarray(det["class"], np.int64)})


def run(args) -> None:
    index = open_dataset(args)
    run_per_image(InsSegTask(args, index, args.ins_seg_out_dir), index.ids(args.infer_list), overwrite=args.overwrite,
                  shard=args.shard, **device_workers(args))
