"""Where the sweep's rows go: to disk chunk by chunk (a run), or into one table (the Python API).

:func:`nero_cli.core.evaluate` hands every finished chunk of a model × group block to a sink:
``begin(layout)`` once, then ``add(block, samples, labels, columns)`` per chunk, blocks in any
order but each block's chunks in sample order.

- :class:`TableSink` keeps the chunks and builds the tidy table at the end (the Python API).
- :class:`RunStream` never holds more than a chunk: each chunk's rows are appended to the
  block's CSV part (formatted by :mod:`nero_cli.csv_rows` as :func:`nero_cli.runrecord.write_table`
  formats the whole table, so the parts joined in block order are ``results.csv`` byte for
  byte), to the block's binary spill (:mod:`nero_cli.spill`: what ``nero merge``, torchrun's
  rank 0, the plots and ``--parquet`` read back; a run that needs none of them writes no spill),
  into the block's running sums (:mod:`nero_cli.running`: ``summary.csv`` and ``summary.json``,
  identical to what the pandas aggregates of the whole table give), and to the block's
  per-sample NERO vectors (:mod:`nero_cli.vectors`: what ``nero report`` reads).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from .csv_rows import RowFormat, header as csv_header
from .measures import BlockStats
from .running import BlockSums
from .spill import Block, Spill, SpillReader
from .summary import block_summary
from .tasks import TaskRecord
from .vectors import FOLDER as VECTORS, VectorWriter, vectors_record

if TYPE_CHECKING:
    import pandas as pd
else:
    from nero_cli.lazy import pandas as pd

@dataclass
class Layout:
    """The blocks of a sweep: models × orbit plans, the parameter columns and the task."""

    models: list[str]
    plans: list[Any]  # core.OrbitPlan
    params: list[str]
    task: TaskRecord
    #: Per plan, the grid's per-element weights of orbit means (None: every element counts once).
    weights: list[Any] = field(default_factory=list)

    @property
    def blocks(self) -> list[Block]:
        return [(m, g) for m in range(len(self.models)) for g in range(len(self.plans))]

    def n_elements(self, b: Block) -> int:
        return len(self.plans[b[1]].group)

    @property
    def object_params(self) -> frozenset[str]:
        """Parameter columns that hold text in some group: the whole table's column is then of objects."""
        return frozenset(c for p in self.plans for c, v in p.group.columns().items()
                         if c in self.params and np.asarray(v).dtype.kind not in "iuf")


