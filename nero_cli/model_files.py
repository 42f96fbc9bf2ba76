"""The checks every model file gets before it is read, and the quiet in which it loads.

:func:`check_file` refuses a missing, directory, empty or HTML-page file; :func:`zip_damage` names
a zip archive (TorchScript, torch.export, a torch.save checkpoint) that lost its end;
:func:`quiet_torch` silences torch's own logging and warnings while a model loads, so a failed
load prints nero's one line. Used by :mod:`nero_cli.model_formats`, which re-exports them.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Iterator

from .errors import ModelError, first_line

HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<?xml")
ZIP_MAGIC = b"PK\x03\x04"  # a zip archive starts with a local file header
_EOCD = struct.Struct("<4s4H2LH")  # the zip end-of-central-directory record


def check_file(path: Path, what: str = "model") -> None:
    """Refuse, in one line, a missing, directory, empty or HTML-page ``what`` file."""
    if not path.exists():
        raise ModelError(f"{path}: {what} file not found; check the path")
    if path.is_dir():
        raise ModelError(f"{path}: expected a {what} file, found a directory")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: the {what} file is empty (0 bytes); re-save or re-download it")
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    if any(head.startswith(m) for m in HTML_MARKERS):
        raise ModelError(f"{path}: this is an HTML/XML page, not a {what} (a failed download saves the error page); download it again")


class _TorchLogCapture(logging.Filter):
    """A handler filter that drops torch's log records and keeps the exceptions they carry."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[BaseException] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "torch" and not record.name.startswith("torch."):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and all(e is not exc for e in self.errors):  # each handler sees the record
            self.errors.append(exc)
        return False


_CAPTURING: list[_TorchLogCapture] = []  # the active capture, when quiet_torch is entered


@contextlib.contextmanager
def quiet_torch() -> Iterator[list[BaseException]]:
    """Silence torch's own logging and warnings while a model loads, so that a failed load prints
    nero's one line only; yields the exceptions torch logged (``torch.export.load`` logs the real
    cause, then raises a vague error). Re-entrant: an inner use shares the outer capture."""
    if _CAPTURING:
        yield _CAPTURING[-1].errors
        return
    capture = _TorchLogCapture()
    loggers = [logging.root, *(lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger))]
    handlers = {h for lg in loggers for h in lg.handlers} | ({logging.lastResort} if logging.lastResort else set())
    for h in handlers:
        h.addFilter(capture)
    _CAPTURING.append(capture)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield capture.errors
    finally:
        _CAPTURING.pop()
        for h in handlers:
            h.removeFilter(capture)


def zip_damage(path: Path) -> str | None:
    """How ``path``, a file that starts like a zip archive, is damaged: ``truncated (...)`` when
    its central directory is missing or it declares more bytes than it holds, ``damaged (...)``
    when zipfile cannot read it; ``None`` when it reads, or does not start like a zip archive."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        if f.read(4) != ZIP_MAGIC:
            return None
        f.seek(max(0, size - (1 << 16) - _EOCD.size))
        tail_start, tail = f.tell(), f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        return f"truncated ({size} bytes, with no zip central directory at its end)"
    cd_size, cd_offset = _EOCD.unpack_from(tail, at)[5:7]
    if cd_offset != 0xFFFFFFFF and cd_offset + cd_size > tail_start + at:  # 0xFFFFFFFF: zip64, zipfile checks it
        return f"truncated (its zip directory declares {cd_offset + cd_size} bytes before it, the file holds {tail_start + at})"
    try:
        with zipfile.ZipFile(path) as z:
            end = max((i.header_offset + i.compress_size for i in z.infolist()), default=0)
    except (zipfile.BadZipFile, OSError, ValueError, struct.error) as exc:
        return f"damaged ({first_line(exc)})"
    return f"truncated (its zip entries declare {end} bytes, the file holds {size})" if end > size else None


def refuse_damaged_zip(path: Path, what: str) -> None:
    """Refuse, in one line, a ``what`` file that starts like a zip archive but is truncated or damaged."""
    damage = zip_damage(path)
    if damage:
        raise ModelError(f"{path}: the {what} is {damage}; re-save or re-download it")
