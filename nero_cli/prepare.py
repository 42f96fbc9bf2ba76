"""Loading and checking everything a sweep needs before it starts: models, task, data, group specs.

Everything that can fail on bad input fails here, before any long computation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from orbits import SpecError, parse_spec
from orbits.spec import PLANAR_INPUTS

from .checkpoints import expand_models
from .core import plan_orbits
from .data import Dataset, load_selected, relabel_folders
from .errors import DataError, ModelError, NeroError, OptionError
from .models import LoadedModel, ModelMeta, load_model
from .resampling import inexact
from .runner import ModelRunner, autotune_batch_size, repeatability_warnings, resolve_device, seconds_per_input
from .selection import Selection, check_class_names, folder_classes
from .shaping import Shaping, parse_resize
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
    #: Names of the models evaluated with random weights (factories without weights, ``--random-init``).
    random_init: list[str] = field(default_factory=list)
    #: Options as given that run.json records beside the others (``sample``, ``class_names``, ``random_init``).
    given: dict[str, Any] = field(default_factory=dict)
    #: run.json's ``data`` entries about the samples: ``selection``, an ImageFolder's ``class_map``.
    data_record: dict[str, Any] = field(default_factory=dict)

    @property
    def models(self) -> list[LoadedModel]:
        return [r.model for r in self.runners]

    def n_inputs(self) -> int:
        """Forward inputs of the whole sweep (every model, sample and orbit element)."""
        return len(self.runners) * len(self.dataset) * sum(len(pl.group) for pl in plan_orbits(self.specs))

    def floor_inputs(self) -> int:
        """Forward inputs of the resampling floor's round trips (one per inexact element, sample and
        model; tasks on images and frames only)."""
        if self.task.input_kind not in PLANAR_INPUTS:
            return 0
        plans = plan_orbits(self.specs)
        trips = sum(len(inexact(self.task.make_action(pl.spec, self.dataset), len(pl.group))) for pl in plans)
        return len(self.runners) * len(self.dataset) * trips


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
    if not all(math.isfinite(v) for v in vals):
        raise OptionError(f"--normalize expects finite MEAN,STD numbers; got '{text}'")
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


def _seeded(seed: int, build: Callable[[], LoadedModel]) -> LoadedModel:
    """``build()`` with torch's CPU random generator seeded with ``seed`` (its state restored after)."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return build()


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Whether two modules hold equal parameters and buffers."""
    try:
        sa, sb = a.state_dict(), b.state_dict()
        return sa.keys() == sb.keys() and all(torch.equal(sa[k].detach().cpu(), sb[k].detach().cpu()) for k in sa)
    except Exception:  # noqa: BLE001 - uninitialised (lazy) parameters and other oddities: not the same
        return False


def _build(arg: str, meta: str | None, name: str | None, trust: bool, seed: int,
           device: torch.device | str) -> LoadedModel:
    """A factory model without ``--weights`` built with the generator seeded by ``seed``."""
    return _seeded(seed, lambda: load_model(arg, meta=meta, name=name, trust_checkpoint=trust, device=device))


def random_weights(model: LoadedModel, arg: str, meta: str | None = None, trust: bool = False,
                   seed: int = 0) -> bool:
    """Whether the factory model ``arg`` (loaded as ``model``, without ``--weights``) has random
    weights: a second build under another seed differs. A factory that has none, or sets or loads
    them itself, builds equal modules."""
    return not _same_state(model.module, _build(arg, meta, None, trust, seed + 1, "cpu").module)


def _load_untrained(arg: str, meta: str | None, name: str | None, trust: bool, dev: torch.device,
                    random_init: bool, seed: int) -> tuple[LoadedModel, bool]:
    """A factory model given without ``--weights``, built with the generator seeded by ``seed``, and
    whether its weights are random (:func:`random_weights`). A factory whose weights do not depend
    on the random state is a trained model; one whose weights do is refused unless ``random_init``."""
    model = _build(arg, meta, name, trust, seed, dev)
    if random_init:
        return model, True
    if not random_weights(model, arg, meta, trust, seed):
        return model, False
    raise OptionError(f"{arg}: a factory model without --weights has random weights; give its trained weights with "
                      "--weights FILE, or add --random-init to evaluate it untrained")


def load_models(models: Sequence[Any], weights: Sequence[str], meta: Sequence[str], names: Sequence[str],
                trust_checkpoint: bool, dev: torch.device, *, random_init: bool = False,
                seed: int = 0) -> tuple[list[LoadedModel], list[str]]:
    """MODEL arguments (strings, globs or ``nn.Module`` objects) to loaded models with unique names,
    and the names of those with random weights (a factory without ``--weights``: refused unless
    ``random_init``, see :func:`_load_untrained`)."""
    if not models:
        raise OptionError("no MODEL given; pass a checkpoint, file.py:callable or sample:NAME (see 'nero list samples')")
    models = [m for a in models for m in (expand_models([a]) if isinstance(a, str) else [a])]
    if len(names) > len(models) or len(meta) > len(models):
        raise OptionError(f"{len(names)} --name and {len(meta)} --meta for {len(models)} model(s); give at most one per model, in order")
    factory_models = [m for m in models if isinstance(m, str) and ":" in m and not m.startswith("sample:") and not Path(m).exists()]
    if len(weights) > len(factory_models):
        raise OptionError(f"{len(weights)} --weights for {len(factory_models)} factory model(s) (file.py:callable); give one per factory model, in order")
    w_iter = iter(weights)
    loaded, random = [], []
    for i, arg in enumerate(models):
        name = names[i] if i < len(names) else None
        if isinstance(arg, torch.nn.Module):  # Python API: a module in memory
            arg.eval()
            loaded.append(LoadedModel(name=name or type(arg).__name__, module=arg.to(dev), source="<python object>",
                                      format="module", sha256={}, meta=ModelMeta()))
            continue
        w = next(w_iter, None) if arg in factory_models else None
        m = meta[i] if i < len(meta) else None
        if arg in factory_models and w is None:
            model, is_random = _load_untrained(arg, m, name, trust_checkpoint, dev, random_init, seed)
            loaded.append(model)
            random += [model] if is_random else []
            continue
        loaded.append(load_model(arg, weights=w, meta=m, name=name, trust_checkpoint=trust_checkpoint, device=dev))
    _unique_names(loaded)
    return loaded, [m.name for m in random]


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


def _parse_groups(groups: Sequence[str], task: TaskRecord, dataset: Dataset, extra: Sequence[str] = ()) -> list:
    specs = []
    for text in groups:
        try:
            specs.append(parse_spec(text, image_size=dataset.size if task.input_kind != "points" else None,
                                    allowed={*task.groups, *extra}))
        except SpecError as exc:
            raise OptionError(f"--group {text}: {exc}") from None
    return specs


def _logit_counts(task: TaskRecord, runners: list[ModelRunner], x: torch.Tensor) -> list[tuple[ModelRunner, int]]:
    """Each model's number of logits on ``x`` (a logits task only; a model that fails on it is left
    out: the sweep reports it, with its own message)."""
    if task.output != "invariant":
        return []
    counts = []
    with torch.inference_mode():
        for r in runners:
            try:
                counts.append((r, int(task.prepare(r(x), 1, r.name).shape[-1])))
            except ModelError:
                continue
    return counts


def _model_class_names(runners: list[ModelRunner], given: list[str] | None) -> list[str] | None:
    """The models' class names: ``--class-names``, else the first model's metadata."""
    return given or next((r.model.meta.class_names for r in runners if r.model.meta.class_names), None)


def _folders_to_classes(task: TaskRecord, runners: list[ModelRunner],
                        given: list[str] | None) -> Callable[[Dataset], Dataset]:
    """An ImageFolder's labels as the model's class ids (see :func:`nero_cli.selection.folder_classes`)."""
    names = _model_class_names(runners, given)

    def relabel(data: Dataset) -> Dataset:
        if data.folders is None or data.labels is None:
            return data
        counts = [] if names else _logit_counts(task, runners, data.inputs[:1])
        class_map, how = folder_classes(data.folders, names, min((k for _, k in counts), default=None), data.source)
        return relabel_folders(data, class_map, how, names)

    return relabel


def _load_data(data: Any, task: TaskRecord, runners: list[ModelRunner], sel: Selection,
               given: list[str] | None, shaping: Shaping | None = None) -> tuple[Dataset, list[str]]:
    """``--data`` for ``task``, resized by ``shaping``, its ImageFolder folders mapped to the
    model's classes, cut to ``sel``; and the warnings of doing so."""
    shapes = {tuple(r.model.meta.input_shape) for r in runners if r.model.meta.input_shape}
    channels = next(iter(shapes))[0] if len(shapes) == 1 else None
    dataset, notes = load_selected(task, data, channels, sel, _folders_to_classes(task, runners, given), shaping)
    for r in runners:
        shape = r.model.meta.input_shape
        if task.input_kind != "points" and shape and tuple(shape[-2:]) != dataset.size:
            raise NeroError(f"model {r.name} expects {shape[-2]}x{shape[-1]} images, "
                            f"the data has {dataset.size[0]}x{dataset.size[1]}; resize the data"
                            f"{f' (--resize {shape[-2]},{shape[-1]})' if task.input_kind == 'image' else ''}")
    if dataset.class_map_from == "folder order":
        pairs = ", ".join(f"{f}={c}" for f, c in list(dataset.class_map.items())[:8])  # type: ignore[union-attr]
        notes.append(f"{dataset.source}: the model's class names are unknown, so its class folders are labelled in "
                     f"sorted order ({pairs}); give --class-names to match them by name")
    return dataset, notes


