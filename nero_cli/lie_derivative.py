"""``nero lie``: the Lie derivative, how fast a model's output moves away from invariance at the identity.

For a group element ``g(t)`` of a one-parameter subgroup (a *generator*: rotation by ``t`` degrees,
a shift by ``t`` pixels, a zoom by ``exp(t)``, a tilt by ``t`` degrees of yaw or pitch) and a
classifier's probabilities ``p(x)``, the Lie derivative of ``p`` along the generator at ``x`` is

    ``L p(x) = d/dt p(g(t) · x) |_{t=0}``   (the output is invariant: nothing to pull back),

reported per sample as the total variation per unit of the parameter, ``0.5 · ‖L p(x)‖₁``:
probability per degree, per pixel or per unit of log-scale. A model invariant under the group
scores 0 (up to resampling on the pixel grid); the NERO plot's slope at the identity is this number.

How it is computed (Gruver et al. 2022, "The Lie Derivative for Measuring Learned Equivariance"):
``torch.func.jvp`` of ``t ↦ p(g(t) · x)`` with tangent 1, where ``g(t) · x`` is built inside the
function from ``t`` (the element's 3×3 pixel matrix of :mod:`orbits.planar`, its inverse, the
sampling grid, ``grid_sample``), so forward-mode autodiff sees the whole chain. Bilinear
resampling is not differentiable at the pixel centres (the identity's grid): one-sided it gives a
forward difference of the image. :func:`warp` therefore averages ``grid_sample`` of the image and
of the image turned by 180° (the same values everywhere), whose derivatives at the pixel centres
are the forward and backward differences: their mean is the central difference, the limit of the
central finite differences of nero's own bilinear action. A model ``torch.func.jvp`` cannot
differentiate (TorchScript, some exported graphs) falls back to central finite differences
``(p(g(h)·x) − p(g(−h)·x)) / 2h``; the ``method`` column records which was used.
"""

from __future__ import annotations

import datetime as _dt
import platform
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import matplotlib
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from orbits import planar, so3

from . import __version__
from . import runrecord as rr
from .api import as_dataset
from .data import Dataset
from .errors import ModelError, OptionError
from .model_formats import sha256_file
from .outdir import building, claim, listing
from .prepare import Prepared, prepare
from .runner import ModelRunner

matplotlib.use("Agg")

#: Generators of each group: (name, unit of its parameter). Matrices are built by :func:`generator_matrices`.
GENERATORS: dict[str, tuple[tuple[str, str], ...]] = {
    "rotation": (("rotation", "degree"),),
    "shift": (("dx", "pixel"), ("dy", "pixel")),
    "scale": (("log_scale", "log-scale"),),
    "perspective": (("yaw", "degree"), ("pitch", "degree")),
}
METHODS = ("auto", "jvp", "fd")
#: lie.csv's columns, in order.
COLUMNS = ("model", "sample", "label", "generator", "value", "unit", "method")
LIE_CSV = "lie.csv"
#: summary.json keys per model and generator: (key, reduction over samples).
SUMMARY_KEYS = (("lie_derivative_mean", "mean"), ("lie_derivative_median", "median"),
                ("lie_derivative_p90", "p90"))
SCHEMA_VERSION = 2


def unit_of(generator_unit: str) -> str:
    """The unit of the Lie derivative of probabilities along a generator, e.g. ``TV/degree``."""
    return f"TV/{generator_unit}"


def generator_matrices(group: str, generator: str, t: torch.Tensor, size: tuple[int, int],
                       pivot: str = "object") -> torch.Tensor:
    """``(B, 3, 3)`` float64 pixel matrices (input point → output point) of the elements ``g(t)``,
    one per entry of ``t`` ``(B,)``; differentiable in ``t`` (built only from torch operations)."""
    t = t.to(torch.float64)
    zero = torch.zeros_like(t)
    if generator == "rotation":  # planar.rotation_matrices snaps sin(0) to an exact 0, which drops its tangent
        cos, sin = torch.cos(torch.deg2rad(t)), torch.sin(torch.deg2rad(t))
        return planar.about_centre(torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2), size)
    if generator in ("dx", "dy"):
        return planar.translation_matrices(t, zero) if generator == "dx" else planar.translation_matrices(zero, t)
    if generator == "log_scale":
        return planar.scale_matrices(torch.exp(t), size)
    if generator in ("yaw", "pitch"):
        r = so3.tilt_rotations(t, zero) if generator == "yaw" else so3.tilt_rotations(zero, t)
        if pivot == "camera":
            return planar.camera_rotation_matrices(r, size)
        return planar.from_camera(planar.plane_tilt(r), size)
    raise OptionError(f"group {group}: no generator {generator!r}")


