"""``nero search``: per sample, the worst element of a continuous group and the smallest breaking
transformation, for image classification and detection.

Each group is searched one continuous parameter (an *axis*, see :mod:`nero_cli.search_axes`) at a
time; a task's *probe* (:mod:`nero_cli.search_probes`) scores each candidate ``(sample, parameter)``:
a quality (classification: the probability of the reference class; detection: the IoU of the top
box, mapped back, with the reference box) and whether the prediction differs from the identity's
(classification: the argmax; detection: the top box's class, or its IoU with the identity's top box
below ``--iou-threshold``).

- **worst**: the lowest quality over the axis: the coarse grid, then golden-section refinement
  between the worst grid point's neighbours (``refine`` more evaluations). The best value seen is
  kept, so the refined worst is never above the worst grid point.
- **breaking**: the smallest |parameter| at which the prediction differs from the one at the
  identity: the grid is scanned outward from the identity on both sides, and the first change
  on each side is bisected to ``tol``; NaN when nothing in the range changes it. A change and a
  change back between two neighbouring grid points is not seen (a finer grid sees it).

Every step evaluates all samples' candidates in one batched pass through the model's
:class:`~nero_cli.runner.ModelRunner`.
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

from . import runrecord as rr
from .api import as_data
from .errors import OptionError
from .outdir import building, claim, listing
from .prepare import Prepared, prepare, resolve_batch_size
from .run import _versions
from .search_axes import DEFAULT_TOL, SEARCHABLE, UNITS, Axis, axes_for, check_tol
from .search_plots import write_search_plots
from .breaking_detection import IOU_THRESHOLD
from .search_probes import Probe, check_task, make_probe
from .tasks import get_task

#: Golden-section ratio.
_R = (math.sqrt(5) - 1) / 2
SEARCH_CSV = "search.csv"
COLUMNS = ("model", "sample", "label", "prediction", "group", "axis", "identity_value", "worst_param", "worst_value",
           "breaking", "breaking_param", "method", "correct_at_identity")
#: ``measure(pos, params)``: per candidate, the quality and whether the prediction changed.
Measure = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _refine(measure: Measure, grid: np.ndarray, values: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Golden-section search for the lowest quality between the worst grid point's neighbours,
    ``budget`` evaluations per sample, batched; the lowest value seen (grid included) and its parameter."""
    s = np.arange(len(values))
    i = values.argmin(1)
    best_p, best_v = grid[i].copy(), values[s, i].copy()
    a, b = grid[np.maximum(i - 1, 0)], grid[np.minimum(i + 1, len(grid) - 1)]

    def value(pos: np.ndarray, p: np.ndarray) -> np.ndarray:
        v = measure(pos, p)[0]
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


