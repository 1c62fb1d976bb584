"""train_cam: the CNN branch (ResNet-152) and the transformer branch (DeiT-S TS-CAM) trained jointly (SPEC §4.1).

Data: ``--train_list`` images, random resize of the long side to ``--cam_resize_long``, flip, random
``--cam_crop_size`` crop. Loss: multi-label soft margin on the GAP of each branch's raw score map, plus (from the
second epoch) λ·mean|up(cnn) − up(vit)| with both maps upsampled to the crop (align_corners=True); the L1 term
reaches both branches. ``--cam_loss_rule shipped`` selects the released bytecode's rule (loss1 + 0·loss2 + 5λ·L1).
Optimiser: :class:`misc.torchutils.PolySGD`, i.e. what the original PolyOptimizer really did (plain SGD, momentum in
effect 1e-4, poly power 0.9), lr for the backbones and 10× for the heads.

Both branches are validated each epoch; a resume checkpoint is written after every epoch (``<sess>/train_cam_last.pt``)
and training continues from the last finished epoch. Several GPUs: one process each (DDP), same global batch.
"""
from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from misc.cam_loss import train_cam_losses
from misc.checkpoint import save_state_dict, try_resume
from misc.distributed import DistContext, all_reduce_mean, launch, make_loader
from misc.torchutils import PolyAdamW, PolySGD, gap2d
from step._models import autocast, build_cnn_branch, build_vit_branch
from voc12.dataloader import VOC12ClassificationDataset, open_voc

log = logging.getLogger(__name__)

LOSS_RULES = {"committed": (1.0, 1.0), "shipped": (0.0, 5.0)}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def freeze_cnn_lower_stages(model) -> None:
    """conv1..layer2 of the CNN branch never get a gradient (detach); mark them so DDP needs no unused-param search."""
    b = model.backbone
    for m in (b.conv1, b.bn1, b.layer1, b.layer2):
        for p in m.parameters():
            p.requires_grad_(False)


@torch.no_grad()
def validate(models: dict, loader: DataLoader, device: torch.device, amp: bool) -> dict[str, float]:
    """Mean multi-label soft margin loss of each branch on the validation loader."""
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


