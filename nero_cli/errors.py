"""User-facing errors: one clear line, a distinct exit code, no traceback.

The exit codes of every ``nero`` command are :data:`EXIT_CODES`; the README's table
("Errors and exit codes") is their documentation and ``tests/test_exit_codes.py`` checks
that the two agree. The same cause gives the same code in every command (``evaluate``,
``gate``, ``report``, ``plot``...): a missing run directory or a bad option is a usage
error (2), a run that is unfinished, damaged or of another kind is an output error (5), and
so is an output file that cannot be written.
"""

from __future__ import annotations

import math
from typing import Any

#: success (``nero gate``: every check passed)
EXIT_OK = 0
#: ``nero gate`` / ``nero doctor`` / ``nero evaluate --gate``: a check failed
EXIT_CHECK_FAILED = 1
#: usage: a bad option, group spec, threshold or task name; a missing RUN_DIR
EXIT_USAGE = 2
#: the model: cannot be loaded, refused as unsafe, or breaks the task's contract
EXIT_MODEL = 3
#: the data: cannot be loaded, or is not what the task expects
EXIT_DATA = 4
#: the output: cannot be written, or a run directory is unfinished or damaged
EXIT_OUTPUT = 5
#: an internal error (a bug in nero; ``NERO_DEBUG=1`` shows the traceback)
EXIT_INTERNAL = 70
#: interrupted (Ctrl-C, SIGTERM, SIGHUP)
EXIT_INTERRUPTED = 130

#: Every exit code and the first words of its meaning in the README's table.
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_CHECK_FAILED: "a check failed",
    EXIT_USAGE: "usage",
    EXIT_MODEL: "the model",
    EXIT_DATA: "the data",
    EXIT_OUTPUT: "the output",
    EXIT_INTERNAL: "an internal error",
    EXIT_INTERRUPTED: "interrupted",
}


class NeroError(Exception):
    """A mistake in the user's input. ``str(err)`` is the one line shown to the user.

    The message says what was expected, what was found and what to do.
    """

    exit_code = EXIT_USAGE

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ModelError(NeroError):
    """The model could not be loaded or does not honour the task's contract."""

    exit_code = EXIT_MODEL


class DataError(NeroError):
    """The data could not be loaded or is not what the task expects."""

    exit_code = EXIT_DATA


class OptionError(NeroError):
    """A command-line option or group spec is invalid."""


class OutputError(NeroError):
    """The output directory cannot be written, or a run directory is not complete."""

    exit_code = EXIT_OUTPUT


def positive_number(value: Any, option: str, *, zero: bool = False, example: str = "") -> float:
    """``value`` as a finite number above 0 (0 or more with ``zero``), else a one-line
    :class:`OptionError` naming ``option`` (NaN and inf too: they would reach the sweep or
    ``run.json``). ``example`` ends the message, e.g. ``"e.g. 0.1"``."""
    what = "a number of 0 or more" if zero else "a positive number"
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number < 0 or (number == 0 and not zero):
        hint = f" ({example})" if example else ""
        raise OptionError(f"{option} must be {what}{hint}, got {value}")
    return number


def identity_only(spec: str, example: str = "shift:extent=1,step=1") -> OptionError:
    """The error for a ``--group`` whose grid holds only the identity (nothing to move by)."""
    return OptionError(f"--group {spec}: holds only the identity; give elements to move by, e.g. {example}")


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (or its class name), for one-line errors."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else exc.__class__.__name__)[:limit]
