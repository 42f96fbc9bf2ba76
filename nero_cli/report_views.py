"""The views of a ``nero report`` page: one per task and group spec, with an entry per model.

A view's elements, parameter columns, plot kind, plot parameters and identity come from the
run record (``run.plots``, ``run.param_columns``); its aggregate curves from ``summary.csv``;
each entry's per-sample columns from ``results.csv``, and the results column a metric reads
from the task's metric registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from orbits import OrbitSpec, parse_spec
from orbits.outputs import time_reversed
from orbits.spec import IMAGE_ACTION_OPTIONS

from .errors import OptionError, first_line
from .plot_floor import FLOOR_COLUMN
from .report_media import REDUCTION_NAMES, encode_column, encode_coords, reduce_curves, rounded, rounded_list

#: The parameter columns of a point-cloud orbit that the page rotates the embedded cloud by.
QUATERNION = ("qw", "qx", "qy", "qz")
#: The options of the image action, with their defaults (the page warps thumbnails with them).
ACTION_DEFAULTS = {o.name: str(o.default) for o in IMAGE_ACTION_OPTIONS}


@dataclass
class Member:
    """One group of one run drawn in a view."""

    run: Any  # report_data.ReportRun
    label: str
    data_id: str


@dataclass
class View:
    """The page's view of one task x group spec and the runs that evaluated it."""

    json: dict[str, Any]
    run: Any  # the first run with this group (report_data.ReportRun)
    parsed: OrbitSpec | None
    members: list[Member] = field(default_factory=list)


# ------------------------------------------------------------------------------------------
# Elements


def _element_rows(agg: pd.DataFrame, label: str) -> pd.DataFrame:
    """One summary.csv row per element of group ``label`` (the "all" class when there is one)."""
    rows = agg[agg["group"] == label]
    rows = rows[rows["class"] == "all"] if (rows["class"] == "all").any() else rows
    return rows.drop_duplicates("element").sort_values("element")


def _element_params(rows: pd.DataFrame, param_columns: Sequence[str], n: int) -> dict[str, list]:
    """Per parameter column of the group, its value at each element (text columns stay text)."""
    params: dict[str, list] = {}
    elements = rows["element"].to_numpy().astype(int)
    for p in param_columns:
        if p not in rows or rows[p].isna().all():
            continue
        values = rows[p]
        text = bool((pd.to_numeric(values, errors="coerce").isna() & values.notna()).any())
        col: list = [None] * n
        for e, v in zip(elements, values.to_numpy()):
            if 0 <= e < n:
                col[e] = str(v) if text else rounded(v, 9)
        params[p] = col
    return params


def _parse(spec: str, run: Any) -> OrbitSpec | None:
    size = run.data.get("image_size")
    image = run.task.input_kind != "points" and size and len(size) == 2
    try:
        return parse_spec(spec, image_size=tuple(int(s) for s in size) if image else None)
    except Exception:  # noqa: BLE001 - a spec this nero cannot parse only costs labels and the transformed view
        return None


def _element_labels(parsed: OrbitSpec | None, n: int, params: dict[str, list], plot_params: Sequence[str]) -> list[str]:
    if parsed is not None:
        group = parsed.group.with_identity()
        if len(group) == n:
            return group.labels()
    return [",".join(f"{p}={params[p][e]}" for p in plot_params if p in params) for e in range(n)]


def _same_order(group: Any, params: dict[str, list]) -> bool:
    """Whether the table's elements are the group's, in its order (shared numeric columns agree)."""
    for p, vals in group.columns().items():
        if p not in params or any(isinstance(x, str) for x in vals):
            continue
        a = np.asarray([np.nan if v is None else float(v) for v in params[p]])
        if not np.allclose(a, np.asarray(vals, dtype=float), atol=1e-6, equal_nan=True):
            return False
    return True


