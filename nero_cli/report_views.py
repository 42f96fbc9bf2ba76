"""The views of a ``nero report`` page: one per task and group, with an entry per model.

A view's elements, parameter columns, plot kind, plot parameters and identity come from the
run record (``run.plots``, ``run.param_columns``); its aggregate curves from ``summary.csv``;
each entry's per-sample columns from the run's vectors or ``results.csv`` (:mod:`nero_cli.report_rows`), and the results column a metric reads
from the task's metric registry. Runs of the same group on different grids share a view, each
model at its own elements (:mod:`nero_cli.report_grid`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .errors import OptionError, first_line
from .plot_floor import FLOOR_COLUMN
from .report_grid import Member, member_of, unite, view_transform
from .report_media import REDUCTION_NAMES, encode_column, encode_coords, reduce_curves, rounded, rounded_list


@dataclass
class View:
    """The page's view of one task x group and the runs that evaluated it."""

    json: dict[str, Any]
    run: Any  # the first run with this group (report_data.ReportRun)
    members: list[Member] = field(default_factory=list)


def natural_key(text: Any) -> tuple:
    """Sort key of names in natural order: digit runs compare as numbers, the rest without case
    ("class 2" before "class 10"); the page sorts with the same rule."""
    parts = re.split(r"([0-9]+)", str(text))
    return tuple(int(t) if i % 2 else t.lower() for i, t in enumerate(parts)), str(text)


# ------------------------------------------------------------------------------------------
# Views


def _view_metrics(run: Any, metrics: Sequence[str] | None) -> list[str]:
    """The task's plot metrics (``metrics`` only, when given), the run's primary metric first: the
    page's default and the metric of the static figure."""
    plot_metrics = list(run.task.plot_metrics)
    primary = run.rec.primary_metric
    ordered = [primary, *(m for m in plot_metrics if m != primary)] if primary in plot_metrics else plot_metrics
    return [m for m in ordered if metrics is None or m in metrics]


def _new_view(mb: Member, index: int, metrics: Sequence[str] | None) -> View:
    json = {"id": f"v{index}", "label": mb.label, "spec": mb.spec, "task": mb.run.task.name, "kind": mb.kind,
            "metrics": _view_metrics(mb.run, metrics), "entries": [], "classes": ["all"], "data": mb.data_id}
    return View(json, mb.run, [mb])


def _finish(v: View) -> None:
    """The view's elements (the union of its members'), its specs and the groups it draws."""
    v.json.update(unite(v.members))
    specs = list(dict.fromkeys(mb.spec for mb in v.members))
    v.json["spec"] = " + ".join(specs)
    v.json["specs"] = [{"spec": s, "n": next(mb.n for mb in v.members if mb.spec == s)} for s in specs]
    v.json["members"] = [{"run": mb.run.name, "group": mb.label} for mb in v.members]


def _check_metrics(views: list[View], metrics: Sequence[str] | None) -> None:
    """Refuse ``--metric`` names that no task of these runs has, or that leave nothing to show."""
    if metrics is None:
        return
    known = {m for v in views for m in v.run.task.plot_metrics}
    bad = [m for m in metrics if m not in known]
    if bad:
        raise OptionError(f"--metric {', '.join(bad)}: not a metric of these runs; choose from {', '.join(sorted(known))}")
    if not any(v.json["metrics"] for v in views):
        raise OptionError("--metric: none of the chosen metrics applies to these runs")


def _classes(view: View) -> list[str]:
    """"all", then every class subset of summary.csv in natural order."""
    seen: set[str] = set()
    for mb in view.members:
        a = mb.run.agg
        seen |= {str(c) for c in a.loc[a["group"] == mb.label, "class"].unique() if c != "all"}
    return ["all", *sorted(seen, key=natural_key)]


def build_views(runs: Sequence[Any], datasets: dict[str, dict[str, Any]], metrics: Sequence[str] | None) -> list[View]:
    """One view per task and group, in run order; the models of every run that evaluated it are
    overlaid, each at its own elements when the grids differ (same action options and plot kind:
    :attr:`~nero_cli.report_grid.Member.key`). ``datasets``: the page's data set per data key."""
    views: list[View] = []
    by_key: dict[tuple, View] = {}
    for r in runs:
        for label, plot in r.rec.plots.items():
            mb = member_of(r, label, plot, datasets[r.data_key]["id"])
            if mb is None:
                continue
            if mb.key in by_key:
                by_key[mb.key].members.append(mb)
            else:
                by_key[mb.key] = _new_view(mb, len(views), metrics)
                views.append(by_key[mb.key])
    for v in views:
        _finish(v)
    labels = [v.json["label"] for v in views]
    for v in views:
        if labels.count(v.json["label"]) > 1:
            v.json["label"] = f"{v.json['label']} ({v.json['spec']})"
    _check_metrics(views, metrics)
    views = [v for v in views if v.json["metrics"]]
    for v in views:
        v.json["classes"] = _classes(v)
        v.json["transform"] = view_transform(v.members, v.run.data_key, v.json["n_elements"],
                                             datasets[v.run.data_key]["thumbScale"])
    return views


