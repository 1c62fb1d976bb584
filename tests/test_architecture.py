"""The rooms of the code and what each may import (docs/architecture.md), checked on the source (no imports run)."""
import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

PROJECT = {"step", "misc", "net", "voc12", "cub", "coco", "dataset", "tools", "bench", "tests", "run_sample"}
# room → the project packages its modules may import (besides their own room)
MAY_IMPORT = {
    "step": {"misc", "net", "voc12", "cub", "coco", "dataset"},
    "dataset": {"misc"},  # what serves every segmentation dataset
    "voc12": {"misc", "dataset"},
    "coco": {"misc", "dataset"},
    "cub": {"misc"},
    "net": {"misc"},
    "misc": {"net"},  # only the model factory and the preflight (see NET_USERS_IN_MISC)
}
NET_USERS_IN_MISC = {"models.py", "preflight.py"}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & PROJECT


def test_each_room_imports_only_what_it_may() -> None:
    problems = []
    for room, allowed in MAY_IMPORT.items():
        for path in sorted((REPO_ROOT / room).glob("*.py")):
            used = imported_packages(path) - {room}
            if room == "misc" and path.name not in NET_USERS_IN_MISC:
                used_bad = used
            else:
                used_bad = used - allowed
            problems += [f"{room}/{path.name} imports {pkg}" for pkg in sorted(used_bad)]
    assert not problems, "\n".join(problems)


def test_no_step_imports_another_step() -> None:
    offenders = [p.name for p in (REPO_ROOT / "step").glob("*.py") if "step" in imported_packages(p)]
    assert not offenders
    assert not (REPO_ROOT / "step" / "_models.py").exists()  # model building lives in pipeline/models.py
