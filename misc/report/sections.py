"""The sections of the run report, each built from a :class:`RunFolder`: the banner, results, run, per-class IoU,
training curves, gallery, warnings and files; and the whole page around them. What a run lacks is said in its
section instead. Dataset-specific facts (names of the labels, where images and ground truth are) come in as a
:class:`DatasetView` from the caller."""
from __future__ import annotations

import json
import os
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from misc.core.paths import config_json, metrics_json, run_json, timings_json, training_log, warnings_jsonl
from misc.report import html as H
from misc.report.gallery import BoxLayout, SegmentationLayout, box_gallery, segmentation_gallery
from misc.report.paper import PAPER_SOURCE_NOTE, ResultRow, lookup, number, result_rows, run_not_comparable
from misc.report.run_folder import RunFolder, read_jsonl

TRAINING_STEPS = ("train_cam", "train_irn", "train_deeplab", "train_wsol")  # in pipeline order; others follow
MAX_WARNINGS = 300

Section = tuple[str, str, str]  # (anchor, title, HTML)


@dataclass(frozen=True)
class DatasetView:
    """What the report knows of the run's dataset: the names of the label values 0, 1, ... (background first;
    None: shown as numbers) and where the gallery finds images and ground truth (None: no such gallery)."""

    label_names: Sequence[str] | None = None
    segmentation: SegmentationLayout | None = None
    boxes: BoxLayout | None = None


def build_sections(folder: RunFolder, dataset: DatasetView, n_images: int) -> list[Section]:
    """(anchor, title, HTML) of each section, in page order; ``n_images`` per gallery."""
    sections = [("results", "Results", results_section(folder)), ("run", "Run", run_section(folder))]
    if folder.dataset != "cub":  # CUB scores boxes per image, not pixels per class
        sections.append(("classes", "Per-class IoU", per_class_section(folder, dataset)))
    return sections + [
        ("training", "Training curves", training_section(folder)),
        ("gallery", "Gallery", gallery_section(folder, dataset, n_images)),
        ("warnings", "Warnings", warnings_section(folder)),
        ("files", "Files", files_section(folder)),
    ]


def render(folder: RunFolder, sections: Sequence[Section], seconds: float) -> str:
    """The whole page: title, the banner and ``sections``; ``seconds`` is the time taken to build them."""
    cfg, run = folder.config, folder.run or {}
    preset = cfg.get("preset") or ("demo" if cfg.get("demo") else None)
    title = f"crt run report: {folder.dataset.upper()}" + (f" ({preset} preset)" if preset else "")
    bits = [f"result folder <code>{H.esc(folder.result_dir)}</code>"]
    if run.get("started"):
        bits.append(f"run started {H.esc(run['started'])}")
    bits.append(f"report written {H.esc(time.strftime('%Y-%m-%d %H:%M:%S'))} in {seconds:.1f} s")
    body = banner(folder) + "\n".join(H.section(a, t, h) for a, t, h in sections)
    return H.page(title, " · ".join(bits), [(a, t) for a, t, _ in sections], body)


def banner(folder: RunFolder) -> str:
    """The box above the sections: whether the run's numbers compare with the paper's."""
    reasons = run_not_comparable(folder.config, folder.run)
    rows = result_rows(folder.dataset, folder.metrics, folder.config)
    if reasons:
        items = "".join(f"<li>{H.esc(r)}</li>" for r in reasons)
        return (f'<div class="banner"><b>Not comparable with the paper.</b> This run\'s numbers show that the pipeline '
                f'works end to end; they are not the paper\'s experiment:<ul>{items}</ul></div>')
    if any(r.paper and r.not_comparable for r in rows):
        return '<div class="banner">Some numbers do not compare with the paper\'s: see the table.</div>'
    if any(r.paper for r in rows):
        return ('<div class="banner okb">The settings are the defaults (the paper\'s); see the table for each '
                'number.</div>')
    return ""


