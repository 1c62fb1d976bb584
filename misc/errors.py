"""The one base class of errors a user can fix (a bad flag value, a missing or malformed file, an unknown id, wrong
weights, an unusable device, no space, no permission).

``run_sample.main`` prints such an error as one line (no traceback on the console; the traceback goes to the log
file, and to the console with ``--debug``) and exits non-zero. Anything else is a bug and keeps its traceback.
The message names the file, id or flag and says what to do.
"""
from __future__ import annotations


class UserError(Exception):
    """An error caused by the input or the environment, not by the code; its message is shown to the user as is."""


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
