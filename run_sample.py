"""crt orchestrator: parse flags → plan the steps → run each step's ``run(args)`` in order.

    python run_sample.py --voc12_root /data/VOC2012            # the full VOC pipeline
    python run_sample.py --demo                                # the same on the built-in synthetic dataset
    python run_sample.py --dataset cub --cub_root /data/CUB_200_2011
    python run_sample.py --dataset coco --coco_root /data/coco2014   # MS COCO 2014 (docs/data_coco.md)
    python run_sample.py --dataset folder --folder_root DIR    # your own images (docs/data_folder.md)
    python run_sample.py --demo --dry_run --train_cam_pass false   # show the plan, write nothing

Every flag is declared once, in :mod:`pipeline.flags`; the presets are in :mod:`pipeline.presets`; the steps, in
order, in :mod:`pipeline.steps`.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Sequence

from misc.core.errors import UserError, os_error_message
from misc.core.io import write_json
from misc.core.log import StepTimer, collect_warnings, setup_logging, tee_output
from misc.core.paths import config_json, run_json, timings_json, warnings_jsonl
from misc.core.results import prune_stale_metrics
from misc.core.runinfo import run_record
from misc.engine.distributed import barrier, init_from_env, under_torchrun
from misc.engine.failures import (WorkerBugError, is_peer_loss, peer_failure_line, publish_failed_rank,
                                  write_torchrun_error_file)
from pipeline.config import non_default_settings, parse_args
from pipeline.datasets import prepare_shared_state
from pipeline.demo import prepare_demo_data
from pipeline.inputs_check import check_inputs
from pipeline.preflight import log_file, validate_args
from pipeline.steps import Step, steps_of

__all__ = ["main", "parse_args", "planned_steps", "run"]
log = logging.getLogger("crt")
REPO_ROOT = Path(__file__).resolve().parent


def planned_steps(args: argparse.Namespace) -> list[Step]:
    """The steps that will run, in order: those of ``--dataset``'s pipeline whose switch is on."""
    return [s for s in steps_of(args.dataset) if getattr(args, s.switch)]


def check_pretrained(args: argparse.Namespace, steps: Sequence[Step]) -> None:
    """Check every pretrained source the planned training steps load (a missing file, a file of another model or
    an unreachable name fails now, in seconds, with one line per problem; not hours later)."""
    training = [s.module for s in steps if s.kind == "train"]
    if training and not args.no_pretrained:
        from pipeline.pretrained_check import check_pretrained_sources

        check_pretrained_sources(args, training)


def _record_stop(warnings, current: str, exc: BaseException) -> None:
    """The run report lists why the run stopped (one ERROR record in warnings.jsonl; not printed twice)."""
    if warnings is not None:
        warnings.handle(logging.makeLogRecord({
            "name": "crt", "levelno": logging.ERROR, "levelname": "ERROR",
            "msg": f"run stopped in {current}: {type(exc).__name__}: {exc}"}))


def run(args: argparse.Namespace, argv: Sequence[str] | None = None) -> dict[str, float]:
    """Run the planned steps in order (the flags already validated); returns {step module: seconds}.

    A run records itself in ``result/``: ``config.json``, ``run.json`` (``argv``, commit, devices), ``timings.json``
    (after each step) and its warnings in ``warnings.jsonl``. A run of the report alone (on an earlier run) leaves
    those records as they are. Under torchrun, training steps run on every rank (DDP), per-image steps split their
    ids by rank, and the other steps run on rank 0 while the other ranks wait."""
    steps = planned_steps(args)
    records = any(s.kind != "report" for s in steps)
    rank = int(os.environ.get("RANK", "0"))
    os.environ["CRT_TF32"] = "1" if args.tf32 else "0"
    if under_torchrun():
        init_from_env(args.device)
    if rank == 0:
        check_pretrained(args, steps)  # before the demo data and the dataset index (seconds, not minutes)
    for d in (args.sess_dir, args.result_dir):
        os.makedirs(d, exist_ok=True)
    timings: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        warnings = stack.enter_context(collect_warnings(warnings_jsonl(args.result_dir))) if records else None
        current = "start"
        try:
            if rank == 0:
                if records:
                    write_json(run_json(args.result_dir), run_record(
                        sys.argv[1:] if argv is None else argv, args.device, [s.module for s in steps], REPO_ROOT,
                        non_default_settings(args)))
                    if args.demo:
                        prepare_demo_data(args)
                    write_json(config_json(args.result_dir), vars(args))
                log.info("configuration: %s", json.dumps(vars(args), default=str, sort_keys=True))
                readers = [s.name for s in steps if s.kind != "report"]
                check_inputs(args, readers, prepare_shared_state(args, readers))  # all problems at once
            barrier()  # shared state (index, held-out list) exists before any other process reads it
            for step in steps:
                current = step.name
                module = importlib.import_module(step.module)
                if step.kind == "report" and rank == 0:
                    prune_stale_metrics(args.result_dir)  # what the report shows is what the run leaves
                if rank == 0 or step.kind in ("train", "per_image"):
                    with StepTimer(step.name, quiet=rank != 0) as timer:
                        module.run(args)
                    timings[step.module] = round(timer.elapsed, 2)
                    if rank == 0 and records:  # after each step: the report (last) shows the steps before it
                        write_json(timings_json(args.result_dir), timings)
                barrier()
        except Exception as exc:
            _record_stop(warnings, current, exc)
            raise
    if rank == 0:
        prune_stale_metrics(args.result_dir)
    return timings


