"""The summary table of a ``nero report`` page: one column per distinct quantity.

A quantity is a metric of the task's registry and a reduction (``orbit_confidence``: confidence,
mean over the orbit). Every summary.json key of every run is mapped to its quantity through the
run's task (:attr:`nero_cli.tasks.base.TaskRecord.summary_keys`), so a quantity written under an
older name (schema 1: ``mean_confidence``, ``worst_confidence``, ``worst_case_accuracy``) shares the
column of its current name, and one name that means different quantities in different tasks
(``orbit_spread`` is the spread of the task's primary metric) gets one column per quantity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from .report_escape import html_text

#: Names summary.json gave reductions before schema 2, as (prefix, reduction); longest prefix first.
LEGACY_PREFIXES = (("worst_case_", "all"), ("worst_", "worst"), ("mean_", "orbit"))
#: Numeric keys of a summary row that are counts, not quantities.
COUNTS = ("n_samples", "n_elements")


@dataclass
class Column:
    """One column of the summary table: a quantity, its label and direction, the keys that hold it."""

    quantity: tuple[str, str]  # (metric, reduction); ("", key) for a key no registry knows
    name: str  # the current summary.json key
    higher: bool
    label: str = ""
    keys: set[tuple[str, str]] = field(default_factory=set)  # (task, key)


def quantity(task: Any, key: str) -> tuple[tuple[str, str], str, bool]:
    """The quantity of summary key ``key`` in ``task``, its current key name and direction."""
    known = task.summary_keys
    if key in known:
        sk = known[key]
        return (sk.metric.name, sk.reduction), key, sk.higher_is_better
    for prefix, reduction in LEGACY_PREFIXES:
        metric = key[len(prefix):]
        if key.startswith(prefix):
            now = next((k for k, sk in known.items() if sk.metric.name == metric and sk.reduction == reduction), None)
            if now is not None:
                return (metric, reduction), now, known[now].higher_is_better
    return ("", key), key, True


def _rows(runs: Sequence[Any]) -> list[tuple[Any, str, str, dict]]:
    return [(r, str(model), str(group), m) for r in runs for model, groups in r.rec.summary["metrics"].items()
            for group, m in groups.items()]


def summary_columns(runs: Sequence[Any]) -> list[Column]:
    """The columns of the runs' summary rows, in the tasks' summary order; labels are the current key
    names, with the metric added where one name stands for several quantities."""
    cols: dict[tuple[str, str], Column] = {}
    order: dict[str, int] = {}
    for r in runs:
        for k in r.task.summary_keys:
            order.setdefault(k, len(order))
    for r, _model, _group, m in _rows(runs):
        for k, v in m.items():
            if k in COUNTS or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            q, name, higher = quantity(r.task, k)
            cols.setdefault(q, Column(q, name, higher)).keys.add((r.task.name, k))
    out = sorted(cols.values(), key=lambda c: order.get(c.name, len(order)))
    for c in out:
        twins = sum(d.name == c.name for d in out)
        c.label = f"{c.name} ({c.quantity[0]})" if twins > 1 else c.name
    return out


def row_values(task_name: str, values: dict[str, Any], columns: Sequence[Column]) -> dict[str, float]:
    """Per column label, the row's value (under its current key when the row has both names)."""
    out: dict[str, float] = {}
    for c in columns:
        keys = [k for t, k in c.keys if t == task_name and k in values]
        keys.sort(key=lambda k: k != c.name)
        v = next((values[k] for k in keys if isinstance(values[k], (int, float)) and not isinstance(values[k], bool)), None)
        if v is not None:
            out[c.label] = v
    return out


def summary_table_html(runs: Sequence[Any]) -> str:
    """Every model x group of every run, one column per quantity; best value per group spec and
    column in bold."""
    columns = summary_columns(runs)
    rows = [(r, model, group, row_values(r.task.name, m, columns), m) for r, model, group, m in _rows(runs)]
    best: dict[tuple[str, str], float] = {}
    peers: dict[str, int] = {}
    for r, _model, group, vals, _m in rows:
        key = f"{r.task.name}|{r.rec.plots[group]['spec']}"
        peers[key] = peers.get(key, 0) + 1
        for c in columns:
            v = vals.get(c.label)
            if v is not None and ((key, c.label) not in best or (v > best[(key, c.label)] if c.higher else v < best[(key, c.label)])):
                best[(key, c.label)] = v
    multi = len(runs) > 1
    body = []
    for r, model, group, vals, m in rows:
        spec = r.rec.plots[group]["spec"]
        key = f"{r.task.name}|{spec}"
        cells = []
        for c in columns:
            v = vals.get(c.label)
            if v is None:
                cells.append('<td class="num">&ndash;</td>')
            else:
                bold = best.get((key, c.label)) == v and peers[key] > 1
                cells.append(f'<td class="num{" best" if bold else ""}">{v:.4f}</td>')
        run_cell = f"<td>{html_text(r.name)}</td>" if multi else ""
        body.append(f"<tr>{run_cell}<td>{html_text(r.display.get(model, model))}</td>"
                    f'<td title="{html_text(spec)}">{html_text(group)}</td>'
                    f'<td class="num">{html_text(m.get("n_samples", ""))}</td>{"".join(cells)}</tr>')
    head = "".join(f'<th title="{html_text(c.label)}: {"higher" if c.higher else "lower"} is better">'
                   f'{html_text(c.label.replace("_", " "))} {"&uarr;" if c.higher else "&darr;"}</th>' for c in columns)
    run_head = "<th>run</th>" if multi else ""
    return (f'<table class="summary"><thead><tr>{run_head}<th>model</th><th>group</th><th>samples</th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


__all__ = ["Column", "quantity", "summary_columns", "row_values", "summary_table_html", "LEGACY_PREFIXES"]
