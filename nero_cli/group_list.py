"""``nero list groups``: every transformation group, the plot it really gets and its spec keys.

A group's plot kind can depend on its options (``viewpoint``: ``grid=planes`` draws disks,
``grid=sphere`` sphere maps), so it is read from the grids the specs build, not from the class:
the default spec, then every choice of each fixed-choice option. A group without keys (``d4``,
``d4t``) lists its fixed elements instead of an empty table.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orbits import parse_spec
from orbits.spec import REGISTRY

from .plot_axes import axis_label

#: The image size the size-dependent defaults (shift's extent) are shown for.
SHOWN_SIZE = (28, 28)
#: Elements of a fixed grid listed at most.
MAX_ELEMENTS = 16


def plot_of(spec: str) -> tuple[str, tuple[str, ...]]:
    """The plot kind and plotted columns of the grid ``spec`` builds."""
    group = parse_spec(spec, image_size=SHOWN_SIZE).group
    return group.plot_kind, tuple(group.plot_columns)


def plot_kinds(name: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """``(condition, kind, columns)`` for each distinct plot of group ``name``: the default
    (condition ``""``) when every spec of it plots the same, else one per choice that changes it
    (condition ``key=value``)."""
    default = plot_of(name)
    for option in REGISTRY[name].cls.options:
        plots = [(f"{option.name}={c}", *plot_of(f"{name}:{option.name}={c}")) for c in option.choices or ()]
        if len({p[1:] for p in plots}) > 1:
            return plots
    return [("", *default)]


def describe_plot(name: str) -> str:
    """One line: the plot kind and its axes (with units), per condition."""
    parts = []
    for cond, kind, cols in plot_kinds(name):
        what = f"{kind} over {', '.join(axis_label(c) for c in cols)}"
        parts.append(f"{what} with {cond}" if cond else what)
    return "; ".join(parts)


def group_rows(name: str) -> list[tuple[str, str, str]]:
    """The table rows of group ``name``: (key, default, meaning) per spec key, or one row naming
    the fixed elements of a group without keys."""
    entry = REGISTRY[name]
    rows = []
    for o in (*entry.cls.options, *entry.action_options):
        choices = f" ({'|'.join(map(str, o.choices))})" if o.choices else ""
        rows.append((o.name, "auto" if o.default is None else str(o.default), o.help + choices))
    if not rows:
        labels = parse_spec(name, image_size=SHOWN_SIZE).group.labels()
        shown = ", ".join(labels[:MAX_ELEMENTS]) + (" ..." if len(labels) > MAX_ELEMENTS else "")
        rows.append(("(none)", "-", f"no keys: the grid is fixed, {len(labels)} elements: {shown}"))
    return rows


def print_groups(console: Console | None = None) -> None:
    """Every registered group: its summary, its real plot, and its keys (or its fixed elements)."""
    console = console or Console()
    for name, entry in REGISTRY.items():
        console.print(f"[bold]{escape(name)}[/bold]: {escape(entry.cls.summary)}", highlight=False, soft_wrap=True)
        console.print(f"  plot: {escape(describe_plot(name))}", highlight=False, soft_wrap=True)
        t = Table(show_header=True)
        for c in ("key", "default", "meaning"):
            t.add_column(c)
        for row in group_rows(name):
            t.add_row(*map(escape, row))
        console.print(t)
    console.print("Spec syntax: NAME[:key=value,...], e.g. rotation:step=15,mask=circle", highlight=False)


def groups_overview() -> list[dict[str, Any]]:
    """What :func:`print_groups` shows, as data: name, plot line and rows per group."""
    return [{"name": name, "plot": describe_plot(name), "rows": group_rows(name)} for name in REGISTRY]


__all__ = ["print_groups", "groups_overview", "plot_kinds", "describe_plot", "group_rows"]
