"""``nero search``: per sample, the worst element of a continuous group and the smallest breaking
transformation, for image classification.

Each group is searched one continuous parameter (an *axis*) at a time: ``angle`` for rotation
(degrees, in [-180, 180]), ``dx`` and ``dy`` for shift (pixels, each with the other at 0),
``log2_scale`` for scale (log2 of the factor, so 0.5× and 2× are equally far from the identity),
``yaw`` and ``pitch`` for perspective (degrees, each with the other at 0). The spec's grid along
the axis (plus the identity) is the coarse grid, e.g. ``rotation:step=5`` (73 points).

- **worst**: the lowest softmax probability of the reference class (the label, or the prediction
  at the identity without labels) over the axis: the coarse grid, then golden-section refinement
  between the worst grid point's neighbours (``refine`` more evaluations). The best value seen is
  kept, so the refined worst is never above the worst grid point.
- **breaking**: the smallest |parameter| at which the prediction (argmax) differs from the one at
  the identity: the grid is scanned outward from the identity on both sides, and the first change
  on each side is bisected to ``tol``; NaN when nothing in the range changes it. A change and a
  change back between two neighbouring grid points is not seen (a finer grid sees it).

Every step evaluates all samples' candidates in one batched pass through the model's
:class:`~nero_cli.runner.ModelRunner`; candidates are transformed by nero's
:class:`~orbits.image.ImageAction` built on a group of exactly those elements.
"""

from __future__ import annotations

import datetime as _dt
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from orbits.groups import Group, Rotation, Scale, Shift
from orbits.image import ImageAction
from orbits.so3 import Perspective, tilt_elements

from . import runrecord as rr
from .api import as_dataset
from .errors import DataError, OptionError
from .outdir import building, claim, listing
from .prepare import Prepared, prepare, resolve_batch_size
from .run import _versions
from .runner import ModelRunner
from .search_plots import write_search_plots
from .tasks import get_task

#: Groups nero can search, and the default bisection tolerance of each axis (in its unit).
SEARCHABLE = ("rotation", "shift", "scale", "perspective")
DEFAULT_TOL = {"angle": 0.1, "dx": 0.05, "dy": 0.05, "log2_scale": 0.005, "yaw": 0.1, "pitch": 0.1}
UNITS = {"angle": "degrees", "dx": "pixels", "dy": "pixels", "log2_scale": "log2 of the factor", "yaw": "degrees",
         "pitch": "degrees"}
#: Golden-section ratio.
_R = (math.sqrt(5) - 1) / 2
SEARCH_CSV = "search.csv"
COLUMNS = ("model", "sample", "label", "prediction", "group", "axis", "identity_value", "worst_param", "worst_value",
           "breaking", "breaking_param", "method")


@dataclass(frozen=True)
class Axis:
    """One continuous parameter of a group: its coarse grid (sorted, with the identity at 0)."""

    group: str
    name: str
    grid: np.ndarray
    tol: float
    build: Callable[[torch.Tensor], Group]
    action: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.group}/{self.name}"


def _on_axis(values: torch.Tensor, others: torch.Tensor) -> np.ndarray:
    """The grid values of one coordinate where the other coordinate is 0."""
    return values[others.abs() < 1e-12].numpy()


def _axis_values(spec: Any) -> dict[str, np.ndarray]:
    """Each axis of the spec's group and its grid values (before adding the identity)."""
    g = spec.group
    if spec.name == "rotation":
        a = ((g.elements[:, 0].numpy() + 180.0) % 360.0) - 180.0
        return {"angle": np.concatenate([a, [180.0]]) if np.isclose(a, -180.0).any() else a}
    if spec.name == "shift":
        dx, dy = g.elements[:, 0], g.elements[:, 1]
        return {"dx": _on_axis(dx, dy), "dy": _on_axis(dy, dx)}
    if spec.name == "scale":
        return {"log2_scale": np.log2(g.elements[:, 0].numpy())}
    yaw, pitch = torch.tensor(g.coords["yaw"]), torch.tensor(g.coords["pitch"])
    return {"yaw": _on_axis(yaw, pitch), "pitch": _on_axis(pitch, yaw)}


