"""``nero gate`` on the run folders of ``nero lie``, ``nero layers`` and ``nero search``.

Each kind offers gate metrics of its own, checked with the same threshold keys, scopes and
config tables as an evaluate run's (``[GROUP.][MODEL:]max-METRIC``), where GROUP is:

- ``lie``: ``max-lie-derivative`` on each model's mean Lie derivative at the identity
  (``lie_derivative_mean`` in summary.json) per generator (rotation, dx, dy, log_scale, yaw, pitch,
  rot_x, ...), and for a run of ``nero lie --along`` ``max-lie-derivative-orbit`` on its mean over
  the orbit (``lie_derivative_orbit_mean``);
- ``layers``: ``max-layer-error`` on each model's largest own equivariance error over its layers
  (``max_layer_error``; the layer is named in the message), GROUP the run's group label;
- ``search``: ``min-breaking-rotation`` (and ``-shift``, ``-scale``, ``-perspective``) on the
  ``breaking-percentile``-th percentile (default 10) of each model's breaking |parameter| per axis
  (``rotation/angle``, ``shift/dx`` ...), computed from ``search.csv`` with never-broken samples
  counted as beyond the range (such a percentile passes any minimum).

:func:`analysis_view` turns an :class:`~nero_cli.analysis_runs.AnalysisRun` into the
``{model: {group: {metric: value}}}`` table the checks read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .analysis_runs import GATE_METRICS as METRICS, AnalysisRun
from .errors import OptionError, positive_number
from .gate_checks import Scoped, applicable, resolved, threshold_row
from .gate_config import Threshold, metric_key

#: Where a metric that a run of its kind may lack comes from.
_WHERE = {"lie_derivative_orbit": "a run of 'nero lie --along' has it"}



@dataclass
class AnalysisView:
    """What the threshold checks read of an analysis run: names, directions and the values."""

    kind: str
    models: list[str]
    groups: list[str]
    higher_is_better: dict[str, bool]
    values: dict[str, dict[str, dict[str, float | None]]]
    notes: dict[tuple[str, str, str], str] = field(default_factory=dict)  # extra text per (model, group, metric)

    @property
    def label(self) -> str:
        return f"'nero {self.kind}' run"


def breaking_percentile(breaking: np.ndarray, percentile: float) -> float:
    """The ``percentile``-th percentile (lower method) of breaking |parameters|, never-broken
    samples (NaN) counted as beyond the range (``inf``)."""
    b = np.where(np.isnan(breaking), np.inf, breaking)
    return float(np.percentile(b, percentile, method="lower")) if len(b) else math.nan


def _lie_values(run: AnalysisRun) -> tuple[list[str], dict[str, Any]]:
    values = {m: {gen: {"lie_derivative": v.get("lie_derivative_mean"),
                        **({"lie_derivative_orbit": v["lie_derivative_orbit_mean"]}
                           if "lie_derivative_orbit_mean" in v else {})}  # nero lie --along
                  for gen, v in gens.items()}
              for m, gens in run.per_model.items()}
    return list(run.summary.get("generators") or dict.fromkeys(g for m in values.values() for g in m)), values


def _search_values(run: AnalysisRun, percentile: float) -> tuple[list[str], dict[str, Any]]:
    t = run.table()
    values: dict[str, dict[str, Any]] = {}
    for (model, group, axis), rows in t.groupby(["model", "group", "axis"], sort=False):
        key = f"breaking_{group}"
        if key in METRICS["search"]:
            v = breaking_percentile(rows["breaking"].to_numpy(dtype=float), percentile)
            values.setdefault(str(model), {})[f"{group}/{axis}"] = {key: v}
    return list(dict.fromkeys(g for m in values.values() for g in m)), values


def analysis_view(run: AnalysisRun, percentile: float = 10.0) -> AnalysisView:
    """The gate's view of a lie, layers or search run (``percentile`` of the breaking parameters)."""
    notes: dict[tuple[str, str, str], str] = {}
    if run.kind == "lie":
        groups, values = _lie_values(run)
    elif run.kind == "layers":
        groups = [run.group]
        values = {m: {run.group: {"layer_error": v.get("max_layer_error")}} for m, v in run.per_model.items()}
        notes = {(m, run.group, "layer_error"): f"at {v.get('max_layer_error_layer')}"
                 for m, v in run.per_model.items()}
    else:
        groups, values = _search_values(run, percentile)
        notes = {(m, g, k): f"at the {_ordinal(percentile)} percentile" for m, gs in values.items() for g, ks in gs.items() for k in ks}
    return AnalysisView(run.kind, run.models, groups, dict(METRICS[run.kind]), values, notes)


