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
    Reduction("orbit", "orbit_{m}", "mean of {m} over every sample and orbit element (an element the grid "
              "repeats k times weighs 1/k)"),
    Reduction("worst", "worst_element_{m}", "the worst point of the aggregate curve of {m} (its per-element mean over "
              "samples): the minimum when higher is better, else the maximum"),
    Reduction("all", "robust_{m}", "share of samples for which {m} holds at every orbit element (correct under "
              "every transformation of the grid)"),
    Reduction("max", "max_{m}", "largest {m} over every sample and orbit element"),
    Reduction("min", "min_{m}", "smallest {m} over every sample and orbit element"),
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
    ``max`` and ``min`` over rows with ``w_s > 0``. With a weight matrix ``(R, S)`` (R bootstrap
    resamples) every sum gains a leading axis of R, and :meth:`compute` returns R values.
    """

    elem_sum: np.ndarray
    weight: Any = 0.0
    all_sum: Any = 0.0
    max: Any = -np.inf
    min: Any = np.inf

    @classmethod
    def empty(cls, n_elements: int) -> "Stats":
        return cls(np.zeros(n_elements, dtype=np.float64))

    def update(self, rows: np.ndarray, weights: np.ndarray | None = None) -> "Stats":
        """Add per-sample rows ``(S, G)`` (sample-major), weighted by ``weights`` ``(S,)`` or ``(R, S)``."""
        rows = np.asarray(rows, dtype=np.float64)
        w = np.ones(len(rows)) if weights is None else np.asarray(weights, dtype=np.float64)
        self.elem_sum = self.elem_sum + w @ rows
        self.weight = self.weight + w.sum(-1)
        self.all_sum = self.all_sum + w @ (rows != 0).all(axis=1)
        if rows.size:
            used = w > 0
            self.max = np.maximum(self.max, np.where(used, rows.max(1), -np.inf).max(-1))
            self.min = np.minimum(self.min, np.where(used, rows.min(1), np.inf).min(-1))
        return self

    def merge(self, other: "Stats") -> "Stats":
        """The state of both blocks together (running sums add)."""
        return Stats(self.elem_sum + other.elem_sum, self.weight + other.weight, self.all_sum + other.all_sum,
                     np.maximum(self.max, other.max), np.minimum(self.min, other.min))

    def curve(self) -> np.ndarray:
        return self.elem_sum / np.asarray(self.weight)[..., None]

    def compute(self, reduction: str, identity: int, higher: bool, elements: np.ndarray | None = None) -> Any:
        """One reduction: a float, or ``(R,)`` values for a weight matrix (NaN where nothing is weighted).
        ``elements``: per-element weights of the orbit mean (a grid that repeats a group element
        weights each copy by 1/multiplicity, so each distinct element counts once)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            weight = np.asarray(self.weight, dtype=np.float64)
            if reduction == "identity":
                out = self.elem_sum[..., identity] / weight
            elif reduction == "orbit" and elements is not None:
                out = (self.elem_sum @ elements) / (weight * elements.sum())
            elif reduction == "orbit":
                out = self.elem_sum.sum(-1) / (weight * self.elem_sum.shape[-1])
            elif reduction in ("worst", "spread"):
                c = self.curve()
                out = (c.max(-1) - c.min(-1)) if reduction == "spread" else (c.min(-1) if higher else c.max(-1))
            elif reduction == "all":
                out = self.all_sum / weight
            elif reduction in ("max", "min"):
                out = np.asarray(self.max if reduction == "max" else self.min, dtype=np.float64)
            else:
                raise KeyError(f"unknown reduction {reduction!r}")
            out = np.where(weight > 0, out, np.nan)
        return float(out) if np.ndim(out) == 0 else out


@dataclass
class BlockStats:
    """Running sums of every metric of a task over one model × group block."""

    n_elements: int
    identity: int
    stats: dict[str, Stats] = field(default_factory=dict)
    samples: int = 0
    #: Per-element weights of orbit means (None: every element counts once).
    elements: np.ndarray | None = None

    def update(self, rows: Mapping[str, np.ndarray], metrics: tuple[Metric, ...],
               weights: np.ndarray | None = None) -> "BlockStats":
        """``rows[column]``: values of a whole number of samples, sample-major (``S * G``);
        ``weights``: ``(S,)`` or ``(R, S)`` per sample."""
        for m in metrics:
            vals = np.asarray(rows[m.column], dtype=np.float64).reshape(-1, self.n_elements)
            self.stats.setdefault(m.name, Stats.empty(self.n_elements)).update(vals, weights)
        first = next(iter(rows.values()))
        self.samples += len(first) // self.n_elements
        return self

    def merge(self, other: "BlockStats") -> "BlockStats":
        out = BlockStats(self.n_elements, self.identity, samples=self.samples + other.samples, elements=self.elements)
        for k in self.stats.keys() | other.stats.keys():
            a, b = self.stats.get(k), other.stats.get(k)
            out.stats[k] = a.merge(b) if a is not None and b is not None else (a or b)  # type: ignore[assignment]
        return out

    def compute(self, keys: Mapping[str, SummaryKey]) -> dict[str, Any]:
        """Every summary key (floats, or ``(R,)`` arrays after weighted updates with R resamples)."""
        out = {}
        for key, sk in keys.items():
            st = self.stats.get(sk.metric.name)
            if st is not None:
                out[key] = st.compute(sk.reduction, self.identity, sk.metric.higher_is_better, self.elements)
        return out


__all__ = ["Reduction", "REDUCTIONS", "Column", "Metric", "metric", "SummaryKey", "summary_keys", "Stats",
           "BlockStats"]
