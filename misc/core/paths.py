"""Where every artefact of a run lives: the one place that spells the file names (docs/architecture.md#artefacts).

The folders come from the flags (already resolved against ``--work_dir`` by ``run_sample.parse_args``); the names
inside them are spelled here only:

==========================  ==========================================================  ===================
artefact                    path                                                        written by
==========================  ==========================================================  ===================
CAMs                        ``<cam_out_dir>/<id>.npz`` (keys, cam, high_res)            make_cam
IR labels                   ``<ir_label_out_dir>/<id>.png``                             cam_to_ir_label
pseudo masks                ``<sem_seg_out_dir>/<id>.png``                              make_sem_seg_labels
instance labels             ``<ins_seg_out_dir>/<id>.npz`` (score, mask, class)         make_ins_seg_labels
instance labels, COCO JSON  ``<cocoann_out_dir>/pseudo_instances_<list>[_results].json``  make_cocoann
instance GT, COCO JSON      ``<cocoann_out_dir>/gt_instances_<eval set>.json``          make_cocoann
DeepLab's training masks    ``<deeplab_label_dir>/<id>.png``                            (default sem_seg)
DeepLab val logits          ``<deeplab_out_dir>/val_logits/<id>.npz``                   eval_deeplab
DeepLab val predictions     ``<deeplab_out_dir>/val_pred|val_crf/<id>.png``             eval_deeplab
DeepLab test export         ``<deeplab_out_dir>/results/VOC2012/.../<id>.png`` + .tar   export_deeplab_test
training state / resume     ``<sess_dir>/<step>.state.json``, ``<step>_last.pt``        misc/engine/training.py
DeepLab checkpoints         ``<sess_dir>/deeplab/checkpoint_<iteration>.pth``           train_deeplab
CUB held-out ids            ``<wsol_out_dir>/heldout_ids.txt``                          train_wsol
pictures                    ``<result_dir>/vis/<what>/<id>.png``                        eval / make steps
configuration               ``<result_dir>/config.json``                                run_sample.py
run record                  ``<result_dir>/run.json`` (command, date, commit, devices)  run_sample.py
step times                  ``<result_dir>/timings.json``                               run_sample.py
metrics                     ``<result_dir>/metrics.json``, ``metrics_history.jsonl``    eval / train steps
per-update training log     ``<result_dir>/logs/<step>.jsonl``                          misc/engine/training.py
warnings of the runs        ``<result_dir>/warnings.jsonl``                             misc/core/log.py
run report                  ``<result_dir>/report.html``                                report
==========================  ==========================================================  ===================

Weights files are named by their own flags (``--cam1_weights_name``, ...), unchanged; ``--sess_dir`` (default
``sess``) holds the resume and state files and no longer follows the folder of ``--cam2_weights_name``.
"""
from __future__ import annotations

from pathlib import Path

CAM_SUFFIX = ".npz"
LABEL_SUFFIX = ".png"  # IR labels, pseudo masks, predictions, VOC ground truth
INS_SEG_SUFFIX = ".npz"
DEEPLAB_LOGITS_SUFFIX = ".npz"
DEEPLAB_SERVER_DIR = Path("results") / "VOC2012" / "Segmentation" / "comp6_test_cls"
DEEPLAB_TEST_ARCHIVE = "voc2012_test_comp6.tar.gz"


def per_image(folder: str | Path, img_id: str, suffix: str) -> Path:
    """``<folder>/<img_id><suffix>``: the layout of every per-image output folder."""
    return Path(folder) / f"{img_id}{suffix}"


def cam_path(cam_dir: str | Path, img_id: str) -> Path:
    return per_image(cam_dir, img_id, CAM_SUFFIX)


def label_png(folder: str | Path, img_id: str) -> Path:
    """A label map PNG (IR label, pseudo mask, prediction, ground truth) of ``img_id`` in ``folder``."""
    return per_image(folder, img_id, LABEL_SUFFIX)


def ins_seg_path(ins_seg_dir: str | Path, img_id: str) -> Path:
    return per_image(ins_seg_dir, img_id, INS_SEG_SUFFIX)


