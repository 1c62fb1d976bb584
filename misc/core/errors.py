"""The one base class of errors a user can fix (a bad flag value, a missing or malformed file, an unknown id, wrong
weights, an unusable device, no space, no permission).

``run_sample.main`` prints such an error as one line (no traceback on the console; the traceback goes to the log
file, and to the console with ``--debug``) and exits non-zero. Anything else is a bug and keeps its traceback.
The message names the file, id or flag and says what to do.
"""
from __future__ import annotations

import errno
import os


class UserError(Exception):
    """An error caused by the input or the environment, not by the code; its message is shown to the user as is."""


class FlagValueError(UserError, ValueError):
    """A flag's value does not fit the data or the run (e.g. a batch larger than the training set, a bad
    ``--shard``); the message names the flag. Also a :class:`ValueError`, as before."""


class OutputWriteError(UserError, OSError):
    """Writing an output failed for a reason outside the code (no space, no permission, read-only file system).

    Also an :class:`OSError`, so that code catching ``OSError`` around a write still does."""


# errno → (what happened, what to do); the causes of a failed write that the user can fix.
_WRITE_CAUSES: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on device", "free space or choose another --work_dir"),
    errno.EDQUOT: ("disk quota exceeded", "free space or choose another --work_dir"),
    errno.EACCES: ("permission denied", "make the folder writable or choose another --work_dir"),
    errno.EPERM: ("operation not permitted", "make the folder writable or choose another --work_dir"),
    errno.EROFS: ("read-only file system", "choose another --work_dir on a writable file system"),
}


def write_error(exc: OSError, path: str | os.PathLike) -> OutputWriteError | None:
    """The user-facing error for ``exc`` raised while writing ``path``, or None when ``exc`` is not one of the
    causes a user can fix (then it is a bug and propagates as is). Use as ``raise err from exc``."""
    cause = _WRITE_CAUSES.get(exc.errno) if isinstance(exc, OSError) and not isinstance(exc, UserError) else None
    if cause is None:
        return None
    err = OutputWriteError(f"{cause[0]} while writing {path}: {cause[1]}")
    err.errno = exc.errno
    return err


def os_error_message(exc: BaseException) -> str | None:
    """The one-line message of an :class:`OSError` whose cause the user can fix (see :func:`write_error`) that was
    not converted where it was raised, naming its file when known; None for any other error."""
    cause = _WRITE_CAUSES.get(exc.errno) if isinstance(exc, OSError) and not isinstance(exc, UserError) else None
    if cause is None:
        return None
    where = f" ({exc.filename})" if exc.filename is not None else ""
    return f"{cause[0]}{where}: {cause[1]}"


class DataError(UserError, ValueError):
    """Input data is malformed: a mask of the wrong mode, size or values, a metadata line that does not parse, an
    id without a label, a class id beyond the flag. The message names the file, line or id."""


class MissingDataFileError(UserError, FileNotFoundError):
    """A file the data names (a listed id's image, a mask) does not exist; the message names the path."""


class UnreadableFileError(UserError, OSError):
    """A file exists but cannot be decoded (a truncated image, a corrupt PNG); the message names the path."""


class CorruptOutputError(UnreadableFileError):
    """A per-image output of an earlier step cannot be read; the message names the path and the step to rerun
    (which recomputes unreadable outputs)."""