def transform(view: View, thumb_scale: float) -> dict[str, Any] | None:
    """What the page needs to apply each element to the thumbnail: inverse 3x3 matrices in
    thumbnail pixel coordinates and the action's options (images), or nothing extra (point
    clouds: the quaternion parameter columns are enough)."""
    params, run, parsed = view.json["params"], view.run, view.parsed
    if run.task.input_kind == "points":
        return {"type": "points"} if all(q in params for q in QUATERNION) else None
    if parsed is None:
        return None
    group = parsed.group.with_identity()
    if len(group) != view.json["n_elements"] or not group.is_planar or not _same_order(group, params):
        return None
    try:
        size = tuple(int(s) for s in run.data["image_size"])
        inv = torch.linalg.inv(group.planar(group.elements, size)).numpy()
    except (KeyError, TypeError, ValueError, RuntimeError):  # no image size, or a singular element
        return None
    s = np.array([[thumb_scale, 0, 0.5 * thumb_scale - 0.5], [0, thumb_scale, 0.5 * thumb_scale - 0.5], [0, 0, 1.0]])
    inv = s @ inv @ np.linalg.inv(s)
    inv = inv / inv[:, 2:3, 2:3]
    opts = {**ACTION_DEFAULTS, **{k: str(v) for k, v in parsed.action.items()}}
    return {"type": "image", "inv": [rounded_list(m.reshape(-1), 7) for m in inv], **opts,
            "swap": time_reversed(group)}


# ------------------------------------------------------------------------------------------
# Views


def _view_metrics(run: Any, metrics: Sequence[str] | None) -> list[str]:
    """The task's plot metrics (``metrics`` only, when given), the run's primary metric first: the
    page's default and the metric of the static figure."""
    plot_metrics = list(run.task.plot_metrics)
    primary = run.rec.primary_metric
    ordered = [primary, *(m for m in plot_metrics if m != primary)] if primary in plot_metrics else plot_metrics
    return [m for m in ordered if metrics is None or m in metrics]


def _new_view(run: Any, label: str, plot: dict[str, Any], index: int, metrics: Sequence[str] | None,
              data_id: str) -> View | None:
    rows = _element_rows(run.agg, label)
    if rows.empty:
        return None
    n = int(plot["n_elements"])
    params = _element_params(rows, run.rec.param_columns, n)
    parsed = _parse(str(plot["spec"]), run)
    plot_params = [p for p in plot["params"] if p in params]
    identity = plot.get("identity")
    json = {"id": f"v{index}", "label": label, "spec": str(plot["spec"]), "task": run.task.name,
            "kind": str(plot["kind"]), "n_elements": n, "params": params,
            "identity": int(identity) if identity is not None and 0 <= int(identity) < n else 0,
            "plotParams": plot_params, "labels": _element_labels(parsed, n, params, plot_params),
            "metrics": _view_metrics(run, metrics),
            "entries": [], "classes": ["all"], "data": data_id}
    return View(json, run, parsed)


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
    seen: list[str] = []
    for mb in view.members:
        a = mb.run.agg
        seen += [c for c in a.loc[a["group"] == mb.label, "class"].unique() if c != "all" and c not in seen]
    return ["all", *seen]


def build_views(runs: Sequence[Any], datasets: dict[str, dict[str, Any]], metrics: Sequence[str] | None) -> list[View]:
    """One view per (task, group spec), in run order; the models of every run that evaluated it are
    overlaid. ``datasets``: the page's data set per data key."""
    views: list[View] = []
    by_key: dict[tuple[str, str], View] = {}
    for r in runs:
        for label, plot in r.rec.plots.items():
            key = (r.task.name, str(plot["spec"]))
            if key not in by_key:
                v = _new_view(r, label, plot, len(views), metrics, datasets[r.data_key]["id"])
                if v is None:
                    continue
                by_key[key] = v
                views.append(v)
            by_key[key].members.append(Member(r, label, datasets[r.data_key]["id"]))
    labels = [v.json["label"] for v in views]
    for v in views:
        if labels.count(v.json["label"]) > 1:
            v.json["label"] = f"{v.json['label']} ({v.json['spec']})"
    _check_metrics(views, metrics)
    views = [v for v in views if v.json["metrics"]]
    for v in views:
        v.json["classes"] = _classes(v)
        v.json["transform"] = transform(v, datasets[v.run.data_key]["thumbScale"])
    return views


# ------------------------------------------------------------------------------------------
# Entries: one model of one run in a view


