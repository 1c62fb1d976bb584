"""report: one self-contained page per run, ``result/report.html`` (pictures embedded; opens from disk, no network).

It reads only what the run left in ``--result_dir``: ``run.json`` (command, date, commit, devices), ``config.json``,
``timings.json``, ``metrics.json``, the per-update training logs ``logs/<step>.jsonl``, ``warnings.jsonl`` and a
few per-image outputs for the gallery (CAMs, IR labels, pseudo masks, DeepLab predictions, ground truth; CUB: the
box pictures of eval_wsol). What a run lacks is said on the page instead. The last step of every pipeline; also
runs alone on an earlier run's folder:

    python -m step.report --result_dir RUN/result
    python run_sample.py --work_dir RUN --report_pass true --train_cam_pass false ... (every other step off)
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np

from misc.report import html as R
from misc.core.errors import UserError
from misc.core.paths import (cam_path, config_json, deeplab_val_dirs, label_png, metrics_json, report_html, run_json,
                        timings_json, training_log, vis_dir, warnings_jsonl)

log = logging.getLogger(__name__)

TRAINING_STEPS = ("train_cam", "train_irn", "train_deeplab", "train_wsol")  # in pipeline order; others follow
THUMB_WIDTH = 240  # gallery pictures wider than this are shown downscaled
MAX_WARNINGS = 300


class ReportInputError(UserError, FileNotFoundError):
    """The folder to report on does not exist."""


@dataclass
class RunFolder:
    """What a run left in its result folder, with its paths resolved where they are now."""

    result_dir: Path
    config: dict
    run: dict | None
    metrics: dict
    timings: dict
    problems: list[str]

    @classmethod
    def load(cls, result_dir: str | os.PathLike, fallback_config: dict | None = None) -> "RunFolder":
        result_dir = Path(result_dir)
        if not result_dir.is_dir():
            raise ReportInputError(f"report: no result folder at {result_dir}; pass the --result_dir of a run")
        problems: list[str] = []
        config = R.read_json(config_json(result_dir), problems)
        if not isinstance(config, dict):
            problems.append("no config.json: the configuration below is this invocation's, not the run's")
            config = dict(fallback_config or {})
        run = R.read_json(run_json(result_dir), problems)
        metrics = R.read_json(metrics_json(result_dir), problems)
        timings = R.read_json(timings_json(result_dir), problems)
        return cls(result_dir, config, run if isinstance(run, dict) else None,
                   metrics if isinstance(metrics, dict) else {}, timings if isinstance(timings, dict) else {},
                   problems)

    @property
    def dataset(self) -> str:
        if self.config.get("dataset"):
            return str(self.config["dataset"])
        return "cub" if {"train_wsol", "eval_wsol"} & set(self.metrics) else "voc"

    def path(self, flag: str) -> Path | None:
        """The folder or file of config flag ``flag`` as it is now: relative paths against the run's working
        folder; a path under the run's result (or work) folder that has moved with it, under the new one."""
        value = self.config.get(flag)
        if not value:
            return None
        return self.resolve(value)

    def resolve(self, value: str | os.PathLike) -> Path:
        base = Path(self.run["cwd"]) if self.run and self.run.get("cwd") else Path.cwd()
        p = Path(value) if os.path.isabs(value) else base / value
        if p.exists():
            return p
        here = self.result_dir.resolve()
        old_result = self._abs(self.config.get("result_dir"), base)
        old_work = self._abs(self.config.get("work_dir"), base)
        for old, new in ((old_result, here), (old_work, here.parent if old_result and old_work
                                              and old_result.parent == old_work else None)):
            if old is not None and new is not None:
                try:
                    return new / p.relative_to(old)
                except ValueError:
                    continue
        return p

    @staticmethod
    def _abs(value: Any, base: Path) -> Path | None:
        if not value:
            return None
        return Path(value) if os.path.isabs(value) else base / value


