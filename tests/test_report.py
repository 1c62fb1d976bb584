"""The run report (result/report.html): built at the end of the tiny VOC and CUB runs, rebuilt alone on a run's
folder, and on folders that lack most steps. The HTML parses, every picture and link resolves, and every number of
the results table is the one in metrics.json."""
from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

import run_sample
from misc.report import paper as R
from pipeline.steps import SEGMENTATION_STEPS, Step

SEGMENTATION_SWITCHES = [s.switch for s in SEGMENTATION_STEPS]
from tests.conftest import REPO_ROOT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ReportParser(HTMLParser):
    """Collects pictures, links, section ids, h3 titles and the results table's ``data-metric`` cells."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.imgs: list[str] = []
        self.links: list[str] = []
        self.ids: list[str] = []
        self.h3: list[str] = []
        self.metric_cells: dict[str, str] = {}
        self.stack: list[str] = []
        self._metric: str | None = None
        self._h3: str | None = None
        self._text: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in ("img", "meta", "br", "link"):
            self.stack.append(tag)
        if tag == "img":
            self.imgs.append(a["src"])
        elif tag == "a":
            self.links.append(a["href"])
        elif tag == "script":
            self.scripts += 1
        elif tag == "link":
            self.links.append(a.get("href", ""))
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "td" and "data-metric" in a:
            self._metric, self._text = a["data-metric"], []
        if tag == "h3":
            self._h3, self._text = "", []

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}> after {self.stack[-3:]}"
        self.stack.pop()
        if tag == "td" and self._metric is not None:
            self.metric_cells[self._metric] = "".join(self._text).strip()
            self._metric = None
        if tag == "h3" and self._h3 is not None:
            self.h3.append("".join(self._text).strip())
            self._h3 = None

    def handle_data(self, data):
        self._text.append(data)


def parse_report(path: Path) -> ReportParser:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    parser = ReportParser()
    parser.feed(text)
    parser.close()
    assert parser.stack == [], f"unclosed tags: {parser.stack}"
    return parser


def check_self_contained(report: Path, parser: ReportParser) -> None:
    """Every picture is an embedded PNG; every link is a fragment of the page or a file that exists."""
    for src in parser.imgs:
        assert src.startswith("data:image/png;base64,"), src[:60]
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    for href in parser.links:
        assert "://" not in href, href  # no network
        if href.startswith("#"):
            assert href[1:] in parser.ids, href
        else:
            from urllib.parse import unquote

            assert (report.parent / unquote(href)).is_file(), href


def check_numbers(parser: ReportParser, metrics: dict, expected: set[str]) -> None:
    """The results table holds ``expected`` metric paths, each the metrics.json value to 4 decimals."""
    assert set(parser.metric_cells) == expected
    for metric_id, text in parser.metric_cells.items():
        value = R.lookup(metrics, metric_id.split("/"))
        if value is None:
            assert text == "n/a"
        else:
            assert float(text) == pytest.approx(round(value, 4), abs=1e-12), metric_id
            assert text == f"{value:.4f}"


VOC_METRICS = {"eval_cam/miou", "eval_cam/best_miou", "eval_sem_seg/miou", "eval_ins_seg/map_0.5",
               "eval_deeplab/no_crf/Mean IoU", "eval_deeplab/crf/Mean IoU"}


def test_voc_pipeline_report(tiny_voc_run):
    work, argv = tiny_voc_run
    result = work / "result"
    report = result / "report.html"
    parser = parse_report(report)
    check_self_contained(report, parser)
    metrics = json.loads((result / "metrics.json").read_text())
    check_numbers(parser, metrics, VOC_METRICS)
    assert {"results", "run", "classes", "training", "gallery", "warnings", "files"} <= set(parser.ids)
    assert {"train_cam", "train_irn", "train_deeplab"} <= set(parser.h3)
    text = report.read_text()
    assert "Not comparable with the paper" in text and "a &#x27;tiny&#x27; preset run" in text
    # pictures: 2 timings/per-class/sweep + 3 training curves, 4 train and 4 val gallery rows (image first)
    ids = [p.stem for p in (result / "sem_seg").glob("*.png")]
    shown = [i for i in sorted(ids) if f'alt="{i}"' in text]
    assert len(shown) == 4
    # the report is the last step of the run, and the run recorded itself
    timings = json.loads((result / "timings.json").read_text())
    assert list(timings)[-1] == "step.report"
    run = json.loads((result / "run.json").read_text())
    assert run["argv"][:3] == argv[:3] and run["steps"][-1] == "step.report"
    assert run["devices"][0].startswith("cpu") and run["non_default"]["cam_num_epoches"] == [10, 3]
    head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert run["git"]["commit"] == head.stdout.strip() and f"<code>{run['git']['commit']}</code>" in text
    assert (result / "warnings.jsonl").is_file()


def test_report_alone_leaves_the_runs_records(tiny_voc_run, tmp_path):
    work, _ = tiny_voc_run
    result = work / "result"
    records = {n: (result / n).read_bytes() for n in ("config.json", "run.json", "timings.json")}
    os.remove(result / "report.html")
    off = [x for flag in SEGMENTATION_SWITCHES if flag != "report_pass" for x in (f"--{flag}", "false")]
    # a bare invocation (no --demo, another --vis_num): the page still describes the run in the folder
    assert run_sample.main(["--work_dir", str(work), "--device", "cpu", "--vis_num", "1", *off]) == 0
    assert {n: (result / n).read_bytes() for n in records} == records
    parser = parse_report(result / "report.html")
    check_numbers(parser, json.loads((result / "metrics.json").read_text()), VOC_METRICS)
    assert "a &#x27;tiny&#x27; preset run" in (result / "report.html").read_text()

    # the module entry point (without importing torch), on a copy of the result folder
    copy = tmp_path / "copy" / "result"
    shutil.copytree(result, copy, ignore=shutil.ignore_patterns("cam", "ins_seg", "sem_seg", "ir_label", "deeplab"))
    code = ("import sys, step.report; rc = step.report.main(sys.argv[1:]); "
            "print('torch imported' if 'torch' in sys.modules else 'no torch'); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code, "--result_dir", str(copy), "--report_num_images", "2"],
                         cwd=REPO_ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(copy / "report.html"), "no", "torch"]
    parser = parse_report(copy / "report.html")
    check_self_contained(copy / "report.html", parser)
    check_numbers(parser, json.loads((copy / "metrics.json").read_text()), VOC_METRICS)
    assert len([h for h in parser.links if h.startswith("logs/")]) == 3
    bad = subprocess.run([sys.executable, "-m", "step.report", "--result_dir", str(tmp_path / "none")],
                         cwd=REPO_ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "no result folder" in bad.stderr


def test_paths_of_a_moved_run_follow_it(tmp_path):
    from misc.report.run_folder import RunFolder

    new = tmp_path / "new"
    (new / "result" / "sem_seg").mkdir(parents=True)
    (new / "data" / "voc").mkdir(parents=True)
    old = "/nonexistent/old"
    config = {"work_dir": old, "result_dir": f"{old}/result", "sem_seg_out_dir": f"{old}/result/sem_seg",
              "voc12_root": f"{old}/data/voc", "cam_out_dir": "result/cam", "elsewhere": "/nonexistent/x"}
    (new / "result" / "config.json").write_text(json.dumps(config))
    folder = RunFolder.load(new / "result")
    assert folder.path("sem_seg_out_dir") == (new / "result" / "sem_seg").resolve()
    assert folder.path("voc12_root") == (new / "data" / "voc").resolve()
    assert folder.path("elsewhere") == Path("/nonexistent/x") and folder.path("missing") is None
    (new / "result" / "run.json").write_text(json.dumps({"cwd": str(tmp_path / "cwd")}))
    assert RunFolder.load(new / "result").path("cam_out_dir") == tmp_path / "cwd" / "result" / "cam"


def test_cub_pipeline_report(tiny_cub_run):
    work, _ = tiny_cub_run
    report = work / "result" / "report.html"
    parser = parse_report(report)
    check_self_contained(report, parser)
    metrics = json.loads((work / "result" / "metrics.json").read_text())
    check_numbers(parser, metrics, {f"eval_wsol/{k}" for k in ("cls_top1", "cls_top5", "loc_top1", "loc_top5",
                                                              "loc_gt_known", "maxboxacc", "whole_image_gt_known")})
    assert "classes" not in parser.ids and "train_wsol" in parser.h3
    text = report.read_text()
    assert text.count('alt="CAM, GT box (green), predicted box (red)"') == 4
    assert "epoch selected on &#x27;heldout&#x27; images" in text


def _report(tmp_path: Path, **files) -> tuple[Path, ReportParser]:
    from step.report import run

    result = tmp_path / "result"
    result.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (result / name.replace("__", ".")).write_text(data if isinstance(data, str) else json.dumps(data))
    path = run(type("A", (), {"result_dir": str(result), "report_num_images": 4})())
    parser = parse_report(path)
    check_self_contained(path, parser)
    return path, parser


def test_report_of_an_empty_folder(tmp_path):
    path, parser = _report(tmp_path)
    assert parser.metric_cells == {} and parser.imgs == []
    text = path.read_text()
    assert "No evaluation step has left a metric" in text and "No run.json" in text
    assert "No training step has run" in text and "No timings.json" in text


def test_report_with_one_metric_and_nan(tmp_path):
    iou = [0.9, None] + [0.25] * 19
    metrics = {"eval_cam": {"miou": 0.123456789, "iou": iou, "bg_thres": 0.15, "eval_set": "train",
                            "num_images": 3, "sweep": {"0.10": 0.1, "0.15": 0.123456789, "0.20": None},
                            "best_bg_thres": 0.15, "best_miou": 0.123456789},
               "eval_sem_seg": {"miou": None, "iou": [None] * 21, "eval_set": "train", "num_images": 3}}
    path, parser = _report(tmp_path, metrics__json=metrics)
    check_numbers(parser, metrics, {"eval_cam/miou", "eval_cam/best_miou", "eval_sem_seg/miou"})
    assert parser.metric_cells["eval_cam/miou"] == "0.1235" and parser.metric_cells["eval_sem_seg/miou"] == "n/a"
    assert len(parser.imgs) == 2  # per-class bars and the sweep curve
    assert "scored on 3 images of &#x27;train&#x27;" in path.read_text()


def class_column(report: Path) -> list[str]:
    """The first cell of each row of the per-class IoU table."""
    section = report.read_text().split('<section id="classes">', 1)[1].split("</section>", 1)[0]
    return [row.split("</td>", 1)[0] for row in section.split("<tr><td>")[1:]]


def test_report_names_coco_classes_by_their_categories(tmp_path):
    from types import SimpleNamespace

    from coco.dataset import COCO_2014_CATEGORIES, write_category_map

    result = tmp_path / "result"
    result.mkdir()
    records = [{"id": i, "name": name, "supercategory": ""} for i, name in COCO_2014_CATEGORIES]
    index = SimpleNamespace(root=tmp_path / "coco", splits={"train": []}, category_records=lambda: records)
    write_category_map(index, result)
    iou = [0.5] * 81
    metrics = {"eval_cam": {"miou": 0.5, "iou": iou, "eval_set": "train", "num_images": 2},
               "eval_deeplab": {"no_crf": {"Mean IoU": 0.5, "Class IoU": {str(k): 0.5 for k in range(81)}},
                                "num_images": 2, "val_list": "val"}}
    path, _ = _report(tmp_path, config__json={"dataset": "coco"}, metrics__json=metrics)
    assert class_column(path) == ["background", *(name for _, name in COCO_2014_CATEGORIES)]
    # without the category map the classes are numbered
    os.remove(result / "coco_categories.json")
    path, _ = _report(tmp_path, config__json={"dataset": "coco"}, metrics__json=metrics)
    assert class_column(path) == [str(k) for k in range(81)]


def test_report_of_a_run_with_training_logs_and_warnings(tmp_path):
    records = "".join(json.dumps({"update": u, "epoch": 1 + u // 3, "total": 1.0 / u, "l1": None if u == 2 else 0.5,
                                  "lr": [0.1 * (1 - u / 7), 1.0]}) + "\n" for u in range(1, 7))
    (tmp_path / "result" / "logs").mkdir(parents=True)
    (tmp_path / "result" / "logs" / "train_x.jsonl").write_text(records + '{"update": 7, "tot')  # cut mid-line
    run = {"t": 1000.0, "started": "then", "argv": [], "command": "python run_sample.py", "devices": ["cpu"],
           "git": None, "non_default": {}}
    warn = "".join(json.dumps({"t": t, "time": str(t), "level": lv, "logger": "crt", "message": m}) + "\n"
                   for t, lv, m in ((900.0, "WARNING", "from an earlier run"), (1001.0, "WARNING", "recomputing a"),
                                    (1002.0, "ERROR", "run stopped in train_x: <NaN>")))
    path, parser = _report(tmp_path, run__json=run, warnings__jsonl=warn,
                           timings__json={"step.train_x": 1.5, "step.report": 0.5})
    text = path.read_text()
    assert "train_x" in parser.h3 and "6 updates, 3 epoch(s)" in text
    assert "recomputing a" in text and "run stopped in train_x: &lt;NaN&gt;" in text
    assert "from an earlier run" not in text and "1 record(s) of earlier runs" in text
    assert "not a git checkout" in text and "2 record(s) of this run, 1 error(s)" in text


def test_comparability_rules():
    defaults = {"preset": None, "demo": False, "no_pretrained": False, "deeplab_init": "/w/deeplabv1_resnet101-coco.pth"}
    paper_like = {"eval_cam": {"miou": 0.58, "bg_thres": 0.15, "eval_set": "train", "num_images": 1464},
                  "eval_sem_seg": {"miou": 0.71, "eval_set": "train", "num_images": 1464},
                  "eval_deeplab": {"no_crf": {"Mean IoU": 0.70}, "crf": {"Mean IoU": 0.71}, "num_images": 1449,
                                   "crf_guide": "original", "val_list": "val"}}
    assert R.run_not_comparable(defaults, {"non_default": {}}) == []
    rows = {r.metric_id: r for r in R.result_rows("voc", paper_like, defaults)}
    assert [rows[k].not_comparable for k in ("eval_cam/miou", "eval_sem_seg/miou", "eval_deeplab/crf/Mean IoU")] \
        == [[], [], []]
    assert rows["eval_cam/miou"].paper.value == 57.7 and rows["eval_deeplab/no_crf/Mean IoU"].paper is None
    # ImageNet init for DeepLab: only the DeepLab row stops comparing
    rows = {r.metric_id: r for r in R.result_rows("voc", paper_like, {**defaults, "deeplab_init": None})}
    assert rows["eval_cam/miou"].not_comparable == [] and "COCO" in rows["eval_deeplab/crf/Mean IoU"].not_comparable[0]
    demo = {**defaults, "preset": "demo", "demo": True, "cam_cnn_pretrained": "/r/weights/standin/resnet18_w16.pth"}
    why = R.run_not_comparable(demo, {"non_default": {"cam_batch_size": [16, 8]}})
    assert len(why) == 3 and "demo" in why[0] and "--cam_cnn_pretrained" in why[1] and "--cam_batch_size" in why[2]
    assert "random weights" in R.run_not_comparable({**defaults, "no_pretrained": True}, {"non_default": {}})[0]
    cub = {"eval_wsol": {"cls_top1": 0.8, "loc_top1": 0.73, "n_images": 5794, "box_rule": "original"},
           "train_wsol": {"select_on": "heldout"}}
    rows = {r.metric_id: r for r in R.result_rows("cub", cub, defaults)}
    assert rows["eval_wsol/loc_top1"].paper.value == 72.9 and "test set" in rows["eval_wsol/loc_top1"].not_comparable[0]
    cub["train_wsol"]["select_on"] = "test"
    assert all(not r.not_comparable for r in R.result_rows("cub", cub, defaults))


def test_warnings_are_collected_from_this_process_and_its_children(tmp_path):
    from misc.core.log import WARNINGS_ENV, collect_warnings

    path = tmp_path / "warnings.jsonl"
    log = logging.getLogger("crt.test_report")
    with collect_warnings(path):
        log.warning("a %s warning", "formatted")
        log.info("not recorded")
        code = ("import logging; from misc.core.log import setup_logging; setup_logging(); "
                "logging.getLogger('child').error('from a child')")
        subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, capture_output=True)
    log.warning("after the run: not recorded")
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["level"], r["logger"], r["message"]) for r in recs] == [
        ("WARNING", "crt.test_report", "a formatted warning"), ("ERROR", "child", "from a child")]
    assert WARNINGS_ENV not in os.environ
    assert not any(type(h).__name__ == "WarningsFileHandler" for h in logging.getLogger().handlers)


def test_plots_draw_degenerate_inputs():
    from misc.report import plots

    for png in (plots.training_curves([{"update": 1, "epoch": 1, "total": None, "lr": []}]),
                plots.training_curves([{"update": 1, "epoch": 1, "total": 2.0}]),
                plots.per_class_bars(["a", "b"], {"s": [None, 0.5]}),
                plots.sweep_curve({0.1: None}), plots.timings_bars({"step.x": 0.0})):
        assert png.startswith(PNG_MAGIC)


def test_a_run_that_stops_records_why_and_its_report_shows_it(tmp_path, monkeypatch):
    import types

    from misc.engine.training import NonFiniteLossError

    def nan_step(args):
        logging.getLogger("step.fake").warning("recomputing 2007_000032: unreadable")
        raise NonFiniteLossError("train_fake: non-finite loss at update 3 (loss_cls)")

    monkeypatch.setitem(sys.modules, "step.fake", types.SimpleNamespace(run=nan_step))
    monkeypatch.setattr(run_sample, "planned_steps", lambda args: [Step("fake", "train_wsol_pass", "train")])
    work = tmp_path / "w"
    assert run_sample.main(["--dataset", "cub", "--work_dir", str(work), "--device", "cpu"]) == 2
    recs = [json.loads(line) for line in (work / "result" / "warnings.jsonl").read_text().splitlines()]
    assert [(r["level"], r["message"]) for r in recs] == [
        ("WARNING", "recomputing 2007_000032: unreadable"),
        ("ERROR", "run stopped in fake: NonFiniteLossError: train_fake: non-finite loss at update 3 (loss_cls)")]
    from step.report import main

    assert main(["--result_dir", str(work / "result")]) == 0
    text = (work / "result" / "report.html").read_text()
    assert "2 record(s) of this run, 1 error(s)" in text and "non-finite loss at update 3" in text
    assert json.loads((work / "result" / "run.json").read_text())["steps"] == ["step.fake"]