def param_values(plan: Any, params: Sequence[str], objects: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
    """Per element of ``plan``'s grid, the value of each parameter column (NaN where it has none)."""
    gcols, g = plan.group.columns(), len(plan.group)
    out = {}
    for c in params:
        if c in gcols:
            vals = np.asarray(gcols[c])
            vals = vals.astype(np.float64) if vals.dtype.kind in "iuf" else vals.astype(object)
        else:
            vals = np.full(g, np.nan)
        out[c] = vals.astype(object) if c in objects else vals
    return out


def element_columns(plan: Any, params: Sequence[str], objects: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
    """Per element of ``plan``'s grid: ``group, element, identity`` and the parameter columns."""
    g = len(plan.group)
    return {"group": np.full(g, plan.label, dtype=object), "element": np.arange(g, dtype=np.int64),
            "identity": np.arange(g) == plan.group.identity_index, **param_values(plan, params, objects)}


def key_columns(name: str, plan: Any, params: Sequence[str], samples: np.ndarray, labels: np.ndarray,
                objects: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
    """The columns before the task's: ``model, sample, label, group, element, identity`` and the
    parameter columns, for ``samples`` (their ``labels``, -1 without) over ``plan``'s grid."""
    n, g = len(samples), len(plan.group)
    return {"model": np.full(n * g, name, dtype=object), "sample": np.repeat(np.asarray(samples, dtype=np.int64), g),
            "label": np.repeat(np.asarray(labels, dtype=np.int64), g),
            **{c: np.tile(v, n) for c, v in element_columns(plan, params, objects).items()}}


class TableSink:
    """Keeps every chunk and builds the tidy table (the Python API's ``evaluate``)."""

    def begin(self, layout: Layout) -> None:
        self.layout = layout
        self.parts: dict[Block, list[tuple[np.ndarray, np.ndarray, Mapping[str, np.ndarray]]]] = {}

    def add(self, b: Block, samples: np.ndarray, labels: np.ndarray, cols: Mapping[str, np.ndarray]) -> None:
        self.parts.setdefault(b, []).append((samples, labels, cols))

    def table(self) -> pd.DataFrame:
        lay, pieces = self.layout, []
        for b in lay.blocks:
            got = self.parts.get(b, [])
            samples = np.concatenate([s for s, _, _ in got]) if got else np.zeros(0, dtype=np.int64)
            labels = np.concatenate([lb for _, lb, _ in got]) if got else np.zeros(0, dtype=np.int64)
            cols = {c.name: np.concatenate([p[c.name] for _, _, p in got]) for c in lay.task.columns} if got else {}
            keys = key_columns(lay.models[b[0]], lay.plans[b[1]], lay.params, samples, labels)
            pieces.append(pd.DataFrame({**keys, **cols}))
        return pd.concat(pieces, ignore_index=True)


@dataclass
class Totals:
    """What a finished stream gives the run record."""

    #: summary.csv's columns (the aggregate curves)
    aggregate: dict[str, np.ndarray]
    metrics: dict[str, dict[str, dict[str, Any]]]
    n_rows: int
    n_samples: int


@dataclass
class RunStream:
    """Streams a run's rows to ``folder`` (see the module docstring); ``spill_only``: keep the
    binary spill only (torchrun's other ranks, whose rows rank 0 writes); ``write_spill=False``: write
    no spill (a run without plots, Parquet, shards or torchrun: nothing reads it back)."""

    folder: Path
    class_names: Sequence[str] | None = None
    spill_only: bool = False
    write_spill: bool = True
    header: str = ""
    sums: dict[Block, BlockSums] = field(default_factory=dict)

    def begin(self, layout: Layout) -> None:
        self.layout, self.objects = layout, layout.object_params
        self.formats: dict[Block, RowFormat] = {}
        self.header = csv_header(["model", "sample", "label", "group", "element", "identity", *layout.params,
                                  *(c.name for c in layout.task.columns)])
        shutil.rmtree(self.folder, ignore_errors=True)  # a resumed run rewrites its rows from the chunk store
        (self.folder / "parts").mkdir(parents=True)
        self._part(layout.blocks[0]).write_text(self.header, encoding="utf-8")  # results.csv's start
        self.spill = Spill(self.folder / "spill") if self.write_spill or self.spill_only else None
        self.vectors = None if self.spill_only else VectorWriter(self.folder / VECTORS,
                                                                  [c.name for c in layout.task.columns])

    @property
    def spill_dir(self) -> Path:
        return self.folder / "spill"

    def add(self, b: Block, samples: np.ndarray, labels: np.ndarray, cols: Mapping[str, np.ndarray]) -> None:
        """One chunk of block ``b``: to the spill, the running sums and the block's CSV part."""
        cols = {c.name: cols[c.name] for c in self.layout.task.columns}
        if self.spill is not None:
            self.spill.write(b, self.layout.n_elements(b), samples, labels, cols)
        if self.spill_only:
            return
        if b not in self.sums:
            self._open(b)
        self.sums[b].add(samples, labels, cols)
        self.vectors.add(b, self.layout.n_elements(b), samples, labels, cols)  # type: ignore[union-attr]
        with open(self._part(b), "a", newline="", encoding="utf-8") as fh:
            fh.write(self.formats[b].text(samples, labels, cols))

    def _part(self, b: Block) -> Path:
        return self.folder / "parts" / f"{b[0]}_{b[1]}.csv"

    def _open(self, b: Block) -> None:
        lay, plan = self.layout, self.layout.plans[b[1]]
        w = lay.weights[b[1]] if lay.weights else None
        self.sums[b] = BlockSums(lay.task, len(plan.group), plan.group.identity_index,
                                 None if w is None else np.asarray(w, dtype=np.float64), self.class_names)
        self.formats[b] = RowFormat(lay.models[b[0]], element_columns(plan, lay.params, self.objects))

    def replay(self, reader: SpillReader, size: int = 256) -> None:
        """Add every block of another spill (a shard's, another rank's), chunk by chunk."""
        for b in sorted(reader.blocks):
            for samples, labels, cols in reader.chunks(b, size):
                self.add(b, samples, labels, cols)

    def finish(self) -> Totals:
        """Close the spill and the running sums: the aggregate curves and summary metrics."""
        if self.spill is not None:
            self.spill.close()
        lay = self.layout
        self.has_vectors = self.vectors is not None and self.vectors.close(lay.models, [p.label for p in lay.plans])
        stats = {b: s.close() for b, s in self.sums.items()}
        first = self.sums[lay.blocks[0]]
        self.totals = Totals(aggregate_columns(lay, self.sums), summary_metrics(lay, stats),
                             n_rows=sum(s.samples * s.n_elements for s in self.sums.values()), n_samples=first.samples)
        return self.totals

    def write_results(self, path: Path) -> None:
        """``results.csv``: the first block's part (which starts with the header) moved into place,
        then every other block's part appended in block order."""
        blocks = self.layout.blocks
        os.replace(self._part(blocks[0]), path)
        out = os.open(path, os.O_WRONLY)
        try:
            os.lseek(out, 0, os.SEEK_END)
            for b in blocks[1:]:
                part = self._part(b)
                if part.exists():
                    _append(out, part)
                    part.unlink()  # the disk holds results.csv and at most one part more
        finally:
            os.close(out)
        shutil.rmtree(self.folder / "parts", ignore_errors=True)

    def write_parquet(self, path: Path) -> None:
        """``results.parquet`` (``--parquet``), from the closed spill: results.csv's rows and types."""
        from .parquet_out import write_parquet  # pyarrow is imported only here

        write_parquet(path, SpillReader(self.spill_dir), self.layout)

    def write_vectors(self, run_dir: Path) -> dict[str, Any] | None:
        """Move the finished vectors into ``run_dir``; run.json's ``vectors`` record (None without them)."""
        if not getattr(self, "has_vectors", False):
            return None
        shutil.move(self.folder / VECTORS, run_dir / VECTORS)
        return vectors_record(run_dir)


def _append(out: int, path: Path) -> None:
    """Append the file at ``path`` to the file descriptor ``out`` (at its end), copied by the
    kernel where it can (``sendfile``: no copy through Python), else by :func:`shutil.copyfileobj`."""
    with open(path, "rb") as fh:
        size, done = os.fstat(fh.fileno()).st_size, 0
        try:
            while done < size:
                sent = os.sendfile(out, fh.fileno(), done, size - done)
                if not sent:
                    break
                done += sent
        except OSError:  # no sendfile between two files here (macOS): the rest through Python
            pass
        if done < size:
            fh.seek(done)
            with open(out, "ab", closefd=False) as dst:
                shutil.copyfileobj(fh, dst, 1 << 20)


def summary_metrics(lay: Layout, stats: Mapping[Block, BlockStats]) -> dict[str, dict[str, dict[str, Any]]]:
    """summary.json's ``metrics``: per model and group, every summary key of the task."""
    keys = lay.task.summary_keys
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for b in lay.blocks:
        if b in stats:
            out.setdefault(lay.models[b[0]], {})[lay.plans[b[1]].label] = block_summary(stats[b], keys)
    return out


def aggregate_columns(lay: Layout, sums: Mapping[Block, BlockSums]) -> dict[str, np.ndarray]:
    """summary.csv's columns from the running sums: the "all" rows of every block, then the class
    rows of every block in order of first appearance (as :func:`nero_cli.summary.aggregate` orders them)."""
    names = [m.name for m in lay.task.metrics]
    per_class = any(c.name == "reference" for c in lay.task.columns) or any(s.any_label for s in sums.values())
    objects = lay.object_params
    rows: list[tuple[Block, list[tuple[str, int, int]]]] = []
    for b in lay.blocks:
        if b in sums:
            rows.append((b, [("all", 0, e) for e in range(lay.n_elements(b))]))
    if per_class:
        rows += [(b, sums[b].curves.class_order()) for b in lay.blocks if b in sums]
    cols: dict[str, list[Any]] = {k: [] for k in ("model", "group", "element", "class", *lay.params, "n", *names)}
    for b, picks in rows:
        curves, plan = sums[b].curves, lay.plans[b[1]]
        means, pv = curves.means(), param_values(plan, lay.params, objects)
        subset, elem = np.array([k for _, k, _ in picks], dtype=np.int64), np.array([e for _, _, e in picks], dtype=np.int64)
        cols["model"].append(np.full(len(picks), lay.models[b[0]], dtype=object))
        cols["group"].append(np.full(len(picks), plan.label, dtype=object))
        cols["element"].append(elem)
        cols["class"].append(np.array([c for c, _, _ in picks], dtype=object))
        for c in lay.params:
            cols[c].append(pv[c][elem])
        cols["n"].append(curves.size[subset, elem])
        for i, m in enumerate(names):
            cols[m].append(means[i][subset, elem])
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}


__all__ = ["Layout", "TableSink", "RunStream", "Totals", "key_columns", "param_values"]