def run(args) -> Path:
    """Write ``<result_dir>/report.html`` for the run in ``args.result_dir``; returns its path."""
    t0 = time.perf_counter()
    folder = RunFolder.load(args.result_dir, vars(args))
    n_images = getattr(args, "report_num_images", None)
    if n_images is None:
        n_images = int(folder.config.get("report_num_images", 4))
    sections = build_sections(folder, n_images)
    seconds = time.perf_counter() - t0
    document = render(folder, sections, seconds)
    out = report_html(folder.result_dir)
    from misc.core.io import atomic_write

    atomic_write(out, lambda tmp: Path(tmp).write_text(document, encoding="utf-8"))
    log.info("report: wrote %s (%.0f KB) in %.1f s", out, out.stat().st_size / 1024, time.perf_counter() - t0)
    return out


# ------------------------------------------------------------------------------------------------ sections
def build_sections(folder: RunFolder, n_images: int) -> list[tuple[str, str, str]]:
    """(anchor, title, HTML) of each section, in page order."""
    sections = [("results", "Results", results_section(folder)), ("run", "Run", run_section(folder))]
    if folder.dataset != "cub":  # CUB scores boxes per image, not pixels per class
        sections.append(("classes", "Per-class IoU", per_class_section(folder)))
    return sections + [
        ("training", "Training curves", training_section(folder)),
        ("gallery", "Gallery", gallery_section(folder, n_images)),
        ("warnings", "Warnings", warnings_section(folder)),
        ("files", "Files", files_section(folder)),
    ]


def render(folder: RunFolder, sections: list[tuple[str, str, str]], seconds: float) -> str:
    cfg, run = folder.config, folder.run or {}
    preset = cfg.get("preset") or ("demo" if cfg.get("demo") else None)
    title = f"crt run report: {folder.dataset.upper()}" + (f" ({preset} preset)" if preset else "")
    bits = [f"result folder <code>{R.esc(folder.result_dir)}</code>"]
    if run.get("started"):
        bits.append(f"run started {R.esc(run['started'])}")
    bits.append(f"report written {R.esc(time.strftime('%Y-%m-%d %H:%M:%S'))} in {seconds:.1f} s")
    body = banner(folder) + "\n".join(R.section(a, t, h) for a, t, h in sections)
    return R.page(title, " · ".join(bits), [(a, t) for a, t, _ in sections], body)


def banner(folder: RunFolder) -> str:
    reasons = R.run_not_comparable(folder.config, folder.run)
    rows = R.result_rows(folder.dataset, folder.metrics, folder.config)
    if reasons:
        items = "".join(f"<li>{R.esc(r)}</li>" for r in reasons)
        return (f'<div class="banner"><b>Not comparable with the paper.</b> This run\'s numbers show that the pipeline '
                f'works end to end; they are not the paper\'s experiment:<ul>{items}</ul></div>')
    if any(r.paper and r.not_comparable for r in rows):
        return '<div class="banner">Some numbers do not compare with the paper\'s: see the table.</div>'
    if any(r.paper for r in rows):
        return '<div class="banner okb">The settings are the defaults (the paper\'s); see the table for each number.</div>'
    return ""


def results_section(folder: RunFolder) -> str:
    rows = R.result_rows(folder.dataset, folder.metrics, folder.config)
    if not rows:
        return R.note("No evaluation step has left a metric in metrics.json yet.")
    out = [R.result_table(rows, R.run_not_comparable(folder.config, folder.run)),
           f'<p class="src">This run: fractions (MaxBoxAccV2 in percent) as metrics.json holds them, to 4 decimals. '
           f'{R.esc(R.PAPER_SOURCE_NOTE)} Hover a paper figure for what it measures.</p>']
    missing = [r.label for r in rows if r.value is None]
    if missing:
        out.append(R.note("n/a: the metric is not a finite number (e.g. no pixel of any class): "
                          + "; ".join(missing)))
    return "\n".join(out)


