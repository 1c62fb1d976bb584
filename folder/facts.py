"""The classes of a folder dataset, read from its ``classes.txt`` (docs/data_folder.md#classes).

One rule: the class names are numbered from 1 in file order (value k of a mask is the k-th name); value 0 is
background and needs no line. A first line ``background`` (or ``_background_``) names value 0 and is no class.
"""
from __future__ import annotations

import os
from pathlib import Path

from misc.core.errors import DataError
from folder.layout import CLASSES_FILE, SEE_DOCS, FolderLayoutError

BACKGROUND_NAMES = ("background", "_background_")  # a first line with one of these names value 0
MAX_CLASSES = 254  # mask values 1..254: 0 is background, 255 ignore


def is_background_name(name: str) -> bool:
    return name.strip().lower() in BACKGROUND_NAMES


def read_class_names(root: str | os.PathLike) -> tuple[str, ...]:
    """The class names of ``<root>/classes.txt``, class 1 first (1 to :data:`MAX_CLASSES` names). Errors name the
    file and line: a missing file, no class, an empty line between names, a name twice, ``background`` after the
    first line, a name holding ``;`` (labels.csv's separator)."""
    path = Path(root) / CLASSES_FILE
    if not path.is_file():
        raise FolderLayoutError(f"--folder_root {root} has no {CLASSES_FILE}: write one class name per line (line 1 "
                                f"is class 1, value 1 in the masks; 0 is background) {SEE_DOCS}")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc}); save it as UTF-8") from None
    while lines and not lines[-1]:
        lines.pop()
    names: list[str] = []
    first: dict[str, int] = {}
    for lineno, name in enumerate(lines, 1):
        if not name:
            raise DataError(f"{path}, line {lineno}: empty line between class names (it would shift the value of "
                            "every later class); remove it")
        if is_background_name(name):
            if lineno == 1:
                continue
            raise DataError(f"{path}, line {lineno}: {name!r} is value 0 and may only be the first line (or left out: "
                            "background needs no line)")
        if ";" in name:
            raise DataError(f"{path}, line {lineno}: class name {name!r} holds ';', which separates the class names "
                            "in labels.csv; rename the class")
        if name in first:
            raise DataError(f"{path}, line {lineno}: class {name!r} is also on line {first[name]}; list each class "
                            "once")
        first[name] = lineno
        names.append(name)
    if not names:
        raise DataError(f"{path} lists no class: write one class name per line (line 1 is class 1, value 1 in the "
                        "masks; 0 is background)")
    if len(names) > MAX_CLASSES:
        raise DataError(f"{path} lists {len(names)} classes; at most {MAX_CLASSES} fit in a mask (values 1..254: 0 "
                        "is background, 255 ignore)")
    return tuple(names)
