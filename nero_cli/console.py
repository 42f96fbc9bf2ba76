"""What the command line prints: progress, the closing summary table and the ``nero list`` tables."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

import sample_models

from .cache import reuse_line
from .tasks import TASKS, get_task


def stderr_console() -> Console:
    return Console(stderr=True)


def warn(message: str) -> None:
    stderr_console().print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False, soft_wrap=True)


class Bar:
    """A rich progress bar on stderr: models × samples × elements, rate and ETA."""

    EVERY = 0.1  # seconds between two updates of the bar (rich redraws it ten times a second)

    def __init__(self, total: int, label: str = "evaluating"):
        self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                           TimeRemainingColumn(), console=stderr_console(), transient=False)
        self._p.start()
        self._task = self._p.add_task(label, total=total, rate="")
        self._pending, self._pushed = 0, float("-inf")  # the first update is shown at once

    def advance(self, n: int) -> None:
        """Count ``n`` more inputs; the bar is updated at most every :attr:`EVERY` seconds (rich's
        rate estimate walks its samples on every update, which cost a second per 5,000 passes)."""
        self._pending += n
        now = time.monotonic()
        if now - self._pushed >= self.EVERY:
            self._push(now)

    def _push(self, now: float) -> None:
        self._p.update(self._task, advance=self._pending)
        self._pending, self._pushed = 0, now
        speed = self._p.tasks[0].speed
        self._p.update(self._task, rate=f"{speed:,.0f} inputs/s" if speed else "")

    def close(self) -> None:
        if self._pending:
            self._push(time.monotonic())
        self._p.stop()


def print_json_summary(result: Any) -> None:
    """``nero evaluate --json``: the run's summary.json, as written, on stdout."""
    sys.stdout.write((Path(result.out) / "summary.json").read_text(encoding="utf-8"))
    sys.stdout.flush()


def print_summary(result: Any) -> None:
    """The closing table of ``nero evaluate`` / ``nero merge``: the task's table columns per model and
    group; a model evaluated with random weights (``--random-init``) is marked "(random init)"."""
    s = result.summary
    t = Table(title=f"NERO summary: {s['task']}, {s['n_samples']} samples, reference {s['reference']}")
    cols = list(get_task(s["task"]).table_columns)
    t.add_column("model")
    t.add_column("group")
    for c in cols:
        t.add_column(c.replace("_", " "), justify="right")
    random = set(getattr(result, "random_init", ()))
    for model, groups in s["metrics"].items():
        label = f"{model} (random init)" if model in random else model
        for grp, m in groups.items():
            t.add_row(label, grp, *(f"{m[c]:.4f}" if c in m else "-" for c in cols))
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(t)
    console.print(f"Run written to [bold]{result.out}[/bold] ({len(result.plots)} plot files in plots/)")
    reused = reuse_line(getattr(result, "cache", None), sum(len(g) for g in s["metrics"].values()))
    if reused:  # a cached run is never mistaken for a measurement
        console.print(reused, highlight=False, markup=False)


def print_samples() -> None:
    t = Table(title="Sample models (MODEL = sample:NAME)")
    for c in ("name", "task", "input", "description"):
        t.add_column(c)
    for m in sample_models.SAMPLE_MODELS.values():
        t.add_row(m.name, m.task, "x".join(map(str, m.input_shape)), m.description)
    d = Table(title="Sample data (--data sample:NAME)")
    d.add_column("name")
    d.add_column("description")
    for s in sample_models.SAMPLE_DATA.values():
        d.add_row(s.name, s.description)
    console = Console()
    console.print(t)
    console.print(d)


def print_tasks() -> None:
    t = Table(title="Tasks (--task NAME)")
    for c in ("name", "contract", "output", "groups", "metrics"):
        t.add_column(c)
    for rec in TASKS.values():
        t.add_row(rec.name, rec.contract, rec.output, ", ".join(rec.groups), ", ".join(m.name for m in rec.metrics))
    Console().print(t)


def print_metrics(task: str | None = None) -> None:
    """Every results column and summary key of each task, with its unit, direction and formula."""
    console = Console()
    for rec in [get_task(task)] if task else TASKS.values():
        t = Table(title=f"{rec.name}: results columns", title_justify="left")
        for c in ("column", "unit", "better", "meaning"):
            t.add_column(c)
        for m in rec.metrics:
            t.add_row(m.column, m.unit, "higher" if m.higher_is_better else "lower", m.doc)
        console.print(t)
        k = Table(title=f"{rec.name}: summary.json keys", title_justify="left")
        for c in ("key", "better", "formula"):
            k.add_column(c)
        for key, sk in rec.summary_keys.items():
            k.add_row(key, "higher" if sk.higher_is_better else "lower", sk.formula)
        console.print(k)