# ------------------------------------------------------------------------------------------
# Entries: one model of one run in a view


def _along(ac: pd.DataFrame, column: str, own: np.ndarray, g: int) -> list:
    """A summary.csv column of one class subset as a curve over the view's ``g`` elements (None where
    missing, and at the elements of other grids); ``own`` maps the member's elements to the view's."""
    el = ac["element"].to_numpy().astype(int)
    ok = (el >= 0) & (el < len(own))
    arr = np.full(g, np.nan)
    arr[own[el[ok]]] = ac[column].to_numpy(dtype=float)[ok]
    return rounded_list(arr)


def _agg_curves(am: pd.DataFrame, metrics: Sequence[str], own: np.ndarray, g: int) -> dict[str, Any]:
    """Per class subset of summary.csv: each metric's aggregate curve, the sample count and, when the
    table has one, the resampling floor's curve (``floor``, drawn as a band under equivariance errors)."""
    out = {}
    for cls, ac in am.groupby("class", sort=False):
        out[str(cls)] = {"curves": {m: _along(ac, m, own, g) for m in metrics if m in ac}, "n": rounded(ac["n"].max())}
        if FLOOR_COLUMN in ac:
            out[str(cls)]["floor"] = _along(ac, FLOOR_COLUMN, own, g)
    return out


def _sample_columns(block: dict[str, np.ndarray], task: Any, own: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
    """The task's results columns per (sample, element) (``block``: the shown samples' rows,
    :mod:`nero_cli.report_rows`); a column that is not a metric and holds one value per sample
    over the whole orbit (the reference class) is embedded once per sample."""
    metric_cols = {m.column for m in task.metrics}
    cols: dict[str, Any] = {}
    per_sample: dict[str, Any] = {}
    for c, arr in block.items():
        mine = arr[:, own]
        if c not in metric_cols and np.all((mine == mine[:, :1]) | np.isnan(mine)):
            first = np.where(np.isnan(mine), -np.inf, mine).max(axis=1)
            per_sample[c] = encode_column(np.where(np.isinf(first), np.nan, first))
        else:
            cols[c] = encode_column(arr)
    return cols, per_sample


def _reductions(block: dict[str, np.ndarray], task: Any, metrics: Sequence[str], own: np.ndarray, reducer: Any,
                what: str) -> dict[str, Any]:
    """Per metric and method, the 2-D embedding of every shown sample's curve."""
    red: dict[str, Any] = {}
    for metric in metrics:
        col = task.metric(metric).column
        if col not in block:
            continue
        arr = block[col][:, own]
        good = np.isfinite(arr).all(axis=1)
        red[metric] = {}
        for method in reducer.methods:
            reducer.step(f"{what} / {metric}", method)
            coords = np.full((arr.shape[0], 2), np.nan)
            try:
                if good.sum():
                    coords[good] = reduce_curves(arr[good], method, seed=reducer.seed)
            except Exception as exc:  # noqa: BLE001 - one failed reduction must not sink the page
                reducer.warn(f"{REDUCTION_NAMES[method]} of {what} / {metric} failed "
                             f"({first_line(exc)}); left out of the page")
                continue
            red[metric][method] = encode_coords(coords)
    return red


def entry_json(view: View, mb: Member, model: str, ids: np.ndarray, color: str, reducer: Any) -> dict[str, Any] | None:
    """One model of one run in ``view``: the view elements of its grid, its aggregate curves, and (when
    it evaluated the view's data set) its per-sample columns and reductions."""
    r, g, metrics = mb.run, view.json["n_elements"], view.json["metrics"]
    if not r.rows.has(model, mb.label):
        return None
    a = r.agg
    e: dict[str, Any] = {"name": r.display[model], "run": r.name, "model": model, "color": color, "data": mb.data_id,
                         "spec": mb.spec, "elements": mb.elements.tolist(),
                         "agg": _agg_curves(a[(a["group"] == mb.label) & (a["model"] == model)], metrics, mb.elements, g),
                         "cols": {}, "perSample": {}, "red": {}}
    if r.data_key == view.run.data_key:
        block = r.rows.block(model, mb.label, ids, mb.elements, g)
        e["cols"], e["perSample"] = _sample_columns(block, r.task, mb.elements)
        e["red"] = _reductions(block, r.task, metrics, mb.elements, reducer, f"{view.json['label']} / {r.display[model]}")
    return e


__all__ = ["View", "Member", "build_views", "entry_json", "natural_key"]
