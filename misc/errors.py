"""The one base class of errors a user can fix (a bad flag value, a missing or malformed file, an unknown id, wrong
weights, an unusable device, no space, no permission).

``run_sample.main`` prints such an error as one line (no traceback on the console; the traceback goes to the log
file, and to the console with ``--debug``) and exits non-zero. Anything else is a bug and keeps its traceback.
The message names the file, id or flag and says what to do.
"""
from __future__ import annotations


class UserError(Exception):
    """An error caused by the input or the environment, not by the code; its message is shown to the user as is."""