def run_section(folder: RunFolder) -> str:
    from misc.report import plots

    run, cfg = folder.run, folder.config
    out = []
    if run is None:
        out.append(R.note("No run.json (a run made before run records existed, or none ran here): command, date, "
                          "commit and devices are unknown."))
    else:
        git = run.get("git")
        git_text = ("not a git checkout (or git unavailable)" if not git else
                    f"<code>{R.esc(git.get('commit', '?'))}</code>"
                    + (" <b>with uncommitted changes</b>" if git.get("dirty") else "")
                    + (f" on branch {R.esc(git['branch'])}" if git.get("branch") else ""))
        kv = [("command", f"<code>{R.esc(run.get('command', ''))}</code>"),
              ("working folder", f"<code>{R.esc(run.get('cwd', ''))}</code>"),
              ("started", R.esc(run.get("started", "?"))),
              ("git commit", git_text),
              ("devices", "<br>".join(R.esc(d) for d in run.get("devices", [])) or "?"),
              ("processes", R.esc(run.get("world_size", 1))),
              ("host", R.esc(run.get("host", "?"))),
              ("software", f"Python {R.esc(run.get('python', '?'))}, torch {R.esc(run.get('torch', '?'))}"),
              ("steps planned", R.esc(", ".join(s.split(".")[-1] for s in run.get("steps", [])) or "none"))]
        out.append(R.table(None, [[f"<th>{k}</th>", v] for k, v in kv], "kv"))
        nd = run.get("non_default") or {}
        if nd:
            rows = [[f"<code>--{R.esc(k)}</code>", R.esc(json.dumps(v[0])), R.esc(json.dumps(v[1]))]
                    for k, v in sorted(nd.items())]
            out.append(R.details(f"{len(nd)} setting(s) that shape the numbers differ from the defaults",
                                 R.table(["flag", "default", "this run"], rows)))
    if cfg:
        text = json.dumps(cfg, indent=1, sort_keys=True, default=str)
        out.append(R.details("resolved configuration (config.json)", f"<pre>{R.esc(text)}</pre>"))
    for p in folder.problems:
        out.append(R.note(p))
    out.append("<h3>Step timings</h3>")
    if folder.timings:
        total = sum(float(v) for v in folder.timings.values())
        out.append(R.img(plots.timings_bars(folder.timings), "seconds per step", "figure"))
        out.append(f'<p class="src">{len(folder.timings)} steps, {total:.1f} s in all (timings.json; the report '
                   f'step itself is added after it finishes).</p>')
    else:
        out.append(R.note("No timings.json: no step has finished in this folder."))
    return "\n".join(out)


def class_names(dataset: str, n: int) -> list[str]:
    """Names of label values 0..n-1 (VOC: background and the 20 classes; other datasets: the numbers)."""
    if dataset == "voc" and n == 21:
        from voc12.facts import CLASS_NAMES as VOC_CLASS_NAMES

        return ["background", *VOC_CLASS_NAMES]
    return [str(i) for i in range(n)]


def _class_iou(value: Any) -> list[float | None] | None:
    """A per-class IoU list from a list or a {"0": v, ...} dict (eval_deeplab's "Class IoU")."""
    if isinstance(value, list):
        return [R.number(v) for v in value]
    if isinstance(value, dict):
        try:
            items = sorted((int(k), v) for k, v in value.items())
        except ValueError:
            return None
        out: list[float | None] = [None] * (items[-1][0] + 1 if items else 0)
        for k, v in items:
            out[k] = R.number(v)
        return out
    return None


