"""train_irn: IRNet's edge and displacement branches on the IR labels (docs/ir_labels_and_irnet.md#training-irnet), then the mean-shift estimate.

Affinity targets come from the IR labels reduced ×0.25 over the radius-10 path index of the crop's feature map.
Optimiser: PolySGD (the original's real behaviour) with lr for the edge layers and 10× for the displacement layers.
After training, ``mean_shift.running_mean`` is the mean displacement over ``--infer_list`` (top-left crops, the zero
padding included, batch means averaged), as the original computes it. The affinity targets are built on the device
from the reduced label maps. Skip / resume / processes: the shared driver (:mod:`misc.engine.training`).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from misc.engine.distributed import DistContext, all_reduce_mean, make_loader
from misc.method.indexing import PathIndex, affinity_labels_batch
from pipeline.models import build_irn
from misc.method.torchutils import PolySGD
from misc.engine.training import TrainJob, autocast, run_training
from pipeline.datasets import open_dataset
from dataset.torch_datasets import AffinityDataset, ImageDataset
from pipeline.flags import step_config

log = logging.getLogger(__name__)
TRAIN_RADIUS = 10


@torch.no_grad()
def estimate_mean_shift(model, loader: DataLoader, device: torch.device, amp) -> torch.Tensor:
    """Mean over batches of the per-batch mean displacement (2,), computed in eval mode (running_mean still 0)."""
    model.eval()
    means = []
    for pack in tqdm(loader, desc="train_irn mean shift", mininterval=10.0, dynamic_ncols=True):
        img = pack["img"].to(device, non_blocking=True)
        with autocast(device, amp):
            _, dp = model(img, return_loss=False)
        means.append(torch.mean(dp.float(), dim=(0, 2, 3)))
    if not means:
        return torch.zeros(2, device=device)
    return all_reduce_mean(torch.stack(means).mean(0))


class TrainIrnJob(TrainJob):
    name = "train_irn"
    batch_flag = "--irn_batch_size"

    def config(self) -> dict:
        return step_config(self.args, self.name, open_dataset(self.args))

    def outputs(self) -> list[Path]:
        return [Path(self.args.irn_weights_name)]

    def setup(self, ctx: DistContext) -> None:
        a, device = self.args, ctx.device
        self.device, self.ctx = device, ctx
        self.index = open_dataset(a)
        crop = a.irn_crop_size
        feat = crop // 4
        path_index = PathIndex(radius=TRAIN_RADIUS, default_size=(feat, feat))
        self.src = torch.as_tensor(path_index.src_indices, device=device)
        self.dst = torch.as_tensor(path_index.dst_indices, device=device)
        ids = self.index.ids(a.train_list)
        self.dataset = AffinityDataset(ids, a.ir_label_out_dir, crop, self.index.root, hor_flip=True,
                                       crop_method="random", rescale=(0.5, 1.5), image_path=self.index.image_path,
                                       num_labels=self.index.num_labels)
        self.global_batch, self.micro_batch = a.irn_batch_size, None
        self.total_updates = (len(ids) // a.irn_batch_size) * a.irn_num_epoches
        self.model = build_irn(a, path_index).to(device).train()
        edge_params, dp_params = self.model.trainable_parameters()
        lr, wd = a.irn_learning_rate, a.irn_weight_decay
        self.modules = {"model": self.model}
        self.optimizers = {"model": PolySGD([{"params": list(edge_params), "lr": lr, "weight_decay": wd},
                                             {"params": list(dp_params), "lr": 10 * lr, "weight_decay": wd}],
                                            lr=lr, weight_decay=wd, max_step=self.total_updates,
                                            momentum=a.irn_momentum)}
        self.ddp_modules = {"model": self.model}

    def loss(self, batch: dict, epoch: int) -> dict[str, torch.Tensor]:
        from net.resnet50_irn import irn_total_loss

        img = batch["img"].to(self.device, non_blocking=True)
        targets = affinity_labels_batch(batch["label_reduced"].to(self.device, non_blocking=True), self.src, self.dst,
                                        self.index.num_labels)
        with autocast(self.device, self.args.amp):
            terms = self.nets["model"](img, True)
        losses = irn_total_loss(*[t.float() for t in terms], *targets)
        losses["total"] = losses.pop("total_loss")
        return losses

    def finish(self, ctx: DistContext) -> None:
        a = self.args
        infer_ds = ImageDataset(self.index.ids(a.infer_list), self.index.root, crop_size=a.irn_crop_size,
                                crop_method="top_left", image_path=self.index.image_path)
        # the original drops the last incomplete batch; with fewer images than a batch, keep them all
        infer_loader = make_loader(infer_ds, a.irn_batch_size, ctx, flag="--irn_batch_size", train=False,
                                   num_workers=a.num_workers, drop_last=len(infer_ds) >= a.irn_batch_size)
        self.model.mean_shift.running_mean.zero_()
        self.model.mean_shift.running_mean.copy_(estimate_mean_shift(self.model, infer_loader, self.device, a.amp))
        log.info("train_irn: mean shift %s", self.model.mean_shift.running_mean.tolist())

    def final_state_dicts(self) -> dict[Path, dict]:
        return {Path(self.args.irn_weights_name): self.model.state_dict()}


def run(args) -> None:
    run_training(TrainIrnJob, args)
