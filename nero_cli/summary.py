"""Aggregates computed from the tidy results table only.

- :func:`aggregate`: the aggregate NERO curves (``summary.csv``): per model, group,
  element and class subset, the mean of each metric.
- :func:`summarise`: per model and group, the scalar summary (``summary.json``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

#: Scalar summary metrics, with whether higher is better (the gate reads this).
SUMMARY_METRICS: dict[str, bool] = {
    "accuracy": True,
    "orbit_accuracy": True,
    "worst_case_accuracy": True,
    "mean_confidence": True,
    "equivariance_error": False,
    "max_equivariance_error": False,
    "orbit_spread": False,
}

KEYS = ["model", "group", "element"]


def _class_column(table: pd.DataFrame, class_names: list[str] | None) -> pd.Series:
    """The class each row counts under: its label, or its reference class when unlabelled."""
    ids = table["label"].where(table["label"] >= 0, table["reference"]).astype(np.int64)
    if class_names:
        names = np.asarray(class_names, dtype=object)
        safe = ids.clip(0, len(names) - 1)
        return pd.Series(np.where(ids < len(names), names[safe], ids.astype(str)), index=table.index)
    return ids.astype(str)


def aggregate(table: pd.DataFrame, param_columns: list[str], class_names: list[str] | None = None,
              per_class: bool = True) -> pd.DataFrame:
    """Mean ``confidence``, ``accuracy`` and ``equivariance_error`` per model × group × element × class."""
    t = table.assign(accuracy=table["correct"].astype(np.float64))
    metric_cols = [c for c in ("confidence", "accuracy", "equivariance_error") if c in t]
    firsts = {c: (c, "first") for c in param_columns}
    spec = {**firsts, "n": ("sample", "size"), **{m: (m, "mean") for m in metric_cols}}
    parts = [t.groupby(KEYS, sort=False).agg(**spec).reset_index().assign(**{"class": "all"})]
    if per_class:
        t = t.assign(_class=_class_column(t, class_names))
        by_class = t.groupby([*KEYS, "_class"], sort=False).agg(**spec).reset_index().rename(columns={"_class": "class"})
        parts.append(by_class)
    out = pd.concat(parts, ignore_index=True)
    order = [*KEYS, "class", *param_columns, "n", *metric_cols]
    return out[order]


def summarise(table: pd.DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    """Per model and group: accuracy at the identity, orbit accuracy, worst-case accuracy,
    mean confidence, mean and max equivariance error, and the spread of the aggregate
    confidence curve (max minus min over the orbit)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (model, group), t in table.groupby(["model", "group"], sort=False):
        ident = t[t["identity"]]
        curve = t.groupby("element", sort=True)["confidence"].mean()
        per_sample = t.groupby("sample", sort=True)["correct"].all()
        out.setdefault(str(model), {})[str(group)] = {
            "n_samples": int(t["sample"].nunique()),
            "n_elements": int(t["element"].nunique()),
            "accuracy": float(ident["correct"].mean()),
            "orbit_accuracy": float(t["correct"].mean()),
            "worst_case_accuracy": float(per_sample.mean()),
            "mean_confidence": float(t["confidence"].mean()),
            "equivariance_error": float(t["equivariance_error"].mean()),
            "max_equivariance_error": float(t["equivariance_error"].max()),
            "orbit_spread": float(curve.max() - curve.min()),
        }
    return out


def rank_samples(table: pd.DataFrame, how: str = "worst", k: int = 3, by: str = "confidence") -> list[int]:
    """Sample ids ranked by the mean of ``by`` over every model and orbit ("worst" = lowest first)."""
    means = table.groupby("sample", sort=True)[by].mean()
    ranked = means.sort_values(ascending=(how == "worst"), kind="stable")
    return [int(s) for s in ranked.index[:k]]
