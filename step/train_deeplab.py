"""train_deeplab: DeepLab-v2 (ResNet-101, MSC) trained on the pseudo masks (SPEC §7).

Recipe of deeplab-pytorch's VOC config: BGR mean-subtracted images, discrete scales, ``--deeplab_crop_size`` crops,
batch 5 × 2 accumulated, 20k iterations, lr 2.5e-4 (backbone) / 10× (ASPP weights) / 20× (ASPP biases, no decay),
momentum 0.9, poly decay updated every 10 iterations, frozen batch norm, CE summed over the four MSC outputs.
Trains on ``--deeplab_label_dir`` (default: the pseudo masks of make_sem_seg_labels) for ``--infer_list``; refuses a
ground-truth folder unless ``--allow_gt_training``. Checkpoints every ``--deeplab_checkpoint_every`` iterations;
resumes from the last one.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from tqdm import tqdm

from misc.distributed import DistContext, launch, make_loader
from step._models import autocast
from misc.checkpoint import save_state_dict, try_resume
from step.train_cam import seed_everything
from voc12.dataloader import open_voc

log = logging.getLogger(__name__)
GT_FOLDERS = ("SegmentationClass", "SegmentationClassAug", "SegmentationClassRaw", "SegmentationObject")


def check_not_ground_truth(label_dir: str | Path, voc_root: str | Path, allow: bool) -> None:
    """Refuse to train a *weakly supervised* model on a ground-truth folder (an easy, number-inflating mistake)."""
    label_dir = Path(label_dir).resolve()
    is_gt = label_dir.name in GT_FOLDERS or any(label_dir == (Path(voc_root) / g).resolve() for g in GT_FOLDERS)
    if is_gt and not allow:
        raise ValueError(f"--deeplab_label_dir {label_dir} is a ground-truth folder: training on it is not weakly "
                         "supervised. Train on the pseudo masks (default: --sem_seg_out_dir), or pass "
                         "--allow_gt_training true if this is really what you want (fully supervised upper bound).")
    if is_gt:
        log.warning("train_deeplab: training on GROUND TRUTH %s (--allow_gt_training): not a weakly supervised result",
                    label_dir)


def build_model(args):
    from net.deeplab_v2 import build_deeplab_v2

    return build_deeplab_v2(n_classes=21, depth=args.deeplab_depth, n_blocks=args.deeplab_blocks,
                            base_width=args.deeplab_base_width)


def _train(args, ctx: DistContext) -> None:
    from misc.deeplab_utils import PolynomialLR, msc_loss
    from net.deeplab_v2 import load_backbone_init, param_groups
    from voc12.deeplab_data import deeplab_train_dataset

    device = ctx.device
    seed_everything(args.seed + ctx.rank)
    voc = open_voc(args.voc12_root, args.list_cache_dir)
    check_not_ground_truth(args.deeplab_label_dir, voc.root, args.allow_gt_training)
    ids = voc.ids(args.infer_list)
    label_dir = Path(args.deeplab_label_dir)
    missing = [i for i in ids if not (label_dir / f"{i}.png").is_file()]
    if missing:
        raise FileNotFoundError(f"train_deeplab: {len(missing)} of {len(ids)} masks missing in {label_dir} "
                                f"(e.g. {missing[0]!r}); run make_sem_seg_labels for --infer_list first")
    ds = deeplab_train_dataset(ids, voc.root, label_dir, crop_size=args.deeplab_crop_size)
    ds.scales = tuple(args.deeplab_scales)
    loader = make_loader(ds, args.deeplab_batch_size, ctx, flag="--deeplab_batch_size", train=True,
                         num_workers=args.num_workers, seed=args.seed)
    sampler = loader.sampler if ctx.distributed else None
    if len(loader) == 0:
        raise ValueError(f"train_deeplab: {len(ids)} images < batch {args.deeplab_batch_size}")
    model = build_model(args)
    if not args.no_pretrained:
        kind = load_backbone_init(model, args.deeplab_init, depth=args.deeplab_depth, flag="--deeplab_init")
        log.info("train_deeplab: backbone init %s", kind)
    model = model.to(device).train()
    opt = torch.optim.SGD(param_groups(model, args.deeplab_lr, args.deeplab_weight_decay), lr=args.deeplab_lr,
                          momentum=args.deeplab_momentum)
    sched = PolynomialLR(opt, args.deeplab_poly_step, args.deeplab_iters, args.deeplab_poly_power)
    ckpt_dir = Path(args.sess_dir) / "deeplab"
    last = ckpt_dir / "last.pt"
    state = try_resume(last, device, {"model": model, "opt": opt, "sched": sched}, {"iters": args.deeplab_iters},
                       args.overwrite)
    start = 0 if state is None else int(state["iteration"])
    if state is not None:
        log.info("train_deeplab: resuming at iteration %d", start)
    net = model
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    def batches():
        epoch = 0
        while True:
            if sampler is not None:
                sampler.set_epoch(epoch)
            yield from loader
            epoch += 1

    stream = batches()
    t0, n_seen, history = time.perf_counter(), 0, []
    bar = tqdm(range(start, args.deeplab_iters), desc="train_deeplab", disable=not ctx.is_main, mininterval=5.0,
               dynamic_ncols=True, initial=start, total=args.deeplab_iters)
    running = None
    for it in bar:
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for _ in range(args.deeplab_iter_size):
            pack = next(stream)
            img = pack["img"].to(device, non_blocking=True)
            with autocast(device, args.amp):
                logits = net(img)
            loss = msc_loss([l.float() for l in logits], pack["label"])[0] / args.deeplab_iter_size
            loss.backward()
            loss_sum += float(loss.detach())
            n_seen += img.shape[0] * ctx.world_size
        opt.step()
        sched.step(it + 1)  # deeplab-pytorch: iterations count from 1, lr set after the step
        running = loss_sum if running is None else 0.98 * running + 0.02 * loss_sum
        if it % 10 == 0:
            history.append({"iteration": it, "loss": loss_sum})
        bar.set_postfix(loss=f"{running:.4f}", ips=f"{n_seen / (time.perf_counter() - t0):.1f}",
                        lr=f"{opt.param_groups[0]['lr']:.2e}", refresh=False)
        done = it + 1
        if ctx.is_main and (done % args.deeplab_checkpoint_every == 0 or done == args.deeplab_iters):
            save_state_dict({"iteration": done, "iters": args.deeplab_iters, "model": model.state_dict(),
                             "opt": opt.state_dict(), "sched": sched.state_dict()}, last)
            if done % args.deeplab_checkpoint_every == 0:
                save_state_dict(model.state_dict(), ckpt_dir / f"checkpoint_{done}.pth")
    if ctx.is_main:
        save_state_dict(model.state_dict(), args.deeplab_weights_name)
        log.info("train_deeplab: saved %s", args.deeplab_weights_name)
        if history:
            from misc.results import update_metrics

            update_metrics(args.result_dir, "train_deeplab", {"loss_every_10": history,
                                                              "first_loss": history[0]["loss"],
                                                              "last_loss": history[-1]["loss"]})


def run(args) -> None:
    launch(_train, args)
