"""Keep freed memory in the process for the next forward pass (glibc's malloc, the CLI only).

Convention:
    Applies to the ``nero`` command's own process on Linux with glibc, once, when the command
    makes its first model runner (evaluate, gate on checkpoints, search, lie, layers, doctor):
    :func:`allow` is the command's consent, given by the CLI, and
    :class:`~nero_cli.runner.ModelRunner` calls :func:`keep_freed_memory`. Never in a program
    that imports nero as a library (no consent), nor in a command that runs no model (report,
    gate on run folders, plot). Left alone when the user tunes the
    allocator (any ``MALLOC_*`` variable, ``GLIBC_TUNABLES``, or ``LD_PRELOAD``, for jemalloc or
    tcmalloc). Changes no number: torch aligns every CPU buffer to 64 bytes either way.

Why: a convolutional network's activations are megabytes per batch, and a sweep by chunk
allocates and frees a chunk's buffers over and over. By default glibc hands such blocks back to
the kernel when they are freed (``munmap``, or trimming the heap's top), so the next batch
touches fresh pages and faults on every one: a ResNet-18-sized model on 28x28 images spent 5.5 of
its 30 CPU seconds in the kernel doing nothing but that (0.3 s with this setting), and a lazily
read 3x32x32 sweep a quarter of its time. Serving blocks up to 32 MiB from the heap and keeping
up to 1 GiB of freed heap makes the next batch reuse the same pages. The peak memory stays flat
with the data (it measures 2,000 and 20,000 samples of 3x32x32 images at 324 and 308 MB; the
tests check 10x the data within 1.25x): what is kept was resident at the peak already.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD = 32 << 20  # glibc's ceiling for this option on 64-bit machines
TRIM_THRESHOLD = 1 << 30
_done: list[bool] = []
_allowed: list[bool] = []


def allow() -> None:
    """This process is the ``nero`` command's: :func:`keep_freed_memory` may act."""
    _allowed.append(True)


def user_tuned(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the user chose an allocator or its settings (then nero leaves it alone)."""
    return any(k.startswith("MALLOC_") or k in ("GLIBC_TUNABLES", "LD_PRELOAD") for k in environ)


def keep_freed_memory() -> bool:
    """Set glibc's thresholds once for this process; whether they are set (False without
    :func:`allow`, off glibc, or where :func:`user_tuned`)."""
    if not _allowed:
        return False
    if _done:
        return _done[0]
    ok = False
    if sys.platform.startswith("linux") and not user_tuned():
        import ctypes

        try:
            libc = ctypes.CDLL(None)
            ok = bool(libc.gnu_get_libc_version and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                      and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        except (OSError, AttributeError):  # not glibc (musl has no mallopt)
            ok = False
    _done.append(ok)
    return ok


__all__ = ["allow", "keep_freed_memory", "user_tuned", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]
