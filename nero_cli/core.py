"""The pure evaluation core: models × data × orbits -> one tidy table.

One row per model × sample × orbit element. Plots, CSV, JSON and the gate only
consume this table. Nothing here prints; each finished chunk of rows goes to a sink
(:mod:`nero_cli.stream`): kept in memory as one table, or streamed to a run folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from orbits import OrbitSpec
from orbits.spec import PLANAR_INPUTS

from . import __version__
from .cache import make_key, n_rows
from .errors import OptionError
from .resampling import coverage, in_frame, inexact, round_trip
from .runner import ModelRunner
from .stream import Layout, TableSink, key_columns
from .tasks import Chunk, TaskRecord
from .tasks.base import scored_columns
from .prefetch import ChunkLoader
from .write_behind import WriteBehind

if TYPE_CHECKING:
    import pandas as pd

Progress = Callable[[int], None]
#: A (model, group) block is kept for the result cache while its rows take at most this many bytes;
#: a larger block is not cached (so memory stays flat however large the data).
CACHE_HOLD_BYTES = 256 * 2**20
#: Seconds of work at most between two kept chunks of a run (what --resume may have to redo).
CHECKPOINT_SECONDS = 1.0


@dataclass
class OrbitPlan:
    """A group spec ready to run: its label in the table and the grid with the identity."""

    label: str
    spec: OrbitSpec

    @property
    def group(self):  # noqa: ANN201
        return self.spec.group


@dataclass
class Evaluation:
    """The evaluation core's result: the tidy table (None when the rows went to a sink) and what produced it."""

    table: pd.DataFrame | None
    plans: list[OrbitPlan]
    reference: str
    param_columns: list[str]
    task: str


def plan_orbits(specs: Sequence[OrbitSpec]) -> list[OrbitPlan]:
    """Label each spec (its name, or the full spec when a name repeats) and add the identity."""
    names = [s.name for s in specs]
    plans = []
    for s in specs:
        label = s.name if names.count(s.name) == 1 else s.canonical
        group = s.group.with_identity()
        spec = OrbitSpec(text=s.text, group=group, action=s.action, action_defaults=s.action_defaults)
        plans.append(OrbitPlan(label, spec))
    labels = [p.label for p in plans]
    if len(set(labels)) != len(labels):
        dup = next(lbl for lbl in labels if labels.count(lbl) > 1)
        raise OptionError(f"--group '{dup}' is given twice; give each orbit once")
    return plans