def per_class_section(folder: RunFolder) -> str:
    from misc.report import plots

    m = folder.metrics
    series: dict[str, list[float | None]] = {}
    for label, path in (
            (f"seeds ({lookup_str(m, 'eval_cam', 'eval_set')})", ("eval_cam", "iou")),
            (f"pseudo masks ({lookup_str(m, 'eval_sem_seg', 'eval_set')})", ("eval_sem_seg", "iou")),
            (f"DeepLab ({lookup_str(m, 'eval_deeplab', 'val_list')})", ("eval_deeplab", "no_crf", "Class IoU")),
            (f"DeepLab + CRF ({lookup_str(m, 'eval_deeplab', 'val_list')})", ("eval_deeplab", "crf", "Class IoU"))):
        values = _class_iou(R.lookup(m, path))
        if values:
            series[label] = values
    out = []
    if series:
        n = max(len(v) for v in series.values())
        names = class_names(folder.dataset, n)
        out.append(R.img(plots.per_class_bars(names, series), "per-class IoU", "figure"))
        rows = [[R.esc(names[i])] + [f'<td class="num">{R.format_number(v[i] if i < len(v) else None)}</td>'
                                     for v in series.values()] for i in range(n)]
        out.append(R.details("the numbers", R.table(["class", *map(R.esc, series)], rows)))
        out.append('<p class="src">Seeds and masks are scored on the train images, DeepLab on val: the bars of one '
                   'class compare stages, not the same images.</p>')
    else:
        out.append(R.note("No per-class IoU yet (eval_cam, eval_sem_seg and eval_deeplab have not run)."))
    sweep = R.lookup(m, ("eval_cam", "sweep"))
    if isinstance(sweep, dict) and sweep:
        try:
            points = {float(k): R.number(v) for k, v in sweep.items()}
        except ValueError:
            points = {}
        if points:
            out.append("<h3>Seed mIoU against eval_cam's background threshold</h3>")
            out.append(R.img(plots.sweep_curve(points, R.number(R.lookup(m, ("eval_cam", "bg_thres")))),
                             "background-threshold sweep", "figure"))
    return "\n".join(out)


def lookup_str(metrics: dict, *path: str) -> str:
    v = R.lookup(metrics, path)
    return "?" if v is None else str(v)


def training_section(folder: RunFolder) -> str:
    from misc.report import plots

    logs_dir = training_log(folder.result_dir, "x").parent
    found = [p.stem for p in sorted(logs_dir.glob("*.jsonl"))] if logs_dir.is_dir() else []
    trained = [s for s in folder.metrics if s.startswith("train_")]
    steps = [s for s in TRAINING_STEPS if s in found or s in trained]
    steps += [s for s in dict.fromkeys(found + trained) if s not in steps]
    if not steps:
        return R.note("No training step has run in this folder.")
    out = []
    for step in steps:
        out.append(f"<h3>{R.esc(step)}</h3>")
        records = R.read_jsonl(training_log(folder.result_dir, step))
        if records:
            epochs = {r.get("epoch") for r in records}
            out.append(R.img(plots.training_curves(records), f"{step} losses and learning rates", "figure"))
            out.append(f'<p class="src">{len(records)} updates, {len(epochs)} epoch(s); '
                       f'logs/{R.esc(step)}.jsonl. Learning rates: the first parameter groups of each optimiser, '
                       f'in order.</p>')
        else:
            out.append(R.note(f"no per-update log (logs/{step}.jsonl): the step ran before such logs were written, "
                              "or was skipped as up to date after its log was removed"))
        history = R.lookup(folder.metrics, (step, "epochs"))
        if isinstance(history, list) and history:
            keys = list(dict.fromkeys(k for e in history if isinstance(e, dict) for k in e))
            rows = [[f'<td class="num">{_cell(e.get(k))}</td>' for k in keys] for e in history if isinstance(e, dict)]
            extra = {k: v for k, v in folder.metrics.get(step, {}).items()
                     if k not in ("epochs", "inputs", "fingerprint") and not isinstance(v, (list, dict))}
            summary = f"per-epoch means ({len(rows)} epochs)" + (
                "; " + ", ".join(f"{k} {_cell(v)}" for k, v in extra.items()) if extra else "")
            out.append(R.details(R.esc(summary), R.table(list(map(R.esc, keys)), rows)))
    return "\n".join(out)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return R.esc(f"{v:.4g}")
    return R.esc(v)


