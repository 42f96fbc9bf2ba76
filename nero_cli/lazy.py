"""Heavy modules imported on first use, so that ``nero evaluate`` reaches its sweep without them.

pandas takes 0.2 to 0.4 s to import here and the sweep never touches it (it is needed for the
summaries once the rows are written): the modules on the sweep's path refer to it as
``from nero_cli.lazy import pandas as pd`` (under ``TYPE_CHECKING``, the real module, for the
type checker). Pillow's ``PIL.Image`` (about 0.1 s, its C extension) is needed only to read image
files (folders, ``.tar`` shards). ``tests/test_cli.py::test_evaluate_never_imports_pandas``
checks that a run over an ``.npz`` without plots imports neither.
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class LazyModule:
    """A module's stand-in: the first attribute read imports it (``importlib.import_module``)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


@contextmanager
def gc_paused_imports() -> Iterator[None]:
    """The command's own process only (each ``*_cli`` command around the imports of its domain
    module, ``nero evaluate`` in :mod:`nero_cli.cli`): import its modules (torch above all) with the
    cyclic garbage collector paused, then move every object alive by then into the permanent
    generation (``gc.freeze``), where no later collection walks it.

    Why: importing torch creates a few hundred thousand long-lived objects, and Python ran three
    full collections over them while it did (0.17 s here), and more at the interpreter's shutdown
    (0.4 to 0.5 s: :func:`nero_cli.cli.main` freezes what is alive when any command ends); after the
    freeze the collections of the sweep and at exit see only the objects made since. Nothing those
    imports make is garbage worth collecting. ``nero evaluate`` over one sample took 2.37-2.69 CPU
    seconds before, 1.53-1.72 after (with Pillow imported only for image files); ``nero gate`` on a
    run 2.3-2.7 s, 1.7-1.9 s (benchmarks/HISTORY.md, session 9). Never for nero imported as a
    library: freezing a program's objects is the program's choice."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


pandas = LazyModule("pandas")
pil_image = LazyModule("PIL.Image")