def _class_names(task: TaskRecord, dataset: Dataset, runners: list[ModelRunner],
                 given: list[str] | None = None) -> list[str] | None:
    """The run's class names: ``--class-names``, else the data's, else the first model's metadata
    (an ImageFolder mapped by name has the model's). For a logits task, a count that differs from a
    model's number of logits (on the first sample) is an error naming both numbers: OptionError for
    ``--class-names``, DataError for the data's names, ModelError for a model's metadata (ImageFolder
    subfolder names in sorted order may name a subset of the classes)."""
    from_data = dataset.class_names if dataset.class_map_from != "class names" else None
    names = given or from_data or _model_class_names(runners, None)
    if not names or task.output != "invariant" or (not given and from_data and not dataset.names_complete):
        return names
    owner = next((r for r in runners if r.model.meta.class_names), None)
    for r, k in _logit_counts(task, runners, dataset.inputs[:1]):
        if len(names) == k:
            continue
        has = f"has {k} classes (logits (N, {k}))"
        if given:
            raise OptionError(f"--class-names names {len(names)} classes but model {r.name} {has}; give one name per "
                              "class, in the model's order")
        if from_data:
            raise DataError(f"{dataset.source}: the data's class_names name {len(names)} classes but model {r.name} "
                            f"{has}; give one name per class")
        who = "it" if r is owner else f"model {r.name}"
        raise ModelError(f"model {owner.name}: its metadata's class_names name {len(names)} classes "  # type: ignore[union-attr]
                         f"but {who} {has}; fix class_names in the sidecar JSON (or --meta)")
    return names