def _ordinal(p: float) -> str:
    n = f"{p:g}"
    suffix = "th" if n.endswith(("11", "12", "13")) or not n[-1] in "123" or "." in n else {"1": "st", "2": "nd", "3": "rd"}[n[-1]]
    return n + suffix


def check_percentile(value: Any) -> float:
    """``breaking-percentile`` as a number in [0, 100]."""
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise OptionError(f"--breaking-percentile needs a number between 0 and 100 (e.g. 10), got '{value}'") from None
    if not 0 <= p <= 100:
        raise OptionError(f"--breaking-percentile needs a number between 0 and 100 (e.g. 10), got {value}")
    return p


def offered(view: AnalysisView) -> str:
    """What a run can be checked on, for messages: each metric with the groups that have it, and the models."""
    where: dict[str, list[str]] = {}
    for model in view.models:
        for group, metrics in view.values.get(model, {}).items():
            for m in metrics:
                groups = where.setdefault(m, [])
                if group not in groups:
                    groups.append(group)
    has = "; ".join(f"{metric_key(m)} on {', '.join(gs)}" for m, gs in where.items()) or "no values"
    return f"it has {has} (models: {', '.join(view.models)})"


def _checks_something(view: AnalysisView, scoped: Scoped, notes: list[str]) -> bool:
    """Whether a threshold's scope holds a model and group with its metric; if not, an error on the
    command line (as an unknown group is), a note in a config file (one config serves many runs)."""
    th, group, model = scoped
    if any(th.metric in view.values.get(m, {}).get(g, {})
           for m in view.models if model in (None, m) for g in view.groups if group in (None, g)):
        return True
    hint = f"; {_WHERE[th.metric]}" if th.metric in _WHERE else ""
    msg = f"{th.source}: '{th.key}' checks nothing in this {view.label}: {offered(view)}{hint}"
    if th.source.startswith("--"):
        raise OptionError(msg)
    notes.append(msg + " (skipped)")
    return False


def check_signs(kind: str, thresholds: Sequence[Threshold]) -> None:
    """The quantities of lie, layers and search runs are never negative: a negative threshold on one
    would pass (or fail) whatever the model, so it is refused."""
    for th in thresholds:
        if th.metric in METRICS[kind]:
            positive_number(th.value, f"{th.source}: {th.key}", zero=True,
                            example=f"{metric_key(th.metric)} is never negative")


def analysis_rows(view: AnalysisView, thresholds: Sequence[Threshold], notes: list[str]) -> list[dict[str, Any]]:
    """One check row per model, group and applicable threshold, where the group has that metric; a
    threshold whose scope has no such group is an error on the command line (a note from a config file)."""
    rows = []
    scoped = [sc for sc in resolved(view, thresholds, notes) if _checks_something(view, sc, notes)]
    for model in view.models:
        for group in view.groups:
            have = view.values.get(model, {}).get(group)
            if have is None:
                continue
            for th in applicable(scoped, model, group, list(view.higher_is_better)):
                if th.metric not in have:
                    continue
                rows.append(threshold_row(model, group, th, have[th.metric], view.higher_is_better[th.metric],
                                          view.notes.get((model, group, th.metric), "")))
    return rows


__all__ = ["AnalysisView", "analysis_view", "analysis_rows", "offered", "check_signs",
           "breaking_percentile", "check_percentile"]
