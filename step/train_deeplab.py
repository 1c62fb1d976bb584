"""train_deeplab: DeepLab-v2 (ResNet-101, MSC) trained on the pseudo masks (docs/deeplab.md#solver).

Recipe of deeplab-pytorch's VOC config: BGR mean-subtracted images, discrete scales, ``--deeplab_crop_size`` crops,
batch 5 × 2 accumulated, 20k iterations, lr 2.5e-4 (backbone) / 10× (ASPP weights) / 20× (ASPP biases, no decay),
momentum 0.9, poly decay updated every 10 iterations, frozen batch norm, CE summed over the four MSC outputs.
Trains on ``--deeplab_label_dir`` (default: the pseudo masks of make_sem_seg_labels) for ``--deeplab_train_list``
(default train_aug, the paper's 10,582 images); refuses a ground-truth folder unless ``--allow_gt_training``.
An iteration is one update of batch × iter_size images, whatever the number of processes. Checkpoints every
``--deeplab_checkpoint_every`` iterations; skip / resume: the shared driver (:mod:`misc.engine.training`).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from misc.core.checkpoint import save_state_dict
from misc.engine.distributed import DistContext
from pipeline.models import build_deeplab
from misc.core.paths import deeplab_checkpoint, label_png
from misc.engine.training import TrainJob, autocast, run_training
from pipeline.datasets import open_dataset
from pipeline.flags import step_config
from voc12.dataloader import GT_FOLDERS

log = logging.getLogger(__name__)


def check_not_ground_truth(label_dir: str | Path, gt_folders: list[Path], allow: bool) -> None:
    """Refuse to train a *weakly supervised* model on a ground-truth folder (an easy, number-inflating mistake):
    one named like VOC's, or one of the dataset's ``gt_folders`` (VOC's, or COCO's mask folder)."""
    label_dir = Path(label_dir).resolve()
    is_gt = label_dir.name in GT_FOLDERS or any(label_dir == Path(g).resolve() for g in gt_folders)
    if is_gt and not allow:
        raise ValueError(f"--deeplab_label_dir {label_dir} is a ground-truth folder: training on it is not weakly "
                         "supervised. Train on the pseudo masks (default: --sem_seg_out_dir), or pass "
                         "--allow_gt_training true if this is really what you want (fully supervised upper bound).")
    if is_gt:
        log.warning("train_deeplab: training on GROUND TRUTH %s (--allow_gt_training): not a weakly supervised result",
                    label_dir)


class TrainDeepLabJob(TrainJob):
    name = "train_deeplab"
    batch_flag = "--deeplab_batch_size"

    def config(self) -> dict:
        return step_config(self.args, self.name, open_dataset(self.args))

    def outputs(self) -> list[Path]:
        return [Path(self.args.deeplab_weights_name)]

    def setup(self, ctx: DistContext) -> None:
        from misc.method.deeplab_utils import PolynomialLR
        from net.deeplab_v2 import load_backbone_init, param_groups
        from dataset.deeplab_data import deeplab_train_dataset

        a, device = self.args, ctx.device
        self.device, self.ctx = device, ctx
        index = open_dataset(a)
        check_not_ground_truth(a.deeplab_label_dir, index.gt_folders(), a.allow_gt_training)
        ids = index.ids(a.deeplab_train_list)
        label_dir = Path(a.deeplab_label_dir)
        missing = [i for i in ids if not label_png(label_dir, i).is_file()]
        if missing:
            raise FileNotFoundError(f"train_deeplab: {len(missing)} of {len(ids)} masks of --deeplab_train_list "
                                    f"{a.deeplab_train_list} missing in {label_dir} (e.g. {missing[0]!r}); run "
                                    "make_sem_seg_labels (it writes masks for --infer_list and --deeplab_train_list)")
        self.dataset = deeplab_train_dataset(ids, index.root, label_dir, crop_size=a.deeplab_crop_size,
                                             image_path=index.image_path, num_labels=index.num_labels)
        self.dataset.scales = tuple(a.deeplab_scales)
        self.global_batch = a.deeplab_batch_size * a.deeplab_iter_size
        self.micro_batch = a.deeplab_batch_size
        self.total_updates = a.deeplab_iters
        self.checkpoint_every = a.deeplab_checkpoint_every
        model = build_deeplab(a)
        if not a.no_pretrained:
            if index.name == "coco" and a.deeplab_init and "coco" in Path(a.deeplab_init).name.lower():
                log.warning("train_deeplab: --deeplab_init %s looks like a COCO-pretrained init: it was trained "
                            "with COCO's masks, so a COCO result from it is not weakly supervised (use an ImageNet "
                            "init, the default)", a.deeplab_init)
            kind = load_backbone_init(model, a.deeplab_init, depth=a.deeplab_depth, flag="--deeplab_init")
            log.info("train_deeplab: backbone init %s", kind)
        self.model = model.to(device).train()
        opt = torch.optim.SGD(param_groups(self.model, a.deeplab_lr, a.deeplab_weight_decay), lr=a.deeplab_lr,
                              momentum=a.deeplab_momentum)
        self.modules, self.optimizers = {"model": self.model}, {"model": opt}
        self.schedulers = {"poly": PolynomialLR(opt, a.deeplab_poly_step, a.deeplab_iters, a.deeplab_poly_power)}
        self.ddp_modules = {"model": self.model}

    def loss(self, batch: dict, epoch: int) -> dict[str, torch.Tensor]:
        from misc.method.deeplab_utils import msc_loss

        img = batch["img"].to(self.device, non_blocking=True)
        with autocast(self.device, self.args.amp):
            logits = self.nets["model"](img)
        return {"total": msc_loss([l.float() for l in logits], batch["label"])[0]}

    def after_update(self, update: int) -> None:
        self.schedulers["poly"].step(update)  # deeplab-pytorch: iterations count from 1, lr set after the step
        if self.ctx.is_main and update % self.args.deeplab_checkpoint_every == 0:
            save_state_dict(self.model.state_dict(), deeplab_checkpoint(self.sess_dir, update))

    def final_state_dicts(self) -> dict[Path, dict]:
        return {Path(self.args.deeplab_weights_name): self.model.state_dict()}

    def metrics(self, history: list[dict], updates: list[dict]) -> dict:
        every_10 = [{"iteration": r["update"] - 1, "loss": r["total"]} for r in updates if (r["update"] - 1) % 10 == 0]
        out = {"loss_every_10": every_10}
        if updates:
            out.update(first_loss=updates[0]["total"], last_loss=updates[-1]["total"])
        return out


def run(args) -> None:
    run_training(TrainDeepLabJob, args)
