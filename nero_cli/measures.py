"""The metric registry: every results column and every summary key, defined once.

A :class:`Column` is a per-row value of the results table, computed by its ``row`` function
from a task's scoring context (a mapping of tensors ``(G, B, ...)`` over one chunk).
A :class:`Metric` is a column that is also summarised: it has a label, a unit, a direction
(higher or lower is better), a range, and the summary keys it produces, each through one
:class:`Reduction`.

Reductions work on running sums (torchmetrics style): :meth:`Stats.update` adds one block of
per-sample rows ``(S, G)`` with optional sample weights (the gate's bootstrap), states merge
by adding (shards, resumed chunks), and :meth:`Stats.compute` turns them into numbers. The
summary, the gate (bootstrap included), plots, report and doctor read these records and
never re-derive a metric from its name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

Row = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Reduction:
    """How a summary key is computed from a metric's per-sample rows ``m[s, g]``."""

    name: str
    #: The summary key, ``{m}`` standing for the metric's name.
    key: str
    formula: str


REDUCTIONS: dict[str, Reduction] = {r.name: r for r in (
    Reduction("identity", "{m}", "mean over samples of {m} at the identity element"),
    Reduction("orbit", "orbit_{m}", "mean of {m} over every sample and orbit element"),
    Reduction("worst", "worst_{m}", "the worst point of the aggregate curve of {m} (its per-element mean over "
              "samples): the minimum when higher is better, else the maximum"),
    Reduction("all", "worst_case_{m}", "share of samples for which {m} holds at every orbit element"),
    Reduction("max", "max_{m}", "largest {m} over every sample and orbit element"),
    Reduction("spread", "orbit_spread", "max minus min of the aggregate curve of {m}, the task's primary metric"),
)}


@dataclass(frozen=True)
class Column:
    """A per-row column of the results table."""

    name: str
    row: Row
    doc: str = ""


@dataclass(frozen=True)
class Metric(Column):
    """A summarised column. ``source`` names the results column it reads (``accuracy`` reads
    ``correct``); ``summary`` lists ``(key, reduction)`` pairs, in summary.json's order."""

    label: str = ""
    unit: str = ""
    higher_is_better: bool = True
    range: tuple[float, float] | None = None
    source: str = ""
    summary: tuple[tuple[str, str], ...] = ()

    @property
    def column(self) -> str:
        return self.source or self.name


def metric(name: str, row: Row, *, label: str, unit: str, higher: bool, doc: str,
           range: tuple[float, float] | None = (0.0, 1.0), source: str = "",
           extra: tuple[tuple[str, str], ...] = (), standard: bool = True) -> Metric:
    """A metric with the standard summary keys ``m``, ``orbit_m``, ``worst_m`` (unless
    ``standard=False``) followed by ``extra`` ``(key, reduction)`` pairs."""
    keys = tuple((REDUCTIONS[r].key.format(m=name), r) for r in ("identity", "orbit", "worst")) if standard else ()
    return Metric(name=name, row=row, doc=doc, label=label, unit=unit, higher_is_better=higher, range=range,
                  source=source, summary=keys + tuple(extra))


@dataclass(frozen=True)
class SummaryKey:
    """One key of summary.json: which metric, which reduction, which direction."""

    key: str
    metric: Metric
    reduction: str

    @property
    def higher_is_better(self) -> bool:
        return False if self.reduction == "spread" else self.metric.higher_is_better

    @property
    def formula(self) -> str:
        return REDUCTIONS[self.reduction].formula.format(m=self.metric.name)


def summary_keys(metrics: tuple[Metric, ...], primary: str) -> dict[str, SummaryKey]:
    """Every summary.json key of a task, in order (``orbit_spread`` of ``primary`` last)."""
    out: dict[str, SummaryKey] = {}
    for m in metrics:
        for key, red in m.summary:
            out[key] = SummaryKey(key, m, red)
    prim = next(m for m in metrics if m.name == primary)
    out["orbit_spread"] = SummaryKey("orbit_spread", prim, "spread")
    return out


