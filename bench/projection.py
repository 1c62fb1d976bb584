"""FLOP-count projection of the full VOC run on GPUs: hours per stage on 1 and 2 of each GPU kind.

Hours per stage of the full VOC run (train_aug 10,582 images for train_cam / make_cam / cam_to_ir_label / train_irn
and for the DeepLab masks, train 1,464 for eval and IRNet's mean shift, DeepLab 20k iterations of 10 images, val
1,449, test 1,456) on 1 and 2 GPUs, in about a minute on the CPU. **An estimate from FLOP counts, not a
measurement**: the FLOPs of one unit of work at the real shapes are counted with
``torch.utils.flop_counter.FlopCounterMode`` on the ``meta`` device (matmuls and convolutions, forward and backward;
no memory, no compute) and divided by an assumed sustained throughput (``--gpu NAME=PEAK_TFLOPS`` times
``--utilisation``). Work that FLOPs do not describe is modelled separately and named as such: the dense CRFs run on
the host CPU (one CRF measured here, spread over ``--cpu_workers`` processes), the random walk is bound by kernel
launches (their number follows from the code, ``--launch_us`` each), and every per-image GPU step pays
``--per_image_overhead_ms`` (decoding, transfers). Two GPUs halve the training steps (DDP, same global batch) and
the per-image GPU work (the ids are split); the CPU-side CRFs of cam_to_ir_label and eval_deeplab do not change.
The table goes to stdout, the unit counts and the projection to ``<out>/projection.json``.

Usage::

    python bench/projection.py --gpu A100=312 H100=989 --utilisation 0.35
    python bench/rehearse_real_run.py --project ...     # the same, through the rehearsal's command line

Options:
    --out DIR                   folder of projection.json (default /tmp/crt_rehearsal, the rehearsal's)
    --gpu NAME=TFLOPS [...]     peak throughputs (default A100=312 H100=989, bf16 dense)
    --utilisation U             sustained share of the peak (default 0.35)
    --cpu_workers N             host processes for the CPU CRFs (default 8)
    --launch_us US              time of one kernel launch of the random walk (default 6)
    --per_image_overhead_ms MS  decoding and transfers per image of every per-image GPU step (default 10)
    --units_from PROJECTION_JSON   reuse the unit counts of an earlier run (other assumptions, no recount)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FULL_VOC = {"train_aug": 10582, "train": 1464, "val": 1449, "test": 1456}
COUNT_BATCH = 2  # the batch at which training FLOPs are counted, then scaled to the global batch


def _flops(fn: Callable[[], object]) -> int:
    """FLOPs (matmuls and convolutions) of one call of ``fn``."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _timed(fn: Callable[[], object], repeat: int = 1) -> float:
    """The fastest of ``repeat`` calls of ``fn``, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def count_units(image_hw: tuple[int, int] = (375, 500)) -> dict:
    """FLOPs of one unit of work of each stage at the default shapes (meta device), the random walk's launch count,
    and the seconds of one CRF of each kind on this CPU."""
    import run_sample

    args = run_sample.parse_args(["--no_pretrained"])  # every default, random init (values are irrelevant on meta)
    h, w = image_hw
    units: dict = {"defaults": {"cam_batch_size": args.cam_batch_size, "cam_crop_size": args.cam_crop_size,
                                "cam_num_epoches": args.cam_num_epoches, "cam_scales": list(args.cam_scales),
                                "irn_batch_size": args.irn_batch_size, "irn_crop_size": args.irn_crop_size,
                                "irn_num_epoches": args.irn_num_epoches, "deeplab_iters": args.deeplab_iters,
                                "deeplab_batch": args.deeplab_batch_size * args.deeplab_iter_size,
                                "deeplab_crop_size": args.deeplab_crop_size, "exp_times": args.exp_times,
                                "image_hw": [h, w]}}
    t0 = time.perf_counter()
    units.update(_cam_units(args, h, w))
    units.update(_irn_units(args, h, w))
    units.update(_deeplab_units(args, h, w))
    units["count_seconds"] = round(time.perf_counter() - t0, 1)
    units.update(_cpu_crf_seconds(h, w))
    return units


def _cam_units(args: argparse.Namespace, h: int, w: int) -> dict:
    """train_cam: one update of both branches (fwd + bwd) and one validation image; make_cam: one image."""
    import numpy as np
    import torch

    from net.resnet_cam import freeze_lower_stages
    from pipeline.models import build_cam_cnn, build_cam_vit
    from voc12.dataloader import multiscale_flip_inputs

    meta, b, crop = torch.device("meta"), COUNT_BATCH, args.cam_crop_size
    cnn = build_cam_cnn(args, pretrained=False)
    freeze_lower_stages(cnn)
    cnn = cnn.to(meta).train()
    vit = build_cam_vit(args, pretrained=False).to(meta).train()

    def cam_update():
        x = torch.empty(b, 3, crop, crop, device=meta)
        (cnn(x).sum() + vit(x).sum()).backward()

    def cam_val():
        with torch.no_grad():
            x = torch.empty(b, 3, crop, crop, device=meta)
            cnn.eval(), vit.eval()
            cnn(x), vit(x)
            cnn.train(), vit.train()

    units = {"train_cam_update": _flops(cam_update) * args.cam_batch_size // b,
             "train_cam_val_image": _flops(cam_val) // b}
    # make_cam: the [img, flip] pair at every scale, the shapes make_cam feeds
    vit.eval()
    shapes = [p.shape for p in multiscale_flip_inputs(np.zeros((h, w, 3), np.uint8), args.cam_scales)]

    def make_cam():
        with torch.no_grad():
            for s in shapes:
                vit.forward_cam(torch.empty(*s, device=meta))

    units["make_cam_image"] = _flops(make_cam)
    return units


def _irn_units(args: argparse.Namespace, h: int, w: int) -> dict:
    """train_irn: one update and the mean shift's forward of one image; make_sem_seg_labels: IRNet on the
    [img, flip] pair (padded to the crop), then the random walk (FLOPs and kernel launches)."""
    import torch

    from misc.method.indexing import PathIndex
    from pipeline.models import build_irn, build_irn_inference
    from pipeline.tasks import WALK_RADIUS
    from step.train_irn import TRAIN_RADIUS

    meta, b, crop = torch.device("meta"), COUNT_BATCH, args.irn_crop_size
    irn = build_irn(args, PathIndex(radius=TRAIN_RADIUS, default_size=(crop // 4, crop // 4)))
    irn = irn.to(meta).train()

    def irn_update():
        x = torch.empty(b, 3, crop, crop, device=meta)
        sum(t.sum() for t in irn(x, True)).backward()

    def irn_mean_shift():
        with torch.no_grad():
            irn.eval()
            irn(torch.empty(1, 3, crop, crop, device=meta), return_loss=False)
            irn.train()

    units = {"train_irn_update": _flops(irn_update) * args.irn_batch_size // b,
             "train_irn_mean_shift_image": _flops(irn_mean_shift)}
    edge_net = build_irn_inference(args).to(meta).eval()

    def sem_seg():
        with torch.no_grad():
            edge_net(torch.empty(2, 3, h, w, device=meta))

    units["make_sem_seg_irnet_image"] = _flops(sem_seg)
    fh, fw = -(-h // 4), -(-w // 4)
    directions = PathIndex(radius=WALK_RADIUS, default_size=(fh, fw)).num_directions
    offsets = 1 + 2 * directions  # misc.method.random_walk.BandedTransition: self loop + each direction and its mirror
    steps = 2 ** args.exp_times
    planes = 2  # classes per image in the walk (VOC: about 1.5 on average; 2 is generous)
    units["random_walk"] = {"steps": steps, "offsets": offsets, "flops_fp64": 2 * planes * fh * fw * offsets * steps,
                            "kernel_launches": steps * (offsets + 1)}  # mul + addcmul per offset + copy, per step
    return units


def _deeplab_units(args: argparse.Namespace, h: int, w: int) -> dict:
    """DeepLab: one iteration (global batch, fwd + bwd, MSC); eval: the MSC max of one image."""
    import torch

    from pipeline.models import build_deeplab

    meta, b, crop = torch.device("meta"), COUNT_BATCH, args.deeplab_crop_size
    dl = build_deeplab(args).to(meta).train()

    def dl_iter():
        outs = dl(torch.empty(b, 3, crop, crop, device=meta))
        sum(o.sum() for o in outs).backward()

    def dl_eval():
        with torch.no_grad():
            dl.eval()
            dl(torch.empty(1, 3, h, w, device=meta))
            dl.train()

    return {"train_deeplab_iteration": _flops(dl_iter) * args.deeplab_batch_size * args.deeplab_iter_size // b,
            "deeplab_eval_image": _flops(dl_eval)}


def _cpu_crf_seconds(h: int, w: int) -> dict:
    """Seconds of one IR-label CRF pair and of one DeepLab CRF on this machine (1 thread)."""
    import numpy as np
    import torch

    from misc.method.crf import crf_inference_softmax, deeplab_crf_guide
    from misc.method.ir_label import make_ir_label

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    img = np.ascontiguousarray(np.repeat(np.linspace(0, 255, w, dtype=np.uint8)[None, :, None], h, 0).repeat(3, 2))
    high = rng.random((2, h, w), dtype=np.float32)
    units = {"cpu_ir_label_s": round(_timed(lambda: make_ir_label(img, high, np.array([0, 5]), 0.35, 0.15), 2), 3)}
    logits = rng.standard_normal((21, h, w)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(0, keepdims=True)
    guide = deeplab_crf_guide(img[..., ::-1].copy(), quirk=True)
    units["cpu_deeplab_crf_s"] = round(_timed(lambda: crf_inference_softmax(guide, probs), 2), 3)
    return units


def project(units: dict, gpus: dict[str, float], utilisation: float, cpu_workers: int, launch_us: float,
            overhead_ms: float) -> dict:
    """Hours per stage on 1 and 2 of each GPU kind, from the unit FLOPs and the stated assumptions."""
    table = {}
    for name, (flops, gpu_fixed_s, cpu_s, what) in stage_work(units, cpu_workers, launch_us, overhead_ms).items():
        row = {"what": what, "tflop": round(flops / 1e12, 1), "hours": {}}
        for gpu, peak in gpus.items():
            rate = peak * 1e12 * utilisation
            for n in (1, 2):
                row["hours"][f"{n}x {gpu}"] = round((flops / rate + gpu_fixed_s) / n / 3600 + cpu_s / 3600, 3)
        table[name] = row
    columns = next(iter(table.values()))["hours"]
    totals = {col: round(sum(r["hours"][col] for r in table.values()), 2) for col in columns}
    return {"stages": table, "total_hours": totals,
            "assumptions": {"gpus_peak_tflops": gpus, "utilisation": utilisation, "cpu_workers": cpu_workers,
                            "launch_us": launch_us, "per_image_overhead_ms": overhead_ms,
                            "cpu_ir_label_s": units["cpu_ir_label_s"], "cpu_deeplab_crf_s": units["cpu_deeplab_crf_s"],
                            "random_walk": units["random_walk"], "image_hw": units["defaults"]["image_hw"]}}


def stage_work(units: dict, cpu_workers: int, launch_us: float,
               overhead_ms: float) -> dict[str, tuple[float, float, float, str]]:
    """The work of each stage of the full VOC run: stage → (GPU FLOPs, GPU fixed seconds that split over GPUs, CPU
    seconds that do not, description)."""
    d = units["defaults"]
    n_aug, n_train, n_val, n_test = (FULL_VOC[k] for k in ("train_aug", "train", "val", "test"))
    cam_updates = (n_aug // d["cam_batch_size"]) * d["cam_num_epoches"]
    irn_updates = (n_aug // d["irn_batch_size"]) * d["irn_num_epoches"]
    walk = units["random_walk"]
    ov = overhead_ms / 1000
    return {
        "train_cam": (cam_updates * units["train_cam_update"]
                      + d["cam_num_epoches"] * n_val * units["train_cam_val_image"], 0.0, 0.0,
                      f"{cam_updates} updates of {d['cam_batch_size']} at {d['cam_crop_size']}² (DeiT-S + ResNet-152, "
                      f"fwd+bwd) + {d['cam_num_epoches']}×{n_val} val images"),
        "make_cam": (n_aug * units["make_cam_image"], n_aug * ov, 0.0,
                     f"{n_aug} images × {len(d['cam_scales'])} scales × [img, flip]"),
        "cam_to_ir_label": (0, 0.0, n_aug * units["cpu_ir_label_s"] / cpu_workers,
                            f"{n_aug} × 2 CRFs on the CPU over {cpu_workers} processes"),
        "train_irn": (irn_updates * units["train_irn_update"] + n_train * units["train_irn_mean_shift_image"], 0.0,
                      0.0, f"{irn_updates} updates of {d['irn_batch_size']} at {d['irn_crop_size']}² + mean shift "
                           f"over {n_train}"),
        "make_sem_seg_labels": (n_aug * units["make_sem_seg_irnet_image"],
                                n_aug * (walk["kernel_launches"] * launch_us * 1e-6 + ov), 0.0,
                                f"{n_aug} masks (train_aug for DeepLab): IRNet pair + walk of "
                                f"{walk['kernel_launches']} kernel launches"),
        "train_deeplab": (d["deeplab_iters"] * units["train_deeplab_iteration"], 0.0, 0.0,
                          f"{d['deeplab_iters']} iterations of {d['deeplab_batch']} at {d['deeplab_crop_size']}² "
                          "(MSC, fwd+bwd)"),
        "eval_deeplab": (n_val * units["deeplab_eval_image"], n_val * ov,
                         n_val * units["cpu_deeplab_crf_s"] / cpu_workers,
                         f"{n_val} val images (MSC) + CRF on the CPU over {cpu_workers} processes"),
        "export_deeplab_test": (n_test * units["deeplab_eval_image"], n_test * (ov + units["cpu_deeplab_crf_s"]),
                                0.0, f"{n_test} test images (MSC) + CRF inside each GPU process"),
    }


def projection_markdown(units: dict, proj: dict) -> str:
    """The projection as a Markdown table, its assumptions stated above it and the unit FLOPs below."""
    cols = list(proj["total_hours"])
    a = proj["assumptions"]
    out = ["**Estimate from FLOP counts, not a measurement.** Full VOC run (train_aug 10,582, train 1,464, val 1,449,"
           " test 1,456; every default flag), all images taken as 500×375.",
           f"Assumed sustained throughput: peak × {a['utilisation']:.0%} utilisation, peaks "
           + ", ".join(f"{g} {p:g} TFLOPS" for g, p in a["gpus_peak_tflops"].items())
           + " (--gpu; the defaults A100=312, H100=989 are bf16 dense peaks, i.e. a run with --amp bf16; the "
             "default --amp off runs TF32 matmuls at half those peaks: --gpu A100-tf32=156 H100-tf32=495).",
           f"CPU work: IR-label CRF pair {a['cpu_ir_label_s']:.2f} s and DeepLab CRF {a['cpu_deeplab_crf_s']:.2f} s "
           f"per image measured on this CPU, spread over {a['cpu_workers']} host processes (--num_workers); "
           f"random walk: {a['random_walk']['kernel_launches']} kernel launches per image at {a['launch_us']:g} µs "
           f"({a['random_walk']['flops_fp64'] / 1e9:.1f} GFLOP fp64, negligible); "
           f"{a['per_image_overhead_ms']:g} ms per image of every per-image GPU step for decoding and transfers; "
           "data loading of the training steps assumed to keep up. eval_cam and eval_sem_seg (CPU, minutes) are "
           "not included.", "",
           "| stage | work | TFLOP | " + " | ".join(f"h, {c}" for c in cols) + " |",
           "|---|---|---|" + "---|" * len(cols)]
    for name, row in proj["stages"].items():
        out.append(f"| {name} | {row['what']} | {row['tflop']:,.0f} | "
                   + " | ".join(f"{row['hours'][c]:.2f}" for c in cols) + " |")
    out.append("| **total** | | | " + " | ".join(f"**{proj['total_hours'][c]:.1f}**" for c in cols) + " |")
    unit_lines = [f"{k}: {v / 1e12:.3f} TFLOP" for k, v in units.items() if isinstance(v, int)]
    out += ["", "unit FLOPs (meta device, FlopCounterMode; matmul/conv only): " + "; ".join(unit_lines)]
    return "\n".join(out)


def parse_gpus(values: Iterable[str]) -> dict[str, float]:
    """``--gpu`` values ``NAME=PEAK_TFLOPS`` as {name: peak}."""
    gpus = {}
    for v in values:
        name, _, peak = v.partition("=")
        if not peak:
            raise argparse.ArgumentTypeError(f"--gpu takes NAME=PEAK_TFLOPS, got {v!r}")
        gpus[name] = float(peak)
    return gpus


def run_projection(a: argparse.Namespace) -> int:
    """Count (or reuse) the units, print the projection table and write ``<a.out>/projection.json``."""
    t0 = time.perf_counter()
    units = json.loads(Path(a.units_from).read_text())["units"] if a.units_from else count_units()
    proj = project(units, parse_gpus(a.gpu), a.utilisation, a.cpu_workers, a.launch_us, a.per_image_overhead_ms)
    print(projection_markdown(units, proj))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "projection.json").write_text(json.dumps({"units": units, "projection": proj}, indent=1))
    print(f"\n(projection in {time.perf_counter() - t0:.0f} s; written to {out / 'projection.json'})")
    return 0


# ------------------------------------------------------------------------------------------------------- CLI
def add_projection_arguments(g: argparse._ActionsContainer) -> None:
    """The projection's assumptions (every option but ``--out``), on a parser or an argument group."""
    g.add_argument("--gpu", nargs="+", default=["A100=312", "H100=989"], help="NAME=PEAK_TFLOPS (bf16 dense)")
    g.add_argument("--utilisation", type=float, default=0.35)
    g.add_argument("--cpu_workers", type=int, default=8, help="host processes for the CPU CRFs (--num_workers)")
    g.add_argument("--launch_us", type=float, default=6.0, help="time of one kernel launch of the random walk, in µs")
    g.add_argument("--per_image_overhead_ms", type=float, default=10.0)
    g.add_argument("--units_from", default=None,
                   help="reuse the unit counts of a projection.json written before (other assumptions, no recount)")


def build_parser() -> argparse.ArgumentParser:
    """The projection's own command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="/tmp/crt_rehearsal", help="folder of projection.json")
    add_projection_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python bench/projection.py [options]``."""
    return run_projection(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