# ------------------------------------------------------------------------------------------------ results
def result_table(rows: Sequence[ResultRow], run_reasons: Sequence[str]) -> str:
    """This run's numbers (4 decimals, ``data-metric`` naming the metrics.json path) beside the paper's (as a
    fraction, 3 decimals, unless the metric is in percent), with whether they compare and why not."""
    body = []
    for r in rows:
        ours = f'<td class="num" data-metric="{H.esc(r.metric_id)}">{H.format_number(r.value)}</td>'
        if r.paper is None:
            paper, verdict = '<td class="num muted">—</td>', '<td class="muted">no paper figure</td>'
        else:
            shown = r.paper.value / 100 if r.unit == "fraction" else r.paper.value
            paper = (f'<td class="num" title="{H.esc(r.paper.what)}; source: {H.esc(r.paper.source)}">'
                     f'{shown:.3f}<div class="src">{H.esc(r.paper.source)}</div></td>')
            why = ["the run itself (see the box above)"] if run_reasons else []
            why += r.not_comparable
            verdict = ('<td class="ok">comparable</td>' if not why else
                       '<td class="bad"><b>not comparable</b>: ' + "; ".join(H.esc(w) for w in why) + "</td>")
        body.append([H.esc(r.label), ours, paper, verdict])
    return H.table(["metric", "this run", "paper", "comparable?"], body, "results")


def results_section(folder: RunFolder) -> str:
    """The results table, and which metrics are not finite numbers."""
    rows = result_rows(folder.dataset, folder.metrics, folder.config)
    if not rows:
        return H.note("No evaluation step has left a metric in metrics.json yet.")
    out = [result_table(rows, run_not_comparable(folder.config, folder.run)),
           f'<p class="src">This run: fractions (MaxBoxAccV2 in percent) as metrics.json holds them, to 4 decimals. '
           f'{H.esc(PAPER_SOURCE_NOTE)} Hover a paper figure for what it measures.</p>']
    missing = [r.label for r in rows if r.value is None]
    if missing:
        out.append(H.note("n/a: the metric is not a finite number (e.g. no pixel of any class): "
                          + "; ".join(missing)))
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------ run
def run_section(folder: RunFolder) -> str:
    """Command, date, commit, devices, the settings, what could not be read, and the seconds per step."""
    from misc.report import plots

    run, cfg = folder.run, folder.config
    out = []
    if run is None:
        out.append(H.note("No run.json (a run made before run records existed, or none ran here): command, date, "
                          "commit and devices are unknown."))
    else:
        git = run.get("git")
        git_text = ("not a git checkout (or git unavailable)" if not git else
                    f"<code>{H.esc(git.get('commit', '?'))}</code>"
                    + (" <b>with uncommitted changes</b>" if git.get("dirty") else "")
                    + (f" on branch {H.esc(git['branch'])}" if git.get("branch") else ""))
        kv = [("command", f"<code>{H.esc(run.get('command', ''))}</code>"),
              ("working folder", f"<code>{H.esc(run.get('cwd', ''))}</code>"),
              ("started", H.esc(run.get("started", "?"))),
              ("git commit", git_text),
              ("devices", "<br>".join(H.esc(d) for d in run.get("devices", [])) or "?"),
              ("processes", H.esc(run.get("world_size", 1))),
              ("host", H.esc(run.get("host", "?"))),
              ("software", f"Python {H.esc(run.get('python', '?'))}, torch {H.esc(run.get('torch', '?'))}"),
              ("steps planned", H.esc(", ".join(s.split(".")[-1] for s in run.get("steps", [])) or "none"))]
        out.append(H.table(None, [[f"<th>{k}</th>", v] for k, v in kv], "kv"))
        nd = run.get("non_default") or {}
        if nd:
            rows = [[f"<code>--{H.esc(k)}</code>", H.esc(json.dumps(v[0])), H.esc(json.dumps(v[1]))]
                    for k, v in sorted(nd.items())]
            out.append(H.details(f"{len(nd)} setting(s) that shape the numbers differ from the defaults",
                                 H.table(["flag", "default", "this run"], rows)))
    if cfg:
        text = json.dumps(cfg, indent=1, sort_keys=True, default=str)
        out.append(H.details("resolved configuration (config.json)", f"<pre>{H.esc(text)}</pre>"))
    for p in folder.problems:
        out.append(H.note(p))
    out.append("<h3>Step timings</h3>")
    if folder.timings:
        total = sum(float(v) for v in folder.timings.values())
        out.append(H.img(plots.timings_bars(folder.timings), "seconds per step", "figure"))
        out.append(f'<p class="src">{len(folder.timings)} steps, {total:.1f} s in all (timings.json; the report '
                   f'step itself is added after it finishes).</p>')
    else:
        out.append(H.note("No timings.json: no step has finished in this folder."))
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------ per class
def class_names(label_names: Sequence[str] | None, n: int) -> list[str]:
    """Names of label values 0..n-1: ``label_names`` when it names exactly ``n`` values, else the numbers."""
    if label_names is not None and len(label_names) == n:
        return list(label_names)
    return [str(i) for i in range(n)]


