"""train_wsol: CUB-200-2011 WSOL, the transformer TS-CAM branch + a ResNet-50 branch trained jointly (docs/wsol_cub.md#training).

DeiT-S (single pass, no tiling, drop-path 0.1): AdamW lr 5e-5, eps 1e-8, weight decay 0.05 on weights with ndim > 1
and none on biases, norms, pos_embed and cls_token; lr ×0.1 at the start of every epoch that is a multiple of 30.
ResNet-50 (strides 2,2,2,1, frozen BN, layers ≤ 2 detached): SGD without momentum, backbone 0.005, classifier 0.05,
wd 1e-4, constant. Loss: CE + CE, plus mean|cam_vit − cam_cnn| on 14×14 in the odd 5-epoch windows (epochs 5–9,
15–19, ...). After every epoch the DeiT branch is scored; the best GT-known epoch is kept. ``--wsol_select_on
heldout`` (default) selects on a fixed few train images per class held out of training; ``test`` selects on the test
set as the original did (what the published numbers mean).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from misc.core.checkpoint import save_state_dict
from misc.engine.distributed import DistContext
from pipeline.flags import step_config
from pipeline.models import build_wsol_cnn, build_wsol_vit
from misc.core.paths import wsol_heldout_ids
from misc.engine.training import TrainJob, autocast, run_training

log = logging.getLogger(__name__)


class WSOLForward(torch.nn.Module):
    """Calls ``forward_wsol`` as ``forward`` (so DDP, which hooks ``forward``, sees it); shares the parameters."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        return self.model.forward_wsol(x)


