"""Benchmark of the CAM stage at full width (DeiT-S + ResNet-152, random weights).

Measures, each in a fresh subprocess (so the peak-memory figure belongs to that measurement alone):
- ``train``: one train_cam step at batch 2 on 336×336 crops (both branches, the joint loss, backward, PolySGD steps);
  one untimed warm-up step, then the mean of ``--steps`` timed steps.
- ``cam``: make_cam of one synthetic 375×500 image with the DeiT branch: 7 scales × [img, flip], no grad, every
  scale's CAM bilinearly resized to the stride-4 and the full-resolution grids and summed.

Time: wall seconds and the process CPU seconds (user + sys, all threads; less sensitive to other load on a shared
machine). Peak memory: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the subprocess on CPU (whole-process peak RSS, model
weights and libraries included), ``torch.cuda.max_memory_allocated`` on CUDA.

Usage: python bench/bench_cam.py [--device cpu|cuda] [--bf16] [--only train|cam] [--steps 2] [--compare-explicit]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCALES = (1.0, 0.5, 1.5, 2.0, 0.75, 1.25, 1.75)
IMAGE_HW = (375, 500)


def _autocast(device: str, bf16: bool):
    import torch

    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def _sync(device: str) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _peak_memory_bytes(device: str) -> int:
    import torch

    if torch.device(device).type == "cuda":
        return int(torch.cuda.max_memory_allocated())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def _cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def measure_train(device: str, bf16: bool, steps: int) -> dict:
    import torch

    from misc.method.cam_loss import train_cam_losses
    from misc.method.torchutils import PolySGD
    from net.deit_cam import deit_cam_small
    from net.resnet_cam import resnet_cam_voc

    torch.manual_seed(0)
    cnn = resnet_cam_voc().to(device).train()
    vit = deit_cam_small(num_classes=20).to(device).train()
    groups_cnn = cnn.trainable_parameters()
    groups_vit = vit.trainable_parameters()
    opt_cnn = PolySGD([{"params": groups_cnn[0], "lr": 0.1, "weight_decay": 1e-4},
                       {"params": groups_cnn[1], "lr": 1.0, "weight_decay": 1e-4}],
                      lr=0.1, weight_decay=1e-4, max_step=6610)
    opt_vit = PolySGD([{"params": groups_vit[0], "lr": 0.1, "weight_decay": 1e-4},
                       {"params": groups_vit[1], "lr": 1.0, "weight_decay": 1e-4}],
                      lr=0.1, weight_decay=1e-4, max_step=6610)
    img = torch.randn(2, 3, 336, 336, device=device)
    labels = torch.zeros(2, 20, device=device)
    labels[0, 3] = labels[1, 7] = labels[1, 14] = 1

    def step() -> float:
        with _autocast(device, bf16):
            cam1 = cnn(img)
            cam2 = vit(img)
        losses = train_cam_losses(cam1.float(), cam2.float(), labels, epoch=1, cam_lambda=0.1, crop_size=336)
        opt_cnn.zero_grad(set_to_none=True)
        opt_vit.zero_grad(set_to_none=True)
        losses["total"].backward()
        opt_cnn.step()
        opt_vit.step()
        return float(losses["total"].detach())

    step()  # warm-up
    _sync(device)
    t0, c0 = time.perf_counter(), _cpu_seconds()
    for _ in range(steps):
        loss = step()
    _sync(device)
    seconds = (time.perf_counter() - t0) / steps
    return {"what": "train_cam step (batch 2, 336 crops)", "seconds": seconds,
            "cpu_seconds": (_cpu_seconds() - c0) / steps, "loss": loss,
            "peak_bytes": _peak_memory_bytes(device)}


def _explicit_cam_pair(model, pair):
    """Original-style CAM of an [img, flip] pair, for a same-conditions speed comparison: explicit (N,heads,L,L)
    attention matrices of all block calls kept, stacked, head-mean, layer sum, merge, crop, ReLU, flip fusion."""
    import torch

    from net.deit_cam import encode_explicit

    h, w = pair.shape[-2:]
    x = model.pad_for_cam(pair)
    tiles, num_h, num_w = model.tile(x)
    n = tiles.shape[0]
    tokens, attns = encode_explicit(model, tiles)
    scores = model.head_map(tokens)
    weights = torch.stack(attns).mean(2).sum(0)[:, 0, 1:].reshape(n, 1, model.grid, model.grid)
    cams = model.merge(weights * scores, num_h, num_w, 2)
    cams = torch.relu(cams[:, :, :-(-h // model.patch_size), :-(-w // model.patch_size)])
    return cams[0] + cams[1].flip(-1)


def measure_cam(device: str, bf16: bool, compare_explicit: bool = False) -> dict:
    import torch
    import torch.nn.functional as F

    from net.deit_cam import deit_cam_small, fuse_flip_pair

    torch.manual_seed(0)
    model = deit_cam_small(num_classes=20).to(device).eval()
    h, w = IMAGE_HW
    img = torch.randn(1, 3, h, w, device=device)
    strided = (math.ceil(h / 4), math.ceil(w / 4))
    up = (math.ceil(h / 16) * 16, math.ceil(w / 16) * 16)
    _sync(device)
    explicit_seconds = ours_seconds = 0.0
    t0, c0 = time.perf_counter(), _cpu_seconds()
    with torch.inference_mode():
        cam_sum = torch.zeros(20, *strided, device=device)
        highres_sum = torch.zeros(20, h, w, device=device)
        for scale in SCALES:
            size = (round(h * scale), round(w * scale))
            x = img if scale == 1.0 else F.interpolate(img, size, mode="bilinear", align_corners=False)
            pair = torch.cat([x, x.flip(-1)])
            if compare_explicit:
                _sync(device)
                t1 = time.perf_counter()
                with _autocast(device, bf16):
                    _explicit_cam_pair(model, pair)
                _sync(device)
                explicit_seconds += time.perf_counter() - t1
                t1 = time.perf_counter()
            with _autocast(device, bf16):
                cam = fuse_flip_pair(model.forward_cam(pair)).float()[None]
            if compare_explicit:
                _sync(device)
                ours_seconds += time.perf_counter() - t1
            cam_sum += F.interpolate(cam, strided, mode="bilinear", align_corners=False)[0]
            highres_sum += F.interpolate(cam, up, mode="bilinear", align_corners=False)[0, :, :h, :w]
            del x, pair, cam
    _sync(device)
    seconds = time.perf_counter() - t0
    if compare_explicit:
        return {"what": "make_cam model calls, interleaved per scale: fused (this code) vs explicit original-style",
                "seconds": ours_seconds, "explicit_seconds": explicit_seconds, "cpu_seconds": _cpu_seconds() - c0,
                "peak_bytes": _peak_memory_bytes(device)}
    return {"what": f"make_cam one {h}x{w} image (7 scales + flip)", "seconds": seconds,
            "cpu_seconds": _cpu_seconds() - c0,
            "cam_max": float(cam_sum.max()), "peak_bytes": _peak_memory_bytes(device)}


def _child(args: argparse.Namespace) -> None:
    sys.path.insert(0, REPO)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child == "train":
        result = measure_train(args.device, args.bf16, args.steps)
    else:
        result = measure_cam(args.device, args.bf16, args.compare_explicit)
    result.update(device=args.device, bf16=args.bf16, threads=torch.get_num_threads())
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="run the forward passes under bf16 autocast")
    parser.add_argument("--only", choices=("train", "cam"), default=None)
    parser.add_argument("--steps", type=int, default=2, help="timed train steps (after one warm-up)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--compare-explicit", action="store_true",
                        help="cam only: also time an original-style explicit-attention CAM per scale, interleaved")
    parser.add_argument("--child", choices=("train", "cam"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    for what in ([args.only] if args.only else ["train", "cam"]):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", what, "--device", args.device,
               "--steps", str(args.steps), "--threads", str(args.threads)] + (["--bf16"] if args.bf16 else [])
        if args.compare_explicit and what == "cam":
            cmd.append("--compare-explicit")
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            print(f"{what}: failed (rc {proc.returncode})\n{proc.stderr[-3000:]}")
            continue
        r = json.loads(lines[-1][len("RESULT "):])
        mem = r["peak_bytes"] / 2**30
        kind = "peak RSS" if args.device == "cpu" else "peak allocated"
        print(f"{r['what']}: {r['seconds']:.2f} s wall ({r['cpu_seconds']:.1f} s CPU), {kind} {mem:.2f} GiB "
              f"(device {r['device']}, bf16 {r['bf16']}, threads {r['threads']})")
        if "explicit_seconds" in r:
            print(f"  explicit original-style attention, same run: {r['explicit_seconds']:.2f} s "
                  f"(peak memory above includes it)")


if __name__ == "__main__":
    main()