@dataclass
class Grid:
    """Where each results row of one model and group lands in the (shown samples x elements) grid."""

    rows: np.ndarray
    elements: np.ndarray
    ok: np.ndarray
    shape: tuple[int, int]

    @classmethod
    def of(cls, tm: pd.DataFrame, ids: np.ndarray, g: int) -> "Grid":
        sv = tm["sample"].to_numpy().astype(np.int64)
        srow = np.clip(np.searchsorted(ids, sv), 0, max(len(ids) - 1, 0))
        srow = np.where(ids[srow] == sv, srow, -1) if len(ids) else np.full(len(sv), -1)
        el = tm["element"].to_numpy().astype(int)
        return cls(srow, el, (srow >= 0) & (el >= 0) & (el < g), (len(ids), g))

    def fill(self, values: Any) -> np.ndarray:
        arr = np.full(self.shape, np.nan, dtype=np.float64)
        arr[self.rows[self.ok], self.elements[self.ok]] = np.asarray(values, dtype=np.float64)[self.ok]
        return arr


def _along(ac: pd.DataFrame, column: str, g: int) -> list:
    """A summary.csv column of one class subset as a curve over the ``g`` elements (NaN where missing)."""
    el = ac["element"].to_numpy().astype(int)
    ok = (el >= 0) & (el < g)
    arr = np.full(g, np.nan)
    arr[el[ok]] = ac[column].to_numpy(dtype=float)[ok]
    return rounded_list(arr)


def _agg_curves(am: pd.DataFrame, metrics: Sequence[str], g: int) -> dict[str, Any]:
    """Per class subset of summary.csv: each metric's aggregate curve, the sample count and, when the
    table has one, the resampling floor's curve (``floor``, drawn as a band under equivariance errors)."""
    out = {}
    for cls, ac in am.groupby("class", sort=False):
        out[str(cls)] = {"curves": {m: _along(ac, m, g) for m in metrics if m in ac}, "n": rounded(ac["n"].max())}
        if FLOOR_COLUMN in ac:
            out[str(cls)]["floor"] = _along(ac, FLOOR_COLUMN, g)
    return out


def _sample_columns(tm: pd.DataFrame, task: Any, grid: Grid) -> tuple[dict[str, Any], dict[str, Any]]:
    """The task's results columns per (sample, element); a column that is not a metric and holds one
    value per sample over the whole orbit (the reference class) is embedded once per sample."""
    metric_cols = {m.column for m in task.metrics}
    cols: dict[str, Any] = {}
    per_sample: dict[str, Any] = {}
    for c in (c.name for c in task.columns if c.name in tm):
        arr = grid.fill(tm[c].to_numpy())
        if c not in metric_cols and np.all((arr == arr[:, :1]) | np.isnan(arr)):
            first = np.where(np.isnan(arr), -np.inf, arr).max(axis=1)
            per_sample[c] = encode_column(np.where(np.isinf(first), np.nan, first))
        else:
            cols[c] = encode_column(arr)
    return cols, per_sample


def _reductions(tm: pd.DataFrame, task: Any, metrics: Sequence[str], grid: Grid, reducer: Any,
                what: str) -> dict[str, Any]:
    """Per metric and method, the 2-D embedding of every shown sample's curve."""
    red: dict[str, Any] = {}
    for metric in metrics:
        col = task.metric(metric).column
        if col not in tm:
            continue
        arr = grid.fill(tm[col].to_numpy(dtype=np.float64))
        good = np.isfinite(arr).all(axis=1)
        red[metric] = {}
        for method in reducer.methods:
            reducer.step(f"{what} / {metric}", method)
            coords = np.full((grid.shape[0], 2), np.nan)
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
    """One model of one run in ``view``: its aggregate curves, and (when it evaluated the view's
    data set) its per-sample columns and reductions."""
    r, g, metrics = mb.run, view.json["n_elements"], view.json["metrics"]
    t = r.table
    tm = t[(t["group"] == mb.label) & (t["model"] == model)]
    if tm.empty:
        return None
    a = r.agg
    e: dict[str, Any] = {"name": r.display[model], "run": r.name, "model": model, "color": color, "data": mb.data_id,
                         "agg": _agg_curves(a[(a["group"] == mb.label) & (a["model"] == model)], metrics, g),
                         "cols": {}, "perSample": {}, "red": {}}
    if r.data_key == view.run.data_key:
        grid = Grid.of(tm, ids, g)
        e["cols"], e["perSample"] = _sample_columns(tm, r.task, grid)
        e["red"] = _reductions(tm, r.task, metrics, grid, reducer, f"{view.json['label']} / {r.display[model]}")
    return e


__all__ = ["View", "Member", "build_views", "entry_json", "transform"]
