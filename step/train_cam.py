"""train_cam: the CNN branch (ResNet-152) and the transformer branch (DeiT-S TS-CAM) trained jointly (docs/train_cam.md).

Data: ``--train_list`` images, random resize of the long side to ``--cam_resize_long``, flip, random
``--cam_crop_size`` crop. Loss: multi-label soft margin on the GAP of each branch's raw score map, plus (from the
second epoch) λ·mean|up(cnn) − up(vit)| with both maps upsampled to the crop (align_corners=True); the L1 term
reaches both branches. ``--cam_loss_rule shipped`` selects the released bytecode's rule (loss1 + 0·loss2 + 5λ·L1).
Optimiser: :class:`misc.method.torchutils.PolySGD`, i.e. what the original PolyOptimizer really did (plain SGD, momentum in
effect 1e-4, poly power 0.9), lr for the backbones and 10× for the heads.

Both branches are validated each epoch. Skipping, resuming, batches over several processes, precision and the
loss records are the shared driver's (:mod:`misc.engine.training`).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from misc.method.cam_loss import train_cam_losses
from misc.engine.distributed import DistContext, all_reduce_mean, make_loader
from pipeline.models import build_cam_cnn, build_cam_vit
from misc.method.torchutils import PolyAdamW, PolySGD, gap2d
from misc.engine.training import TrainJob, autocast, run_training
from net.resnet_cam import freeze_lower_stages
from pipeline.datasets import open_dataset
from dataset.torch_datasets import ClassificationDataset
from pipeline.flags import step_config

log = logging.getLogger(__name__)

LOSS_RULES = {"committed": (1.0, 1.0), "shipped": (0.0, 5.0)}


@torch.no_grad()
def validate(models: dict, loader: DataLoader, device: torch.device, amp) -> dict[str, float]:
    """Mean multi-label soft margin loss of each branch on the validation loader (this rank's share, all-reduced)."""
    sums = {k: torch.zeros((), device=device) for k in models}
    count = torch.zeros((), device=device)
    for m in models.values():
        m.eval()
    for pack in loader:
        img = pack["img"].to(device, non_blocking=True)
        label = pack["label"].to(device, non_blocking=True)
        with autocast(device, amp):
            for k, m in models.items():
                sums[k] += F.multilabel_soft_margin_loss(gap2d(m(img).float()), label) * img.shape[0]
        count += img.shape[0]
    for m in models.values():
        m.train()
    count = all_reduce_mean(count)
    return {k: float(all_reduce_mean(v) / count.clamp(min=1)) for k, v in sums.items()}


class TrainCamJob(TrainJob):
    name = "train_cam"
    batch_flag = "--cam_batch_size"

    def config(self) -> dict:
        return step_config(self.args, self.name, open_dataset(self.args))

    def outputs(self) -> list[Path]:
        return [Path(self.args.cam1_weights_name), Path(self.args.cam2_weights_name)]

    def setup(self, ctx: DistContext) -> None:
        a, device = self.args, ctx.device
        index = open_dataset(a)
        train_ids = index.check_ids(index.ids(a.train_list), a.train_list)
        val_ids = index.check_ids(index.ids(a.val_list), a.val_list)
        self.crop = a.cam_crop_size
        self.dataset = ClassificationDataset(train_ids, index.root, index.labels,
                                             resize_long=tuple(a.cam_resize_long), hor_flip=True, crop_size=self.crop,
                                             crop_method="random", image_path=index.image_path)
        val_ds = ClassificationDataset(val_ids, index.root, index.labels, crop_size=self.crop,
                                       image_path=index.image_path)
        self.val_loader = make_loader(val_ds, a.cam_batch_size, ctx, flag="--cam_batch_size", train=False,
                                      num_workers=a.num_workers) if val_ids else None
        if not val_ids:
            log.info("train_cam: --val_list %s holds no image: no validation loss", a.val_list)
        self.global_batch, self.micro_batch = a.cam_batch_size, None
        self.total_updates = (len(train_ids) // a.cam_batch_size) * a.cam_num_epoches
        cnn = build_cam_cnn(a, pretrained=True)
        vit = build_cam_vit(a, pretrained=True)
        freeze_lower_stages(cnn)
        self.cnn, self.vit = cnn.to(device).train(), vit.to(device).train()
        self.device = device
        lr, wd, max_step = a.cam_learning_rate, a.cam_weight_decay, self.total_updates

        def poly(model):
            backbone, head = model.trainable_parameters()
            groups = [{"params": [p for p in backbone if p.requires_grad], "lr": lr, "weight_decay": wd},
                      {"params": list(head), "lr": a.cam_head_lr_mult * lr, "weight_decay": wd}]
            if a.cam_optimizer == "adamw":  # demo from random weights only: not the paper's recipe
                return PolyAdamW(groups, lr=lr, weight_decay=wd, max_step=max_step)
            return PolySGD(groups, lr=lr, weight_decay=wd, max_step=max_step, momentum=a.cam_momentum)

        self.modules = {"cnn": self.cnn, "vit": self.vit}
        self.optimizers = {"cnn": poly(self.cnn), "vit": poly(self.vit)}
        self.ddp_modules = dict(self.modules)
        self.cls2_weight, self.l1_mult = LOSS_RULES[a.cam_loss_rule]

    def loss(self, batch: dict, epoch: int) -> dict[str, torch.Tensor]:
        img = batch["img"].to(self.device, non_blocking=True)
        label = batch["label"].to(self.device, non_blocking=True)
        with autocast(self.device, self.args.amp):
            cam_cnn, cam_vit = self.nets["cnn"](img), self.nets["vit"](img)
        return train_cam_losses(cam_cnn.float(), cam_vit.float(), label, epoch, self.args.cam_lambda, self.crop,
                                cls2_weight_after_warmup=self.cls2_weight, l1_multiplier=self.l1_mult)

    def end_epoch(self, epoch: int, means: dict[str, float], ctx: DistContext) -> dict:
        if self.val_loader is None:
            return {}
        val = validate({"cnn": self.cnn, "vit": self.vit}, self.val_loader, self.device, self.args.amp)
        return {"val_cnn": val["cnn"], "val_vit": val["vit"]}

    def final_state_dicts(self) -> dict[Path, dict]:
        return {Path(self.args.cam1_weights_name): self.cnn.state_dict(),
                Path(self.args.cam2_weights_name): self.vit.state_dict()}


def run(args) -> None:
    run_training(TrainCamJob, args)
