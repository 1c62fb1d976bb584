"""train_wsol: CUB-200-2011 WSOL, the transformer TS-CAM branch + a ResNet-50 branch trained jointly (SPEC §6).

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
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from misc.distributed import DistContext, launch, make_loader
from step._models import autocast
from misc.checkpoint import save_state_dict, try_resume
from step.train_cam import seed_everything

log = logging.getLogger(__name__)


def build_wsol_vit(args, pretrained: bool):
    from net.deit_cam import DeiTCAM, load_deit_imagenet

    model = DeiTCAM(num_classes=args.wsol_num_classes, embed_dim=args.vit_embed_dim, depth=args.vit_depth,
                    num_heads=args.vit_num_heads, patch_size=args.wsol_patch_size, tile_size=args.wsol_image_size,
                    num_passes=1, tiled=False, outer_residual=False, drop_path_rate=args.wsol_drop_path)
    if pretrained and not args.no_pretrained:
        load_deit_imagenet(model, args.deit_pretrained, flag="--deit_pretrained")
    return model


def build_wsol_cnn(args, pretrained: bool):
    from net.resnet_cam import ResNetCAM

    model = ResNetCAM(depth=args.wsol_cnn_depth, num_classes=args.wsol_num_classes)
    if pretrained and not args.no_pretrained:
        from net.resnet import load_resnet_imagenet

        load_resnet_imagenet(model.backbone, args.wsol_cnn_depth, args.cam_cnn_pretrained, flag="--cam_cnn_pretrained")
    return model


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
    from misc.wsol_metrics import WSOLMeter

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


def _train(args, ctx: DistContext) -> None:
    from cub.dataset import CUBMetadata, build_train_dataset, load_or_make_heldout

    device = ctx.device
    seed_everything(args.wsol_seed + ctx.rank)
    meta = CUBMetadata.load(args.cub_root)
    if meta.num_classes != args.wsol_num_classes:
        raise ValueError(f"{args.cub_root} has {meta.num_classes} classes but --wsol_num_classes is "
                         f"{args.wsol_num_classes}")
    out_dir = Path(args.wsol_out_dir)
    heldout = load_or_make_heldout(meta, out_dir / "heldout_ids.txt", args.wsol_heldout_per_class)
    exclude = heldout if args.wsol_select_on == "heldout" else []
    train_ds = build_train_dataset(meta, exclude, resize_size=args.wsol_resize_size, crop_size=args.wsol_image_size)
    loader = make_loader(train_ds, args.wsol_batch_size, ctx, flag="--wsol_batch_size", train=True,
                         num_workers=args.num_workers, seed=args.wsol_seed, drop_last=False)
    sampler = loader.sampler if ctx.distributed else None
    select_loader = selection_loader(args, meta, heldout)
    vit = build_wsol_vit(args, pretrained=True).to(device).train()
    cnn = build_wsol_cnn(args, pretrained=True)
    from step.train_cam import freeze_cnn_lower_stages

    freeze_cnn_lower_stages(cnn)
    cnn = cnn.to(device).train()
    opt_vit = torch.optim.AdamW(adamw_groups(vit, args.wsol_weight_decay), lr=args.wsol_lr, eps=1e-8)
    backbone, head = cnn.trainable_parameters()
    opt_cnn = torch.optim.SGD([{"params": [p for p in backbone if p.requires_grad], "lr": args.wsol_cnn_lr},
                               {"params": list(head), "lr": args.wsol_cnn_cls_lr}],
                              lr=args.wsol_cnn_lr, momentum=0.0, weight_decay=args.wsol_cnn_weight_decay)
    resume = Path(args.sess_dir) / "train_wsol_last.pt"
    state = try_resume(resume, device, {"vit": vit, "cnn": cnn, "opt_vit": opt_vit, "opt_cnn": opt_cnn},
                       {"epochs": args.wsol_epochs}, args.overwrite)
    start, best = 1, {"loc_gt_known": -1.0, "epoch": 0}
    if state is not None:
        start, best = int(state["epoch"]) + 1, dict(state["best"])
        log.info("train_wsol: resuming at epoch %d (best GT-known %.4f at epoch %d)", start, best["loc_gt_known"],
                 best["epoch"])
    vit_m, cnn_m = WSOLForward(vit), WSOLForward(cnn)
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        vit_m, cnn_m = DDP(vit_m, device_ids=ids), DDP(cnn_m, device_ids=ids)

    history = []
    for epoch in range(start, args.wsol_epochs + 1):
        for g in opt_vit.param_groups:
            g["lr"] = vit_lr(args.wsol_lr, epoch, args.wsol_lr_decay_epochs)
        if sampler is not None:
            sampler.set_epoch(epoch)
        use_l1 = l1_on(epoch, args.wsol_l1_window)
        sums, n_seen, t0 = {"ce_vit": 0.0, "ce_cnn": 0.0, "l1": 0.0}, 0, time.perf_counter()
        bar = tqdm(loader, desc=f"train_wsol {epoch}/{args.wsol_epochs}", disable=not ctx.is_main, mininterval=5.0,
                   dynamic_ncols=True)
        for pack in bar:
            img = pack["img"].to(device, non_blocking=True)
            label = torch.as_tensor(pack["label"]).to(device)
            with autocast(device, args.amp):
                logits_vit, map_vit = vit_m(img)
                logits_cnn, map_cnn = cnn_m(img)
            ce_vit = F.cross_entropy(logits_vit.float(), label)
            ce_cnn = F.cross_entropy(logits_cnn.float(), label)
            l1 = torch.mean(torch.abs(map_vit.float() - map_cnn.float()))
            loss = ce_vit + ce_cnn + (l1 if use_l1 else 0.0)
            opt_vit.zero_grad(set_to_none=True)
            opt_cnn.zero_grad(set_to_none=True)
            loss.backward()
            opt_vit.step()
            opt_cnn.step()
            n_seen += img.shape[0] * ctx.world_size
            for k, v in (("ce_vit", ce_vit), ("ce_cnn", ce_cnn), ("l1", l1)):
                sums[k] += float(v.detach())
            bar.set_postfix(ce_vit=f"{float(ce_vit.detach()):.3f}", ce_cnn=f"{float(ce_cnn.detach()):.3f}",
                            l1=f"{float(l1.detach()):.3f}", ips=f"{n_seen / (time.perf_counter() - t0):.1f}", refresh=False)
        means = {k: v / max(1, len(loader)) for k, v in sums.items()}
        if not ctx.is_main:
            continue
        scores = evaluate(vit, select_loader, device, args)
        log.info("train_wsol epoch %d/%d (L1 %s, lr %.1e): ce vit %.4f cnn %.4f l1 %.4f | %s cls@1 %.4f top-1 loc "
                 "%.4f GT-known %.4f", epoch, args.wsol_epochs, "on" if use_l1 else "off",
                 opt_vit.param_groups[0]["lr"], means["ce_vit"], means["ce_cnn"], means["l1"], args.wsol_select_on,
                 scores["cls_top1"], scores["loc_top1"], scores["loc_gt_known"])
        history.append({"epoch": epoch, **means, **{f"select_{k}": scores[k] for k in
                                                     ("cls_top1", "loc_top1", "loc_gt_known")}})
        if scores["loc_gt_known"] > best["loc_gt_known"]:
            best = {"loc_gt_known": float(scores["loc_gt_known"]), "epoch": epoch}
            save_state_dict(vit.state_dict(), args.wsol_weights_name)
            save_state_dict(cnn.state_dict(), args.wsol_cnn_weights_name)
        save_state_dict({"epoch": epoch, "epochs": args.wsol_epochs, "vit": vit.state_dict(), "cnn": cnn.state_dict(),
                         "opt_vit": opt_vit.state_dict(), "opt_cnn": opt_cnn.state_dict(), "best": best}, resume)
    if ctx.is_main:
        log.info("train_wsol: best GT-known %.4f at epoch %d (selected on %s) -> %s", best["loc_gt_known"],
                 best["epoch"], args.wsol_select_on, args.wsol_weights_name)
        from misc.results import update_metrics

        update_metrics(args.result_dir, "train_wsol", {"epochs": history, "best_epoch": best["epoch"],
                                                       "select_on": args.wsol_select_on})


def run(args) -> None:
    launch(_train, args)