def prepare(models: Sequence[Any], data: Any, groups: Sequence[str], *, task: str | None = None,
            weights: Sequence[str] = (), meta: Sequence[str] = (), names: Sequence[str] = (),
            trust_checkpoint: bool = False, normalize: str | None = None, limit: int | None = None,
            classes: Sequence[str] = (), sample: int | None = None, seed: int = 0, class_names: Sequence[str] = (),
            random_init: bool = False, device: str = "auto", plot_metric: str | None = None,
            compile: bool = False, channels_last: bool = False, amp: bool = False,
            extra_groups: Sequence[str] = (), resize: Any = None, center_crop: bool = False,
            can_sample: bool = True, check_task: Callable[[TaskRecord], None] | None = None) -> Prepared:
    """Load and check models, data and group specs (everything that can fail before the sweep).

    ``classes``, then ``limit`` (the first N) or ``sample`` (a stratified random N for ``seed``)
    choose the samples (:mod:`nero_cli.selection`). ``class_names`` name the model's classes in
    order (an ImageFolder's class folders are matched to them by name). A factory model without
    ``weights`` is built with the random generator seeded by ``seed``; random weights are refused
    unless ``random_init``. ``extra_groups`` are accepted beside the task's own groups (``nero lie``
    differentiates flow along shifts and zooms, which ``evaluate`` does not sweep); the caller checks them.
    ``resize`` (``"H,W"``) and ``center_crop`` bring every image to one size (:mod:`nero_cli.shaping`).
    ``can_sample``: whether the command offers ``--sample`` (a ``--limit`` warning suggests it only then).
    ``check_task``: called with the task once the models are loaded, before the data and groups are
    read, so that a command refuses a task it cannot measure before naming its groups.
    """
    if not groups:
        raise OptionError("no --group given; e.g. --group rotation (see 'nero list groups')")
    sel = Selection(tuple(classes), limit, sample, seed, can_sample)
    shaping = parse_resize(resize, center_crop)
    given = check_class_names(class_names)
    norm = parse_normalize(normalize)
    dev = resolve_device(device)
    loaded, random = load_models(models, weights, meta, names, trust_checkpoint, dev, random_init=random_init,
                                 seed=seed)
    _accelerate(loaded, compile, channels_last)
    task_rec = _task_for(loaded, task)
    if check_task is not None:
        check_task(task_rec)
    metric = _check_plot_metric(task_rec, plot_metric)
    runners = [ModelRunner(m, dev, norm, amp=amp, channels_last=channels_last) for m in loaded]
    dataset, notes = _load_data(data, task_rec, runners, sel, given, shaping)
    specs = _parse_groups(groups, task_rec, dataset, extra_groups)
    _first_forward(task_rec, dataset, runners)
    p = Prepared(runners, task_rec, dataset, specs, _class_names(task_rec, dataset, runners, given), metric, dev, norm,
                 random_init=random, given={"sample": sample, "class_names": given, "random_init": random_init,
                                            "resize": list(shaping.size) if shaping else None,
                                            "center_crop": bool(shaping and shaping.crop)},
                 data_record={"selection": sel.record(dataset.labels is not None), **dataset.record()})
    p.warnings += [f"model {r.name}: {note}" for r in runners for note in getattr(r.model.module, "load_notes", ())]
    p.warnings += repeatability_warnings(runners, dataset.inputs[: min(8, len(dataset))]) + notes
    if random_init and not random:
        p.warnings.append("--random-init has no effect: every model has its weights")
    return p