def adamw_groups(model, weight_decay: float) -> list[dict]:
    """timm 0.3.2 ``create_optimizer``'s rule: no decay for biases, 1-D params and ``no_weight_decay()`` names."""
    skip = model.no_weight_decay()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") or name in skip else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def vit_lr(base_lr: float, epoch: int, decay_every: int) -> float:
    """lr of 1-based ``epoch``: ×0.1 at the start of each epoch that is a multiple of ``decay_every``."""
    return base_lr * 0.1 ** (epoch // decay_every)


def l1_on(epoch: int, window: int) -> bool:
    """The L1 coupling is on in the odd windows: (epoch // window) % 2 == 1 (1-based epochs)."""
    return (epoch // window) % 2 == 1


@torch.no_grad()
def evaluate(model, loader, device, args) -> dict:
    """TS-CAM metrics (fractions) of the DeiT branch on ``loader``."""
    from misc.eval.wsol_metrics import WSOLMeter

    meter = WSOLMeter(cam_thr=args.wsol_cam_thr, size=args.wsol_image_size, box_rule=args.wsol_box_rule,
                      topk=min(5, args.wsol_num_classes))
    was_training = model.training
    model.eval()
    for pack in loader:
        with autocast(device, args.amp):
            logits, cams = model.forward_wsol(pack["img"].to(device, non_blocking=True))
        meter.add(logits.float().cpu(), cams.float().cpu(), pack["label"], pack["box"])
    model.train(was_training)
    return meter.summary()


def selection_loader(args, meta, heldout: list[str]):
    from cub.dataset import build_eval_dataset

    ids = None if args.wsol_select_on == "test" else heldout
    ds = build_eval_dataset(meta, ids, crop_size=args.wsol_image_size)
    return DataLoader(ds, batch_size=args.wsol_batch_size, shuffle=False, num_workers=args.num_workers)


class TrainWsolJob(TrainJob):
    name = "train_wsol"
    seed_flag = "wsol_seed"
    batch_flag = "--wsol_batch_size"
    drop_last = False  # TS-CAM keeps the last incomplete batch

    def config(self) -> dict:
        return step_config(self.args, self.name)

    def outputs(self) -> list[Path]:
        return [Path(self.args.wsol_weights_name), Path(self.args.wsol_cnn_weights_name)]

    def setup(self, ctx: DistContext) -> None:
        from cub.dataset import CUBMetadata, build_train_dataset, load_or_make_heldout
        from net.resnet_cam import freeze_lower_stages

        a, device = self.args, ctx.device
        self.device = device
        meta = CUBMetadata.load(a.cub_root)
        meta.check_num_classes(a.wsol_num_classes, "--wsol_num_classes")
        if meta.num_classes != a.wsol_num_classes:
            from misc.core.errors import DataError

            raise DataError(f"{a.cub_root} has {meta.num_classes} classes but --wsol_num_classes is "
                            f"{a.wsol_num_classes}; pass --wsol_num_classes {meta.num_classes}")
        heldout = load_or_make_heldout(meta, wsol_heldout_ids(a), a.wsol_heldout_per_class,
                                       leave_train=a.wsol_select_on == "heldout")
        exclude = heldout if a.wsol_select_on == "heldout" else []
        self.dataset = build_train_dataset(meta, exclude, resize_size=a.wsol_resize_size, crop_size=a.wsol_image_size)
        self.select_loader = selection_loader(a, meta, heldout)
        self.global_batch, self.micro_batch = a.wsol_batch_size, None
        full, rest = divmod(len(self.dataset), a.wsol_batch_size)
        world = ctx.world_size
        self.total_updates = (full + (rest >= world)) * a.wsol_epochs
        self.vit = build_wsol_vit(a, pretrained=True).to(device).train()
        cnn = build_wsol_cnn(a, pretrained=True)
        freeze_lower_stages(cnn)
        self.cnn = cnn.to(device).train()
        backbone, head = self.cnn.trainable_parameters()
        self.modules = {"vit": self.vit, "cnn": self.cnn}
        self.optimizers = {
            "vit": torch.optim.AdamW(adamw_groups(self.vit, a.wsol_weight_decay), lr=a.wsol_lr, eps=1e-8),
            "cnn": torch.optim.SGD([{"params": [p for p in backbone if p.requires_grad], "lr": a.wsol_cnn_lr},
                                    {"params": list(head), "lr": a.wsol_cnn_cls_lr}],
                                   lr=a.wsol_cnn_lr, momentum=0.0, weight_decay=a.wsol_cnn_weight_decay)}
        self.ddp_modules = {"vit": WSOLForward(self.vit), "cnn": WSOLForward(self.cnn)}
        self.state = {"best_gt_known": -1.0, "best_epoch": 0}

    def start_epoch(self, epoch: int) -> None:
        for g in self.optimizers["vit"].param_groups:
            g["lr"] = vit_lr(self.args.wsol_lr, epoch + 1, self.args.wsol_lr_decay_epochs)

    def loss(self, batch: dict, epoch: int) -> dict[str, torch.Tensor]:
        img = batch["img"].to(self.device, non_blocking=True)
        label = torch.as_tensor(batch["label"]).to(self.device)
        with autocast(self.device, self.args.amp):
            logits_vit, map_vit = self.nets["vit"](img)
            logits_cnn, map_cnn = self.nets["cnn"](img)
        ce_vit = F.cross_entropy(logits_vit.float(), label)
        ce_cnn = F.cross_entropy(logits_cnn.float(), label)
        l1 = torch.mean(torch.abs(map_vit.float() - map_cnn.float()))
        total = ce_vit + ce_cnn + (l1 if l1_on(epoch + 1, self.args.wsol_l1_window) else 0.0)
        return {"ce_vit": ce_vit, "ce_cnn": ce_cnn, "l1": l1, "total": total}

    def end_epoch(self, epoch: int, means: dict[str, float], ctx: DistContext) -> dict:
        """Rank 0 scores the DeiT branch on the selection set and saves both branches when GT-known improves."""
        if not ctx.is_main:
            return {}
        a = self.args
        scores = evaluate(self.vit, self.select_loader, self.device, a)
        extra = {f"select_{k}": scores[k] for k in ("cls_top1", "loc_top1", "loc_gt_known")}
        extra["l1_on"] = l1_on(epoch + 1, a.wsol_l1_window)
        if scores["loc_gt_known"] > self.state["best_gt_known"]:
            self.state = {"best_gt_known": float(scores["loc_gt_known"]), "best_epoch": epoch + 1}
            save_state_dict(self.vit.state_dict(), a.wsol_weights_name)
            save_state_dict(self.cnn.state_dict(), a.wsol_cnn_weights_name)
        return extra

    def final_state_dicts(self) -> dict[Path, dict]:
        """The best epoch's weights (already written when it was reached), recorded as this run's outputs."""
        from misc.core.weights import load_checkpoint

        log.info("train_wsol: best GT-known %.4f at epoch %d (selected on %s)", self.state["best_gt_known"],
                 self.state["best_epoch"], self.args.wsol_select_on)
        return {p: load_checkpoint(p) for p in self.outputs()}

    def metrics(self, history: list[dict], updates: list[dict]) -> dict:
        return {"epochs": history, "best_epoch": self.state["best_epoch"], "select_on": self.args.wsol_select_on}


def run(args) -> None:
    run_training(TrainWsolJob, args)
