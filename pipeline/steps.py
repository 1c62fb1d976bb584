"""The steps of the pipelines: name, module, switch flag, kind and whether they run by default.

The orchestrator (``run_sample.py``) plans a run from this table; :mod:`pipeline.flags` declares each step's
``--<switch>`` flag from it and names the steps by these names when it says which steps read a flag.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One step: ``step/<name>.py`` with ``run(args)``.

    ``kind``: ``train`` (every process of a multi-process run trains it, DDP), ``per_image`` (the processes split the
    ids), ``eval`` (the main process computes, the others wait) or ``report`` (reads what the run left, writes
    nothing else). ``switch``: its on/off flag (the original's ``--<x>_pass`` names)."""

    name: str
    switch: str
    kind: str
    default_on: bool = True

    @property
    def module(self) -> str:
        return f"step.{self.name}"


REPORT = Step("report", "report_pass", "report")

SEGMENTATION_STEPS: tuple[Step, ...] = (
    Step("train_cam", "train_cam_pass", "train"),
    Step("make_cam", "make_cam_pass", "per_image"),
    Step("eval_cam", "eval_cam_pass", "eval"),
    Step("cam_to_ir_label", "cam_to_ir_label_pass", "per_image"),
    Step("train_irn", "train_irn_pass", "train"),
    Step("make_ins_seg_labels", "make_ins_seg_pass", "per_image", default_on=False),
    Step("eval_ins_seg", "eval_ins_seg_pass", "eval", default_on=False),
    Step("make_cocoann", "make_cocoann_pass", "eval", default_on=False),
    Step("make_sem_seg_labels", "make_sem_seg_pass", "per_image"),
    Step("eval_sem_seg", "eval_sem_seg_pass", "eval"),
    Step("train_deeplab", "train_deeplab_pass", "train"),
    Step("eval_deeplab", "eval_deeplab_pass", "eval"),
    Step("export_deeplab_test", "export_deeplab_test_pass", "per_image"),
    REPORT,
)
WSOL_STEPS: tuple[Step, ...] = (
    Step("train_wsol", "train_wsol_pass", "train"),
    Step("eval_wsol", "eval_wsol_pass", "eval"),
    REPORT,
)
ALL_STEPS: tuple[Step, ...] = tuple({s.name: s for s in SEGMENTATION_STEPS + WSOL_STEPS}.values())
BY_NAME: dict[str, Step] = {s.name: s for s in ALL_STEPS}


def steps_of(dataset: str) -> tuple[Step, ...]:
    """The steps of ``--dataset``'s pipeline, in the order they run (CUB: WSOL; the others: segmentation)."""
    return WSOL_STEPS if dataset == "cub" else SEGMENTATION_STEPS
