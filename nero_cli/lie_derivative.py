"""``nero lie``: the Lie derivative, how fast a model's output moves away from equivariance at the identity.

For a group element ``g(t)`` of a one-parameter subgroup (a *generator*: rotation by ``t`` degrees,
a shift by ``t`` pixels, a zoom by ``exp(t)``, a tilt by ``t`` degrees of yaw or pitch, a turn of
a point cloud by ``t`` degrees about the x, y or z axis), the Lie derivative of a model ``f`` along
the generator at ``x`` is the derivative at ``t = 0`` of the output at ``g(t)·x`` mapped back by
``g(t)⁻¹`` (Gruver et al. 2022, "The Lie Derivative for Measuring Learned Equivariance"):

- classification (images and point clouds): the output is invariant, so nothing is pulled back;
  per sample the total variation per unit of the parameter, ``0.5 · ‖d softmax(f(g(t)·x))/dt‖₁``
  (probability per degree, per pixel or per unit of log-scale);
- optical flow: the mean over valid pixels of the norm of the derivative of the pulled-back
  field ``g(t)⁻¹ · f(g(t)·x)`` (pixels of flow per unit; see :mod:`nero_cli.lie_fields`).

A model equivariant under the group scores 0 (up to resampling on the pixel grid); the NERO plot's
slope at the identity is this number. ``torch.func.jvp`` of ``t ↦ output`` with tangent 1 computes
it, ``g(t)·x`` being built inside the function from ``t`` (:mod:`nero_cli.lie_warp` for images and
frames, :mod:`nero_cli.lie_points` for points) so forward-mode autodiff sees the whole chain. A
model ``torch.func.jvp`` cannot differentiate (TorchScript, some exported graphs, ops without a
forward derivative) falls back to central finite differences ``(out(h) − out(−h)) / 2h``; the
``method`` column records which was used. ``along`` (``--along``) measures the derivative at every
element ``g`` of the group's grid, at ``g·x`` (the element applied by ``evaluate``'s action first).
"""

from __future__ import annotations

import datetime as _dt
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import pandas as pd
import torch

from orbits import OrbitSpec

from . import lie_fields
from .api import as_data, one_group
from .data import Dataset
from .errors import ModelError, OptionError, positive_number
from .lie_output import COLUMNS, LIE_CSV, ORBIT_COLUMNS, SUMMARY_KEYS, plot, summarise, write_lie_run
from .lie_points import POINT_GENERATORS, point_generators
from .lie_warp import (IMAGE_GENERATORS, Generator, bilinear_pair, generator_matrices, image_generators,
                       source_points, warp)
from .outdir import claim
from .prepare import prepare
from .runner import ModelRunner

#: Generators of each group: (name, unit of its parameter).
GENERATORS: dict[str, tuple[tuple[str, str], ...]] = {**IMAGE_GENERATORS, **POINT_GENERATORS}
#: The groups ``nero lie`` differentiates, per task.
TASK_GROUPS: dict[str, tuple[str, ...]] = {"classification": tuple(IMAGE_GENERATORS), "pointcloud": tuple(POINT_GENERATORS),
                                           "flow": lie_fields.FLOW_GROUPS}
METHODS = ("auto", "jvp", "fd")


def unit_of(generator_unit: str) -> str:
    """The unit of the Lie derivative of probabilities along a generator, e.g. ``TV/degree``."""
    return f"TV/{generator_unit}"


@dataclass(frozen=True)
class Quantity:
    """What is differentiated for a task and how the derivative is reduced per sample."""

    name: str
    #: ``(runner, task, x, gen, t, wrapped) -> output at g(t)·x, pulled back by g(t)⁻¹`` ``(B, ...)``, float64.
    response: Callable[..., torch.Tensor]
    #: ``(derivative (B, ...), gen) -> (B,)`` per-sample values.
    rate: Callable[[torch.Tensor, Any], np.ndarray]
    #: ``generator unit -> unit of the value``.
    unit: Callable[[str], str]
    doc: str


