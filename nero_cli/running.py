"""Running sums of one model × group block of the results table, fed chunk by chunk.

The streamed sweep (:mod:`nero_cli.stream`) never holds the whole table, so the aggregate
curves (``summary.csv``) and the summary (``summary.json``) are folded in as the rows arrive:

- :class:`CurveSums`: per orbit element and class subset ("all" = every sample) the mean of
  every metric, with the same compensated (Kahan) sum, row order and NaN handling as the
  pandas group mean of :func:`nero_cli.summary.aggregate` over the whole table, so the
  numbers are identical to the last bit;
- :class:`BlockSums`: the metric registry's :class:`~nero_cli.measures.BlockStats`, folded
  :data:`~nero_cli.summary.STATS_CHUNK` samples at a time from the block's first sample, as
  :func:`nero_cli.summary.block_stats` folds them, whatever the sweep's chunk size.

Rows arrive sample-major (each sample's ``G`` elements in order) and samples in increasing id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .measures import BlockStats
from .summary import STATS_CHUNK
from .tasks import TaskRecord


def row_classes(labels: np.ndarray, reference: np.ndarray | None, class_names: Sequence[str] | None) -> np.ndarray:
    """The class each row counts under in ``summary.csv``: its label, else its reference class
    (as :func:`nero_cli.summary._class_column`), named by ``class_names``."""
    ids = labels.astype(np.int64)
    if reference is not None:
        ids = np.where(ids >= 0, ids, reference).astype(np.int64)
    if class_names:
        names = np.asarray(class_names, dtype=object)
        ok = (ids >= 0) & (ids < len(names))
        return np.where(ok, names[np.clip(ids, 0, len(names) - 1)], ids.astype(str).astype(object))
    return ids.astype(str).astype(object)


@dataclass
class CurveSums:
    """Compensated sums per (class subset, element, metric); subset 0 is "all". ``dtypes``: the
    accumulation dtype of each metric (float32 for a float32 column, as pandas sums it; else float64)."""

    n_elements: int
    dtypes: list[np.dtype]
    classes: dict[str, int] = field(default_factory=dict)  # class name -> subset index (from 1)
    first_seen: dict[tuple[int, int], int] = field(default_factory=dict)  # (subset, element) -> first row
    rows: int = 0

    def __post_init__(self) -> None:
        shape = (1, self.n_elements)
        self.lanes = {dt: [i for i, d in enumerate(self.dtypes) if d == dt] for dt in dict.fromkeys(self.dtypes)}
        self.sum = {dt: np.zeros((*shape, len(ix)), dtype=dt) for dt, ix in self.lanes.items()}
        self.comp = {dt: np.zeros((*shape, len(ix)), dtype=dt) for dt, ix in self.lanes.items()}
        self.nobs = {dt: np.zeros((*shape, len(ix)), dtype=np.int64) for dt, ix in self.lanes.items()}
        self.size = np.zeros(shape, dtype=np.int64)

    def _subsets(self, names: np.ndarray) -> np.ndarray:
        """Subset index of each class name, adding unseen classes."""
        uniq, first, inverse = np.unique(names, return_index=True, return_inverse=True)
        for j in np.argsort(first, kind="stable"):  # unseen classes numbered in order of appearance
            self.classes.setdefault(uniq[j], len(self.classes) + 1)
        out = np.array([self.classes[u] for u in uniq.tolist()], dtype=np.int64)[inverse.reshape(-1)]
        grow = len(self.classes) + 1 - self.size.shape[0]
        if grow > 0:
            pad = ((0, grow), (0, 0), (0, 0))
            for state in (self.sum, self.comp, self.nobs):
                for dt in state:
                    state[dt] = np.pad(state[dt], pad)
            self.size = np.pad(self.size, pad[:2])
        return out

    def update(self, values: np.ndarray, classes: np.ndarray | None) -> None:
        """Add ``values`` ``(S, G, K)`` (sample-major) whose rows count under ``classes`` ``(S, G)``
        (None: "all" only), each cell's values in sample order. Cells are independent, so "all"
        takes the S samples one step each on whole rows of cells, and the class subsets take a
        step per rank within a class: the r-th sample of every class at once."""
        s_count, g = values.shape[:2]
        lanes = {dt: values[..., ix].astype(dt) for dt, ix in self.lanes.items()}
        for dt, v in lanes.items():
            self._all(dt, v)
        self.size[0] += s_count
        if classes is not None:
            sub = self._subsets(classes.reshape(-1)).reshape(s_count, g)
            cells = sub * g + np.arange(g)  # (S, G): one cell per class and element
            _, first, inverse, counts = np.unique(cells.reshape(-1), return_index=True, return_inverse=True,
                                                  return_counts=True)
            fresh = self.size.reshape(-1)[cells.reshape(-1)[first]] == 0
            for j in first[fresh].tolist():  # a cell's first row in the whole table
                self.first_seen[(int(sub.flat[j]), j % g)] = self.rows + j
            order = np.argsort(inverse, kind="stable")  # row order within each cell
            rank = np.empty(len(order), dtype=np.int64)
            rank[order] = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)
            rank = rank.reshape(s_count, g)
            for r in range(int(counts.max())):
                rows, elems = np.nonzero(rank == r)  # distinct cells: one row per (class, element)
                idx = (sub[rows, elems], elems)
                for dt, v in lanes.items():
                    self._kahan(dt, idx, v[rows, elems])
            np.add.at(self.size, (sub, np.broadcast_to(np.arange(g), sub.shape)), 1)
        self.rows += s_count * g

    def _all(self, dt: np.dtype, v: np.ndarray) -> None:
        """Subset 0 ("all"), a sample per step, column by column as each needs: a column of NaN
        only changes nothing (NaN is skipped); one of finite values whose sums cannot overflow
        never skips a value nor resets a compensation, so its steps are the four operations in
        place; any other takes :meth:`_step` in full."""
        sums, comp, nobs = self.sum[dt][0], self.comp[dt][0], self.nobs[dt][0]  # (G, K) views
        with np.errstate(invalid="ignore", over="ignore"):
            skip = np.isnan(v).all(axis=(0, 1))
            bound = np.abs(sums).max(0) + np.abs(comp).max(0) + np.abs(v).sum(0).max(0)
        fast = bound < np.finfo(dt).max / 4  # False for NaN, inf and a sum that could overflow
        for cols, full in ((np.flatnonzero(fast), False), (np.flatnonzero(~fast & ~skip), True)):
            if not len(cols):
                continue
            s, c, n = sums[:, cols], comp[:, cols], nobs[:, cols]  # copies, written back below
            y, t = np.empty_like(s), np.empty_like(s)
            for x in v[:, :, cols]:
                if full:
                    self._step(s, c, n, x)
                    continue
                np.subtract(x, c, out=y)
                np.add(s, y, out=t)
                np.subtract(t, s, out=c)
                c -= y
                s[...] = t
            sums[:, cols], comp[:, cols] = s, c
            nobs[:, cols] = n if full else n + len(v)

    def _kahan(self, dt: np.dtype, idx: Any, x: np.ndarray) -> None:
        """:meth:`_step` on the cells ``idx`` (distinct) of ``dt``'s sums."""
        s, c, n = self.sum[dt][idx], self.comp[dt][idx], self.nobs[dt][idx]
        self._step(s, c, n, x)
        self.sum[dt][idx], self.comp[dt][idx], self.nobs[dt][idx] = s, c, n

    @staticmethod
    def _step(s: np.ndarray, c: np.ndarray, n: np.ndarray, x: np.ndarray) -> None:
        """pandas' group mean step, in place: skip NaN, ``y = x - c; t = s + y; c = (t - s) - y``
        (a NaN compensation, from an infinite value, is reset to 0)."""
        ok = ~np.isnan(x)
        with np.errstate(invalid="ignore", over="ignore"):
            y = x - c
            t = s + y
            c_new = (t - s) - y
        c_new[np.isnan(c_new)] = 0
        np.copyto(s, t, where=ok)
        np.copyto(c, c_new, where=ok)
        n += ok

    def means(self) -> list[np.ndarray]:
        """Per metric, the ``(subsets, G)`` means in its accumulation dtype (NaN where a subset saw no value)."""
        out: list[Any] = [None] * len(self.dtypes)
        for dt, ix in self.lanes.items():
            n = self.nobs[dt]
            with np.errstate(invalid="ignore", divide="ignore"):
                m = np.where(n > 0, self.sum[dt] / n.astype(dt), np.array(np.nan, dtype=dt))
            for j, i in enumerate(ix):
                out[i] = m[..., j]
        return out

    def class_order(self) -> list[tuple[str, int, int]]:
        """``(class, subset, element)`` in order of first appearance in the table (pandas' unsorted groups)."""
        names = {k: name for name, k in self.classes.items()}
        order = sorted(self.first_seen.items(), key=lambda kv: kv[1])
        return [(names[k], k, e) for (k, e), _ in order]