def _builder(spec: Any, axis: str) -> Callable[[torch.Tensor], Group]:
    """Parameters ``(M,)`` along ``axis`` to a group of exactly those ``M`` elements."""
    zero = torch.zeros
    if spec.name == "rotation":
        return lambda p: Rotation(p[:, None])
    if spec.name == "shift":
        return lambda p: Shift(torch.stack([p, zero(len(p), dtype=p.dtype)] if axis == "dx"
                                           else [zero(len(p), dtype=p.dtype), p], 1))
    if spec.name == "scale":
        return lambda p: Scale(torch.exp2(p)[:, None])
    pivot = spec.group.settings.get("pivot", "object")

    def tilt(p: torch.Tensor) -> Group:
        yaw, pitch = (p, zero(len(p), dtype=p.dtype)) if axis == "yaw" else (zero(len(p), dtype=p.dtype), p)
        return Perspective(tilt_elements(yaw, pitch, pivot), {"yaw": yaw.tolist(), "pitch": pitch.tolist()})

    return tilt


def axes_for(spec: Any, tol: float | None = None) -> list[Axis]:
    """The axes searched for a parsed group spec (an axis with no grid point besides 0 is skipped)."""
    if spec.name not in SEARCHABLE:
        raise OptionError(f"nero search: group {spec.name!r} has no continuous parameter to search; "
                          f"use one of {', '.join(SEARCHABLE)}")
    out = []
    for name, values in _axis_values(spec).items():
        grid = np.unique(np.round(np.concatenate([values, [0.0]]), 9))
        if len(grid) > 1:
            out.append(Axis(spec.name, name, grid, DEFAULT_TOL[name] if tol is None else float(tol),
                            _builder(spec, name), dict(spec.action)))
    return out


class Probe:
    """Softmax outputs of one model on samples transformed by given parameters along one axis,
    all candidates of a step batched (``batch_size`` inputs per forward pass)."""

    def __init__(self, runner: ModelRunner, task: Any, images: torch.Tensor, axis: Axis, batch_size: int):
        self.runner, self.task, self.images, self.axis, self.batch_size = runner, task, images, axis, batch_size
        self.size = tuple(images.shape[-2:])
        self.evaluations = 0

    def transform(self, pos: np.ndarray, params: np.ndarray) -> torch.Tensor:
        """Sample ``pos[j]`` transformed by ``params[j]``: ``(M, C, H, W)``."""
        act = ImageAction(self.axis.build(torch.tensor(np.asarray(params, dtype=np.float64))), self.size, **self.axis.action)
        x = self.images[torch.as_tensor(pos, dtype=torch.long)][:, None]
        return act.apply_each(x, range(len(pos)))[:, 0]

    def __call__(self, pos: np.ndarray, params: np.ndarray) -> torch.Tensor:
        """Probabilities ``(M, K)`` (float64, on the CPU) of sample ``pos[j]`` at ``params[j]``."""
        pos, params = np.asarray(pos), np.asarray(params, dtype=np.float64)
        out = []
        with torch.inference_mode():
            for s in range(0, len(pos), self.batch_size):
                x = self.transform(pos[s:s + self.batch_size], params[s:s + self.batch_size])
                logits = self.task.prepare(self.runner(x), len(x), self.runner.name)
                out.append(torch.softmax(logits.double(), -1).cpu())
        self.evaluations += len(pos)
        return torch.cat(out) if out else torch.zeros(0, 0, dtype=torch.float64)


