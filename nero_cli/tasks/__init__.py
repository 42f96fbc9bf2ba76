"""The task registry: each task is a :class:`~nero_cli.tasks.base.TaskRecord` built in its own module.

To add a task: write ``tasks/<name>.py`` building a ``TaskRecord`` (reuse
:mod:`nero_cli.measures` and :mod:`nero_cli.metrics`), add it to :data:`TASKS` below, and add
its data loader to :mod:`nero_cli.data`.
"""

from __future__ import annotations

import difflib

from ..errors import OptionError
from .base import Chunk, TaskRecord
from .classification import CLASSIFICATION, POINTCLOUD
from .detection import DETECTION
from .flow import FLOW
from .segmentation import SEGMENTATION

TASKS: dict[str, TaskRecord] = {t.name: t for t in (CLASSIFICATION, DETECTION, FLOW, POINTCLOUD, SEGMENTATION)}


def get_task(name: str) -> TaskRecord:
    """The record of task ``name``; a one-line OptionError naming the nearest task otherwise."""
    if name not in TASKS:
        close = difflib.get_close_matches(name, list(TASKS), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"available: {', '.join(TASKS)}"
        raise OptionError(f"unknown task '{name}'; {hint}")
    return TASKS[name]


__all__ = ["TASKS", "TaskRecord", "Chunk", "get_task"]