def class_iou(value: Any) -> list[float | None] | None:
    """A per-class IoU list from a list or a {"0": v, ...} dict (eval_deeplab's "Class IoU")."""
    if isinstance(value, list):
        return [number(v) for v in value]
    if isinstance(value, dict):
        try:
            items = sorted((int(k), v) for k, v in value.items())
        except ValueError:
            return None
        out: list[float | None] = [None] * (items[-1][0] + 1 if items else 0)
        for k, v in items:
            out[k] = number(v)
        return out
    return None


def lookup_str(metrics: dict, *path: str) -> str:
    """``metrics[path...]`` as text, "?" when missing."""
    v = lookup(metrics, path)
    return "?" if v is None else str(v)


def per_class_section(folder: RunFolder, dataset: DatasetView) -> str:
    """Per-class IoU of seeds, pseudo masks and DeepLab side by side, and eval_cam's background-threshold sweep."""
    from misc.report import plots

    m = folder.metrics
    series: dict[str, list[float | None]] = {}
    for label, path in (
            (f"seeds ({lookup_str(m, 'eval_cam', 'eval_set')})", ("eval_cam", "iou")),
            (f"pseudo masks ({lookup_str(m, 'eval_sem_seg', 'eval_set')})", ("eval_sem_seg", "iou")),
            (f"DeepLab ({lookup_str(m, 'eval_deeplab', 'val_list')})", ("eval_deeplab", "no_crf", "Class IoU")),
            (f"DeepLab + CRF ({lookup_str(m, 'eval_deeplab', 'val_list')})", ("eval_deeplab", "crf", "Class IoU"))):
        values = class_iou(lookup(m, path))
        if values:
            series[label] = values
    out = []
    if series:
        n = max(len(v) for v in series.values())
        names = class_names(dataset.label_names, n)
        out.append(H.img(plots.per_class_bars(names, series), "per-class IoU", "figure"))
        rows = [[H.esc(names[i])] + [f'<td class="num">{H.format_number(v[i] if i < len(v) else None)}</td>'
                                     for v in series.values()] for i in range(n)]
        out.append(H.details("the numbers", H.table(["class", *map(H.esc, series)], rows)))
        out.append('<p class="src">Seeds and masks are scored on the train images, DeepLab on val: the bars of one '
                   'class compare stages, not the same images.</p>')
    else:
        out.append(H.note("No per-class IoU yet (eval_cam, eval_sem_seg and eval_deeplab have not run)."))
    sweep = lookup(m, ("eval_cam", "sweep"))
    if isinstance(sweep, dict) and sweep:
        try:
            points = {float(k): number(v) for k, v in sweep.items()}
        except ValueError:
            points = {}
        if points:
            out.append("<h3>Seed mIoU against eval_cam's background threshold</h3>")
            out.append(H.img(plots.sweep_curve(points, number(lookup(m, ("eval_cam", "bg_thres")))),
                             "background-threshold sweep", "figure"))
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------ training
def training_section(folder: RunFolder) -> str:
    """Losses and learning rates per update of each training step, and its per-epoch means."""
    from misc.report import plots

    logs_dir = training_log(folder.result_dir, "x").parent
    found = [p.stem for p in sorted(logs_dir.glob("*.jsonl"))] if logs_dir.is_dir() else []
    trained = [s for s in folder.metrics if s.startswith("train_")]
    steps = [s for s in TRAINING_STEPS if s in found or s in trained]
    steps += [s for s in dict.fromkeys(found + trained) if s not in steps]
    if not steps:
        return H.note("No training step has run in this folder.")
    out = []
    for step in steps:
        out.append(f"<h3>{H.esc(step)}</h3>")
        records = read_jsonl(training_log(folder.result_dir, step))
        if records:
            epochs = {r.get("epoch") for r in records}
            out.append(H.img(plots.training_curves(records), f"{step} losses and learning rates", "figure"))
            out.append(f'<p class="src">{len(records)} updates, {len(epochs)} epoch(s); '
                       f'logs/{H.esc(step)}.jsonl. Learning rates: the first parameter groups of each optimiser, '
                       f'in order.</p>')
        else:
            out.append(H.note(f"no per-update log (logs/{step}.jsonl): the step ran before such logs were written, "
                              "or was skipped as up to date after its log was removed"))
        history = lookup(folder.metrics, (step, "epochs"))
        if isinstance(history, list) and history:
            keys = list(dict.fromkeys(k for e in history if isinstance(e, dict) for k in e))
            rows = [[f'<td class="num">{_cell(e.get(k))}</td>' for k in keys] for e in history if isinstance(e, dict)]
            extra = {k: v for k, v in folder.metrics.get(step, {}).items()
                     if k not in ("epochs", "inputs", "fingerprint") and not isinstance(v, (list, dict))}
            summary = f"per-epoch means ({len(rows)} epochs)" + (
                "; " + ", ".join(f"{k} {_cell(v)}" for k, v in extra.items()) if extra else "")
            out.append(H.details(H.esc(summary), H.table(list(map(H.esc, keys)), rows)))
    return "\n".join(out)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return H.esc(f"{v:.4g}")
    return H.esc(v)