def chunk_sizes(n_samples: int, n_elements: int, batch_size: int, max_samples: int | None = None) -> tuple[int, int]:
    """Samples per chunk and elements per forward pass so one pass holds about ``batch_size`` inputs
    (at most ``max_samples`` samples per chunk, for tasks with large outputs)."""
    if batch_size <= 0:
        raise OptionError(f"--batch-size must be positive, got {batch_size}")
    samples = max(1, min(n_samples, batch_size, max_samples or batch_size))
    elements = max(1, min(n_elements, batch_size // samples))
    return samples, elements


def element_weights(plan: OrbitPlan) -> list[float] | None:
    """The grid's per-element weights of orbit means, or None when every element is distinct."""
    w = plan.group.element_weights() if hasattr(plan.group, "element_weights") else None
    return None if w is None or bool((w == 1).all()) else [float(v) for v in w]


def sweep_layout(models: Sequence[str], plans: Sequence[OrbitPlan], task: TaskRecord) -> Layout:
    """The blocks a sweep hands its sink: ``models`` × ``plans``, their columns and weights."""
    return Layout(list(models), list(plans), param_columns(plans), task, [element_weights(p) for p in plans])


def param_columns(plans: Sequence[OrbitPlan]) -> list[str]:
    """Every group's parameter columns, in order of first appearance."""
    cols: list[str] = []
    for p in plans:
        cols += [c for c in p.group.columns() if c not in cols]
    return cols


def resolve_reference(task: TaskRecord, data: Any, reference: str) -> str:
    """``auto`` → ``labels`` when the data has the task's ground truth, else ``consensus``."""
    truth = task.has_truth(data)
    if reference == "auto":
        return "labels" if truth else "consensus"
    if reference not in ("labels", "consensus"):
        raise OptionError(f"--reference must be labels or consensus, got '{reference}'")
    if reference == "labels" and not truth:
        raise OptionError(f"--reference labels needs ground truth ({task.truth}), and the data has none; "
                          "use --reference consensus")
    return reference


@dataclass
class Sweep:
    """One evaluation's fixed settings; :meth:`block` evaluates one model over one orbit."""

    data: Any
    task: TaskRecord
    reference: str
    params: list[str]
    batch_size: int
    options: dict[str, Any]
    progress: Progress | None = None
    cache: Any = None
    data_key: str | None = None
    chunks: Any = None
    chunk_samples: int | None = None
    _kept: float = field(default=float("-inf"), init=False)  # when a finished chunk was last kept
    _inside: dict[str, torch.Tensor] = field(default_factory=dict, init=False)  # per orbit: resampling.in_frame

    def key_parts(self, runner: ModelRunner, plan: OrbitPlan) -> dict[str, Any]:
        m = runner.model
        return {"model": m.sha256, "code": m.code_sha256, "format": m.format, "source": m.source, "data": self.data_key,
                "spec": plan.spec.canonical, "label": plan.label, "task": self.task.name, "reference": self.reference,
                "normalize": runner.normalize, "batch_size": self.batch_size, "device": str(runner.device),
                "options": self.options, "params": self.params, "columns": [c.name for c in self.task.columns],
                "nero": __version__}

    def block(self, runner: ModelRunner, plan: OrbitPlan, sink: Any, b: tuple[int, int]) -> None:
        """The rows of one model over one orbit, chunk by chunk into ``sink`` as block ``b``: from
        the result cache, or evaluated (and then cached, when the block is small enough to hold)."""
        n, g = len(self.data), len(plan.group)
        parts = self.key_parts(runner, plan)
        key = make_key(parts) if self.cache is not None and self.data_key and runner.model.sha256 else None
        hit = self.cache.get(key) if key is not None else None
        if hit is not None and n_rows(hit) == n * g:
            if self.progress:
                self.progress(n * g)
            for s0 in range(0, n, 256):
                rows = {c.name: hit[c.name][s0 * g : (s0 + 256) * g] for c in self.task.columns}
                sink.add(b, *self._ids(s0, n_rows(rows) // g), rows)
            return
        held: list[dict[str, np.ndarray]] | None = [] if key is not None else None
        size = 0
        for s0, cols in self._score_chunks(runner, plan, parts):
            sink.add(b, *self._ids(s0, len(next(iter(cols.values()))) // g), cols)
            if held is not None:
                size += sum(v.nbytes for v in cols.values())
                if size > CACHE_HOLD_BYTES:
                    held = None
                else:
                    held.append(cols)
        if key is not None and held is not None:
            cols = {c: np.concatenate([h[c] for h in held]) for c in held[0]}
            keys = key_columns(runner.name, plan, self.params, *self._ids(0, n))
            del keys["model"]
            self.cache.put(key, {**keys, **cols})

    def _ids(self, s0: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample ids and labels (-1 without) of the samples at positions ``s0 : s0 + b``."""
        labels = self.data.labels
        ids = np.asarray(self.data.index[s0 : s0 + b], dtype=np.int64)
        lab = labels[s0 : s0 + b].numpy().astype(np.int64) if labels is not None else np.full(b, -1, dtype=np.int64)
        return ids, lab

    def _score_chunks(self, runner: ModelRunner, plan: OrbitPlan,
                      parts: dict[str, Any]) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """``(first position, the task's columns)`` of every chunk of samples, in order (finished
        chunks of a resumed run are reused)."""
        data, task, g = self.data, self.task, len(plan.group)
        action, output = task.make_action(plan.spec, data), task.make_output(plan.spec, data)
        per_chunk, per_pass = chunk_sizes(len(data), g, self.batch_size, task.max_chunk_samples)
        if self.chunk_samples:  # a shard of a larger run: the same chunks as the whole run
            per_chunk = self.chunk_samples
            per_pass = max(1, min(g, self.batch_size // per_chunk))
        loader = ChunkLoader(data.inputs, per_chunk, runner.device)
        try:
            yield from self._chunks(runner, plan, parts, loader, per_pass, (action, output))
        finally:
            loader.close()

    def _chunks(self, runner: ModelRunner, plan: OrbitPlan, parts: dict[str, Any], loader: ChunkLoader,
                per_pass: int, how: tuple[Any, Any]) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """:meth:`_score_chunks` with its chunks from ``loader`` and the task's action and output type."""
        data, task, g, per_chunk = self.data, self.task, len(plan.group), loader.size
        action, output = how

        def key(s0: int) -> str | None:
            return make_key({**parts, "name": runner.name, "s0": s0, "per_chunk": per_chunk}) if self.chunks else None

        for s0 in range(0, len(data), per_chunk):
            ckey = key(s0)
            done = self.chunks.get(ckey) if ckey is not None else None
            if done is None:
                x = loader.get(s0)
                nxt = key(s0 + per_chunk)
                if nxt is None or not self.chunks.has(nxt):  # the next chunk's samples are read ahead
                    loader.prefetch(s0 + per_chunk)
                outputs = runner.orbit(x, action, g, per_pass, task.prepare, self.progress)
                if s0 == 0 and task.check is not None:
                    task.check(outputs, data, runner.name, self.reference)
                chunk = self.chunk(plan, output, s0, x.shape[0])
                ctx = task.score(output.pull_back(outputs, range(g)), chunk)
                if task.input_kind in PLANAR_INPUTS:
                    ctx = {**ctx, **self._resampling(runner, x, plan, action, outputs, chunk, ctx, per_pass)}
                done = scored_columns(task, ctx)
                if ckey is not None and time.monotonic() - self._kept >= CHECKPOINT_SECONDS:
                    self.chunks.put(ckey, done)  # about one chunk a second: --resume recomputes the rest
                    self._kept = time.monotonic()
            elif self.progress:
                self.progress(n_rows(done))
            yield s0, {c.name: done[c.name] for c in task.columns}

    def _resampling(self, runner: ModelRunner, x: torch.Tensor, plan: OrbitPlan, action: Any,
                    outputs: torch.Tensor, chunk: Chunk, ctx: Mapping[str, Any], per_pass: int) -> dict[str, Any]:
        """The floor, the excess over it and the coverage of one chunk (see :mod:`nero_cli.resampling`)."""
        task, g, size = self.task, len(plan.group), self.data.size
        eq = task.metric("equivariance_error").row
        inside = self._inside.get(plan.label)
        if inside is None:
            inside = self._inside[plan.label] = in_frame(plan.spec, size)
        trip = outputs[chunk.identity : chunk.identity + 1].expand_as(outputs).clone()  # exact elements: f(x)
        todo = inexact(action, g)
        if todo and self.options.get("floor") is False:  # --no-floor: no round trips, the floor is unknown
            nan = torch.full((g, x.shape[0]), float("nan"), dtype=torch.float64)
            return {"floor": nan, "excess": nan, "coverage": coverage(x, plan.spec, size, inside)}
        if todo:
            trip[todo] = runner.orbit(x, round_trip(plan.spec, size), todo, per_pass, task.prepare)
        floor = eq(task.score(trip, chunk)).double()
        return {"floor": floor, "excess": (eq(ctx).double() - floor).clamp_min(0),
                "coverage": coverage(x, plan.spec, size, inside)}

    def chunk(self, plan: OrbitPlan, output: Any, s0: int, b: int) -> Chunk:
        labels = self.data.labels
        return Chunk(identity=plan.group.identity_index, reference=self.reference,
                     labels=labels[s0 : s0 + b] if labels is not None else None,
                     targets={k: v[s0 : s0 + b] for k, v in self.data.targets.items()},
                     output=output, spec=plan.spec, options=self.options)


def writes_behind(runners: Sequence[ModelRunner]) -> bool:
    """Whether a run's files are written behind the sweep: on a GPU, while the host waits for the
    device; on the CPU a writer thread only contends with the sweep for the GIL (+15 % CPU time)."""
    return any(r.device.type == "cuda" for r in runners)


def evaluate(runners: Sequence[ModelRunner], data: Any, specs: Sequence[OrbitSpec], task: TaskRecord, *,
             reference: str = "auto", batch_size: int = 256, seed: int = 0, options: dict[str, Any] | None = None,
             progress: Progress | None = None, cache: Any = None, data_key: str | None = None, chunks: Any = None,
             chunk_samples: int | None = None, sink: Any = None) -> Evaluation:
    """Run every model over every orbit of every sample; return the tidy results table
    (``Evaluation.table``) with the orbits it ran.

    Columns: ``model, sample, label, group, element, identity`` (``label`` is -1 without labels),
    the groups' parameter columns, then the task's columns (:attr:`TaskRecord.columns`).
    With ``cache`` (a :class:`nero_cli.cache.Cache`) and ``data_key`` (the data's identity),
    pieces already evaluated for the same checkpoint bytes, data and spec are reused.
    With ``chunks`` (a Cache in a run's partial directory) every finished chunk of samples is
    kept as it completes, so an interrupted sweep resumes where it stopped. ``chunk_samples``
    fixes the samples per chunk (a shard uses the whole run's chunking, so that every forward
    pass sees the same batch as in a single-process run and the results are identical).
    With ``sink`` (a :class:`nero_cli.stream.RunStream`) every finished chunk goes there and
    ``Evaluation.table`` is None: the rows are never all held at once.
    """
    reference = resolve_reference(task, data, reference)
    plans = plan_orbits(specs)
    params = param_columns(plans)
    torch.manual_seed(seed)
    sweep = Sweep(data, task, reference, params, batch_size, options or {}, progress, cache, data_key, chunks,
                  chunk_samples)
    own = sink is None
    behind = not own and writes_behind(runners)
    out = TableSink() if own else WriteBehind(sink) if behind else sink
    out.begin(sweep_layout([r.name for r in runners], plans, task))
    try:
        for mi, r in enumerate(runners):
            for gi, plan in enumerate(plans):
                sweep.block(r, plan, out, (mi, gi))
        if behind:
            out.close()  # waits for the writer: an interruption here must stop it too
    except BaseException:
        if behind:
            out.abort()
        raise
    return Evaluation(table=out.table() if own else None, plans=plans, reference=reference, param_columns=params,
                      task=task.name)
