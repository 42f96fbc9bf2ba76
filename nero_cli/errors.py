"""User-facing errors: one clear line, a distinct exit code, no traceback.

Exit codes of ``nero`` (documented in the README):

====  ==========================================================================
0     success (``nero gate``: every check passed)
1     ``nero gate`` / ``nero doctor`` / ``--gate``: a check failed
2     usage: a bad option, group spec, threshold or task name
3     the model: cannot be loaded, refused as unsafe, or breaks the task's contract
4     the data: cannot be loaded, or is not what the task expects
5     the output: the run directory exists, is not writable, or a run is incomplete
70    an internal error (a bug in nero; ``NERO_DEBUG=1`` shows the traceback)
130   interrupted (Ctrl-C)
====  ==========================================================================
"""

from __future__ import annotations


class NeroError(Exception):
    """A mistake in the user's input. ``str(err)`` is the one line shown to the user.

    The message says what was expected, what was found and what to do.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ModelError(NeroError):
    """The model could not be loaded or does not honour the task's contract."""

    exit_code = 3


class DataError(NeroError):
    """The data could not be loaded or is not what the task expects."""

    exit_code = 4


class OptionError(NeroError):
    """A command-line option or group spec is invalid."""


class OutputError(NeroError):
    """The output directory cannot be written, or a run directory is not complete."""

    exit_code = 5


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (or its class name), for one-line errors."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else exc.__class__.__name__)[:limit]
