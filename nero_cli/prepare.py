"""Loading and checking everything a sweep needs before it starts: models, task, data, group specs.

Everything that can fail on bad input fails here, before any long computation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from orbits import SpecError, parse_spec

from .checkpoints import expand_models
from .core import plan_orbits
from .data import Dataset, check_limit, select
from .errors import DataError, ModelError, NeroError, OptionError
from .models import LoadedModel, ModelMeta, load_model
from .runner import ModelRunner, autotune_batch_size, repeatability_warnings, resolve_device, seconds_per_input
from .tasks import TaskRecord, get_task


@dataclass
class Prepared:
    """Everything loaded and checked before the sweep starts."""

    runners: list[ModelRunner]
    task: TaskRecord
    dataset: Dataset
    specs: list
    class_names: list[str] | None
    plot_metric: str
    device: torch.device
    normalize: tuple[list[float], list[float]] | None
    #: False for a run rebuilt from records (``nero merge``): the models are named, not loaded.
    can_run: bool = True
    warnings: list[str] = field(default_factory=list)

    @property
    def models(self) -> list[LoadedModel]:
        return [r.model for r in self.runners]

    def n_inputs(self) -> int:
        """Forward inputs of the whole sweep (every model, sample and orbit element)."""
        return len(self.runners) * len(self.dataset) * sum(len(pl.group) for pl in plan_orbits(self.specs))


def parse_normalize(text: str | None) -> tuple[list[float], list[float]] | None:
    """``MEAN,STD`` (one channel or broadcast) or ``m1,m2,m3,s1,s2,s3``."""
    if not text:
        return None
    try:
        vals = [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise OptionError(f"--normalize expects MEAN,STD numbers (one pair, or means then stds per channel); got '{text}'") from None
    if len(vals) < 2 or len(vals) % 2:
        raise OptionError(f"--normalize expects MEAN,STD (one pair, or means then stds per channel); got {len(vals)} number(s)")
    half = len(vals) // 2
    if any(s <= 0 for s in vals[half:]):
        raise OptionError(f"--normalize: std must be positive, got {vals[half:]}")
    return vals[:half], vals[half:]


def _unique_names(loaded: list[LoadedModel]) -> None:
    seen: dict[str, int] = {}
    for m in loaded:  # keep display names unique
        if m.name in seen:
            seen[m.name] += 1
            m.name = f"{m.name}-{seen[m.name]}"
        else:
            seen[m.name] = 1


def load_models(models: Sequence[Any], weights: Sequence[str], meta: Sequence[str], names: Sequence[str],
                trust_checkpoint: bool, dev: torch.device) -> list[LoadedModel]:
    """MODEL arguments (strings, globs or ``nn.Module`` objects) to loaded models with unique names."""
    if not models:
        raise OptionError("no MODEL given; pass a checkpoint, file.py:callable or sample:NAME (see 'nero list samples')")
    models = [m for a in models for m in (expand_models([a]) if isinstance(a, str) else [a])]
    if len(names) > len(models) or len(meta) > len(models):
        raise OptionError(f"{len(names)} --name and {len(meta)} --meta for {len(models)} model(s); give at most one per model, in order")
    factory_models = [m for m in models if isinstance(m, str) and ":" in m and not m.startswith("sample:") and not Path(m).exists()]
    if len(weights) > len(factory_models):
        raise OptionError(f"{len(weights)} --weights for {len(factory_models)} factory model(s) (file.py:callable); give one per factory model, in order")
    w_iter = iter(weights)
    loaded = []
    for i, arg in enumerate(models):
        name = names[i] if i < len(names) else None
        if isinstance(arg, torch.nn.Module):  # Python API: a module in memory
            arg.eval()
            loaded.append(LoadedModel(name=name or type(arg).__name__, module=arg.to(dev), source="<python object>",
                                      format="module", sha256={}, meta=ModelMeta()))
            continue
        w = next(w_iter, None) if arg in factory_models else None
        loaded.append(load_model(arg, weights=w, meta=meta[i] if i < len(meta) else None, name=name,
                                 trust_checkpoint=trust_checkpoint, device=dev))
    _unique_names(loaded)
    return loaded


def _accelerate(loaded: list[LoadedModel], compile: bool, channels_last: bool) -> None:
    for m in loaded:
        if channels_last:
            try:
                m.module = m.module.to(memory_format=torch.channels_last)
            except Exception:  # noqa: BLE001 - TorchScript/export modules keep their layout
                pass
        if compile:
            m.module = torch.compile(m.module)


def _task_for(loaded: list[LoadedModel], task: str | None) -> TaskRecord:
    names = {m.meta.task for m in loaded if m.meta.task}
    if task is None:
        if len(names) > 1:
            raise OptionError(f"the models declare different tasks ({', '.join(sorted(names))}); evaluate them separately or pass --task")
        task = names.pop() if names else "classification"
    return get_task(task)


def _check_plot_metric(task: TaskRecord, plot_metric: str | None) -> str:
    metric = plot_metric or task.primary
    if metric not in task.plot_metrics:
        raise OptionError(f"--plot-metric for {task.name} must be one of {', '.join(task.plot_metrics)}; got '{metric}'")
    return metric


def _parse_groups(groups: Sequence[str], task: TaskRecord, dataset: Dataset) -> list:
    specs = []
    for text in groups:
        try:
            specs.append(parse_spec(text, image_size=dataset.size if task.input_kind != "points" else None,
                                    allowed=set(task.groups)))
        except SpecError as exc:
            raise OptionError(f"--group {text}: {exc}") from None
    return specs


def _load_data(data: Any, task: TaskRecord, loaded: list[LoadedModel], limit: int | None,
               classes: Sequence[str]) -> Dataset:
    shapes = {tuple(m.meta.input_shape) for m in loaded if m.meta.input_shape}
    channels = next(iter(shapes))[0] if len(shapes) == 1 else None
    wanted = list(classes) or None
    dataset = data if isinstance(data, Dataset) else task.load_data(data, channels, limit=limit, classes=wanted)
    dataset = select(dataset, classes=wanted, limit=limit)
    for m in loaded:
        if task.input_kind != "points" and m.meta.input_shape and tuple(m.meta.input_shape[-2:]) != dataset.size:
            raise NeroError(f"model {m.name} expects {m.meta.input_shape[-2]}x{m.meta.input_shape[-1]} images, "
                            f"the data has {dataset.size[0]}x{dataset.size[1]}; resize the data")
    return dataset


def _class_names(task: TaskRecord, dataset: Dataset, runners: list[ModelRunner]) -> list[str] | None:
    """The run's class names: the data's, else the first model's metadata. For a logits task, a
    count that differs from a model's number of logits (on the first sample) is an error naming
    both numbers: DataError for the data's names, ModelError for a model's metadata (ImageFolder
    subfolder names may name a subset of the classes)."""
    owner = next((r for r in runners if r.model.meta.class_names), None)
    names = dataset.class_names or (owner.model.meta.class_names if owner else None)
    if not names or task.output != "invariant" or (dataset.class_names and not dataset.names_complete):
        return names
    with torch.inference_mode():
        for r in runners:
            try:
                k = int(task.prepare(r(dataset.inputs[:1]), 1, r.name).shape[-1])
            except ModelError:
                continue  # a model that fails on the data is reported by the sweep, with its own message
            if len(names) == k:
                continue
            has = f"has {k} classes (logits (N, {k}))"
            if dataset.class_names:
                raise DataError(f"{dataset.source}: the data's class_names name {len(names)} classes but model {r.name} "
                                f"{has}; give one name per class")
            who = "it" if r is owner else f"model {r.name}"
            raise ModelError(f"model {owner.name}: its metadata's class_names name {len(names)} classes but {who} {has}; "
                             "fix class_names in the sidecar JSON (or --meta)")
    return names


def prepare(models: Sequence[Any], data: Any, groups: Sequence[str], *, task: str | None = None,
            weights: Sequence[str] = (), meta: Sequence[str] = (), names: Sequence[str] = (),
            trust_checkpoint: bool = False, normalize: str | None = None, limit: int | None = None,
            classes: Sequence[str] = (), device: str = "auto", plot_metric: str | None = None,
            compile: bool = False, channels_last: bool = False, amp: bool = False) -> Prepared:
    """Load and check models, data and group specs (everything that can fail before the sweep)."""
    if not groups:
        raise OptionError("no --group given; e.g. --group rotation (see 'nero list groups')")
    check_limit(limit)
    norm = parse_normalize(normalize)
    dev = resolve_device(device)
    loaded = load_models(models, weights, meta, names, trust_checkpoint, dev)
    _accelerate(loaded, compile, channels_last)
    task_rec = _task_for(loaded, task)
    metric = _check_plot_metric(task_rec, plot_metric)
    dataset = _load_data(data, task_rec, loaded, limit, classes)
    specs = _parse_groups(groups, task_rec, dataset)
    runners = [ModelRunner(m, dev, norm, amp=amp, channels_last=channels_last) for m in loaded]
    class_names = _class_names(task_rec, dataset, runners)
    p = Prepared(runners, task_rec, dataset, specs, class_names, metric, dev, norm)
    p.warnings += repeatability_warnings(runners, dataset.inputs[: min(8, len(dataset))])
    return p


def resolve_batch_size(p: Prepared, batch_size: int | str) -> int:
    """``--batch-size N``, or ``auto`` (see :func:`~nero_cli.runner.autotune_batch_size`)."""
    if isinstance(batch_size, int) or str(batch_size).isdigit():
        size = int(batch_size)
        if size <= 0:
            raise OptionError(f"--batch-size must be positive, got {size}")
        return size
    if batch_size != "auto":
        raise OptionError(f"--batch-size must be a positive number or auto, got '{batch_size}'")
    return autotune_batch_size(p.runners, p.dataset.inputs[:1].to(p.device))


def estimate_seconds(p: Prepared, batch_size: int) -> tuple[int, float]:
    """Inputs the sweep will run and a rough time: one timed forward pass per model."""
    total = p.n_inputs() // max(1, len(p.runners))
    b = max(1, min(batch_size, 64, total))
    per_input = seconds_per_input(p.runners, p.dataset.inputs[:1].to(p.device), b)
    return len(p.runners) * total, per_input * total


__all__ = ["Prepared", "prepare", "parse_normalize", "load_models", "resolve_batch_size", "estimate_seconds"]
