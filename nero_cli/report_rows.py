"""Where ``nero report`` reads a run's per-sample rows: its vectors, or results.csv.

A run written with ``vectors/`` (:mod:`nero_cli.vectors`) is read through :class:`VectorRows`:
the sample list whole (two int64 per sample) and, per model and group, only the rows of the
samples the page shows, memory-mapped; results.csv is never loaded. An older run is read
through :class:`TableRows` (results.csv whole). Both give the page the same numbers (the vectors
hold results.csv's, :mod:`nero_cli.vectors`): every per-sample column as a ``(shown samples × view
elements)`` float64 array with NaN where a sample or element has no row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .vectors import Vectors

#: Samples read at a time when a column of every sample is needed (the classes of unlabelled data).
CHUNK = 4096


def class_dict(samples: np.ndarray, classes: np.ndarray, class_names: list[str] | None) -> dict[int, tuple[int, str]]:
    """Per sample id: (class id, class name), for the samples with a class (id >= 0)."""
    out = {}
    for s, c in zip(samples.tolist(), classes.tolist()):
        try:
            c = int(c)
        except (TypeError, ValueError):
            c = -1
        if c >= 0:
            out[int(s)] = (c, class_names[c] if class_names and 0 <= c < len(class_names) else str(c))
    return out


@dataclass
class Grid:
    """Where each results row of one model and group lands in the (shown samples x view elements) grid;
    ``own``: the view elements of the member's grid, in its order."""

    rows: np.ndarray
    elements: np.ndarray
    ok: np.ndarray
    shape: tuple[int, int]
    own: np.ndarray

    @classmethod
    def of(cls, tm: pd.DataFrame, ids: np.ndarray, own: np.ndarray, g: int) -> "Grid":
        sv = tm["sample"].to_numpy().astype(np.int64)
        srow = np.clip(np.searchsorted(ids, sv), 0, max(len(ids) - 1, 0))
        srow = np.where(ids[srow] == sv, srow, -1) if len(ids) else np.full(len(sv), -1)
        el = tm["element"].to_numpy().astype(int)
        ok = (srow >= 0) & (el >= 0) & (el < len(own))
        return cls(srow, own[np.where(ok, el, 0)] if len(own) else el, ok, (len(ids), g), own)

    def fill(self, values: Any) -> np.ndarray:
        arr = np.full(self.shape, np.nan, dtype=np.float64)
        arr[self.rows[self.ok], self.elements[self.ok]] = np.asarray(values, dtype=np.float64)[self.ok]
        return arr


class TableRows:
    """results.csv, read whole (runs written before the vectors)."""

    def __init__(self, table: pd.DataFrame, task: Any):
        self.table, self.task = table, task

    def sample_ids(self) -> np.ndarray:
        return np.unique(self.table["sample"].to_numpy().astype(np.int64))

    def classes(self, class_names: list[str] | None) -> dict[int, tuple[int, str]]:
        """Per sample id: (class id, class name) as summary.csv counts it (label, else reference)."""
        first = self.table.drop_duplicates("sample")
        ids = first["label"].to_numpy()
        if "reference" in first:
            ids = np.where(ids >= 0, ids, first["reference"].to_numpy())
        return class_dict(first["sample"].to_numpy(), ids, class_names)

    def labels(self) -> dict[int, int]:
        return {int(sid): int(lbl) for sid, lbl in self.table.drop_duplicates("sample")[["sample", "label"]].to_numpy()
                if not (isinstance(lbl, float) and np.isnan(lbl))}

    def bool_columns(self) -> set[str]:
        t = self.table
        return {c.name for c in self.task.columns if c.name in t and t[c.name].dtype == bool}

    def _rows(self, model: str, group: str) -> pd.DataFrame:
        t = self.table
        return t[(t["group"] == group) & (t["model"] == model)]

    def has(self, model: str, group: str) -> bool:
        return not self._rows(model, group).empty

    def block(self, model: str, group: str, ids: np.ndarray, own: np.ndarray, g: int) -> dict[str, np.ndarray]:
        """Every task column of ``model`` over ``group`` at the shown samples ``ids`` (sorted) and
        the view's ``g`` elements (``own``: the group's elements among them)."""
        tm = self._rows(model, group)
        grid = Grid.of(tm, ids, own, g)
        return {c.name: grid.fill(tm[c.name].to_numpy()) for c in self.task.columns if c.name in tm}


class VectorRows:
    """A run's vectors (:mod:`nero_cli.vectors`): only the shown samples' rows are read."""

    def __init__(self, vectors: Vectors, task: Any):
        self.vectors, self.task = vectors, task
        samples = np.asarray(vectors.samples)
        self.ids, self.label_of = samples[:, 0].copy(), samples[:, 1].copy()

    def sample_ids(self) -> np.ndarray:
        return np.unique(self.ids)

    def _first(self) -> np.ndarray:
        """The position of each sample's first row (as results.csv's first row that names it)."""
        return np.sort(np.unique(self.ids, return_index=True)[1])

    def classes(self, class_names: list[str] | None) -> dict[int, tuple[int, str]]:
        """Per sample id: (class id, class name) as summary.csv counts it (label, else the reference
        at the first element of the first block, results.csv's first row of the sample)."""
        first, cols = self._first(), self.vectors.columns
        classes = self.label_of[first]
        if "reference" in cols and (classes < 0).any():
            blk, ci = self.vectors.first_block(), cols.index("reference")
            ref = np.empty(len(self.ids), dtype=np.float64)
            for p0 in range(0, len(self.ids), CHUNK):  # a chunk of rows at a time: memory stays flat
                ref[p0:p0 + CHUNK] = blk[p0:p0 + CHUNK, 0, ci]  # type: ignore[index]
            classes = np.where(classes >= 0, classes, ref[first].astype(np.int64))
        return class_dict(self.ids[first], classes, class_names)

    def labels(self) -> dict[int, int]:
        first = self._first()
        return dict(zip(self.ids[first].tolist(), self.label_of[first].tolist()))

    def bool_columns(self) -> set[str]:
        names = {c.name for c in self.task.columns}
        return {c for c, d in self.vectors.dtypes.items() if d.kind == "b" and c in names}

    def has(self, model: str, group: str) -> bool:
        blk = self.vectors.block(model, group)
        return blk is not None and blk.shape[0] > 0

    def block(self, model: str, group: str, ids: np.ndarray, own: np.ndarray, g: int) -> dict[str, np.ndarray]:
        """As :meth:`TableRows.block`, reading the rows of the shown samples only."""
        blk = self.vectors.block(model, group)
        assert blk is not None
        rev = self.ids[::-1]  # a sample listed twice: its last row wins, as results.csv's grid fills
        uniq, at = np.unique(rev, return_index=True)
        where = np.clip(np.searchsorted(uniq, ids), 0, max(len(uniq) - 1, 0))
        found = (uniq[where] == ids) if len(uniq) else np.zeros(len(ids), dtype=bool)
        pos = len(self.ids) - 1 - at[where[found]]
        order = np.argsort(pos, kind="stable")
        rows = np.empty((len(pos), *blk.shape[1:]), dtype=np.float64)
        rows[order] = blk[pos[order]]  # in file order
        k = min(blk.shape[1], len(own))
        out = {}
        for i, c in enumerate(self.vectors.columns):
            arr = np.full((len(ids), g), np.nan)
            arr[np.ix_(np.flatnonzero(found), own[:k])] = rows[:, :k, i]
            out[c] = arr
        return out


__all__ = ["TableRows", "VectorRows", "Grid"]