def source_points(matrices: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each output pixel reads the input, ``(sx, sy)`` ``(B, H, W)`` each in pixel-centre
    coordinates, for the pixel matrices ``(B, 3, 3)``: output pixel ``p`` reads ``M⁻¹ p`` (the
    convention of :mod:`orbits.image`)."""
    h, w = size
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    pts = torch.stack([xs.flatten(), ys.flatten(), torch.ones(h * w, dtype=torch.float64)])  # (3, HW)
    src = torch.linalg.inv(matrices) @ pts  # (B, 3, HW)
    return (src[:, 0] / src[:, 2]).reshape(-1, h, w), (src[:, 1] / src[:, 2]).reshape(-1, h, w)


def _padded(s: torch.Tensor, n: int, padding: str) -> torch.Tensor:
    """Coordinates as ``grid_sample`` (``align_corners=False``) pads: reflected about the pixel
    edges, clamped to the border, or (zeros) left as they are."""
    if padding == "reflection":
        r = torch.remainder(s + 0.5, 2 * n)
        s = torch.where(r > n, 2 * n - r, r) - 0.5
    return s.clamp(0, n - 1) if padding in ("border", "reflection") else s


def _corners(s: torch.Tensor) -> torch.Tensor:
    """The corner below each point ``(2, ...)``: ``floor`` and ``ceil − 1`` (equal except at pixel
    centres), chosen on ``s`` without its tangent and, within 1e-6 of a pixel centre, snapped onto it
    (the identity's points carry the round-off of a matrix inverse)."""
    s = s.detach()
    s = torch.where((s - s.round()).abs() < 1e-6, s.round(), s)
    return torch.stack([torch.floor(s), torch.ceil(s) - 1])


def bilinear_pair(x: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor, padding: str) -> torch.Tensor:
    """The mean of two bilinear samplers of ``x`` ``(B, C, H, W)`` at ``(sx, sy)`` ``(B, H', W')`` that
    differ only in the corner a pixel centre counts as (:func:`_corners`): their values equal
    ``grid_sample``'s (``align_corners=False``), their derivatives at a pixel centre are the forward and
    the backward difference. Built from ``gather``, so ``torch.func.jvp`` differentiates it."""
    b, c, h, w = x.shape
    if padding == "zeros":  # a ring of zeros, and points beyond it moved onto it
        x, h, w = F.pad(x, (1, 1, 1, 1)), h + 2, w + 2
        sx, sy = sx.clamp(-1, w - 2) + 1, sy.clamp(-1, h - 2) + 1
    else:
        sx, sy = _padded(sx, w, padding), _padded(sy, h, padding)
    x0, y0 = _corners(sx), _corners(sy)  # (2, B, H', W')
    fx, fy = (sx - x0).to(x.dtype), (sy - y0).to(x.dtype)
    xl, yl = x0.long(), y0.long()
    cols = torch.stack([xl.clamp(0, w - 1), (xl + 1).clamp(0, w - 1)], 1)  # (2, 2, B, H', W'): pair, dx
    rows = torch.stack([yl.clamp(0, h - 1) * w, (yl + 1).clamp(0, h - 1) * w], 1)
    wx, wy = torch.stack([1 - fx, fx], 1), torch.stack([1 - fy, fy], 1)
    idx = (rows[:, :, None] + cols[:, None]).permute(3, 0, 1, 2, 4, 5).reshape(b, 1, -1)  # (B, 1, 8·H'W')
    weight = (wy[:, :, None] * wx[:, None]).permute(3, 0, 1, 2, 4, 5).reshape(b, 1, 8, -1)
    got = x.reshape(b, c, h * w).gather(2, idx.expand(b, c, -1)).reshape(b, c, 8, -1)
    return 0.5 * (got * weight).sum(2).reshape(b, c, *sx.shape[1:])


def warp(x: torch.Tensor, matrices: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """Bilinear ``g · x`` for images ``x`` ``(B, C, H, W)`` and their matrices ``(B, 3, 3)``: the values
    of nero's action, with the central difference as its derivative at the pixel centres (the mean
    of two bilinear samplers that differ only in which corner a pixel centre counts as: their values
    are equal, their derivatives there are the forward and the backward difference)."""
    sx, sy = source_points(matrices, tuple(x.shape[-2:]))
    sx, sy = sx.to(x.device), sy.to(x.device)
    return bilinear_pair(x, sx, sy, padding)


@dataclass
class Generator:
    """One generator of the measured group: how to build ``g(t) · x``."""

    group: str
    name: str
    unit: str
    size: tuple[int, int]
    pivot: str = "object"
    padding: str = "zeros"
    #: ``mask=circle`` of the spec: everything outside the inscribed disc is zeroed, as in :mod:`orbits.image`.
    circle: bool = False

    def act(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = warp(x, generator_matrices(self.group, self.name, t, self.size, self.pivot), self.padding)
        return out * _disc(self.size).to(device=x.device, dtype=x.dtype) if self.circle else out


def _disc(size: tuple[int, int]) -> torch.Tensor:
    """The inscribed disc of an image of ``size`` (1 inside, 0 outside), as ``mask=circle`` cuts it."""
    h, w = size
    cx, cy = planar.centre(size)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return (((xs - cx) ** 2 + (ys - cy) ** 2) <= (min(h, w) / 2.0) ** 2).to(torch.float32)


def _probabilities(runner: ModelRunner, task: Any, x: torch.Tensor, wrapped: bool) -> torch.Tensor:
    """Softmax of the model's logits on ``x`` (checked by the task's output contract); ``wrapped``:
    through ``runner(x)`` (failures become one ModelError line), else ``runner.raw`` (for jvp)."""
    raw = runner(x) if wrapped else runner.raw(runner.prepare(x))
    return torch.softmax(task.prepare(raw, len(x), runner.name).double(), dim=-1)


def jvp_derivative(runner: ModelRunner, task: Any, x: torch.Tensor, gen: Generator) -> torch.Tensor:
    """``d p(g(t)·x)/dt`` at ``t = 0`` ``(B, K)`` by forward-mode autodiff (one jvp for the batch:
    the samples' parameters are independent, so a tangent of ones gives every sample's derivative)."""
    t0 = torch.zeros(len(x), dtype=torch.float64)
    _, tangent = torch.func.jvp(lambda t: _probabilities(runner, task, gen.act(x, t), False), (t0,),
                                (torch.ones_like(t0),))
    return tangent.detach()


def fd_derivative(runner: ModelRunner, task: Any, x: torch.Tensor, gen: Generator, h: float) -> torch.Tensor:
    """The central finite difference ``(p(g(h)·x) − p(g(−h)·x)) / 2h`` ``(B, K)``."""
    step = torch.full((len(x),), float(h), dtype=torch.float64)
    with torch.inference_mode():
        plus = _probabilities(runner, task, gen.act(x, step), True)
        minus = _probabilities(runner, task, gen.act(x, -step), True)
    return (plus - minus) / (2 * h)


def tv_rate(derivative: torch.Tensor) -> np.ndarray:
    """Total variation per unit, ``0.5 · ‖dp/dt‖₁``, per sample."""
    return (0.5 * derivative.abs().sum(-1)).cpu().numpy()


def derivative(runner: ModelRunner, task: Any, x: torch.Tensor, gen: Generator, method: str, h: float,
               warnings: list[str]) -> tuple[np.ndarray, str]:
    """Per-sample TV rates of ``x`` along ``gen`` and the method used: ``jvp``, ``fd``, or ``auto`` (jvp,
    falling back to finite differences, with a warning, where the model cannot be differentiated)."""
    if method == "fd":
        return tv_rate(fd_derivative(runner, task, x, gen, h)), "fd"
    try:
        return tv_rate(jvp_derivative(runner, task, x, gen)), "jvp"
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - the model is not differentiable by torch.func: fall back
        if method == "jvp":
            raise ModelError(f"model {runner.name}: torch.func.jvp failed ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}); use --method fd or auto") from None
        warnings.append(f"model {runner.name}: torch.func.jvp cannot differentiate it ({type(exc).__name__}); "
                        f"used central finite differences (h={h:g})")
        return tv_rate(fd_derivative(runner, task, x, gen, h)), "fd"


def generators_of(spec: Any, size: tuple[int, int]) -> list[Generator]:
    """The generators of the parsed group ``spec`` (an :class:`orbits.spec.OrbitSpec`)."""
    if spec.name not in GENERATORS:
        raise OptionError(f"--group {spec.name}: nero lie measures continuous groups ({', '.join(GENERATORS)}); "
                          f"{spec.name} has no generator")
    pivot = spec.group.settings.get("pivot", "object")
    padding, circle = spec.action.get("padding", "zeros"), spec.action.get("mask", "none") == "circle"
    return [Generator(spec.name, n, u, size, pivot, padding, circle) for n, u in GENERATORS[spec.name]]


def measure(runners: Sequence[ModelRunner], task: Any, dataset: Dataset, gens: Sequence[Generator], *,
            method: str = "auto", h: float = 1e-2, batch_size: int = 64,
            warnings: list[str] | None = None) -> pd.DataFrame:
    """lie.csv's table: one row per model, sample and generator (see :data:`COLUMNS`)."""
    if method not in METHODS:
        raise OptionError(f"--method must be one of {', '.join(METHODS)}; got {method!r}")
    if not h > 0:
        raise OptionError(f"--step must be positive; got {h}")
    if batch_size < 1:
        raise OptionError(f"--batch-size must be at least 1; got {batch_size}")
    warnings = [] if warnings is None else warnings
    n = len(dataset)
    labels = dataset.labels.numpy() if dataset.labels is not None else np.full(n, -1)
    pieces = []
    for r in runners:
        used = method
        for gen in gens:
            values, methods = [], []
            for s in range(0, n, batch_size):
                v, used = derivative(r, task, dataset.inputs[s:s + batch_size].to(r.device), gen, used, h, warnings)
                values.append(v)
                methods += [used] * len(v)
            pieces.append(pd.DataFrame({"model": r.name, "sample": dataset.index, "label": labels,
                                        "generator": gen.name, "value": np.concatenate(values),
                                        "unit": unit_of(gen.unit), "method": methods}))
    return pd.concat(pieces, ignore_index=True)[list(COLUMNS)]


def _reduce(values: pd.Series, how: str) -> float:
    return float(values.quantile(0.9) if how == "p90" else getattr(values, how)())


def summarise(table: pd.DataFrame, group: str) -> dict[str, Any]:
    """summary.json: per model and generator, :data:`SUMMARY_KEYS` over the samples."""
    metrics: dict[str, dict[str, Any]] = {}
    for (model, gen), rows in table.groupby(["model", "generator"], sort=False):
        entry = {key: _reduce(rows["value"], how) for key, how in SUMMARY_KEYS}
        entry.update(unit=str(rows["unit"].iloc[0]), n_samples=int(len(rows)),
                     method=",".join(sorted(set(rows["method"]))))
        metrics.setdefault(str(model), {})[str(gen)] = entry
    keys = {key: {"reduction": how, "higher_is_better": False,
                  "doc": f"{how} over samples of 0.5·‖d softmax/dt‖₁ at the identity (TV per unit of the generator)"}
            for key, how in SUMMARY_KEYS}
    return {"schema_version": SCHEMA_VERSION, "kind": "lie", "group": group,
            "models": list(dict.fromkeys(table["model"])), "generators": list(dict.fromkeys(table["generator"])),
            "keys": keys, "metrics": metrics}


def plot(table: pd.DataFrame, path: Path) -> Path:
    """Box plots of the per-sample Lie derivatives: one panel per generator, one box per model."""
    gens = list(dict.fromkeys(table["generator"]))
    models = list(dict.fromkeys(table["model"]))
    fig = Figure(figsize=(1.0 + 1.6 * max(len(models), 2) * len(gens), 3.6), constrained_layout=True)
    axes = fig.subplots(1, len(gens), squeeze=False)[0]
    for ax, gen in zip(axes, gens):
        rows = table[table["generator"] == gen]
        ax.boxplot([rows.loc[rows["model"] == m, "value"].to_numpy() for m in models], showfliers=True)
        ax.set_xticks(range(1, len(models) + 1), models, rotation=20, ha="right")
        ax.set_title(f"d/d{gen}")
        ax.set_ylabel(str(rows["unit"].iloc[0]))
        if (rows["value"] > 0).all():  # spans decades: confident samples barely move
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Lie derivative per sample (0 = locally invariant)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


class LieResult(NamedTuple):
    """What :func:`lie_run` returns: lie.csv's table, summary.json, the warnings and the run folder
    (None when none was written)."""

    table: pd.DataFrame
    summary: dict[str, Any]
    warnings: list[str]
    out: Path | None


def _versions() -> dict[str, str]:
    return {"python": platform.python_version(), "torch": torch.__version__, "nero": __version__}


def _run_info(p: Prepared, table: pd.DataFrame, options: dict[str, Any], command: Sequence[str] | None,
              started: _dt.datetime) -> dict[str, Any]:
    finished = _dt.datetime.now(_dt.timezone.utc)
    return {"status": "complete", "kind": "lie", "command": list(command) if command is not None else None,
            "task": p.task.name, "group": p.specs[0].canonical,
            "models": [{"name": m.name, "source": m.source, "format": m.format, "sha256": m.sha256,
                        "random_init": m.name in p.random_init} for m in p.models],
            "data": {"source": p.dataset.source, "sha256": p.dataset.sha256, "n_samples": len(p.dataset),
                     **p.data_record},
            "n_rows": len(table), "options": options, "warnings": p.warnings, "versions": _versions(),
            "started": started.isoformat(timespec="seconds"), "finished": finished.isoformat(timespec="seconds"),
            "seconds": round((finished - started).total_seconds(), 3)}


def write_lie_run(out: Path, p: Prepared, table: pd.DataFrame, summary: dict[str, Any], options: dict[str, Any],
                  *, plots: bool, command: Sequence[str] | None, started: _dt.datetime) -> None:
    """Write lie.csv, summary.json, plots/lie.png and run.json (the manifest, last) in the partial
    folder beside ``out`` and swap it in (the caller holds ``out`` through :func:`nero_cli.outdir.claim`)."""
    with building(out, "run") as tmp:
        rr.write_table(tmp / LIE_CSV, table)
        rr.write_json(tmp / rr.SUMMARY, summary)
        if plots:
            plot(table, tmp / "plots" / "lie.png")
        info = _run_info(p, table, options, command, started)
        info.update(written_by="nero", files=sorted({*listing(tmp), rr.RUN_JSON}),
                    lie_sha256=sha256_file(tmp / LIE_CSV))
        rr.write_json(tmp / rr.RUN_JSON, info)


def _as_data(data: Any, task: str | None, labels: Any) -> Any:
    """``--data`` as prepare takes it: a path, ``sample:NAME`` or Dataset as given; arrays as a Dataset."""
    if isinstance(data, (str, Path, Dataset)):
        return data
    return as_dataset(data, task or "classification", labels)


def lie_run(models: Sequence[Any], data: Any, group: str = "rotation", out: Path | str | None = None, *,
            task: str | None = None, labels: Any = None, method: str = "auto", step: float = 1e-2,
            batch_size: int = 64, device: str = "auto", plots: bool = True, overwrite: bool = False,
            command: Sequence[str] | None = None, **load: Any) -> LieResult:
    """Measure the Lie derivative of ``models`` on ``data`` along each generator of ``group``
    (rotation, shift, scale, perspective) and, with ``out``, write the run folder ``out``.

    ``load`` takes :func:`nero_cli.prepare.prepare`'s options (weights, meta, names,
    trust_checkpoint, normalize, limit, sample, classes, seed, class_names, random_init, amp).
    """
    started = _dt.datetime.now(_dt.timezone.utc)
    data = _as_data(data, task, labels)
    protect = [a for a in [*models, data] if isinstance(a, (str, Path)) and Path(str(a)).exists()]
    with claim(Path(out), "run", overwrite, protect) if out is not None else nullcontext():
        p = prepare(models, data, [group], task=task, device=device, **load)
        if p.task.output != "invariant" or p.task.input_kind != "image":
            raise OptionError(f"nero lie measures classification of images for now; task {p.task.name} is not supported")
        gens = generators_of(p.specs[0], p.dataset.size)
        if p.specs[0].action.get("interp", "bilinear") != "bilinear" or p.specs[0].action.get("antialias", 1) != 1:
            p.warnings.append("nero lie differentiates plain bilinear resampling; interp/antialias options are ignored")
        table = measure(p.runners, p.task, p.dataset, gens, method=method, h=step, batch_size=batch_size,
                        warnings=p.warnings)
        summary = summarise(table, p.specs[0].canonical)
        if out is not None:
            options = {"models": [str(m) for m in models], "data": p.dataset.source, "group": group, "method": method,
                       "step": step, "batch_size": batch_size, "device": str(p.device), **_jsonable(load)}
            write_lie_run(Path(out), p, table, summary, options, plots=plots, command=command, started=started)
    return LieResult(table, summary, p.warnings, Path(out) if out is not None else None)


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, (tuple, list)) else v) for k, v in options.items()
            if isinstance(v, (str, int, float, bool, list, tuple, type(None)))}


def lie(models: Any, data: Any, group: str = "rotation", **options: Any) -> pd.DataFrame:
    """The Python API: lie.csv's table (see :func:`lie_run`; ``out=DIR`` also writes the run folder).
    ``models`` is one model (an ``nn.Module``, a path, ``sample:NAME``) or a list of them."""
    models = list(models) if isinstance(models, (list, tuple)) else [models]
    return lie_run(models, data, group, **options).table


__all__ = ["lie", "lie_run", "LieResult", "measure", "summarise", "plot", "warp", "bilinear_pair", "source_points",
           "generator_matrices", "generators_of", "Generator", "jvp_derivative", "fd_derivative", "derivative",
           "GENERATORS", "COLUMNS", "LIE_CSV", "SUMMARY_KEYS", "METHODS", "unit_of"]