@dataclass
class Stats:
    """Running sums of one metric over one model × group block of ``G`` orbit elements.

    ``elem_sum[g] = Σ_s w_s m[s, g]``, ``weight = Σ_s w_s``, ``all_sum = Σ_s w_s [m[s, ·] all true]``,
    ``max`` and ``min`` over rows with ``w_s > 0``.
    """

    elem_sum: np.ndarray
    weight: float = 0.0
    all_sum: float = 0.0
    max: float = -np.inf
    min: float = np.inf

    @classmethod
    def empty(cls, n_elements: int) -> "Stats":
        return cls(np.zeros(n_elements, dtype=np.float64))

    def update(self, rows: np.ndarray, weights: np.ndarray | None = None) -> "Stats":
        """Add per-sample rows ``(S, G)`` (sample-major), each sample weighted by ``weights``."""
        rows = np.asarray(rows, dtype=np.float64)
        w = np.ones(len(rows)) if weights is None else np.asarray(weights, dtype=np.float64)
        self.elem_sum = self.elem_sum + w @ rows
        self.weight += float(w.sum())
        self.all_sum += float(w @ (rows != 0).all(axis=1))
        used = rows[w > 0]
        if used.size:
            self.max = max(self.max, float(used.max()))
            self.min = min(self.min, float(used.min()))
        return self

    def merge(self, other: "Stats") -> "Stats":
        """The state of both blocks together (running sums add)."""
        return Stats(self.elem_sum + other.elem_sum, self.weight + other.weight, self.all_sum + other.all_sum,
                     max(self.max, other.max), min(self.min, other.min))

    def curve(self) -> np.ndarray:
        return self.elem_sum / self.weight

    def compute(self, reduction: str, identity: int, higher: bool) -> float:
        if self.weight <= 0:
            return float("nan")
        if reduction == "identity":
            return float(self.elem_sum[identity] / self.weight)
        if reduction == "orbit":
            return float(self.elem_sum.sum() / (self.weight * len(self.elem_sum)))
        if reduction == "worst":
            c = self.curve()
            return float(c.min() if higher else c.max())
        if reduction == "all":
            return float(self.all_sum / self.weight)
        if reduction == "max":
            return float(self.max)
        if reduction == "spread":
            c = self.curve()
            return float(c.max() - c.min())
        raise KeyError(f"unknown reduction {reduction!r}")


@dataclass
class BlockStats:
    """Running sums of every metric of a task over one model × group block."""

    n_elements: int
    identity: int
    stats: dict[str, Stats] = field(default_factory=dict)
    samples: int = 0

    def update(self, rows: Mapping[str, np.ndarray], metrics: tuple[Metric, ...],
               weights: np.ndarray | None = None) -> "BlockStats":
        """``rows[column]``: values of a whole number of samples, sample-major (``S * G``)."""
        for m in metrics:
            vals = np.asarray(rows[m.column], dtype=np.float64).reshape(-1, self.n_elements)
            self.stats.setdefault(m.name, Stats.empty(self.n_elements)).update(vals, weights)
        first = next(iter(rows.values()))
        self.samples += len(first) // self.n_elements
        return self

    def merge(self, other: "BlockStats") -> "BlockStats":
        out = BlockStats(self.n_elements, self.identity, samples=self.samples + other.samples)
        for k in self.stats.keys() | other.stats.keys():
            a, b = self.stats.get(k), other.stats.get(k)
            out.stats[k] = a.merge(b) if a is not None and b is not None else (a or b)  # type: ignore[assignment]
        return out

    def compute(self, keys: Mapping[str, SummaryKey]) -> dict[str, float]:
        out = {}
        for key, sk in keys.items():
            st = self.stats.get(sk.metric.name)
            if st is not None:
                out[key] = st.compute(sk.reduction, self.identity, sk.metric.higher_is_better)
        return out


__all__ = ["Reduction", "REDUCTIONS", "Column", "Metric", "metric", "SummaryKey", "summary_keys", "Stats",
           "BlockStats"]
