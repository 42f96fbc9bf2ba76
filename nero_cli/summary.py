"""Aggregates computed from the tidy results table only.

- :func:`aggregate`: the aggregate NERO curves (``summary.csv``): per model, group,
  element and class subset, the mean of each metric.
- :func:`summarise`: per model and group, the scalar summary (``summary.json``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

KEYS = ["model", "group", "element"]


def _with_accuracy(table: pd.DataFrame) -> pd.DataFrame:
    return table.assign(accuracy=table["correct"].astype(np.float64)) if "correct" in table else table


def _class_column(table: pd.DataFrame, class_names: list[str] | None) -> pd.Series:
    """The class each row counts under: its label, or its reference class when unlabelled."""
    if "reference" in table:
        ids = table["label"].where(table["label"] >= 0, table["reference"]).astype(np.int64)
    else:
        ids = table["label"].astype(np.int64)
    if class_names:
        names = np.asarray(class_names, dtype=object)
        safe = ids.clip(0, len(names) - 1)
        return pd.Series(np.where((ids >= 0) & (ids < len(names)), names[safe], ids.astype(str)), index=table.index)
    return ids.astype(str)


def aggregate(table: pd.DataFrame, param_columns: list[str], metrics: dict[str, bool],
              class_names: list[str] | None = None, per_class: bool = True) -> pd.DataFrame:
    """The mean of each metric per model × group × element × class subset ("all" = every sample)."""
    t = _with_accuracy(table)
    metric_cols = [c for c in metrics if c in t]
    firsts = {c: (c, "first") for c in param_columns}
    spec = {**firsts, "n": ("sample", "size"), **{m: (m, "mean") for m in metric_cols}}
    parts = [t.groupby(KEYS, sort=False).agg(**spec).reset_index().assign(**{"class": "all"})]
    if per_class and ("reference" in t or bool((t["label"] >= 0).any())):
        t = t.assign(_class=_class_column(t, class_names))
        by_class = t.groupby([*KEYS, "_class"], sort=False).agg(**spec).reset_index().rename(columns={"_class": "class"})
        parts.append(by_class)
    out = pd.concat(parts, ignore_index=True)
    order = [*KEYS, "class", *param_columns, "n", *metric_cols]
    return out[order]


def summary_directions(metrics: dict[str, bool], primary: str) -> dict[str, bool]:
    """Every summary.json metric with whether higher is better (the gate reads this)."""
    out: dict[str, bool] = {}
    for m, higher in metrics.items():
        if m == "equivariance_error":
            continue
        out[m] = higher
        out[f"orbit_{m}"] = higher
        out[f"worst_{m}"] = higher
    if "accuracy" in metrics:
        out["worst_case_accuracy"] = True
    if "confidence" in metrics:
        out["mean_confidence"] = True
    out["equivariance_error"] = False
    out["max_equivariance_error"] = False
    out["orbit_spread"] = False
    return out


def summarise(table: pd.DataFrame, metrics: dict[str, bool], primary: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Per model and group, for each metric ``m``: ``m`` at the identity, ``orbit_m`` (mean over
    the orbit) and ``worst_m`` (the worst element of the aggregate curve); the mean and max
    equivariance error; ``orbit_spread``, max minus min of the aggregate curve of ``primary``.
    With labels: ``worst_case_accuracy``, the share of samples correct at every element."""
    t_all = _with_accuracy(table)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (model, group), t in t_all.groupby(["model", "group"], sort=False):
        ident = t[t["identity"]]
        curves = t.groupby("element", sort=True)[[m for m in metrics if m in t]].mean()
        row: dict[str, Any] = {"n_samples": int(t["sample"].nunique()), "n_elements": int(t["element"].nunique())}
        for m, higher in metrics.items():
            if m == "equivariance_error" or m not in t:
                continue
            row[m] = float(ident[m].mean())
            row[f"orbit_{m}"] = float(t[m].mean())
            row[f"worst_{m}"] = float(curves[m].min() if higher else curves[m].max())
        if "correct" in t:
            row["worst_case_accuracy"] = float(t.groupby("sample", sort=True)["correct"].all().mean())
        if "confidence" in t:
            row["mean_confidence"] = float(t["confidence"].mean())
        row["equivariance_error"] = float(t["equivariance_error"].mean())
        row["max_equivariance_error"] = float(t["equivariance_error"].max())
        row["orbit_spread"] = float(curves[primary].max() - curves[primary].min())
        out.setdefault(str(model), {})[str(group)] = row
    return out


def rank_samples(table: pd.DataFrame, how: str = "worst", k: int = 3, by: str = "confidence",
                 higher_is_better: bool = True) -> list[int]:
    """Sample ids ranked by the mean of ``by`` over every model and orbit ("worst" first, or "best")."""
    means = _with_accuracy(table).groupby("sample", sort=True)[by].mean()
    ascending = (how == "worst") == higher_is_better
    ranked = means.sort_values(ascending=ascending, kind="stable")
    return [int(s) for s in ranked.index[:k]]