def _probabilities(runner: ModelRunner, task: Any, x: torch.Tensor, wrapped: bool) -> torch.Tensor:
    """Softmax of the model's logits on ``x`` (checked by the task's output contract); ``wrapped``:
    through ``runner(x)`` (failures become one ModelError line), else ``runner.raw`` (for jvp)."""
    raw = runner(x) if wrapped else runner.raw(runner.prepare(x))
    return torch.softmax(task.prepare(raw, len(x), runner.name).double(), dim=-1)


def tv_rate(derivative: torch.Tensor, gen: Any = None) -> np.ndarray:
    """Total variation per unit, ``0.5 · ‖dp/dt‖₁``, per sample."""
    return (0.5 * derivative.abs().sum(-1)).cpu().numpy()


PROBABILITIES = Quantity(
    "probabilities", lambda runner, task, x, gen, t, wrapped: _probabilities(runner, task, gen.act(x, t), wrapped),
    tv_rate, unit_of, "0.5·‖d softmax(f(g(t)·x))/dt‖₁ (total variation per unit of the generator)")
FLOW_FIELD = Quantity("flow", lie_fields.pulled_back, lie_fields.field_rate, lie_fields.unit_of, lie_fields.DOC)


def quantity_of(task: Any) -> Quantity:
    """The quantity ``nero lie`` differentiates for ``task``; a one-line OptionError for other tasks."""
    if task.name not in TASK_GROUPS:
        raise OptionError(f"nero lie measures {', '.join(TASK_GROUPS)}; task {task.name} is not supported")
    return FLOW_FIELD if task.output == "vector_field" else PROBABILITIES


def jvp_derivative(runner: ModelRunner, task: Any, x: torch.Tensor, gen: Any,
                   quantity: Quantity | None = None) -> torch.Tensor:
    """``d out(t)/dt`` at ``t = 0`` ``(B, ...)`` by forward-mode autodiff (one jvp for the batch: the
    samples' parameters are independent, so a tangent of ones gives every sample's derivative)."""
    q = quantity or quantity_of(task)
    t0 = torch.zeros(len(x), dtype=torch.float64)
    _, tangent = torch.func.jvp(lambda t: q.response(runner, task, x, gen, t, False), (t0,), (torch.ones_like(t0),))
    return tangent.detach()


def fd_derivative(runner: ModelRunner, task: Any, x: torch.Tensor, gen: Any, h: float,
                  quantity: Quantity | None = None) -> torch.Tensor:
    """The central finite difference ``(out(h) − out(−h)) / 2h`` ``(B, ...)``."""
    q = quantity or quantity_of(task)
    step = torch.full((len(x),), float(h), dtype=torch.float64)
    with torch.inference_mode():
        plus = q.response(runner, task, x, gen, step, True)
        minus = q.response(runner, task, x, gen, -step, True)
    return (plus - minus) / (2 * h)


def derivative(runner: ModelRunner, task: Any, x: torch.Tensor, gen: Any, method: str, h: float,
               warnings: list[str], quantity: Quantity | None = None) -> tuple[np.ndarray, str]:
    """Per-sample values of ``x`` along ``gen`` and the method used: ``jvp``, ``fd``, or ``auto`` (jvp,
    falling back to finite differences, with a warning, where the model cannot be differentiated)."""
    q = quantity or quantity_of(task)
    if method == "fd":
        return q.rate(fd_derivative(runner, task, x, gen, h, q), gen), "fd"
    try:
        return q.rate(jvp_derivative(runner, task, x, gen, q), gen), "jvp"
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - the model is not differentiable by torch.func: fall back
        if method == "jvp":
            raise ModelError(f"model {runner.name}: torch.func.jvp failed ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}); use --method fd or auto") from None
        warnings.append(f"model {runner.name}: torch.func.jvp cannot differentiate it ({type(exc).__name__}); "
                        f"used central finite differences (h={h:g})")
        return q.rate(fd_derivative(runner, task, x, gen, h, q), gen), "fd"


