"""The layers of the code and what each may import (docs/architecture.md), checked on the source of every module,
at every depth (no imports are run)."""
import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

DATASETS = {"voc12", "coco", "folder", "cub", "dataset"}
PROJECT = {"step", "misc", "net", "pipeline", "tools", "bench", "tests", "run_sample", "predict"} | DATASETS
# package → the project packages its modules may import (besides itself)
MAY_IMPORT: dict[str, set[str]] = {
    "run_sample": {"misc", "pipeline"},
    "predict": {"misc", "net", "pipeline"} | DATASETS,
    "step": {"misc", "net", "pipeline"} | DATASETS,
    "pipeline": {"misc", "net"} | DATASETS,
    "voc12": {"misc", "dataset"},
    "coco": {"misc", "dataset"},
    "folder": {"misc", "dataset"},
    "cub": {"misc", "dataset"},
    "dataset": {"misc"},
    "net": {"misc"},
    "misc": set(),
}
# inside misc/: core ← method, eval, synth ← engine ← report
MISC_MAY_IMPORT: dict[str, set[str]] = {
    "core": set(),
    "method": {"core"},
    "eval": {"core", "method"},
    "synth": {"core"},
    "engine": {"core", "method"},
    "report": {"core", "method", "eval"},
}


def imported_modules(path: Path) -> set[str]:
    """Dotted names of every module ``path`` imports (absolute imports, at any depth of the file)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def modules_of(package: str) -> list[Path]:
    if (REPO_ROOT / f"{package}.py").is_file():
        return [REPO_ROOT / f"{package}.py"]
    return sorted((REPO_ROOT / package).rglob("*.py"))


def test_each_layer_imports_only_what_it_may() -> None:
    problems = []
    for package, allowed in MAY_IMPORT.items():
        for path in modules_of(package):
            used = {name.split(".")[0] for name in imported_modules(path)} & PROJECT
            problems += [f"{path.relative_to(REPO_ROOT)} imports {pkg}" for pkg in sorted(used - allowed - {package})]
    assert not problems, "\n".join(problems)


def test_misc_packages_import_downwards_only() -> None:
    assert {p.name for p in (REPO_ROOT / "misc").iterdir() if p.is_dir() and p.name != "__pycache__"} == \
        set(MISC_MAY_IMPORT)
    problems = []
    for package, allowed in MISC_MAY_IMPORT.items():
        for path in sorted((REPO_ROOT / "misc" / package).rglob("*.py")):
            used = {name.split(".")[1] for name in imported_modules(path)
                    if name.startswith("misc.") and name.count(".") >= 1} - {package}
            problems += [f"{path.relative_to(REPO_ROOT)} imports misc.{pkg}" for pkg in sorted(used - allowed)]
    assert not problems, "\n".join(problems)


def test_no_step_imports_another_step() -> None:
    offenders = [p.name for p in (REPO_ROOT / "step").glob("*.py")
                 if any(name.split(".")[0] == "step" for name in imported_modules(p))]
    assert not offenders


def test_the_checker_sees_nested_and_late_imports(tmp_path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from pipeline.models import build_deeplab\n    import net.resnet as r\n")
    assert {"pipeline.models", "pipeline.models.build_deeplab", "net.resnet"} <= imported_modules(source)