def _brackets(grid: np.ndarray, changed: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per sample and side (+, -): the last grid point with the identity's prediction and the first
    without (``changed`` ``(n, g)``), scanning outward from 0; rows only where the side changes."""
    z = int(np.flatnonzero(grid == 0.0)[0])
    rows = []
    for pts, cols in ((grid[z + 1:], np.arange(z + 1, len(grid))), (grid[:z][::-1], np.arange(z)[::-1])):
        if not len(pts):
            continue
        flipped = changed[:, cols]
        k = flipped.argmax(1)
        has = flipped.any(1)
        inside = np.where(k > 0, pts[np.maximum(k - 1, 0)], 0.0)
        rows.append((np.flatnonzero(has), inside[has], pts[k][has]))
    pos, inside, outside = (np.concatenate([r[j] for r in rows]) if rows else np.zeros(0) for j in range(3))
    return pos.astype(np.int64), inside, outside


def _breaking(measure: Measure, grid: np.ndarray, changed: np.ndarray, tol: float) -> np.ndarray:
    """The signed parameter nearest the identity at which the prediction changes (bisected to
    ``tol``), NaN where no grid point on either side changes it; batched over samples and sides."""
    pos, inside, outside = _brackets(grid, changed)
    while len(pos):
        active = np.abs(outside - inside) > tol
        if not active.any():
            break
        mid = (inside[active] + outside[active]) / 2
        moved = measure(pos[active], mid)[1]
        outside[active] = np.where(moved, mid, outside[active])
        inside[active] = np.where(moved, inside[active], mid)
    out = np.full(len(changed), np.nan)
    for j in np.argsort(-np.abs(outside)):  # nearest last, so it wins
        out[pos[j]] = outside[j]
    return out


def search_axis(probe: Probe, n: int, *, refine: int = 12) -> pd.DataFrame:
    """One model, one axis, ``n`` samples: the rows of ``search.csv`` (without ``model`` and ``sample`` ids)."""
    axis = probe.axis
    g = len(axis.grid)
    pos = np.repeat(np.arange(n), g)
    features = probe(pos, np.tile(axis.grid, n))
    z = int(np.flatnonzero(axis.grid == 0.0)[0])
    columns = probe.anchor(features.reshape(n, g, -1)[:, z])
    values, changed = (a.reshape(n, g) for a in probe.score(features, pos))
    worst_p, worst_v = _refine(probe.measure, axis.grid, values, refine)
    breaking = _breaking(probe.measure, axis.grid, changed, axis.tol)
    return pd.DataFrame({
        "label": columns["label"], "prediction": columns["prediction"], "group": axis.group,
        "axis": axis.name, "identity_value": columns["identity_value"], "worst_param": worst_p, "worst_value": worst_v,
        "breaking": np.abs(breaking), "breaking_param": breaking,
        "method": f"grid({g})+golden({refine}); scan+bisect(tol={axis.tol:g}); {probe.method}",
        "correct_at_identity": pd.array(columns["correct_at_identity"], dtype="boolean"),
    })


def _use_labels(p: Prepared, reference: str) -> bool:
    """Whether the data's labels (detection: the key object's box and class) are the reference."""
    if reference not in ("auto", "labels", "prediction"):
        raise OptionError(f"--reference must be auto, labels or prediction, got {reference!r}")
    if reference == "labels" and p.dataset.labels is None:
        raise OptionError("--reference labels: the data have no labels; use --reference prediction")
    return reference != "prediction" and p.dataset.labels is not None


def _check(p: Prepared) -> None:
    check_task(p.task)
    names = [s.name for s in p.specs]
    if len(set(names)) < len(names):
        raise OptionError("nero search: give each group once (its grid along each axis is the coarse grid)")


def _probe(p: Prepared, runner: Any, axis: Axis, use_labels: bool, batch_size: int, o: dict[str, Any]) -> Probe:
    return make_probe(runner, p.task, p.dataset, p.dataset.inputs.to(p.device), axis, batch_size, use_labels, o)


def tabulate(p: Prepared, axes: Sequence[Axis], use_labels: bool, refine: int, batch_size: int,
             options: dict[str, Any] | None = None) -> pd.DataFrame:
    """``search.csv`` for every model and axis of a prepared run (``options``: ``iou_threshold``)."""
    parts = []
    for r in p.runners:
        for axis in axes:
            t = search_axis(_probe(p, r, axis, use_labels, batch_size, options or {}), len(p.dataset), refine=refine)
            t.insert(0, "sample", p.dataset.index)
            t.insert(0, "model", r.name)
            parts.append(t)
    return pd.concat(parts, ignore_index=True)[list(COLUMNS)]


def _prepared(models: Any, data: Any, groups: Sequence[str] | str, o: dict[str, Any]) -> tuple[Prepared, list[Axis]]:
    models = list(models) if isinstance(models, (list, tuple)) else [models]
    groups = [groups] if isinstance(groups, str) else list(groups)
    if o.get("task"):
        check_task(get_task(o["task"]))
    data = as_data(data, o.get("task"), o.get("labels"))
    p = prepare(models, data, groups, task=o.get("task"), weights=o.get("weights", ()), meta=o.get("meta", ()),
                names=o.get("names", ()), trust_checkpoint=o.get("trust_checkpoint", False),
                normalize=o.get("normalize"), limit=o.get("limit"), sample=o.get("sample"), seed=o.get("seed", 0),
                classes=o.get("classes", ()), device=o.get("device", "auto"))
    _check(p)
    return p, [a for s in p.specs for a in axes_for(s, o.get("tol"))]


def search(models: Any, data: Any, groups: Sequence[str] | str = "rotation", *, refine: int = 12,
           tol: float | None = None, reference: str = "auto", batch_size: int = 256,
           iou_threshold: float | None = None, **options: Any) -> pd.DataFrame:
    """Per sample, model and axis: the worst element and the smallest breaking parameter (``search.csv``'s rows).

    ``models``, ``data`` (with ``labels=`` for arrays; a dict with ``images``, ``boxes``, ``box_labels``
    and ``task="detection"`` for a detector) and ``options`` (``limit``, ``sample``, ``seed``,
    ``device``, ``names``, ``normalize``, ...) are as for :func:`nero_cli.evaluate`. ``iou_threshold``
    (detection, default 0.5): the top box counts as changed below this IoU with the identity's.

    >>> table = search(model, images, "rotation:step=5", labels=labels)  # doctest: +SKIP
    """
    p, axes = _prepared(models, data, groups, {**options, "tol": tol})
    return tabulate(p, axes, _use_labels(p, reference), refine, resolve_batch_size(p, batch_size),
                    {"iou_threshold": iou_threshold})


def _quantile(b: np.ndarray, q: float) -> float | None:
    """A quantile of breaking parameters, never-broken samples counted as beyond the range (None if it falls there)."""
    v = float(np.quantile(np.where(np.isnan(b), np.inf, b), q, method="lower")) if len(b) else math.inf
    return None if math.isinf(v) else v


def _median(b: np.ndarray) -> float | None:
    """The median of breaking parameters (the mean of the two middle values for an even count, as
    ``np.median``), never-broken samples counted as beyond the range (None when a middle value is there)."""
    s = np.sort(np.where(np.isnan(b), np.inf, b))
    if not len(s) or math.isinf(s[len(s) // 2]):
        return None
    return float((s[(len(s) - 1) // 2] + s[len(s) // 2]) / 2)


def _correct(t: pd.DataFrame) -> np.ndarray | None:
    """``correct_at_identity`` as booleans, None when the samples have no labels."""
    c = t["correct_at_identity"]
    return None if c.isna().any() or not len(c) else c.to_numpy(dtype=bool)


def summarise(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """summary.json's ``models``: per model and axis, the breaking distribution and the worst values."""
    out: dict[str, dict[str, Any]] = {}
    for (model, key), t in table.groupby([table["model"], table["group"] + "/" + table["axis"]], sort=False):
        b = t["breaking"].to_numpy(dtype=float)
        broken = b[~np.isnan(b)]
        correct = _correct(t)
        out.setdefault(str(model), {})[str(key)] = {
            "n_samples": len(t), "median_breaking": _median(b), "p10_breaking": _quantile(b, 0.1),
            "share_never_broken": float(np.isnan(b).mean()),
            "median_breaking_of_broken": float(np.median(broken)) if len(broken) else None,
            "median_worst_value": float(t["worst_value"].median()),
            "share_correct_at_identity": float(correct.mean()) if correct is not None else None,
        }
    return out


@dataclass
class SearchResult:
    out: Path
    table: pd.DataFrame
    summary: dict[str, Any]
    plots: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _quantity(p: Prepared) -> str:
    return "iou" if p.task.output == "boxes" else "confidence"


def _record(p: Prepared, axes: Sequence[Axis], reference: str, refine: int, o: dict[str, Any]) -> dict[str, Any]:
    extra = {"iou_threshold": o.get("iou_threshold") or IOU_THRESHOLD} if p.task.output == "boxes" else {}
    return {"kind": "search", "task": p.task.name, "reference": reference, "primary_quantity": _quantity(p),
            "higher_is_better": {"breaking": True, "worst_value": True}, "refine": refine, **extra,
            "axes": {a.key: {"group": a.group, "axis": a.name, "unit": UNITS[a.name], "range": [a.grid[0], a.grid[-1]],
                             "grid_points": len(a.grid), "tol": a.tol} for a in axes},
            "specs": [s.canonical for s in p.specs], "class_names": p.class_names}


def _write(tmp: Path, p: Prepared, table: pd.DataFrame, summary: dict[str, Any], info: dict[str, Any],
           axes: Sequence[Axis], plots: bool) -> list[Path]:
    """Tables, plots and run.json into the partial folder ``tmp``; the plot paths."""
    rr.write_table(tmp / SEARCH_CSV, table)
    rr.write_json(tmp / rr.SUMMARY, summary)
    runners = {r.name: r for r in p.runners}
    use, o = info["record"]["reference"] == "labels", {"iou_threshold": info["record"].get("iou_threshold")}

    def show(model: str, axis: Axis, pos: np.ndarray, params: np.ndarray) -> tuple[torch.Tensor, Any]:
        return _probe(p, runners[model], axis, use, 16, o).show(pos, params)

    files = write_search_plots(tmp / "plots", table, axes, p, show) if plots else []
    info["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    info.update(written_by="nero", files=sorted({*listing(tmp), rr.RUN_JSON}),
                search_sha256=rr.sha256_file(tmp / SEARCH_CSV), n_rows=len(table))
    rr.write_json(tmp / rr.RUN_JSON, info)
    return files


def search_run(models: Sequence[Any], data: Any, groups: Sequence[str] | str, out: Path, *, refine: int = 12,
               tol: float | None = None, reference: str = "auto", batch_size: int | str = 256, plots: bool = True,
               iou_threshold: float | None = None, overwrite: bool = False, command: Sequence[str] | None = None,
               **options: Any) -> SearchResult:
    """:func:`search`, written as a run folder ``out`` (``search.csv``, ``summary.json``, ``run.json``,
    ``plots/``) through the same locked, atomic path as ``nero evaluate``."""
    out, started = Path(out), _dt.datetime.now(_dt.timezone.utc)
    groups = [groups] if isinstance(groups, str) else list(groups)
    if refine < 0:
        raise OptionError(f"--refine must be 0 or more, got {refine}")
    tol = check_tol(tol)
    protect = [a for a in [*models, data] if isinstance(a, (str, Path)) and Path(a).exists()]
    with claim(out, "run", overwrite, protect):
        p, axes = _prepared(models, data, groups, {**options, "tol": tol})
        use = _use_labels(p, reference)
        size = resolve_batch_size(p, batch_size)
        o = {"iou_threshold": iou_threshold}
        table = tabulate(p, axes, use, refine, size, o)
        ref = "labels" if use else "prediction"
        summary = {"schema_version": 1, "kind": "search", "task": p.task.name, "reference": ref,
                   "quantity": _quantity(p), "n_samples": len(p.dataset), "models": summarise(table)}
        info = {"status": "complete", "kind": "search", "command": list(command or ["nero", *sys.argv[1:]]),
                "record": _record(p, axes, ref, refine, o),
                "models": [{"name": m.name, "source": m.source, "format": m.format, "sha256": m.sha256} for m in p.models],
                "data": {"source": p.dataset.source, "sha256": p.dataset.sha256, "n_samples": len(p.dataset),
                         **p.data_record},
                "options": {"groups": list(groups), "refine": refine, "tol": tol, "batch_size": size,
                            "iou_threshold": iou_threshold, "device": str(p.device),
                            **{k: v for k, v in options.items() if k != "labels"}},
                "warnings": p.warnings, "versions": _versions(), "started": started.isoformat(timespec="seconds")}
        with building(out, "run") as tmp:
            files = _write(tmp, p, table, summary, info, axes, plots)
    return SearchResult(out, table, summary, [out / f.relative_to(tmp) for f in files], p.warnings)


__all__ = ["search", "search_run", "search_axis", "summarise", "tabulate", "SearchResult", "axes_for", "Axis",
           "SEARCHABLE", "DEFAULT_TOL", "UNITS", "COLUMNS", "SEARCH_CSV"]
