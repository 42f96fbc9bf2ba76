"""The rows the plots of a streamed run need, read back from its spill a few samples at a time.

:func:`nero_cli.run_plots.write_plots` draws the aggregate curves from ``summary.csv`` and the
individual plots from the rows of the samples ``--plot-samples`` picks among all of them. A
streamed run never holds all rows, so :func:`plot_table` finds candidates chunk by chunk of
samples: each chunk's own best ``T`` by every ranking the picks use (``T`` = every sample the
picks may take), where a sample's score depends on its own rows only (the same rows in the
same order as in the whole table, so the same number). The picks of the whole table are then
among the candidates, and :func:`~nero_cli.plot_samples.pick_samples` over the candidates' rows
picks exactly them: ranking a subset keeps the order of its members, and the sample ids
asked for by number are added with the smallest and largest id (its message names the range).

``nero plot RUN`` finds them the same way in the run's vectors (:class:`VectorReader`,
:func:`run_table`), a block's samples read a chunk at a time; a run without vectors is read
from results.csv whole.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from orbits import parse_spec

from .core import param_columns, plan_orbits
from .plot_samples import spread_ranking
from .runrecord import RunRecord
from .spill import Block, SpillReader
from .stream import Layout, key_columns
from .summary import rank_samples
from .vectors import Vectors

#: Rows (over every block) read at once while looking for candidates.
CHUNK_ROWS = 200_000


def block_rows(reader: "SpillReader | VectorReader", lay: Layout, runs: Sequence[tuple[int, int]],
               columns: list[str] | None = None) -> pd.DataFrame:
    """The rows of the samples at the positions ``p0:p1`` of every run ``(p0, p1)``, in table order."""
    pieces = []
    objects = lay.object_params
    for b in lay.blocks:
        for p0, p1 in runs:
            samples, labels, cols = reader.read(b, p0, p1, columns)
            keys = key_columns(lay.models[b[0]], lay.plans[b[1]], lay.params, samples, labels, objects)
            pieces.append(pd.DataFrame({**keys, **cols}))
    return pd.concat(pieces, ignore_index=True)


def _runs(positions: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted positions as contiguous ``(start, stop)`` runs."""
    out: list[list[int]] = []
    for p in sorted(positions):
        if out and out[-1][1] == p:
            out[-1][1] = p + 1
        else:
            out.append([p, p + 1])
    return [(a, b) for a, b in out]


def plot_table(reader: "SpillReader | VectorReader", lay: Layout, picks: Sequence[Any], column: str, higher: bool) -> pd.DataFrame:
    """Every row of the samples the individual plots may show (see the module docstring)."""
    ids = reader.samples(lay.blocks[0])
    n = len(ids)
    want = {0, n - 1} if n else set()
    numbers = [p for p in picks if isinstance(p, int)]
    for p in numbers:
        k = int(np.searchsorted(ids, p))
        if k < n and ids[k] == p:
            want.add(k)
    modes = list(dict.fromkeys(p[0] for p in picks if not isinstance(p, int)))
    total = len(numbers) + sum(p[1] for p in picks if not isinstance(p, int))
    per_sample = len(lay.models) * sum(len(p.group) for p in lay.plans)
    step = max(1, CHUNK_ROWS // max(1, per_sample))
    for p0 in range(0, n if modes and total else 0, step):
        p1 = min(n, p0 + step)
        t = block_rows(reader, lay, [(p0, p1)], [column])
        for mode in modes:
            ranked = (spread_ranking(t, column) if mode == "spread"
                      else rank_samples(t, how=mode, k=total, by=column, higher_is_better=higher))
            want.update(p0 + int(np.searchsorted(ids[p0:p1], s)) for s in ranked[:total])
    return block_rows(reader, lay, _runs(want)) if want else pd.DataFrame()


# ------------------------------------------------------------------------------------------
# nero plot RUN: the same rows from a finished run's vectors


class VectorReader:
    """A run's vectors read as :class:`~nero_cli.spill.SpillReader` reads a spill: samples ``p0:p1``
    of a block at a time, each column in its dtype in results.csv (the vectors hold results.csv's
    numbers, the 9-digit ones the plots round the spill's to)."""

    def __init__(self, vectors: Vectors, lay: Layout):
        self.vectors = vectors
        self.names = {b: (lay.models[b[0]], lay.plans[b[1]].label) for b in lay.blocks}
        samples = np.asarray(vectors.samples)
        self.ids, self.labels = samples[:, 0].copy(), samples[:, 1].copy()

    def samples(self, b: Block) -> np.ndarray:
        return self.ids

    def read(self, b: Block, p0: int, p1: int, columns: list[str] | None = None
             ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        vec = self.vectors
        rows = vec.rows(*self.names[b], p0, p1)
        cols = {c: vec.typed(c, rows[:, :, vec.columns.index(c)].reshape(-1)) for c in (columns or vec.columns)}
        return self.ids[p0:p1], self.labels[p0:p1], cols


def run_layout(run: RunRecord, vectors: Vectors) -> Layout | None:
    """The sweep's blocks rebuilt from run.json (the groups from their specs, as ``nero merge``
    does), or None where they do not match the run's vectors and columns, or where the samples
    are not in increasing id (:func:`plot_table` looks ids up in order)."""
    size = (run.info.get("data") or {}).get("image_size")
    plans = plan_orbits([parse_spec(p["spec"], image_size=tuple(size) if size else None) for p in run.plots.values()])
    lay = Layout(run.models, plans, param_columns(plans), run.task)
    if [p.label for p in plans] != run.groups or lay.params != run.param_columns:
        return None
    for m, g in lay.blocks:
        blk = vectors.block(lay.models[m], plans[g].label)
        if blk is None or blk.shape[1] != len(plans[g].group):
            return None
    ids = np.asarray(vectors.samples[:, 0])
    return lay if bool((np.diff(ids) > 0).all()) else None


def run_table(run: RunRecord, picks: Sequence[Any], column: str, higher: bool) -> pd.DataFrame:
    """The rows ``nero plot RUN`` needs: every row of the samples the picks may take, from the
    run's vectors (:func:`plot_table`, as the run drew its own plots from its spill), else results.csv whole."""
    vectors = run.vectors()
    lay = run_layout(run, vectors) if vectors is not None else None
    if vectors is None or lay is None:
        return run.results()
    return plot_table(VectorReader(vectors, lay), lay, picks, column, higher)


__all__ = ["plot_table", "block_rows", "run_table", "VectorReader", "CHUNK_ROWS"]
