"""``nero gate`` threshold checks on the numbers of a run's summary.json.

For each model, group, metric and bound the most specific key applies (``GROUP.MODEL:`` >
``MODEL:`` > ``GROUP.`` > unscoped; the command line beats the config file at equal
specificity). Metric names and their directions come from the run record's task
(:attr:`RunRecord.higher_is_better`).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from .analysis_runs import ALL_ANALYSIS_METRICS
from .errors import OptionError
from .gate_config import Threshold, did_you_mean, metric_key
from .gate_result import check_row, distinct
from .runrecord import RunRecord
from .tasks import TASKS

#: A threshold with its resolved (group, model) scope.
Scoped = tuple[Threshold, "str | None", "str | None"]


def _split_model_prefix(body: str, groups: Sequence[str], models: Sequence[str]) -> tuple[str | None, str]:
    """(group, model) of a ``MODEL`` or ``GROUP.MODEL`` prefix body (group labels may contain '.')."""
    if body in models:
        return None, body
    for g in sorted(groups, key=len, reverse=True):
        if body.startswith(g + ".") and body[len(g) + 1:] in models:
            return g, body[len(g) + 1:]
    if "." not in body:
        return None, body
    group, _, model = body.rpartition(".")
    return group or None, model


def known_elsewhere(metric: str) -> bool:
    """Whether some run kind or task offers ``metric`` (a config file's key for another kind of run
    is skipped with a note; an unknown one is an error)."""
    return metric in ALL_ANALYSIS_METRICS or any(metric in t.summary_keys for t in TASKS.values())


def resolve_scope(th: Threshold, groups: Sequence[str], models: Sequence[str]) -> tuple[str | None, str | None]:
    """(group, model) of a threshold: its config tables, then its key prefix, matched against
    the run's names (group labels may contain ':' and '.', model names '.')."""
    group, model = th.group, th.model
    p = th.prefix
    if not p:
        return group, model
    if p.endswith("."):
        g2, m2 = p[:-1], None
    else:  # "MODEL:" or "GROUP.MODEL:"
        g2, m2 = _split_model_prefix(p[:-1], groups, models)
    if g2 is not None:
        if group is not None and g2 != group:
            raise OptionError(f"{th.source}: '{th.key}' names group '{g2}' inside the table of group '{group}'")
        group = g2
    if m2 is not None:
        if model is not None and m2 != model:
            raise OptionError(f"{th.source}: '{th.key}' names model '{m2}' inside the table of model '{model}'")
        model = m2
    return group, model


def resolved(run: RunRecord, thresholds: Sequence[Threshold], notes: list[str]) -> list[Scoped]:
    """Every threshold with its scope; unknown metrics are errors, unknown groups or models
    errors on the command line and notes (skipped) in a config file."""
    hib = run.higher_is_better
    groups, models = run.groups, run.models
    valid = [metric_key(m) for m in hib]
    label = getattr(run, "label", None) or f"{run.task.name} run"
    out: list[Scoped] = []
    for th in thresholds:
        if th.metric not in hib:
            elsewhere = known_elsewhere(th.metric)
            what = (f"metric '{metric_key(th.metric)}' in '{th.key}' does not apply to" if elsewhere
                    else f"unknown metric '{metric_key(th.metric)}' in '{th.key}' for")
            msg = (f"{th.source}: {what} this {label}; "
                   f"{did_you_mean(metric_key(th.metric), valid)}valid metrics: {', '.join(valid)}")
            if th.source.startswith("--") or not elsewhere:
                raise OptionError(msg)
            notes.append(msg + " (skipped)")
            continue
        group, model = resolve_scope(th, groups, models)
        for kind, name, known in (("group", group, groups), ("model", model, models)):
            if name is not None and name not in known:
                msg = (f"{th.source}: {kind} '{name}' in '{th.key}' is not in this run; "
                       f"{did_you_mean(name, known)}{kind}s: {', '.join(known)}")
                if th.source.startswith("--"):
                    raise OptionError(msg)
                notes.append(msg + " (skipped)")
                break
        else:
            out.append((th, group, model))
    return out


def applicable(scoped: Sequence[Scoped], model: str, group: str, order: Sequence[str]) -> list[Threshold]:
    """The most specific threshold per (metric, bound) for one model and group, in metric order."""
    chosen: dict[tuple[str, str], tuple[tuple[int, int, int], Threshold]] = {}
    for th, g, m in scoped:
        if (g is not None and g != group) or (m is not None and m != model):
            continue
        rank = ((g is not None) + 2 * (m is not None), 1 if th.source.startswith("--") else 0, th.order)
        k = (th.metric, th.bound)
        if k not in chosen or rank >= chosen[k][0]:
            chosen[k] = (rank, th)
    ordered = sorted(chosen.values(), key=lambda rt: (order.index(rt[1].metric), rt[1].bound))
    return [th for _, th in ordered]


def threshold_rows(run: RunRecord, thresholds: Sequence[Threshold], notes: list[str]) -> list[dict[str, Any]]:
    """One check row per model, group and applicable threshold."""
    hib = run.higher_is_better
    scoped = resolved(run, thresholds, notes)
    metrics = run.summary["metrics"]
    rows = []
    for model in run.models:
        for group in run.groups:
            if group not in metrics.get(model, {}):
                continue
            for th in applicable(scoped, model, group, list(hib)):
                rows.append(threshold_row(model, group, th, metrics[model][group].get(th.metric), hib[th.metric]))
    return rows


def threshold_row(model: str, group: str, th: Threshold, value: Any, higher: bool, context: str = "") -> dict[str, Any]:
    """The check of one summary.json value against one threshold; ``context`` (e.g. "at the 10th
    percentile") follows the comparison in the message."""
    v = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")
    if v == math.inf and th.bound == "min":  # e.g. a breaking percentile beyond the searched range
        return check_row(True, f"beyond the searched range >= min {distinct(th.value, th.value)[0]} {context}".strip(), kind="threshold",
                         model=model, group=group, metric=th.metric, higher_is_better=higher, value=None,
                         bound=th.bound, threshold=th.value, key=th.key, source=th.source)
    if not math.isfinite(v):
        ok, msg = False, "no value in summary.json" if value is None else f"value is {value}"
    elif th.bound == "min":
        ok = v >= th.value
        sv, st = distinct(v, th.value)
        msg = f"{sv} >= min {st}" if ok else f"too low: {sv} < min {st}"
    else:
        ok = v <= th.value
        sv, st = distinct(v, th.value)
        msg = f"{sv} <= max {st}" if ok else f"too high: {sv} > max {st}"
    msg += f" {context}" if context else ""
    if not ok and math.isfinite(v):
        msg += f" ({'higher' if higher else 'lower'} is better)"
    return check_row(ok, msg, kind="threshold", model=model, group=group, metric=th.metric, higher_is_better=higher,
                     value=v, bound=th.bound, threshold=th.value, key=th.key, source=th.source)


__all__ = ["resolve_scope", "resolved", "applicable", "known_elsewhere", "threshold_rows", "threshold_row"]
