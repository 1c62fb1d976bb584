"""Shared test helpers: the fixture loader of the original code's golden outputs, and the tiny end-to-end runs
(VOC, COCO, CUB, a folder dataset) that several test modules read (each runs once per session).

The golden outputs come from ``$CRT_FIXTURES`` (default ``tests/data/golden``); the real VOC and CUB samples from
``tests/data/real_voc`` and ``tests/data/real_cub`` (``tests/data/README.md``). A fixture missing from that folder
fails the test: it is never skipped.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = REPO_ROOT / "tests" / "data"


def fixtures_dir() -> Path:
    return Path(os.environ.get("CRT_FIXTURES", DATA_ROOT / "golden"))


def load_fixture(name: str) -> tuple[dict, dict[str, np.ndarray]]:
    """Return ``(meta, arrays)`` of fixture ``name``; fail (not skip) when it is missing."""
    folder = fixtures_dir()
    json_path, npz_path = folder / f"{name}.json", folder / f"{name}.npz"
    missing = [str(p) for p in (json_path, npz_path) if not p.is_file()]
    if missing:
        pytest.fail(f"fixture {name!r} missing: {', '.join(missing)} (set CRT_FIXTURES to the fixtures folder)")
    with open(json_path) as f:
        meta = json.load(f)
    with np.load(npz_path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return meta, arrays


@pytest.fixture
def fixture_loader():
    return load_fixture


@pytest.fixture(scope="session")
def real_voc_root() -> Path:
    root = DATA_ROOT / "real_voc" / "VOC2012"
    if not root.is_dir():
        pytest.fail(f"real VOC sample folder missing: {root}")
    return root


@pytest.fixture(scope="session")
def real_cub_root() -> Path:
    root = DATA_ROOT / "real_cub" / "CUB_200_2011"
    if not root.is_dir():
        pytest.fail(f"real CUB sample folder missing: {root}")
    return root


# The tiny end-to-end runs (synthetic data, random weights, seconds per step). test_pipeline_voc.py reruns its
# folder with other flags (the last run is the full pipeline again with --beta 8); tests that read it afterwards
# see a complete run.
TINY_VOC_ARGV = ["--demo", "--preset", "tiny", "--device", "cpu", "--make_ins_seg_pass", "true",
                 "--eval_ins_seg_pass", "true", "--make_cocoann_pass", "true", "--cam_num_epoches", "3"]
TINY_CUB_ARGV = ["--dataset", "cub", "--demo", "--preset", "tiny", "--device", "cpu", "--wsol_epochs", "3",
                 "--wsol_lr", "1e-3"]


TINY_COCO_ARGV = ["--dataset", "coco", "--demo", "--preset", "tiny", "--device", "cpu", "--make_ins_seg_pass", "true",
                  "--eval_ins_seg_pass", "true", "--make_cocoann_pass", "true"]

# The synthetic folder dataset (folder/synthetic.py: 12 images of 3 classes, 4 with a mask, 1 of background only).
# From random weights on 12 images the default --cam_learning_rate 0.1 diverges for some seeds: 0.01 does not.
TINY_FOLDER_ARGV = ["--dataset", "folder", "--preset", "tiny", "--device", "cpu", "--cam_learning_rate", "0.01"]


def _tiny_run(tmp_path_factory, name: str, argv: list[str]) -> tuple[Path, list[str]]:
    """Run ``argv`` in a new work folder, recording the flags each step reads (tests/test_flags.py)."""
    import run_sample
    from tests.flag_reads import recording

    work = tmp_path_factory.mktemp(name)
    argv = [*argv, "--work_dir", str(work)]
    with recording():
        assert run_sample.main(argv) == 0
    return work, argv


def rerun_log(work: Path, argv: list[str]) -> str:
    """Run ``argv`` again in its work folder ``work``; the log of that run alone."""
    import run_sample

    n_runs = (work / "sample_train_eval.log").read_text().count("crt run ")
    assert run_sample.main(argv) == 0
    return (work / "sample_train_eval.log").read_text().split("crt run ")[n_runs + 1]


@pytest.fixture(scope="session")
def tiny_voc_run(tmp_path_factory) -> tuple[Path, list[str]]:
    """(work folder, argv) of the whole default VOC pipeline plus the instance steps, tiny preset."""
    return _tiny_run(tmp_path_factory, "voc_e2e", TINY_VOC_ARGV)


@pytest.fixture(scope="session")
def tiny_cub_run(tmp_path_factory) -> tuple[Path, list[str]]:
    """(work folder, argv) of the CUB WSOL pipeline, tiny preset."""
    return _tiny_run(tmp_path_factory, "cub_e2e", TINY_CUB_ARGV)


@pytest.fixture(scope="session")
def tiny_coco_run(tmp_path_factory) -> tuple[Path, list[str]]:
    """(work folder, argv) of the COCO pipeline with the instance steps and the COCO-JSON export, tiny preset."""
    return _tiny_run(tmp_path_factory, "coco_e2e", TINY_COCO_ARGV)


@pytest.fixture(scope="session")
def tiny_folder_run(tmp_path_factory) -> tuple[Path, list[str]]:
    """(work folder, argv) of the whole default pipeline on the synthetic folder dataset, tiny preset."""
    from folder.synthetic import make_synthetic_folder

    root = make_synthetic_folder(tmp_path_factory.mktemp("folder_data") / "shapes")
    return _tiny_run(tmp_path_factory, "folder_e2e", [*TINY_FOLDER_ARGV, "--folder_root", str(root)])