def _first_forward(task: TaskRecord, dataset: Dataset, runners: list[ModelRunner]) -> None:
    """Run every model once on the first sample, so a model that cannot take the data, or returns
    what the task does not expect, fails in one line before any work is done or kept."""
    with torch.inference_mode():
        for r in runners:
            task.prepare(r(dataset.inputs[:1]), 1, r.name)


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


def estimate_seconds(p: Prepared, batch_size: int, limit: float | None = None,
                     floor: bool = True) -> tuple[int, float]:
    """Inputs the sweep will run at least (the floor's round trips too, with ``floor``) and a rough
    time: one timed forward pass per model (with ``limit``, in seconds, a time known to stay under
    it is not timed again: see :func:`seconds_per_input`; a sweep over it whatever the floor adds
    is not made to count the floor's passes)."""
    models = max(1, len(p.runners))
    orbit = p.n_inputs() // models
    b = max(1, min(batch_size, 64, orbit))
    # the floor adds at most one pass per orbit input; its exact count builds every element's
    # action (40 s for a 601 x 601 shift grid), so it is counted only when the bounds disagree
    within = None if limit is None else limit / max(1, 2 * orbit if floor else orbit)
    per_input = seconds_per_input(p.runners, p.dataset.inputs[:1].to(p.device), b, within)
    total = orbit
    if floor and limit is not None and 2 * orbit * per_input <= limit:
        total = 2 * orbit  # under the limit even if every element were inexact (a bound, never printed)
    elif floor and (limit is None or orbit * per_input <= limit):
        total += p.floor_inputs() // models
    # else: over the limit without the floor: at least ``orbit`` inputs, refused as it is
    return len(p.runners) * total, per_input * total


__all__ = ["Prepared", "prepare", "parse_normalize", "load_models", "resolve_batch_size", "estimate_seconds"]
