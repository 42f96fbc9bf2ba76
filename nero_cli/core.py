"""The pure evaluation core: models × data × orbits -> one tidy table.

One row per model × sample × orbit element. Plots, CSV, JSON and the gate only
consume this table. Nothing here prints or writes files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from orbits import OrbitSpec

from .errors import ModelError, OptionError, first_line
from .models import LoadedModel
from .tasks import Chunk, Task

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


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OptionError(f"--device {device}: CUDA is not available on this machine; use --device cpu or auto")
    try:
        return torch.device(device)
    except RuntimeError:
        raise OptionError(f"--device must be auto, cpu or cuda[:N], got '{device}'") from None


def chunk_sizes(n_samples: int, n_elements: int, batch_size: int) -> tuple[int, int]:
    """Samples per chunk and elements per forward pass so one pass holds about ``batch_size`` inputs."""
    if batch_size <= 0:
        raise OptionError(f"--batch-size must be positive, got {batch_size}")
    samples = max(1, min(n_samples, batch_size))
    elements = max(1, min(n_elements, batch_size // samples))
    return samples, elements


def _normaliser(model: LoadedModel, normalize: tuple[list[float], list[float]] | None, device: torch.device):
    norm = normalize or model.meta.normalize
    if norm is None:
        return None
    mean = torch.tensor(norm[0], dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std = torch.tensor(norm[1], dtype=torch.float32, device=device).view(1, -1, 1, 1)
    if (std <= 0).any():
        raise OptionError(f"normalisation std must be positive, got {norm[1]}")
    return mean, std


def _forward(model: LoadedModel, x: torch.Tensor, norm, accel: dict[str, Any] | None = None) -> Any:  # noqa: ANN001
    accel = accel or {}
    if norm is not None:
        mean, std = norm
        if x.ndim != 4:
            raise OptionError("--normalize applies to image inputs (N, C, H, W) only")
        if mean.shape[1] not in (1, x.shape[1]):
            raise OptionError(f"normalisation has {mean.shape[1]} channel(s), the images have {x.shape[1]}")
        x = (x - mean) / std
    if accel.get("channels_last") and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    try:
        if accel.get("amp") and x.is_cuda:
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                out = model.module(x)
            return out.float() if isinstance(out, torch.Tensor) else out
        return model.module(x)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's model failed on our input
        raise ModelError(f"model {model.name}: forward failed on input of shape {tuple(x.shape)} "
                         f"({exc.__class__.__name__}: {first_line(exc)}); see the task's input contract in 'nero evaluate --help'") from None


def evaluate(models: Sequence[LoadedModel], data: Any, specs: Sequence[OrbitSpec], task: Task, *,
             reference: str = "auto", batch_size: int = 256, device: str | torch.device = "cpu",
             normalize: tuple[list[float], list[float]] | None = None, seed: int = 0,
             options: dict[str, Any] | None = None, progress: Progress | None = None,
             cache: Any = None, data_key: str | None = None, chunks: Any = None,
             chunk_samples: int | None = None) -> "Evaluation":
    """Run every model over every orbit of every sample; return the tidy results table
    (``Evaluation.table``) with the orbits it ran.

    Columns: ``model, sample, label, group, element, identity`` (the identity element),
    the groups' parameter columns (``label`` is -1 without labels),
    With ``cache`` (a :class:`nero_cli.cache.Cache`) and ``data_key`` (the data's identity),
    pieces already evaluated for the same checkpoint bytes, data and spec are reused.
    With ``chunks`` (a Cache in a run's partial directory) every finished chunk of samples is
    kept as it completes, so an interrupted sweep resumes where it stopped. ``chunk_samples``
    fixes the samples per chunk (a shard uses the whole run's chunking, so that every forward
    pass sees the same batch as in a single-process run and the results are identical).
    then the task's columns (for classification ``prediction, reference, confidence,
    correct, consensus, equivariance_error``).
    """
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    labels = data.labels
    truth = task.has_truth(data)
    if reference == "auto":
        reference = "labels" if truth else "consensus"
    if reference not in ("labels", "consensus"):
        raise OptionError(f"--reference must be labels or consensus, got '{reference}'")
    if reference == "labels" and not truth:
        raise OptionError(f"--reference labels needs ground truth ({task.truth}), and the data has none; use --reference consensus")
    plans = plan_orbits(specs)
    param_cols: list[str] = []
    for p in plans:
        for c in p.group.columns():
            if c not in param_cols:
                param_cols.append(c)
    torch.manual_seed(seed)
    n = len(data)
    sample_ids = np.asarray(data.index, dtype=np.int64)
    label_arr = labels.numpy().astype(np.int64) if labels is not None else np.full(n, -1, dtype=np.int64)
    pieces: list[pd.DataFrame] = []
    for model in models:
        norm = _normaliser(model, normalize, dev)
        for plan in plans:
            group = plan.group
            g = len(group)
            from . import __version__
            from .cache import make_key

            parts = {"model": model.sha256, "format": model.format, "source": model.source,
                     "data": data_key, "spec": plan.spec.canonical, "label": plan.label,
                     "task": task.name, "reference": reference, "normalize": normalize or model.meta.normalize,
                     "batch_size": batch_size, "device": str(dev), "options": options or {},
                     "params": param_cols, "nero": __version__}
            key = make_key(parts) if cache is not None and data_key and model.sha256 else None
            if key is not None:
                hit = cache.get(key)
                if hit is not None and len(hit) == n * g:
                    hit.insert(0, "model", np.full(len(hit), model.name, dtype=object))
                    pieces.append(hit)
                    if progress:
                        progress(n * g)
                    continue
            action = task.make_action(plan.spec, data)
            ident = group.identity_index
            assert ident is not None
            per_chunk, per_pass = chunk_sizes(n, g, batch_size)
            if chunk_samples:  # a shard of a larger run: the same chunks as the whole run
                per_chunk = chunk_samples
                per_pass = max(1, min(g, batch_size // per_chunk))
            cols: dict[str, list[np.ndarray]] = {c: [] for c in task.columns}
            checked = False
            for s0 in range(0, n, per_chunk):
                ckey = make_key({**parts, "name": model.name, "s0": s0, "per_chunk": per_chunk}) if chunks is not None else None
                done = chunks.get(ckey) if ckey is not None else None
                if done is not None:
                    for c in task.columns:
                        cols[c].append(done[c].to_numpy())
                    if progress:
                        progress(len(done))
                    continue
                x = data.inputs[s0 : s0 + per_chunk].to(dev)
                b = x.shape[0]
                outs = []
                with torch.inference_mode():
                    for e0 in range(0, g, per_pass):
                        idx = list(range(e0, min(g, e0 + per_pass)))
                        xb = action(x, idx)
                        out = _forward(model, xb.reshape(len(idx) * b, *xb.shape[2:]), norm, options)
                        out = task.prepare_outputs(out, len(idx) * b, model.name)
                        outs.append(out.reshape(len(idx), b, *out.shape[1:]))
                        if progress:
                            progress(len(idx) * b)
                    outputs = torch.cat(outs, 0)
                if not checked:
                    task.check(outputs, data, model.name)
                    checked = True
                chunk = Chunk(identity=ident, reference=reference,
                              labels=labels[s0 : s0 + b] if labels is not None else None,
                              targets={k: v[s0 : s0 + b] for k, v in data.targets.items()},
                              action=action, spec=plan.spec, options=options or {})
                scored = task.score(outputs, chunk)
                for c, v in scored.items():
                    cols[c].append(v)
                if ckey is not None:
                    chunks.put(ckey, pd.DataFrame(scored))
            frame = {
                "model": np.full(n * g, model.name, dtype=object),
                "sample": np.repeat(sample_ids, g),
                "label": np.repeat(label_arr, g),
                "group": np.full(n * g, plan.label, dtype=object),
                "element": np.tile(np.arange(g, dtype=np.int64), n),
                "identity": np.tile(np.arange(g) == ident, n),
            }
            gcols = group.columns()
            for c in param_cols:
                if c in gcols:
                    vals = np.asarray(gcols[c])
                    vals = vals.astype(np.float64) if vals.dtype.kind in "iuf" else vals.astype(object)
                else:
                    vals = np.full(g, np.nan)
                frame[c] = np.tile(vals, n)
            for c in task.columns:
                frame[c] = np.concatenate(cols[c])
            piece = pd.DataFrame(frame)
            if key is not None:
                cache.put(key, piece.drop(columns=["model"]))
            pieces.append(piece)
    table = pd.concat(pieces, ignore_index=True)
    return Evaluation(table=table, plans=plans, reference=reference, param_columns=param_cols, task=task.name)