def generators_of(spec: Any, size: tuple[int, int] | None, task: str | None = None) -> list[Any]:
    """The generators of the parsed group ``spec`` (an :class:`orbits.spec.OrbitSpec`) for ``task``."""
    allowed = TASK_GROUPS.get(task or "", tuple(GENERATORS))
    if spec.name not in allowed:
        what = f"for task {task}" if task else "continuous groups"
        raise OptionError(f"--group {spec.name}: nero lie measures {what} ({', '.join(allowed)}); "
                          f"{spec.name} has no generator here")
    if spec.name in POINT_GENERATORS:
        return point_generators(spec)
    return image_generators(spec, size)  # type: ignore[arg-type]


def _check(method: str, h: float, batch_size: int) -> None:
    if method not in METHODS:
        raise OptionError(f"--method must be one of {', '.join(METHODS)}; got {method!r}")
    positive_number(h, "--step", example="h of the finite differences, e.g. 0.01")
    if batch_size < 1:
        raise OptionError(f"--batch-size must be at least 1; got {batch_size}")


def _elements(orbit: OrbitSpec | None, task: Any, dataset: Dataset) -> tuple[list[tuple[int, str]], Any]:
    """The grid's ``(index, label)`` pairs and ``evaluate``'s input action; ``[(-1, "")]`` and None
    without an orbit (the identity only)."""
    if orbit is None:
        return [(-1, "")], None
    size = dataset.size if task.input_kind != "points" else None
    return list(enumerate(orbit.group.labels())), orbit.input_action(task.input_kind, size)


def measure(runners: Sequence[ModelRunner], task: Any, dataset: Dataset, gens: Sequence[Any], *,
            method: str = "auto", h: float = 1e-2, batch_size: int = 64, warnings: list[str] | None = None,
            orbit: OrbitSpec | None = None) -> pd.DataFrame:
    """lie.csv's table: one row per model, sample and generator (see :data:`COLUMNS`); with ``orbit``
    (a spec whose grid holds the identity) one per element too, the derivative taken at ``g·x``
    (:data:`ORBIT_COLUMNS` added)."""
    _check(method, h, batch_size)
    warnings = [] if warnings is None else warnings
    q = quantity_of(task)
    n = len(dataset)
    labels = dataset.labels.numpy() if dataset.labels is not None else np.full(n, -1)
    elements, action = _elements(orbit, task, dataset)
    pieces = []
    for r in runners:
        used = method
        for gen in gens:
            for index, element_label in elements:
                values, methods = [], []
                for s in range(0, n, batch_size):
                    x = dataset.inputs[s:s + batch_size]
                    x = (action(x, [index])[0] if action is not None else x).to(r.device)
                    v, used = derivative(r, task, x, gen, used, h, warnings, q)
                    values.append(v)
                    methods += [used] * len(v)
                piece = pd.DataFrame({"model": r.name, "sample": dataset.index, "label": labels, "generator": gen.name,
                                      "value": np.concatenate(values), "unit": q.unit(gen.unit), "method": methods})
                if orbit is not None:
                    piece["element"], piece["element_label"] = index, element_label
                pieces.append(piece)
    return pd.concat(pieces, ignore_index=True)[list(COLUMNS) + (list(ORBIT_COLUMNS) if orbit is not None else [])]


def orbit_of(spec: OrbitSpec) -> tuple[OrbitSpec, dict[str, Any]]:
    """``spec`` with the identity in its grid (as ``evaluate`` adds it) and summary.json's ``orbit``
    record: the elements' labels, the orbit-mean weights (None when no element repeats), the identity."""
    group = spec.group.with_identity()
    weights = group.element_weights()
    record = {"spec": spec.canonical, "elements": group.labels(), "identity": group.identity_index,
              "weights": None if bool((weights == 1).all()) else [float(w) for w in weights]}
    return OrbitSpec(text=spec.text, group=group, action=spec.action, action_defaults=spec.action_defaults), record


class LieResult(NamedTuple):
    """What :func:`lie_run` returns: lie.csv's table, summary.json, the warnings and the run folder
    (None when none was written)."""

    table: pd.DataFrame
    summary: dict[str, Any]
    warnings: list[str]
    out: Path | None


