"""The pure evaluation core: models × data × orbits -> one tidy table.

One row per model × sample × orbit element. Plots, CSV, JSON and the gate only
consume this table. Nothing here prints or writes files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from orbits import OrbitSpec
from orbits.spec import PLANAR_INPUTS

from . import __version__
from .cache import make_key
from .errors import OptionError
from .resampling import coverage, inexact, round_trip
from .runner import ModelRunner
from .tasks import Chunk, TaskRecord
from .tasks.base import scored_columns

Progress = Callable[[int], None]


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
    """The evaluation core's result: the tidy table and what produced it."""

    table: pd.DataFrame
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

    def key_parts(self, runner: ModelRunner, plan: OrbitPlan) -> dict[str, Any]:
        m = runner.model
        return {"model": m.sha256, "format": m.format, "source": m.source, "data": self.data_key,
                "spec": plan.spec.canonical, "label": plan.label, "task": self.task.name, "reference": self.reference,
                "normalize": runner.normalize, "batch_size": self.batch_size, "device": str(runner.device),
                "options": self.options, "params": self.params, "columns": [c.name for c in self.task.columns],
                "nero": __version__}

    def block(self, runner: ModelRunner, plan: OrbitPlan) -> pd.DataFrame:
        """The rows of one model over one orbit: from the cache, or evaluated chunk by chunk."""
        n, g = len(self.data), len(plan.group)
        parts = self.key_parts(runner, plan)
        key = make_key(parts) if self.cache is not None and self.data_key and runner.model.sha256 else None
        hit = self.cache.get(key) if key is not None else None
        if hit is not None and len(hit) == n * g:
            hit.insert(0, "model", np.full(len(hit), runner.name, dtype=object))
            if self.progress:
                self.progress(n * g)
            return hit
        cols = self._score_chunks(runner, plan, parts)
        piece = pd.DataFrame({**self._key_columns(runner.name, plan), **cols})
        if key is not None:
            self.cache.put(key, piece.drop(columns=["model"]))
        return piece

    def _key_columns(self, name: str, plan: OrbitPlan) -> dict[str, np.ndarray]:
        n, group = len(self.data), plan.group
        g, ident = len(group), group.identity_index
        labels = self.data.labels
        label_arr = labels.numpy().astype(np.int64) if labels is not None else np.full(n, -1, dtype=np.int64)
        frame = {"model": np.full(n * g, name, dtype=object),
                 "sample": np.repeat(np.asarray(self.data.index, dtype=np.int64), g),
                 "label": np.repeat(label_arr, g),
                 "group": np.full(n * g, plan.label, dtype=object),
                 "element": np.tile(np.arange(g, dtype=np.int64), n),
                 "identity": np.tile(np.arange(g) == ident, n)}
        gcols = group.columns()
        for c in self.params:
            if c in gcols:
                vals = np.asarray(gcols[c])
                vals = vals.astype(np.float64) if vals.dtype.kind in "iuf" else vals.astype(object)
            else:
                vals = np.full(g, np.nan)
            frame[c] = np.tile(vals, n)
        return frame

    def _score_chunks(self, runner: ModelRunner, plan: OrbitPlan, parts: dict[str, Any]) -> dict[str, np.ndarray]:
        """The task's columns over every chunk of samples (finished chunks of a resumed run are reused)."""
        data, task, g = self.data, self.task, len(plan.group)
        action, output = task.make_action(plan.spec, data), task.make_output(plan.spec, data)
        per_chunk, per_pass = chunk_sizes(len(data), g, self.batch_size, task.max_chunk_samples)
        if self.chunk_samples:  # a shard of a larger run: the same chunks as the whole run
            per_chunk = self.chunk_samples
            per_pass = max(1, min(g, self.batch_size // per_chunk))
        cols: dict[str, list[np.ndarray]] = {c.name: [] for c in task.columns}
        for s0 in range(0, len(data), per_chunk):
            ckey = make_key({**parts, "name": runner.name, "s0": s0, "per_chunk": per_chunk}) if self.chunks else None
            done = self.chunks.get(ckey) if ckey is not None else None
            if done is None:
                x = data.inputs[s0 : s0 + per_chunk].to(runner.device)
                outputs = runner.orbit(x, action, g, per_pass, task.prepare, self.progress)
                if s0 == 0 and task.check is not None:
                    task.check(outputs, data, runner.name)
                chunk = self.chunk(plan, output, s0, x.shape[0])
                ctx = task.score(output.pull_back(outputs, range(g)), chunk)
                if task.input_kind in PLANAR_INPUTS:
                    ctx = {**ctx, **self._resampling(runner, x, plan, action, outputs, chunk, ctx, per_pass)}
                done = pd.DataFrame(scored_columns(task, ctx))
                if ckey is not None:
                    self.chunks.put(ckey, done)
            elif self.progress:
                self.progress(len(done))
            for c in cols:
                cols[c].append(done[c].to_numpy())
        return {c: np.concatenate(v) for c, v in cols.items()}

    def _resampling(self, runner: ModelRunner, x: torch.Tensor, plan: OrbitPlan, action: Any,
                    outputs: torch.Tensor, chunk: Chunk, ctx: Mapping[str, Any], per_pass: int) -> dict[str, Any]:
        """The floor, the excess over it and the coverage of one chunk (see :mod:`nero_cli.resampling`)."""
        task, g, size = self.task, len(plan.group), self.data.size
        eq = task.metric("equivariance_error").row
        trip = outputs[chunk.identity : chunk.identity + 1].expand_as(outputs).clone()  # exact elements: f(x)
        todo = inexact(action, g)
        if todo and self.options.get("floor") is False:  # --no-floor: no round trips, the floor is unknown
            nan = torch.full((g, x.shape[0]), float("nan"), dtype=torch.float64)
            return {"floor": nan, "excess": nan, "coverage": coverage(x, plan.spec, size)}
        if todo:
            trip[todo] = runner.orbit(x, round_trip(plan.spec, size), todo, per_pass, task.prepare)
        floor = eq(task.score(trip, chunk)).double()
        return {"floor": floor, "excess": (eq(ctx).double() - floor).clamp_min(0),
                "coverage": coverage(x, plan.spec, size)}

    def chunk(self, plan: OrbitPlan, output: Any, s0: int, b: int) -> Chunk:
        labels = self.data.labels
        return Chunk(identity=plan.group.identity_index, reference=self.reference,
                     labels=labels[s0 : s0 + b] if labels is not None else None,
                     targets={k: v[s0 : s0 + b] for k, v in self.data.targets.items()},
                     output=output, spec=plan.spec, options=self.options)


def evaluate(runners: Sequence[ModelRunner], data: Any, specs: Sequence[OrbitSpec], task: TaskRecord, *,
             reference: str = "auto", batch_size: int = 256, seed: int = 0, options: dict[str, Any] | None = None,
             progress: Progress | None = None, cache: Any = None, data_key: str | None = None, chunks: Any = None,
             chunk_samples: int | None = None) -> Evaluation:
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
    """
    reference = resolve_reference(task, data, reference)
    plans = plan_orbits(specs)
    params = param_columns(plans)
    torch.manual_seed(seed)
    sweep = Sweep(data, task, reference, params, batch_size, options or {}, progress, cache, data_key, chunks,
                  chunk_samples)
    pieces = [sweep.block(r, plan) for r in runners for plan in plans]
    table = pd.concat(pieces, ignore_index=True)
    return Evaluation(table=table, plans=plans, reference=reference, param_columns=params, task=task.name)