# ------------------------------------------------------------------------------------------------ gallery
def _encode(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb.astype(np.uint8))).save(buf, format="PNG")
    return buf.getvalue()


def _shrink(arr: np.ndarray, width: int, nearest: bool) -> np.ndarray:
    """Downscale to ``width`` pixels wide (aspect kept) when wider."""
    if arr.shape[1] <= width:
        return arr
    from PIL import Image

    h = max(1, round(arr.shape[0] * width / arr.shape[1]))
    return np.asarray(Image.fromarray(arr).resize((width, h), Image.NEAREST if nearest else Image.BILINEAR))


def _read_rgb(path: Path) -> np.ndarray | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError):
        return None


def _read_label(path: Path) -> np.ndarray | None:
    from misc.method.imutils import read_label_png

    try:
        return read_label_png(path, num_classes=None)
    except (UserError, OSError):
        return None


def _spread(ids: Sequence[str], n: int, numeric: bool = False) -> list[str]:
    """``n`` ids spread evenly over the sorted list (first and last included); ``numeric``: ids that are numbers
    sort as numbers (CUB)."""
    ids = sorted(ids, key=(lambda i: (len(i), i)) if numeric else None)
    if n <= 0 or not ids:
        return []
    if n >= len(ids):
        return list(ids)
    if n == 1:
        return [ids[0]]
    return [ids[round(i * (len(ids) - 1) / (n - 1))] for i in range(n)]


def _gallery_block(title: str, rows: list[list[str]]) -> list[str]:
    """A gallery heading and one table per image row; nothing when there are no rows."""
    if not rows:
        return []
    return [f"<h3>{title}</h3>", "\n".join('<table class="gallery"><tr>' + "".join(r) + "</tr></table>" for r in rows)]


def _stems(folder: Path | None, suffix: str) -> list[str]:
    if folder is None or not folder.is_dir():
        return []
    return [p.name[: -len(suffix)] for p in folder.iterdir() if p.name.endswith(suffix) and not p.name.startswith(".")]


class _Cells:
    """One gallery row: pictures with captions, and the label values shown (for the legend)."""

    def __init__(self) -> None:
        self.cells: list[str] = []
        self.values: set[int] = set()

    def picture(self, rgb: np.ndarray | None, caption: str, nearest: bool = False) -> None:
        if rgb is None:
            self.cells.append(f'<td class="muted">—<br>{R.esc(caption)}</td>')
            return
        picture = R.img(_encode(_shrink(rgb, THUMB_WIDTH, nearest)), caption, "lbl" if nearest else "")
        self.cells.append(f"<td>{picture}{R.esc(caption)}</td>")

    def label(self, label: np.ndarray | None, caption: str) -> None:
        from misc.core.labels import colorize_label

        if label is not None:
            self.values |= {int(v) for v in np.unique(label)}
        self.picture(None if label is None else colorize_label(label), caption, nearest=True)


