"""train_irn: IRNet's edge and displacement branches on the IR labels (SPEC §4.5), then the mean-shift estimate.

Affinity targets come from the IR labels reduced ×0.25 over the radius-10 path index of the crop's feature map.
Optimiser: PolySGD (the original's real behaviour) with lr for the edge layers and 10× for the displacement layers.
After training, ``mean_shift.running_mean`` is the mean displacement over ``--infer_list`` (top-left crops, the zero
padding included, batch means averaged), as the original computes it. Resumes from the last finished epoch.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from misc.distributed import DistContext, all_reduce_mean, launch, make_loader
from misc.indexing import PathIndex
from misc.torchutils import PolySGD
from step._models import autocast
from misc.checkpoint import save_state_dict, try_resume
from step.train_cam import seed_everything
from voc12.dataloader import VOC12AffinityDataset, VOC12ImageDataset, open_voc

log = logging.getLogger(__name__)
TRAIN_RADIUS = 10


def build_irn_loss_model(args, path_index: PathIndex):
    from net.resnet50_irn import AffinityDisplacementLoss, load_imagenet_backbone

    model = AffinityDisplacementLoss(path_index, depth=args.irn_backbone_depth)
    if not args.no_pretrained:
        load_imagenet_backbone(model, args.irn_pretrained, flag="--irn_pretrained")
    return model


@torch.no_grad()
def estimate_mean_shift(model, loader: DataLoader, device: torch.device, amp: bool) -> torch.Tensor:
    """Mean over batches of the per-batch mean displacement (2,), computed in eval mode (running_mean still 0)."""
    model.eval()
    means = []
    for pack in tqdm(loader, desc="train_irn mean shift", mininterval=5.0, dynamic_ncols=True):
        img = pack["img"].to(device, non_blocking=True)
        with autocast(device, amp):
            _, dp = model(img, return_loss=False)
        means.append(torch.mean(dp.float(), dim=(0, 2, 3)))
    if not means:
        return torch.zeros(2, device=device)
    return all_reduce_mean(torch.stack(means).mean(0))


def _train(args, ctx: DistContext) -> None:
    device = ctx.device
    seed_everything(args.seed + ctx.rank)
    voc = open_voc(args.voc12_root, args.list_cache_dir)
    crop = args.irn_crop_size
    feat = crop // 4
    path_index = PathIndex(radius=TRAIN_RADIUS, default_size=(feat, feat))
    ids = voc.ids(args.train_list)
    ds = VOC12AffinityDataset(ids, args.ir_label_out_dir, crop, voc.root, path_index.src_indices,
                              path_index.dst_indices, hor_flip=True, crop_method="random", rescale=(0.5, 1.5))
    if len(ids) < args.irn_batch_size:
        raise ValueError(f"train_irn: {len(ids)} images < --irn_batch_size {args.irn_batch_size}")
    loader = make_loader(ds, args.irn_batch_size, ctx, flag="--irn_batch_size", train=True,
                         num_workers=args.num_workers, seed=args.seed)
    sampler = loader.sampler if ctx.distributed else None
    model = build_irn_loss_model(args, path_index).to(device)
    model.train()
    max_step = (len(ids) // args.irn_batch_size) * args.irn_num_epoches
    edge_params, dp_params = model.trainable_parameters()
    lr, wd = args.irn_learning_rate, args.irn_weight_decay
    opt = PolySGD([{"params": list(edge_params), "lr": lr, "weight_decay": wd},
                   {"params": list(dp_params), "lr": 10 * lr, "weight_decay": wd}],
                  lr=lr, weight_decay=wd, max_step=max_step, momentum=args.irn_momentum)
    resume_path = Path(args.sess_dir) / "train_irn_last.pt"
    state = try_resume(resume_path, device, {"model": model, "opt": opt}, {"max_step": max_step}, args.overwrite)
    start_epoch = 0 if state is None else int(state["epoch"]) + 1
    if state is not None:
        log.info("train_irn: resuming after epoch %d", start_epoch)
    net = model
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    from net.resnet50_irn import irn_total_loss

    history = []
    for epoch in range(start_epoch, args.irn_num_epoches):
        if sampler is not None:
            sampler.set_epoch(epoch)
        sums: dict[str, float] = {}
        t0, n_seen = time.perf_counter(), 0
        bar = tqdm(loader, desc=f"train_irn {epoch + 1}/{args.irn_num_epoches}", disable=not ctx.is_main,
                   mininterval=5.0, dynamic_ncols=True)
        for pack in bar:
            img = pack["img"].to(device, non_blocking=True)
            labels = [pack[k].to(device, non_blocking=True) for k in
                      ("aff_bg_pos_label", "aff_fg_pos_label", "aff_neg_label")]
            with autocast(device, args.amp):
                terms = net(img, True)
            losses = irn_total_loss(*[t.float() for t in terms], *labels)
            opt.zero_grad(set_to_none=True)
            losses["total_loss"].backward()
            opt.step()
            n_seen += img.shape[0] * ctx.world_size
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            bar.set_postfix(loss=f"{float(losses['total_loss'].detach()):.4f}",
                            ips=f"{n_seen / (time.perf_counter() - t0):.1f}", lr=f"{opt.param_groups[0]['lr']:.2e}", refresh=False)
        means = {k: v / max(1, len(loader)) for k, v in sums.items()}
        if ctx.is_main:
            log.info("train_irn epoch %d/%d: %s", epoch + 1, args.irn_num_epoches,
                     " ".join(f"{k} {v:.4f}" for k, v in means.items()))
            history.append({"epoch": epoch + 1, **means})
            save_state_dict({"epoch": epoch, "max_step": max_step, "model": model.state_dict(),
                             "opt": opt.state_dict()}, resume_path)

    infer_ds = VOC12ImageDataset(voc.ids(args.infer_list), voc.root, crop_size=crop, crop_method="top_left")
    # the original drops the last incomplete batch; with fewer images than a batch, keep them all
    infer_loader = make_loader(infer_ds, args.irn_batch_size, ctx, flag="--irn_batch_size", train=False,
                               num_workers=args.num_workers, drop_last=len(infer_ds) >= args.irn_batch_size)
    model.mean_shift.running_mean.zero_()
    model.mean_shift.running_mean.copy_(estimate_mean_shift(model, infer_loader, device, args.amp))
    if ctx.is_main:
        save_state_dict(model.state_dict(), args.irn_weights_name)
        log.info("train_irn: mean shift %s; saved %s", model.mean_shift.running_mean.tolist(), args.irn_weights_name)
        if history:
            from misc.results import update_metrics

            update_metrics(args.result_dir, "train_irn", {"epochs": history})


def run(args) -> None:
    launch(_train, args)