# ------------------------------------------------------------------------------------------------ gallery
def gallery_section(folder: RunFolder, dataset: DatasetView, n: int) -> str:
    """``n`` images per gallery of the dataset's kind (boxes or segmentation); a note where there is none."""
    if n <= 0:
        return H.note("No gallery (--report_num_images 0).")
    if dataset.boxes is not None:
        return box_gallery(folder, n, dataset.boxes)
    if dataset.segmentation is not None:
        return segmentation_gallery(folder, n, dataset.segmentation, dataset.label_names or ())
    return H.note(f"No gallery for dataset {folder.dataset!r} yet.")


# ------------------------------------------------------------------------------------------------ warnings, files
def warnings_section(folder: RunFolder) -> str:
    """The warnings and errors this run logged (warnings.jsonl), earlier runs' records left out."""
    records = read_jsonl(warnings_jsonl(folder.result_dir))
    since = number((folder.run or {}).get("t"))
    shown = [r for r in records if since is None or (number(r.get("t")) or 0.0) >= since - 1.0]
    earlier = len(records) - len(shown)
    out = []
    if not records and not warnings_jsonl(folder.result_dir).is_file():
        out.append(H.note("No warnings.jsonl: the run predates warning collection (see the log)."))
    elif not shown:
        out.append("<p>None: the run logged no warning or error.</p>")
    else:
        n_err = sum(1 for r in shown if r.get("level") in ("ERROR", "CRITICAL"))
        out.append(f"<p>{len(shown)} record(s) of this run, {n_err} error(s). Warnings name outputs removed or "
                   f"recomputed (another configuration, an unreadable file), weights other than the original's, "
                   f"metrics dropped as stale; an error says why the run stopped (a non-finite loss, a missing "
                   f"file, ...).</p>")
        rows = [[H.esc(r.get("time", "")), f'<span class="level-{H.esc(r.get("level", ""))}">'
                 f'{H.esc(r.get("level", ""))}</span>', H.esc(r.get("logger", "")), H.esc(r.get("message", ""))]
                for r in shown[-MAX_WARNINGS:]]
        if len(shown) > MAX_WARNINGS:
            out.append(H.note(f"the last {MAX_WARNINGS} are shown"))
        out.append(H.table(["time", "level", "from", "message"], rows, "warnings"))
    if earlier:
        out.append(H.note(f"{earlier} record(s) of earlier runs in warnings.jsonl are not shown."))
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
            links.append(f'<li><a href="{H.esc(urllib.parse.quote(Path(rel).as_posix()))}">{H.esc(rel)}</a></li>')
    return "<ul>" + "".join(links) + "</ul>" if links else H.note("No record files in this folder.")