def list_name(list_arg: str) -> str:
    """The name of a list flag's value in file names: ``voc12/train.txt`` → ``train``, ``train_aug`` → itself."""
    return Path(list_arg).stem


def cocoann_annotations(args, list_arg: str) -> Path:
    """make_cocoann's training file (COCO annotations format) of the ids of ``list_arg``."""
    return Path(args.cocoann_out_dir) / f"pseudo_instances_{list_name(list_arg)}.json"


def cocoann_results(args, list_arg: str) -> Path:
    """make_cocoann's detections (COCO results format, with scores) of the ids of ``list_arg``."""
    return Path(args.cocoann_out_dir) / f"pseudo_instances_{list_name(list_arg)}_results.json"


def cocoann_ground_truth(args, list_arg: str) -> Path:
    """The instance ground truth of the ids of ``list_arg`` as a COCO annotations file (make_cocoann)."""
    return Path(args.cocoann_out_dir) / f"gt_instances_{list_name(list_arg)}.json"


def deeplab_logits_path(logits_dir: str | Path, img_id: str) -> Path:
    return per_image(logits_dir, img_id, DEEPLAB_LOGITS_SUFFIX)


def deeplab_val_dirs(args) -> tuple[Path, Path, Path]:
    """(logits, predictions without CRF, predictions with CRF) folders of eval_deeplab."""
    out = Path(args.deeplab_out_dir)
    return out / "val_logits", out / "val_pred", out / "val_crf"


def deeplab_server_dir(args) -> Path:
    """export_deeplab_test's PNG folder, in the VOC evaluation server's layout."""
    return Path(args.deeplab_out_dir) / DEEPLAB_SERVER_DIR


def deeplab_test_archive(args) -> Path:
    return Path(args.deeplab_out_dir) / DEEPLAB_TEST_ARCHIVE


def deeplab_checkpoint(sess_dir: str | Path, iteration: int) -> Path:
    return Path(sess_dir) / "deeplab" / f"checkpoint_{iteration}.pth"


def training_state(sess_dir: str | Path, step: str) -> Path:
    """The fingerprint and output identities of a finished training step."""
    return Path(sess_dir) / f"{step}.state.json"


def training_resume(sess_dir: str | Path, step: str) -> Path:
    """The resume checkpoint of a training step."""
    return Path(sess_dir) / f"{step}_last.pt"


def wsol_heldout_ids(args) -> Path:
    return Path(args.wsol_out_dir) / "heldout_ids.txt"


def vis_dir(args, what: str) -> Path:
    """``<result_dir>/vis/<what>``: the pictures a person looks at."""
    return Path(args.result_dir) / "vis" / what


def cam_vit_weights(args) -> Path:
    """``--cam2_weights_name``, or the original's ``<name>.pth`` when only that exists."""
    path = Path(args.cam2_weights_name)
    if not path.is_file() and Path(str(path) + ".pth").is_file():
        return Path(str(path) + ".pth")
    return path


def config_json(result_dir: str | Path) -> Path:
    """The resolved configuration of the last run (every flag)."""
    return Path(result_dir) / "config.json"


def run_json(result_dir: str | Path) -> Path:
    """The record of the last run: command line, start time, git commit, devices (:mod:`misc.core.runinfo`)."""
    return Path(result_dir) / "run.json"


def timings_json(result_dir: str | Path) -> Path:
    """{step module: seconds} of the last run, rewritten after each step."""
    return Path(result_dir) / "timings.json"


def metrics_json(result_dir: str | Path) -> Path:
    return Path(result_dir) / "metrics.json"


def training_log(result_dir: str | Path, step: str) -> Path:
    """One JSON line per update of training step ``step`` (loss terms, learning rates)."""
    return Path(result_dir) / "logs" / f"{step}.jsonl"


def warnings_jsonl(result_dir: str | Path) -> Path:
    """One JSON line per WARNING/ERROR record logged by any process of any run (appended)."""
    return Path(result_dir) / "warnings.jsonl"


def report_html(result_dir: str | Path) -> Path:
    """The one-page run report (self-contained: pictures embedded)."""
    return Path(result_dir) / "report.html"
