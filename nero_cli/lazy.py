"""Heavy modules imported on first use, so that ``nero evaluate`` reaches its sweep without them.

pandas takes 0.2 to 0.4 s to import here and the sweep never touches it (it is needed for the
summaries once the rows are written): the modules on the sweep's path refer to it as
``from nero_cli.lazy import pandas as pd`` (under ``TYPE_CHECKING``, the real module, for the
type checker). ``tests/test_startup.py`` checks that the first progress update comes before it.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """A module's stand-in: the first attribute read imports it (``importlib.import_module``)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


pandas = LazyModule("pandas")
