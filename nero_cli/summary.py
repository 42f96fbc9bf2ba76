"""Aggregates of the tidy results table, computed through the metric registry.

- :func:`aggregate`: the aggregate NERO curves (``summary.csv``): per model, group,
  element and class subset, the mean of each metric.
- :func:`block_stats` / :func:`summarise`: per model and group, the running sums of every
  metric (:class:`~nero_cli.measures.BlockStats`) and the summary (``summary.json``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np

from .measures import BlockStats, SummaryKey
from .tasks import TaskRecord

if TYPE_CHECKING:
    import pandas as pd
else:
    from nero_cli.lazy import pandas as pd

KEYS = ["model", "group", "element"]
#: Samples per update of the running sums (fixed, so every run folds them in the same order).
STATS_CHUNK = 256


def with_metrics(table: pd.DataFrame, task: TaskRecord) -> pd.DataFrame:
    """The table with a float column per metric whose source column has another name (``accuracy``)."""
    extra = {m.name: table[m.column].astype(np.float64) for m in task.metrics
             if m.column != m.name and m.column in table}
    return table.assign(**extra) if extra else table


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


def aggregate(table: pd.DataFrame, param_columns: list[str], task: TaskRecord,
              class_names: list[str] | None = None, per_class: bool = True) -> pd.DataFrame:
    """The mean of each metric per model × group × element × class subset ("all" = every sample)."""
    t = with_metrics(table, task)
    metric_cols = [m.name for m in task.metrics if m.name in t]
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


def blocks(table: pd.DataFrame) -> Iterator[tuple[str, str, pd.DataFrame]]:
    """``(model, group, rows)`` per block, rows sample-major (sample, then element)."""
    for (model, group), t in table.groupby(["model", "group"], sort=False):
        yield str(model), str(group), t.sort_values(["sample", "element"], kind="stable")


def block_stats(t: pd.DataFrame, task: TaskRecord, weights: np.ndarray | None = None,
                elements: Sequence[float] | None = None) -> BlockStats:
    """Running sums of every metric of one sample-major block, folded :data:`STATS_CHUNK` samples at
    a time (``weights``: ``(S,)``, or ``(R, S)`` for R bootstrap resamples at once; ``elements``:
    the group's per-element weights of orbit means, None for equal weights)."""
    g = int(t["element"].nunique())
    ident = int(t.loc[t["identity"].to_numpy(dtype=bool), "element"].iloc[0])
    present = tuple(m for m in task.metrics if m.column in t)  # a table may lack optional columns
    return fold_stats({m.column: t[m.column].to_numpy() for m in present}, len(t) // g, g, ident, present,
                      weights, elements)


def fold_stats(cols: Mapping[str, np.ndarray], n: int, g: int, ident: int, present: tuple[Any, ...],
               weights: np.ndarray | None = None, elements: Sequence[float] | None = None) -> BlockStats:
    """:func:`block_stats` of ``n`` samples x ``g`` elements given as columns (``cols[m.column]``:
    ``n * g`` values, sample-major, for every metric of ``present``; ``ident``: the identity element)."""
    stats = BlockStats(g, ident, elements=None if elements is None else np.asarray(elements, dtype=np.float64))
    for s0 in range(0, n, STATS_CHUNK):
        s1 = min(n, s0 + STATS_CHUNK)
        part = {c: v[s0 * g : s1 * g] for c, v in cols.items()}
        stats.update(part, present, None if weights is None else weights[..., s0:s1])
    return stats


def summarise(table: pd.DataFrame, task: TaskRecord,
              elements: Mapping[str, Sequence[float] | None] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """Per model and group: ``n_samples``, ``n_elements`` and every summary key of the task
    (see :attr:`TaskRecord.summary_keys` for the formulas); ``elements[group]``: the group's
    per-element weights of orbit means (see :meth:`orbits.groups.Group.element_weights`)."""
    keys = task.summary_keys
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for model, group, t in blocks(table):
        out.setdefault(model, {})[group] = block_summary(block_stats(t, task, elements=(elements or {}).get(group)), keys)
    return out


def block_summary(st: BlockStats, keys: Mapping[str, SummaryKey]) -> dict[str, Any]:
    """One model × group entry of summary.json's ``metrics`` from its running sums."""
    values = {k: (None if v != v else v) for k, v in st.compute(keys).items()}  # NaN (e.g. --no-floor): null
    return {"n_samples": st.samples, "n_elements": st.n_elements, **values}


def rank_samples(table: pd.DataFrame, how: str = "worst", k: int = 3, by: str = "confidence",
                 higher_is_better: bool = True) -> list[int]:
    """Sample ids ranked by the mean of ``by`` over every model and orbit ("worst" first, or "best")."""
    t = table.assign(**{by: table[by].astype(np.float64)})
    means = t.groupby("sample", sort=True)[by].mean()
    ascending = (how == "worst") == higher_is_better
    ranked = means.sort_values(ascending=ascending, kind="stable")
    return [int(s) for s in ranked.index[:k]]