def _train(args, ctx: DistContext) -> None:
    device = ctx.device
    seed_everything(args.seed + ctx.rank)
    voc = open_voc(args.voc12_root, args.list_cache_dir)
    train_ids, val_ids = voc.ids(args.train_list), voc.ids(args.val_list)
    crop = args.cam_crop_size
    train_ds = VOC12ClassificationDataset(train_ids, voc.root, voc.labels, resize_long=tuple(args.cam_resize_long),
                                          hor_flip=True, crop_size=crop, crop_method="random")
    val_ds = VOC12ClassificationDataset(val_ids, voc.root, voc.labels, crop_size=crop)
    if len(train_ids) < args.cam_batch_size:
        raise ValueError(f"train_cam: {len(train_ids)} training images < --cam_batch_size {args.cam_batch_size}")
    train_loader = make_loader(train_ds, args.cam_batch_size, ctx, flag="--cam_batch_size", train=True,
                               num_workers=args.num_workers, seed=args.seed)
    sampler = train_loader.sampler if ctx.distributed else None
    val_loader = make_loader(val_ds, args.cam_batch_size, ctx, flag="--cam_batch_size", train=False,
                             num_workers=args.num_workers)

    cnn = build_cnn_branch(args, pretrained=True)
    vit = build_vit_branch(args, pretrained=True)
    freeze_cnn_lower_stages(cnn)
    cnn, vit = cnn.to(device).train(), vit.to(device).train()
    steps_per_epoch = len(train_ids) // args.cam_batch_size
    max_step = steps_per_epoch * args.cam_num_epoches
    lr, wd = args.cam_learning_rate, args.cam_weight_decay

    def poly(model):
        backbone, head = model.trainable_parameters()
        groups = [{"params": [p for p in backbone if p.requires_grad], "lr": lr, "weight_decay": wd},
                  {"params": list(head), "lr": args.cam_head_lr_mult * lr, "weight_decay": wd}]
        if args.cam_optimizer == "adamw":  # demo from random weights only: not the paper's recipe
            return PolyAdamW(groups, lr=lr, weight_decay=wd, max_step=max_step)
        return PolySGD(groups, lr=lr, weight_decay=wd, max_step=max_step, momentum=args.cam_momentum)

    opt_cnn, opt_vit = poly(cnn), poly(vit)
    resume_path = Path(args.sess_dir) / "train_cam_last.pt"
    state = try_resume(resume_path, device, {"cnn": cnn, "vit": vit, "opt_cnn": opt_cnn, "opt_vit": opt_vit},
                       {"max_step": max_step}, args.overwrite)
    start_epoch = 0 if state is None else int(state["epoch"]) + 1
    if state is not None:
        log.info("train_cam: resuming after epoch %d from %s", start_epoch, resume_path)
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        cnn_m, vit_m = DDP(cnn, device_ids=ids), DDP(vit, device_ids=ids)
    else:
        cnn_m, vit_m = cnn, vit
    cls2_w, l1_mult = LOSS_RULES[args.cam_loss_rule]
    history = []
    for epoch in range(start_epoch, args.cam_num_epoches):
        if sampler is not None:
            sampler.set_epoch(epoch)
        sums = {"loss_cls_cnn": 0.0, "loss_cls_vit": 0.0, "loss_l1": 0.0}
        n_seen, t0 = 0, time.perf_counter()
        bar = tqdm(train_loader, desc=f"train_cam {epoch + 1}/{args.cam_num_epoches}", disable=not ctx.is_main,
                   mininterval=5.0, dynamic_ncols=True)
        for pack in bar:
            img = pack["img"].to(device, non_blocking=True)
            label = pack["label"].to(device, non_blocking=True)
            with autocast(device, args.amp):
                cam_cnn, cam_vit = cnn_m(img), vit_m(img)
            losses = train_cam_losses(cam_cnn.float(), cam_vit.float(), label, epoch, args.cam_lambda, crop,
                                      cls2_weight_after_warmup=cls2_w, l1_multiplier=l1_mult)
            opt_cnn.zero_grad(set_to_none=True)
            opt_vit.zero_grad(set_to_none=True)
            losses["total"].backward()
            opt_cnn.step()
            opt_vit.step()
            n_seen += img.shape[0] * ctx.world_size
            for k in sums:
                sums[k] += float(losses[k].detach())
            bar.set_postfix(l_cnn=f"{float(losses['loss_cls_cnn'].detach()):.3f}",
                            l_vit=f"{float(losses['loss_cls_vit'].detach()):.3f}",
                            l1=f"{float(losses['loss_l1'].detach()):.3f}", ips=f"{n_seen / (time.perf_counter() - t0):.1f}",
                            lr=f"{opt_cnn.param_groups[0]['lr']:.2e}", refresh=False)
        n_batches = max(1, len(train_loader))
        means = {k: v / n_batches for k, v in sums.items()}
        val = validate({"cnn": cnn, "vit": vit}, val_loader, device, args.amp)
        speed = n_seen / (time.perf_counter() - t0)
        if ctx.is_main:
            log.info("train_cam epoch %d/%d: loss cls cnn %.4f vit %.4f l1 %.4f | val cnn %.4f vit %.4f | %.1f img/s",
                     epoch + 1, args.cam_num_epoches, means["loss_cls_cnn"], means["loss_cls_vit"], means["loss_l1"],
                     val["cnn"], val["vit"], speed)
            history.append({"epoch": epoch + 1, **means, "val_cnn": val["cnn"], "val_vit": val["vit"],
                            "images_per_s": speed})
            save_state_dict({"epoch": epoch, "max_step": max_step, "cnn": cnn.state_dict(), "vit": vit.state_dict(),
                             "opt_cnn": opt_cnn.state_dict(), "opt_vit": opt_vit.state_dict()}, resume_path)
    if ctx.is_main:
        save_state_dict(cnn.state_dict(), args.cam1_weights_name)
        save_state_dict(vit.state_dict(), args.cam2_weights_name)
        log.info("train_cam: saved %s and %s", args.cam1_weights_name, args.cam2_weights_name)
        if history:
            from misc.results import update_metrics

            update_metrics(args.result_dir, "train_cam", {"epochs": history})


def run(args) -> None:
    launch(_train, args)