def voc_gallery(folder: RunFolder, n: int) -> str:
    """Train images: image | CAM of each GT class | IR label | pseudo mask | GT; val images: image | DeepLab
    without / with CRF | GT."""
    from misc.core.labels import label_palette
    from misc.core.io import load_npz
    from misc.report.vis import overlay
    from voc12.layout import class_gt_path, image_path

    root = folder.path("voc12_root")
    if root is None or not root.is_dir():
        return R.note(f"The dataset folder ({root}) is not there any more: no gallery.")
    cam_dir, ir_dir, sem_dir = (folder.path(f) for f in ("cam_out_dir", "ir_label_out_dir", "sem_seg_out_dir"))
    names = class_names("voc", 21)
    out, values = [], set()

    train = _stems(sem_dir, ".png") or _stems(cam_dir, ".npz") or _stems(ir_dir, ".png")
    train = [i for i in train if class_gt_path(root, i).is_file()]
    rows = []
    for img_id in _spread(train, n):
        img = _read_rgb(image_path(root, img_id))
        row = _Cells()
        row.picture(img, img_id)
        cam_file = cam_path(cam_dir, img_id) if cam_dir else None
        if img is not None and cam_file is not None and cam_file.is_file():
            try:
                cam = load_npz(cam_file)
                for key, c in zip(cam["keys"], cam["high_res"]):
                    if c.shape == img.shape[:2]:
                        name = names[int(key) + 1] if int(key) + 1 < len(names) else key
                        row.picture(overlay(img, c), f"CAM: {name}")
            except (OSError, ValueError, KeyError):
                row.picture(None, "CAM unreadable")
        else:
            row.picture(None, "no CAM")
        row.label(_read_label(label_png(ir_dir, img_id)) if ir_dir else None, "IR label")
        row.label(_read_label(label_png(sem_dir, img_id)) if sem_dir else None, "pseudo mask")
        row.label(_read_label(class_gt_path(root, img_id)), "ground truth")
        values |= row.values
        rows.append(row.cells)
    out.extend(_gallery_block("Train images: CAMs, IR labels, pseudo masks", rows))
    dl = folder.path("deeplab_out_dir")
    if dl is not None:
        _, pred_dir, crf_dir = deeplab_val_dirs(SimpleNamespace(deeplab_out_dir=dl))
        val = _stems(pred_dir, ".png") or _stems(crf_dir, ".png")
        val = [i for i in val if class_gt_path(root, i).is_file()]
        rows = []
        for img_id in _spread(val, n):
            row = _Cells()
            row.picture(_read_rgb(image_path(root, img_id)), img_id)
            row.label(_read_label(label_png(pred_dir, img_id)), "DeepLab")
            row.label(_read_label(label_png(crf_dir, img_id)), "DeepLab + CRF")
            row.label(_read_label(class_gt_path(root, img_id)), "ground truth")
            values |= row.values
            rows.append(row.cells)
        out.extend(_gallery_block("Val images: DeepLab predictions", rows))
    if not out:
        return R.note("No per-image outputs with ground truth yet (make_cam, make_sem_seg_labels, eval_deeplab).")
    pal = np.asarray(label_palette(), np.uint8).reshape(256, 3)
    out.append(R.legend({v: tuple(pal[v]) for v in values},
                        lambda v: "ignore" if v == 255 else names[v] if v < len(names) else str(v)))
    return "\n".join(out)


def cub_gallery(folder: RunFolder, n: int) -> str:
    """Test images: the image | eval_wsol's picture (GT-class CAM, GT box green, predicted box red)."""
    pictures = vis_dir(SimpleNamespace(result_dir=folder.result_dir), "wsol")
    ids = _spread(_stems(pictures, ".png"), n, numeric=True)
    if not ids:
        return R.note("No eval_wsol pictures (result/vis/wsol) yet.")
    from cub.layout import image_paths

    root, size = folder.path("cub_root"), int(folder.config.get("wsol_image_size", 224))
    paths = image_paths(root) if root is not None and root.is_dir() else {}
    rows = []
    for img_id in ids:
        row = _Cells()
        image = _read_rgb(paths[img_id]) if img_id in paths else None
        if image is not None:  # eval_wsol's frame: the whole image resized to size x size
            from PIL import Image

            image = np.asarray(Image.fromarray(image).resize((size, size)))
        row.picture(image, f"image {img_id}")
        row.picture(_read_rgb(label_png(pictures, img_id)), "CAM, GT box (green), predicted box (red)")
        rows.append(row.cells)
    return ("\n".join('<table class="gallery"><tr>' + "".join(r) + "</tr></table>" for r in rows)
            + '<p class="src">The CAM of the ground-truth class; the predicted box is the one GT-known scores.</p>')


