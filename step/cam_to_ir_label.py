"""cam_to_ir_label: inter-pixel-relation labels from the CAMs (docs/ir_labels_and_irnet.md#ir-labels), one PNG per id of ``--train_list``.

Confident foreground (``--conf_fg_thres``) and background (``--conf_bg_thres``), each refined by a dense CRF,
combined into {0 bg, 1..C fg (C = 20 on VOC, 80 on COCO), 255 uncertain}. CPU-bound: spread over ``--num_workers`` processes.
"""
from __future__ import annotations

from pathlib import Path

from misc.method.ir_label import make_ir_label
from misc.core.outputs import load_output_npz
from misc.core.paths import cam_path
from misc.core.io import save_png
from misc.engine.per_image import run_per_image
from pipeline.datasets import open_dataset
from dataset.images import read_image
from pipeline.tasks import StepTask


class IRLabelTask(StepTask):
    name = "cam_to_ir_label"
    suffix = ".png"

    def __init__(self, args, index) -> None:
        super().__init__(args, index, args.ir_label_out_dir)
        self.cam_dir = Path(args.cam_out_dir)
        self.fg_thres, self.bg_thres = args.conf_fg_thres, args.conf_bg_thres

    def load(self, img_id: str):
        path = cam_path(self.cam_dir, img_id)
        if not path.is_file():
            raise FileNotFoundError(f"no CAM at {path}; run make_cam first")
        return read_image(self.index.image_path(img_id), img_id), load_output_npz(path, "make_cam",
                                                                                 ("keys", "high_res"))

    def process(self, img_id: str, inputs) -> None:
        img, cam = inputs
        label = make_ir_label(img, cam["high_res"], cam["keys"], self.fg_thres, self.bg_thres)
        save_png(self.output_path(img_id), label)


def run(args) -> None:
    index = open_dataset(args)
    run_per_image(IRLabelTask(args, index), index.ids(args.train_list), devices=["cpu"],
                  processes=max(1, args.num_workers), overwrite=args.overwrite, shard=args.shard)
