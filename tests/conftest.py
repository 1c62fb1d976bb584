"""Shared test helpers: the fixture loader of the original code's golden outputs.

The folder comes from ``$CRT_FIXTURES`` (default ``../shared/fixtures`` beside the repository).
A fixture missing from that folder fails the test: it is never skipped.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_ROOT = REPO_ROOT.parent / "shared"


def fixtures_dir() -> Path:
    return Path(os.environ.get("CRT_FIXTURES", SHARED_ROOT / "fixtures"))


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
    root = SHARED_ROOT / "real_voc" / "VOC2012"
    if not root.is_dir():
        pytest.fail(f"real VOC sample folder missing: {root}")
    return root


@pytest.fixture(scope="session")
def real_cub_root() -> Path:
    root = SHARED_ROOT / "real_cub" / "CUB_200_2011"
    if not root.is_dir():
        pytest.fail(f"real CUB sample folder missing: {root}")
    return root