def gallery_section(folder: RunFolder, n: int) -> str:
    if n <= 0:
        return R.note("No gallery (--report_num_images 0).")
    if folder.dataset == "cub":
        return cub_gallery(folder, n)
    if folder.dataset == "voc":
        return voc_gallery(folder, n)
    return R.note(f"No gallery for dataset {folder.dataset!r} yet.")


# ------------------------------------------------------------------------------------------------ warnings, files
def warnings_section(folder: RunFolder) -> str:
    records = R.read_jsonl(warnings_jsonl(folder.result_dir))
    since = R.number((folder.run or {}).get("t"))
    shown = [r for r in records if since is None or (R.number(r.get("t")) or 0.0) >= since - 1.0]
    earlier = len(records) - len(shown)
    out = []
    if not records and not warnings_jsonl(folder.result_dir).is_file():
        out.append(R.note("No warnings.jsonl: the run predates warning collection (see the log)."))
    elif not shown:
        out.append("<p>None: the run logged no warning or error.</p>")
    else:
        n_err = sum(1 for r in shown if r.get("level") in ("ERROR", "CRITICAL"))
        out.append(f"<p>{len(shown)} record(s) of this run, {n_err} error(s). Warnings name outputs removed or "
                   f"recomputed (another configuration, an unreadable file), weights other than the original's, "
                   f"metrics dropped as stale; an error says why the run stopped (a non-finite loss, a missing "
                   f"file, ...).</p>")
        rows = [[R.esc(r.get("time", "")), f'<span class="level-{R.esc(r.get("level", ""))}">'
                 f'{R.esc(r.get("level", ""))}</span>', R.esc(r.get("logger", "")), R.esc(r.get("message", ""))]
                for r in shown[-MAX_WARNINGS:]]
        if len(shown) > MAX_WARNINGS:
            out.append(R.note(f"the last {MAX_WARNINGS} are shown"))
        out.append(R.table(["time", "level", "from", "message"], rows, "warnings"))
    if earlier:
        out.append(R.note(f"{earlier} record(s) of earlier runs in warnings.jsonl are not shown."))
    return "\n".join(out)


def files_section(folder: RunFolder) -> str:
    """Links (relative to the report) to the run's records that exist."""
    rd = folder.result_dir
    candidates = [config_json(rd), run_json(rd), timings_json(rd), metrics_json(rd), rd / "metrics_history.jsonl",
                  warnings_jsonl(rd)]
    logs = training_log(rd, "x").parent
    if logs.is_dir():
        candidates += sorted(logs.glob("*.jsonl"))
    work = folder.path("work_dir")
    if work is not None and folder.config.get("log_name"):
        candidates.append(work / f"{folder.config['log_name']}.log")
    links = []
    for p in candidates:
        if p.is_file():
            rel = os.path.relpath(p, rd)
            links.append(f'<li><a href="{R.esc(urllib.parse.quote(Path(rel).as_posix()))}">{R.esc(rel)}</a></li>')
    return "<ul>" + "".join(links) + "</ul>" if links else R.note("No record files in this folder.")


# ------------------------------------------------------------------------------------------------ entry point
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m step.report --result_dir RUN/result``: (re)write the report of an earlier run."""
    p = argparse.ArgumentParser(prog="python -m step.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--result_dir", required=True, help="the run's result folder (holding metrics.json)")
    p.add_argument("--report_num_images", type=int, default=None,
                   help="images per gallery (default: the run's --report_num_images, else 4)")
    a = p.parse_args(argv)
    if a.report_num_images is not None and a.report_num_images < 0:
        p.error(f"--report_num_images {a.report_num_images}: must be >= 0")
    from misc.core.log import setup_logging

    setup_logging()
    try:
        path = run(argparse.Namespace(result_dir=a.result_dir, report_num_images=a.report_num_images))
    except UserError as exc:
        sys.stderr.write(f"crt: error: {exc}\n")
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
