"""User-facing errors: one clear line, a distinct exit code, no traceback."""

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


class DataError(NeroError):
    """The data could not be loaded or is not what the task expects."""


class OptionError(NeroError):
    """A command-line option or group spec is invalid."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (or its class name), for one-line errors."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else exc.__class__.__name__)[:limit]