def _measured(p: Any, method: str, step: float, batch_size: int, along: bool) -> tuple[pd.DataFrame, dict[str, Any]]:
    """lie.csv's table and summary.json for the prepared run ``p``."""
    spec = p.specs[0]
    q = quantity_of(p.task)
    gens = generators_of(spec, p.dataset.size if p.task.input_kind != "points" else None, p.task.name)
    action = spec.action
    if action.get("interp", "bilinear") != "bilinear" or action.get("antialias", 1) != 1:
        p.warnings.append("nero lie differentiates plain bilinear resampling; interp/antialias options are ignored"
                          + (" (they apply to the orbit's elements g·x)" if along else ""))
    orbit, record = orbit_of(spec) if along else (None, None)
    table = measure(p.runners, p.task, p.dataset, gens, method=method, h=step, batch_size=batch_size,
                    warnings=p.warnings, orbit=orbit)
    return table, summarise(table, spec.canonical, q.doc, record)


def lie_run(models: Sequence[Any], data: Any, group: str | Sequence[str] = "rotation", out: Path | str | None = None, *,
            task: str | None = None, labels: Any = None, method: str = "auto", step: float = 1e-2,
            batch_size: int = 64, along: bool = False, device: str = "auto", plots: bool = True,
            overwrite: bool = False, command: Sequence[str] | None = None, **load: Any) -> LieResult:
    """Measure the Lie derivative of ``models`` on ``data`` along each generator of ``group``
    (classification: rotation, shift, scale, perspective; flow: rotation, shift, scale; pointcloud:
    viewpoint) and, with ``out``, write the run folder ``out``. ``along``: at every element of the
    group's grid too. ``group``: one spec (a list of one is taken; several are refused, as a run
    folder records one group: measure once per group).

    ``load`` takes :func:`nero_cli.prepare.prepare`'s options (weights, meta, names,
    trust_checkpoint, normalize, limit, sample, classes, seed, class_names, random_init, amp).
    """
    started = _dt.datetime.now(_dt.timezone.utc)
    _check(method, step, batch_size)  # before anything is loaded or claimed
    group = one_group(group, "nero lie")
    data = as_data(data, task, labels)
    protect = [a for a in [*models, data] if isinstance(a, (str, Path)) and Path(str(a)).exists()]
    with claim(Path(out), "run", overwrite, protect) if out is not None else nullcontext():
        p = prepare(models, data, [group], task=task, device=device, extra_groups=lie_fields.FLOW_GROUPS, **load)
        table, summary = _measured(p, method, step, batch_size, along)
        if out is not None:
            options = {"models": [str(m) for m in models], "data": p.dataset.source, "group": group, "method": method,
                       "step": step, "batch_size": batch_size, "along": along, "device": str(p.device),
                       **_jsonable(load)}
            write_lie_run(Path(out), p, table, summary, options, plots=plots, command=command, started=started)
    return LieResult(table, summary, p.warnings, Path(out) if out is not None else None)


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, (tuple, list)) else v) for k, v in options.items()
            if isinstance(v, (str, int, float, bool, list, tuple, type(None)))}


def lie(models: Any, data: Any, group: str | Sequence[str] = "rotation", **options: Any) -> pd.DataFrame:
    """The Python API: lie.csv's table (see :func:`lie_run`; ``out=DIR`` also writes the run folder).
    ``models`` is one model (an ``nn.Module``, a path, ``sample:NAME``) or a list of them."""
    models = list(models) if isinstance(models, (list, tuple)) else [models]
    return lie_run(models, data, group, **options).table


__all__ = ["lie", "lie_run", "LieResult", "measure", "summarise", "plot", "warp", "bilinear_pair", "source_points",
           "generator_matrices", "generators_of", "Generator", "jvp_derivative", "fd_derivative", "derivative",
           "GENERATORS", "TASK_GROUPS", "COLUMNS", "ORBIT_COLUMNS", "LIE_CSV", "SUMMARY_KEYS", "METHODS", "unit_of",
           "Quantity", "PROBABILITIES", "FLOW_FIELD", "quantity_of", "orbit_of"]