@dataclass
class BlockSums:
    """Every running sum of one model × group block (see the module docstring)."""

    task: TaskRecord
    n_elements: int
    identity: int
    elements: np.ndarray | None
    class_names: Sequence[str] | None
    samples: int = 0
    last_sample: int | None = None
    any_label: bool = False
    pending: dict[str, list[np.ndarray]] = field(default_factory=dict)
    pending_samples: int = 0

    def __post_init__(self) -> None:
        self.metrics = tuple(self.task.metrics)
        self.sources = list(dict.fromkeys(m.column for m in self.metrics))
        self.stats = BlockStats(self.n_elements, self.identity, elements=self.elements)
        self.curves: CurveSums | None = None
        self.has_reference = any(c.name == "reference" for c in self.task.columns)

    def add(self, samples: np.ndarray, labels: np.ndarray, cols: Mapping[str, np.ndarray]) -> None:
        """One chunk: ``samples`` and ``labels`` ``(S,)``, ``cols[column]`` ``S * G`` rows."""
        if len(samples) == 0:
            return
        if (self.last_sample is not None and samples[0] <= self.last_sample) or bool((np.diff(samples) <= 0).any()):
            raise RuntimeError("streamed rows must come in increasing sample order")  # an internal error
        self.last_sample = int(samples[-1])
        s, g = len(samples), self.n_elements
        self.samples += s
        self.any_label = self.any_label or bool((labels >= 0).any())
        if self.curves is None:  # a float32 column is averaged in float32, as pandas does; the rest in float64
            self.curves = CurveSums(g, [np.dtype(np.float32) if m.column == m.name and cols[m.column].dtype == np.float32
                                        else np.dtype(np.float64) for m in self.metrics])
        values = np.stack([np.asarray(cols[m.column], dtype=np.float64) for m in self.metrics], -1).reshape(s, g, -1)
        self.curves.update(values, self._classes(labels, cols, s))
        for c in self.sources:
            self.pending.setdefault(c, []).append(np.asarray(cols[c]))
        self.pending_samples += s
        while self.pending_samples >= STATS_CHUNK:
            self._fold(STATS_CHUNK)

    def _classes(self, labels: np.ndarray, cols: Mapping[str, np.ndarray], s: int) -> np.ndarray:
        rows = np.repeat(labels.astype(np.int64), self.n_elements)
        ref = np.asarray(cols["reference"], dtype=np.int64) if self.has_reference else None
        return row_classes(rows, ref, self.class_names).reshape(s, self.n_elements)

    def _fold(self, k: int) -> None:
        """Fold the first ``k`` pending samples into the registry's running sums."""
        joined = {c: np.concatenate(v) for c, v in self.pending.items()}
        cut = k * self.n_elements
        present = tuple(m for m in self.metrics if m.column in joined)
        self.stats.update({c: v[:cut] for c, v in joined.items()}, present)
        self.pending = {c: [v[cut:]] for c, v in joined.items()}
        self.pending_samples -= k

    def close(self) -> BlockStats:
        """The registry's sums over every sample (the last, partial fold included)."""
        if self.pending_samples:
            self._fold(self.pending_samples)
        return self.stats


__all__ = ["BlockSums", "CurveSums", "row_classes"]