def _refine(probe: Probe, grid: np.ndarray, conf: np.ndarray, ref: np.ndarray,
            budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Golden-section search for the lowest ``conf`` between the worst grid point's neighbours,
    ``budget`` evaluations per sample, batched; the lowest value seen (grid included) and its parameter."""
    s = np.arange(len(conf))
    i = conf.argmin(1)
    best_p, best_v = grid[i].copy(), conf[s, i].copy()
    a, b = grid[np.maximum(i - 1, 0)], grid[np.minimum(i + 1, len(grid) - 1)]

    def value(pos: np.ndarray, p: np.ndarray) -> np.ndarray:
        v = probe(pos, p)[np.arange(len(pos)), ref[pos]].numpy()
        for j in range(0, len(pos), len(s)):  # keep the lowest value seen
            better = v[j:j + len(s)] < best_v
            best_p[better], best_v[better] = p[j:j + len(s)][better], v[j:j + len(s)][better]
        return v

    if budget < 2:
        return best_p, best_v
    c, d = b - _R * (b - a), a + _R * (b - a)
    both = value(np.concatenate([s, s]), np.concatenate([c, d]))
    fc, fd = both[: len(s)], both[len(s):]
    for _ in range(budget - 2):
        left = fc < fd  # the minimum lies in [a, d]: drop (d, b]; else in [c, b]: drop [a, c)
        a, b = np.where(left, a, c), np.where(left, d, b)
        new = np.where(left, b - _R * (b - a), a + _R * (b - a))
        v = value(s, new)
        c, fc, d, fd = (np.where(left, new, d), np.where(left, v, fd),
                        np.where(left, c, new), np.where(left, fc, v))
    return best_p, best_v


def _brackets(grid: np.ndarray, pred: np.ndarray, pred0: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per sample and side (+, -): the last grid point with the identity's prediction and the first
    without, scanning outward from 0; rows only where the side changes."""
    z = int(np.flatnonzero(grid == 0.0)[0])
    rows = []
    for pts, cols in ((grid[z + 1:], np.arange(z + 1, len(grid))), (grid[:z][::-1], np.arange(z)[::-1])):
        if not len(pts):
            continue
        flipped = pred[:, cols] != pred0[:, None]
        k = flipped.argmax(1)
        has = flipped.any(1)
        inside = np.where(k > 0, pts[np.maximum(k - 1, 0)], 0.0)
        rows.append((np.flatnonzero(has), inside[has], pts[k][has]))
    pos, inside, outside = (np.concatenate([r[j] for r in rows]) if rows else np.zeros(0) for j in range(3))
    return pos.astype(np.int64), inside, outside


def _breaking(probe: Probe, grid: np.ndarray, pred: np.ndarray, pred0: np.ndarray, tol: float) -> np.ndarray:
    """The signed parameter nearest the identity at which the prediction changes (bisected to
    ``tol``), NaN where no grid point on either side changes it; batched over samples and sides."""
    pos, inside, outside = _brackets(grid, pred, pred0)
    while len(pos):
        active = np.abs(outside - inside) > tol
        if not active.any():
            break
        mid = (inside[active] + outside[active]) / 2
        changed = probe(pos[active], mid).argmax(-1).numpy() != pred0[pos[active]]
        outside[active] = np.where(changed, mid, outside[active])
        inside[active] = np.where(changed, inside[active], mid)
    out = np.full(len(pred0), np.nan)
    for j in np.argsort(-np.abs(outside)):  # nearest last, so it wins
        out[pos[j]] = outside[j]
    return out


def search_axis(runner: ModelRunner, task: Any, images: torch.Tensor, labels: np.ndarray | None, axis: Axis, *,
                refine: int = 12, batch_size: int = 256) -> pd.DataFrame:
    """One model, one axis: the rows of ``search.csv`` (without ``model`` and ``sample`` ids)."""
    probe = Probe(runner, task, images, axis, batch_size)
    n, g = len(images), len(axis.grid)
    probs = probe(np.repeat(np.arange(n), g), np.tile(axis.grid, n)).reshape(n, g, -1)
    z = int(np.flatnonzero(axis.grid == 0.0)[0])
    pred = probs.argmax(-1).numpy()
    pred0 = pred[:, z]
    ref = labels if labels is not None else pred0
    if len(ref) and int(ref.max()) >= probs.shape[-1]:
        raise DataError(f"labels go up to {int(ref.max())} but model {runner.name} has {probs.shape[-1]} classes; "
                        "check --data")
    conf = probs[np.arange(n), :, torch.as_tensor(ref)].numpy()
    worst_p, worst_v = _refine(probe, axis.grid, conf, ref, refine)
    breaking = _breaking(probe, axis.grid, pred, pred0, axis.tol)
    return pd.DataFrame({
        "label": labels if labels is not None else np.full(n, -1), "prediction": pred0, "group": axis.group,
        "axis": axis.name, "identity_value": conf[:, z], "worst_param": worst_p, "worst_value": worst_v,
        "breaking": np.abs(breaking), "breaking_param": breaking,
        "method": f"grid({g})+golden({refine}); scan+bisect(tol={axis.tol:g})",
    })


def _labels(p: Prepared, reference: str) -> np.ndarray | None:
    if reference not in ("auto", "labels", "prediction"):
        raise OptionError(f"--reference must be auto, labels or prediction, got {reference!r}")
    if reference == "labels" and p.dataset.labels is None:
        raise OptionError("--reference labels: the data have no labels; use --reference prediction")
    if reference == "prediction" or p.dataset.labels is None:
        return None
    return p.dataset.labels.cpu().numpy().astype(np.int64)


def _check_task(task: Any) -> None:
    if task.input_kind != "image" or task.output != "invariant":
        raise OptionError(f"nero search supports image classification for now, not task {task.name!r}")


def _check(p: Prepared) -> None:
    _check_task(p.task)
    names = [s.name for s in p.specs]
    if len(set(names)) < len(names):
        raise OptionError("nero search: give each group once (its grid along each axis is the coarse grid)")


def tabulate(p: Prepared, axes: Sequence[Axis], labels: np.ndarray | None, refine: int,
             batch_size: int) -> pd.DataFrame:
    """``search.csv`` for every model and axis of a prepared run."""
    images = p.dataset.inputs.to(p.device)
    parts = []
    for r in p.runners:
        for axis in axes:
            t = search_axis(r, p.task, images, labels, axis, refine=refine, batch_size=batch_size)
            t.insert(0, "sample", p.dataset.index)
            t.insert(0, "model", r.name)
            parts.append(t)
    return pd.concat(parts, ignore_index=True)[list(COLUMNS)]


def _prepared(models: Any, data: Any, groups: Sequence[str] | str, o: dict[str, Any]) -> tuple[Prepared, list[Axis]]:
    models = list(models) if isinstance(models, (list, tuple)) else [models]
    groups = [groups] if isinstance(groups, str) else list(groups)
    if o.get("task"):
        _check_task(get_task(o["task"]))
    if not isinstance(data, str):
        data = as_dataset(data, o.get("task") or "classification", o.get("labels"))
    p = prepare(models, data, groups, task=o.get("task"), weights=o.get("weights", ()), meta=o.get("meta", ()),
                names=o.get("names", ()), trust_checkpoint=o.get("trust_checkpoint", False),
                normalize=o.get("normalize"), limit=o.get("limit"), sample=o.get("sample"), seed=o.get("seed", 0),
                classes=o.get("classes", ()), device=o.get("device", "auto"))
    _check(p)
    return p, [a for s in p.specs for a in axes_for(s, o.get("tol"))]


def search(models: Any, data: Any, groups: Sequence[str] | str = "rotation", *, refine: int = 12,
           tol: float | None = None, reference: str = "auto", batch_size: int = 256, **options: Any) -> pd.DataFrame:
    """Per sample, model and axis: the worst element and the smallest breaking parameter (``search.csv``'s rows).

    ``models``, ``data`` (with ``labels=`` for arrays) and ``options`` (``limit``, ``sample``, ``seed``,
    ``device``, ``names``, ``normalize``, ...) are as for :func:`nero_cli.evaluate`.

    >>> table = search(model, images, "rotation:step=5", labels=labels)  # doctest: +SKIP
    """
    p, axes = _prepared(models, data, groups, {**options, "tol": tol})
    return tabulate(p, axes, _labels(p, reference), refine, resolve_batch_size(p, batch_size))


def _quantile(b: np.ndarray, q: float) -> float | None:
    """A quantile of breaking parameters, never-broken samples counted as beyond the range (None if it falls there)."""
    v = float(np.quantile(np.where(np.isnan(b), np.inf, b), q, method="lower")) if len(b) else math.inf
    return None if math.isinf(v) else v


def summarise(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """summary.json's ``models``: per model and axis, the breaking distribution and the worst values."""
    out: dict[str, dict[str, Any]] = {}
    for (model, key), t in table.groupby([table["model"], table["group"] + "/" + table["axis"]], sort=False):
        b = t["breaking"].to_numpy(dtype=float)
        broken = b[~np.isnan(b)]
        out.setdefault(str(model), {})[str(key)] = {
            "n_samples": len(t), "median_breaking": _quantile(b, 0.5), "p10_breaking": _quantile(b, 0.1),
            "share_never_broken": float(np.isnan(b).mean()),
            "median_breaking_of_broken": float(np.median(broken)) if len(broken) else None,
            "median_worst_value": float(t["worst_value"].median()),
            "share_correct_at_identity": float((t["label"] == t["prediction"]).mean()) if (t["label"] >= 0).all() else None,
        }
    return out


@dataclass
class SearchResult:
    out: Path
    table: pd.DataFrame
    summary: dict[str, Any]
    plots: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _record(p: Prepared, axes: Sequence[Axis], reference: str, refine: int) -> dict[str, Any]:
    return {"kind": "search", "task": p.task.name, "reference": reference, "primary_quantity": "confidence",
            "higher_is_better": {"breaking": True, "worst_value": True}, "refine": refine,
            "axes": {a.key: {"group": a.group, "axis": a.name, "unit": UNITS[a.name], "range": [a.grid[0], a.grid[-1]],
                             "grid_points": len(a.grid), "tol": a.tol} for a in axes},
            "specs": [s.canonical for s in p.specs], "class_names": p.class_names}


def _write(tmp: Path, p: Prepared, table: pd.DataFrame, summary: dict[str, Any], info: dict[str, Any],
           axes: Sequence[Axis], plots: bool) -> list[Path]:
    """Tables, plots and run.json into the partial folder ``tmp``; the plot paths."""
    rr.write_table(tmp / SEARCH_CSV, table)
    rr.write_json(tmp / rr.SUMMARY, summary)
    images = p.dataset.inputs
    files = (write_search_plots(tmp / "plots", table, axes, p,
                                lambda axis, pos, params: Probe(p.runners[0], p.task, images, axis, 1).transform(pos, params))
             if plots else [])
    info["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    info.update(written_by="nero", files=sorted({*listing(tmp), rr.RUN_JSON}),
                search_sha256=rr.sha256_file(tmp / SEARCH_CSV), n_rows=len(table))
    rr.write_json(tmp / rr.RUN_JSON, info)
    return files


def search_run(models: Sequence[Any], data: Any, groups: Sequence[str], out: Path, *, refine: int = 12,
               tol: float | None = None, reference: str = "auto", batch_size: int | str = 256, plots: bool = True,
               overwrite: bool = False, command: Sequence[str] | None = None, **options: Any) -> SearchResult:
    """:func:`search`, written as a run folder ``out`` (``search.csv``, ``summary.json``, ``run.json``,
    ``plots/``) through the same locked, atomic path as ``nero evaluate``."""
    out, started = Path(out), _dt.datetime.now(_dt.timezone.utc)
    if refine < 0:
        raise OptionError(f"--refine must be 0 or more, got {refine}")
    protect = [a for a in [*models, data] if isinstance(a, (str, Path)) and Path(a).exists()]
    with claim(out, "run", overwrite, protect):
        p, axes = _prepared(models, data, groups, {**options, "tol": tol})
        labels = _labels(p, reference)
        size = resolve_batch_size(p, batch_size)
        table = tabulate(p, axes, labels, refine, size)
        ref = "labels" if labels is not None else "prediction"
        summary = {"schema_version": 1, "kind": "search", "task": p.task.name, "reference": ref,
                   "n_samples": len(p.dataset), "models": summarise(table)}
        info = {"status": "complete", "kind": "search", "command": list(command or ["nero", *sys.argv[1:]]),
                "record": _record(p, axes, ref, refine),
                "models": [{"name": m.name, "source": m.source, "format": m.format, "sha256": m.sha256} for m in p.models],
                "data": {"source": p.dataset.source, "sha256": p.dataset.sha256, "n_samples": len(p.dataset),
                         **p.data_record},
                "options": {"groups": list(groups), "refine": refine, "tol": tol, "batch_size": size,
                            "device": str(p.device), **{k: v for k, v in options.items() if k != "labels"}},
                "warnings": p.warnings, "versions": _versions(), "started": started.isoformat(timespec="seconds")}
        with building(out, "run") as tmp:
            files = _write(tmp, p, table, summary, info, axes, plots)
    return SearchResult(out, table, summary, [out / f.relative_to(tmp) for f in files], p.warnings)