def _user_error_message(exc: BaseException) -> str | None:
    """The message shown for ``exc`` when the user can fix its cause (a :class:`misc.core.errors.UserError`, or no
    space / no permission / a read-only file system while writing), else None: a bug."""
    return str(exc) if isinstance(exc, UserError) else os_error_message(exc)


def _report_user_error(message: str, trace: str, debug: bool, log_path: Path | None) -> int:
    """``crt: error: <message>`` on stderr (and the traceback with ``--debug``); both into the log file."""
    text = f"crt: error: {message}\n"
    if log_path is not None:
        try:
            with open(log_path, "a") as f:
                f.write(trace + text)
        except OSError:
            pass  # the log itself cannot be written (e.g. a full disk): the console still has the message
    sys.stderr.write((trace if debug else "") + text)
    sys.stderr.flush()
    return 2


def _torchrun_failure(exc: BaseException, message: str | None) -> int | None:
    """Under torchrun: a rank that only lost its peers logs one line and ends (1); the rank that failed first tells
    the others and torchrun's summary its cause, then ends as a single process does (None: the caller goes on)."""
    rank = int(os.environ.get("RANK", "0"))
    if message is None and is_peer_loss(exc):
        line = peer_failure_line(rank)
        log.error("%s", line)
        write_torchrun_error_file(line, consequence=True)
        return 1
    publish_failed_rank(rank)
    write_torchrun_error_file(f"crt: error: {message}" if message is not None else
                              f"process {rank}: {type(exc).__name__}: {exc} (traceback in the log)")
    return None


def _dry_run(args: argparse.Namespace) -> None:
    """Print the resolved configuration and the plan, then check the inputs (an index built in a temporary folder:
    nothing is written under --work_dir)."""
    config = {k: v for k, v in vars(args).items() if not k.endswith("_pass")}
    steps = [s.name for s in planned_steps(args)]
    print("resolved configuration:")
    print(json.dumps(config, indent=2, default=str, sort_keys=True))
    print("steps that would run, in order: " + (", ".join(steps) or "(none)"))
    if args.demo:
        print("inputs: the demo data is written when the run starts, and checked then")
        return
    with tempfile.TemporaryDirectory(prefix="crt_dry_run_") as scratch:
        check_inputs(argparse.Namespace(**{**vars(args), "list_cache_dir": scratch}), steps)
    print("inputs: every list, image, label and ground truth the planned steps read is there")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, check and run; returns the exit code: 0 done, 2 a usage or user error (one line on stderr, the
    traceback in the log file and, with ``--debug``, on the console), 1 a bug (its traceback on the console)."""
    try:
        args = parse_args(argv)
    except UserError as exc:  # a dataset fact read while parsing (a folder's classes.txt)
        debug = "--debug" in (sys.argv[1:] if argv is None else argv)
        return _report_user_error(str(exc), traceback.format_exc(), debug, None)
    try:
        validate_args(args, [s.module for s in planned_steps(args)])
        if args.dry_run:
            _dry_run(args)
            return 0
    except Exception as exc:  # noqa: BLE001 (a bug re-raises below)
        message = _user_error_message(exc)
        if message is None:
            raise
        return _report_user_error(message, traceback.format_exc(), args.debug, None)
    log_path = log_file(args)
    header = f"crt run {time.strftime('%Y-%m-%d %H:%M:%S')}  argv: {' '.join(sys.argv if argv is None else argv)}"
    failure: tuple[str, str] | None = None
    try:
        os.makedirs(log_path.parent, exist_ok=True)
        with tee_output(log_path, header if int(os.environ.get("RANK", "0")) == 0 else None):
            setup_logging()
            try:
                timings = run(args, argv)
            except Exception as exc:
                message = _user_error_message(exc)
                if under_torchrun():
                    code = _torchrun_failure(exc, message)
                    if code is not None:
                        return code
                if isinstance(exc, WorkerBugError):
                    log.error("run failed: %s\n%s", exc, exc.worker_traceback)
                    return 1
                if message is None:
                    log.exception("run failed")
                    return 1
                failure = (message, traceback.format_exc())
            else:
                log.info("all steps done: %s", timings)
    except OSError as exc:  # only the work dir or the log itself (the run's own errors are handled above)
        message = _user_error_message(exc)
        if message is None:
            raise
        return _report_user_error(message, traceback.format_exc(), args.debug, None)
    if failure is not None:  # after the tee: the traceback goes to the log file only (unless --debug)
        return _report_user_error(*failure, args.debug, log_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
