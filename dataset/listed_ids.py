"""Checking the ids of a list against a dataset: each needs an image-level label and an image file."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Container, Sequence

from misc.core.errors import DataError, MissingDataFileError


def check_listed_ids(ids: Sequence[str], list_arg: str, labelled: Container[str],
                     unlabelled_message: Callable[[list[str]], str], image_path: Callable[[str], Path],
                     missing_images_advice: str, labels: bool = True, images: bool = True) -> list[str]:
    """``ids`` (of ``list_arg``) unchanged, after checking that each is ``labelled`` (else a
    :class:`~misc.core.errors.DataError` of ``unlabelled_message(offending ids)``) and that its ``image_path``
    exists (else a :class:`~misc.core.errors.MissingDataFileError` counting the missing images, naming the first
    five, then ``missing_images_advice``)."""
    if labels:
        unlabelled = [i for i in ids if i not in labelled]
        if unlabelled:
            raise DataError(unlabelled_message(unlabelled))
    if images:
        absent = [i for i in ids if not image_path(i).is_file()]
        if absent:
            shown = ", ".join(str(image_path(i)) for i in absent[:5])
            more = f" and {len(absent) - 5} more" if len(absent) > 5 else ""
            raise MissingDataFileError(f"{len(absent)} image(s) listed in {list_arg} do not exist: {shown}{more}. "
                                       f"{missing_images_advice}")
    return list(ids)
