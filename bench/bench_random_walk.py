"""Benchmark: banded random walk (misc.method.random_walk.propagate_to_edge) vs the original dense squaring.

Per method a fresh subprocess builds the inputs of one image (stride-4 maps of a --height × --width image, K random
CAMs, random edge map), records its memory high-water mark, runs the walk and reports wall time and the extra peak
memory (CPU: ru_maxrss - baseline; CUDA: torch.cuda.max_memory_allocated). The parent prints a table, the speed-up
and the largest difference between the methods' outputs.

    python bench/bench_random_walk.py                  # CPU, 500×375 image, K = 3
    python bench/bench_random_walk.py --device cuda --methods fast,dense
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _worker(args: argparse.Namespace) -> None:
    sys.path.insert(0, REPO_ROOT)
    import numpy as np
    import torch

    from misc.method.random_walk import propagate_to_edge, propagate_to_edge_dense

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    h, w = (args.height - 1) // 4 + 1, (args.width - 1) // 4 + 1
    gen = torch.Generator().manual_seed(args.seed)
    cams = torch.rand(args.classes, h, w, generator=gen).to(device)
    edge = torch.rand(1, h, w, generator=gen).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    kwargs = dict(radius=args.radius, beta=args.beta, exp_times=args.exp_times)
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        if args.worker == "fast":
            rw = propagate_to_edge(cams, edge, dtype=getattr(torch, args.fast_dtype), **kwargs)
        else:
            rw = propagate_to_edge_dense(cams, edge, **kwargs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)

    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {
        "method": args.worker,
        "device": str(device),
        "feature_size": [h, w],
        "seconds": min(times),
        "seconds_all": times,
        "peak_cpu_mb": (peak_rss - base_rss) / 1024,
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        result["peak_cuda_mb"] = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20
    np.save(args.out, rw.float().cpu().numpy())
    print(json.dumps(result))


def _run_method(method: str, args: argparse.Namespace, out_path: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", method, "--out", out_path,
           "--device", args.device, "--height", str(args.height), "--width", str(args.width),
           "--classes", str(args.classes), "--radius", str(args.radius), "--beta", str(args.beta),
           "--exp_times", str(args.exp_times), "--seed", str(args.seed), "--repeat", str(args.repeat),
           "--fast_dtype", args.fast_dtype, "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", default="fast,dense", help="comma list of fast, dense")
    parser.add_argument("--height", type=int, default=375, help="image height (features: ceil(H/4))")
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--radius", type=int, default=5)
    parser.add_argument("--beta", type=float, default=10)
    parser.add_argument("--exp_times", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per method (the minimum time is reported)")
    parser.add_argument("--fast_dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return

    import numpy as np

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        outputs = {}
        for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
            outputs[method] = os.path.join(tmp, f"{method}.npy")
            results[method] = _run_method(method, args, outputs[method])
            r = results[method]
            mem = f"{r['peak_cpu_mb']:.0f} MB RSS"
            if "peak_cuda_mb" in r:
                mem += f", {r['peak_cuda_mb']:.0f} MB CUDA"
            print(f"{method:>5}: {r['seconds']:.3f} s, peak +{mem}  (features {r['feature_size']}, {r['device']}, "
                  f"{r['threads']} threads)")
        if "fast" in results and "dense" in results:
            diff = float(np.abs(np.load(outputs["fast"]) - np.load(outputs["dense"])).max())
            print(f"speed-up dense/fast: {results['dense']['seconds'] / results['fast']['seconds']:.0f}x; "
                  f"max |fast - dense| = {diff:.2e}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
