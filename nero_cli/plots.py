"""NERO plots: a metric drawn over the elements of a transformation group.

Plots only consume tables (pandas DataFrames):

* ``agg`` -- the aggregate NERO curve, one row per model x group x element x class
  subset, with columns ``model, group, element, class``, the group's parameter
  columns, ``n`` and metric columns (``confidence``, ``accuracy``,
  ``equivariance_error`` ...).
* ``results`` -- the tidy table, one row per model x sample x element, with columns
  ``model, sample, label, group, element``, parameter columns, ``prediction,
  reference, confidence, correct, consensus, equivariance_error``.

How a group is drawn is described by a :class:`PlotSpec` (``polar``, ``heatmap``,
``curve``, ``disks`` or ``sphere``). Figures are built with
:class:`matplotlib.figure.Figure` directly (no pyplot state), so plotting is
thread-safe and nothing needs closing; every figure is written as PNG and SVG.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, to_hex
from matplotlib.figure import Figure

# No pyplot and no ``matplotlib.use``: a bare Figure renders with the Agg/SVG canvas
# chosen by ``savefig`` from the file format, whatever the global backend is.

__all__ = [
    "KINDS",
    "METRICS",
    "PlotSpec",
    "build_aggregate_figure",
    "build_individual_figure",
    "metric_info",
    "model_colors",
    "plot_aggregate",
    "plot_individual",
    "plot_error_maps",
    "save_figure",
]

#: Plot kinds and the number of parameter columns each one needs.
KINDS: dict[str, int] = {"polar": 1, "heatmap": 2, "curve": 1, "disks": 3, "sphere": 3, "mosaic": 0}
# "mosaic" (D4 and D4 x time reversal): params (k, flip) or (k, flip, t); 0 = checked by the drawer

PNG_DPI = 110
THUMB_WIDTH = 2.4  # inches added on the left of individual plots for the thumbnail
MAX_SPHERE_COLUMNS = 6
MAX_HEATMAP_COLUMNS = 4
PLANE_ORDER = ("xy", "xz", "yz")


@dataclass(frozen=True)
class PlotSpec:
    """How one group is plotted.

    ``group`` is the value of the ``group`` column (e.g. ``"rotation"``), ``kind`` one
    of :data:`KINDS`, ``params`` the parameter columns of that group in the tables
    and ``title`` a human description such as ``"rotation (0..355 step 5)"``.
    """

    group: str
    kind: str
    params: tuple[str, ...]
    title: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(self.params))
        _check_spec(self)


METRICS: dict[str, dict[str, Any]] = {
    "confidence": {"label": "confidence of reference class", "range": (0.0, 1.0),
                   "higher_is_better": True},
    "accuracy": {"label": "accuracy", "range": (0.0, 1.0), "higher_is_better": True},
    "correct": {"label": "correct", "range": (0.0, 1.0), "higher_is_better": True},
    "equivariance_error": {"label": "equivariance error", "range": (0.0, 1.0),
                           "higher_is_better": False},
    "iou": {"label": "IoU", "range": (0.0, 1.0), "higher_is_better": True},
    "aee": {"label": "average endpoint error (px)", "range": None, "higher_is_better": False},
    "rmse": {"label": "RMS vector error (px)", "range": None, "higher_is_better": False},
    "conf_iou": {"label": "confidence \u00d7 IoU", "range": (0.0, 1.0), "higher_is_better": True},
    "precision": {"label": "precision at IoU 0.5", "range": (0.0, 1.0), "higher_is_better": True},
    "recall": {"label": "recall at IoU 0.5", "range": (0.0, 1.0), "higher_is_better": True},
    "f1": {"label": "F1 at IoU 0.5", "range": (0.0, 1.0), "higher_is_better": True},
}


def metric_info(metric: str) -> dict[str, Any]:
    """Entry of :data:`METRICS`, or a fallback (automatic range, higher is better)."""
    info = METRICS.get(metric)
    if info is None:
        return {"label": metric.replace("_", " "), "range": None, "higher_is_better": True}
    return info


# ----------------------------------------------------------------------------------------
# Colours


def model_colors(models: Sequence[str]) -> dict[str, str]:
    """A fixed colour (hex) per model, by position in ``models``.

    The first ten models get the ``tab10`` colours in order, the next ten the light
    shades of ``tab20``; beyond twenty the palette repeats.
    """
    tab10 = colormaps["tab10"].colors
    tab20 = colormaps["tab20"].colors
    palette = [to_hex(c) for c in tab10] + [to_hex(tab20[2 * i + 1]) for i in range(10)]
    out: dict[str, str] = {}
    for m in models:
        out.setdefault(m, palette[len(out) % len(palette)])
    return out


def _cmap_name(metric: str) -> str:
    # The "good" end of the scale always has the same (bright) colour.
    return "viridis" if metric_info(metric)["higher_is_better"] else "viridis_r"


# ----------------------------------------------------------------------------------------
# Public entry points


def plot_aggregate(agg: pd.DataFrame, spec: PlotSpec, metric: str, models: Sequence[str],
                   out_dir: Path, stem: str | None = None, *, subset: str = "all") -> list[Path]:
    """Plot the aggregate NERO ``metric`` of ``spec.group`` for ``models``.

    Uses the rows with ``class == subset`` (``"all"``: the whole dataset). Writes
    ``<out_dir>/<stem>.png`` and ``.svg``; the default stem is
    ``aggregate_<group>_<metric>`` (plus ``_class_<subset>`` for a class subset).
    Returns the written paths.
    """
    fig = build_aggregate_figure(agg, spec, metric, models, subset=subset)
    if stem is None:
        stem = f"aggregate_{spec.group}_{metric}"
        if str(subset) != "all":
            stem += f"_class_{subset}"
    return save_figure(fig, out_dir, stem)


def plot_individual(results: pd.DataFrame, spec: PlotSpec, metric: str, models: Sequence[str],
                    sample: int, image: np.ndarray | None, out_dir: Path,
                    stem: str | None = None) -> list[Path]:
    """Plot ``metric`` over ``spec.group`` for one sample, beside a thumbnail of it.

    ``image`` is ``(H, W)``, ``(C, H, W)`` or ``(H, W, C)`` in [0, 1], a ``(P, 3)``
    point cloud (drawn as a small 3-D scatter) or None (no thumbnail). For
    individual plots ``accuracy`` means the ``correct`` column. Writes
    ``<out_dir>/<stem>.png`` and ``.svg`` (default stem
    ``sample_<sample>_<group>_<metric>``) and returns the paths.
    """
    fig = build_individual_figure(results, spec, metric, models, sample, image)
    if stem is None:
        stem = f"sample_{sample}_{spec.group}_{metric}"
    return save_figure(fig, out_dir, stem)


def save_figure(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write ``fig`` as ``<stem>.png`` (dpi 110) and ``<stem>.svg``; return both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{stem}.png"
    svg = out_dir / f"{stem}.svg"
    fig.savefig(png, dpi=PNG_DPI, format="png")
    # The layout was solved while drawing the PNG; keep it instead of solving it again
    # (constrained layout over many polar/map axes is the slowest part of plotting).
    fig.set_layout_engine("none")
    fig.savefig(svg, format="svg")
    fig.clear()  # drop artists right away; the Figure is not registered with pyplot
    return [png, svg]


def build_aggregate_figure(agg: pd.DataFrame, spec: PlotSpec, metric: str,
                           models: Sequence[str], *, subset: str = "all") -> Figure:
    """The figure :func:`plot_aggregate` saves (useful for notebooks and tests)."""
    _check_spec(spec)
    df = _rows_for_group(agg, spec, "aggregate table")
    if "class" in df.columns:
        df = df[df["class"].astype(str) == str(subset)]
        if df.empty:
            raise ValueError(f"no aggregate rows for group {spec.group!r} and class {subset!r}")
    frames = _frames(df, spec, metric, models)
    n = None
    if "n" in df.columns and len(df):
        n_max = pd.to_numeric(df["n"], errors="coerce").max()
        if pd.notna(n_max):
            n = int(n_max)
    what = f"aggregate over {n} samples" if n is not None else "aggregate"
    if str(subset) != "all":
        what = f"class {subset}, {what}"
    return _figure(frames, spec, metric, models, what, thumbnail=None)


def build_individual_figure(results: pd.DataFrame, spec: PlotSpec, metric: str,
                            models: Sequence[str], sample: int,
                            image: np.ndarray | None) -> Figure:
    """The figure :func:`plot_individual` saves."""
    _check_spec(spec)
    if "sample" not in results.columns:
        raise ValueError("results table has no 'sample' column")
    df = results[results["sample"] == sample]
    if df.empty:
        raise ValueError(f"no results rows for sample {sample!r}")
    df = _rows_for_group(df, spec, f"results of sample {sample!r}")
    if metric == "accuracy" and "accuracy" not in df.columns:
        metric_col = "correct"
    else:
        metric_col = metric
    frames = _frames(df, spec, metric, models, column=metric_col)
    what = f"sample {sample}"
    if "label" in df.columns:
        label = df["label"].iloc[0]
        if label is not None and not (isinstance(label, float) and math.isnan(label)):
            what += f" (label {_fmt(label)})"
    return _figure(frames, spec, metric, models, what, thumbnail=image)


# ----------------------------------------------------------------------------------------
# Table handling


def _check_spec(spec: PlotSpec) -> None:
    if spec.kind not in KINDS:
        raise ValueError(f"unknown plot kind {spec.kind!r} for group {spec.group!r}; "
                         f"expected one of: {', '.join(KINDS)}")
    need = KINDS[spec.kind]
    if spec.kind == "mosaic":
        if tuple(spec.params[:2]) != ("k", "flip") or len(spec.params) not in (2, 3):
            raise ValueError(f"plot kind 'mosaic' needs parameter columns (k, flip[, t]), got {list(spec.params)}")
        return
    if len(spec.params) != need:
        raise ValueError(f"plot kind {spec.kind!r} needs {need} parameter column(s), "
                         f"got {list(spec.params)} for group {spec.group!r}")


def _rows_for_group(df: pd.DataFrame, spec: PlotSpec, what: str) -> pd.DataFrame:
    if "group" in df.columns:
        df = df[df["group"] == spec.group]
    if df.empty:
        raise ValueError(f"no rows for group {spec.group!r} in the {what}")
    missing = [c for c in ("model", *spec.params) if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing} needed to plot group {spec.group!r}")
    return df


def _as_float(s: pd.Series) -> np.ndarray:
    try:
        return s.to_numpy(dtype="float64", na_value=np.nan)
    except (TypeError, ValueError):
        return pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _frames(df: pd.DataFrame, spec: PlotSpec, metric: str, models: Sequence[str],
            column: str | None = None) -> dict[str, pd.DataFrame]:
    """Per model (in ``models`` order, present ones only): params + float column ``_v``."""
    column = column or metric
    if column not in df.columns:
        if metric == "accuracy" and "correct" in df.columns:
            column = "correct"
        else:
            raise ValueError(f"metric column {column!r} not in the table "
                             f"(columns: {', '.join(map(str, df.columns))})")
    data = pd.DataFrame({"model": df["model"].to_numpy()})
    for p in spec.params:
        col = df[p]
        data[p] = col.to_numpy() if p == "plane" else _as_float(col)
    data["_v"] = _as_float(df[column])
    by_model = {m: g for m, g in data.groupby("model", sort=False)}
    frames = {m: by_model[m] for m in dict.fromkeys(models) if m in by_model}
    if not frames:
        raise ValueError(f"none of the models {list(models)} has rows for group {spec.group!r}")
    return frames


def _limits(values: np.ndarray, metric: str) -> tuple[float, float]:
    """Colour / axis range: the metric's fixed range if known, else data min/max."""
    rng = metric_info(metric)["range"]
    if rng is not None:
        return float(rng[0]), float(rng[1])
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = float(v.min()), float(v.max())
    if hi - lo < 1e-12:
        pad = 0.5 if lo == 0 else abs(lo) * 0.1
        return lo - pad, hi + pad
    return lo, hi


def _all_values(frames: Mapping[str, pd.DataFrame]) -> np.ndarray:
    return np.concatenate([f["_v"].to_numpy() for f in frames.values()])


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v)


def _edges(centers: np.ndarray) -> np.ndarray:
    """Cell edges around sorted cell centres (half-way, ends extrapolated)."""
    c = np.asarray(centers, dtype=float)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


@dataclass
class _Arc:
    """Layout of a set of angles (degrees) on the circle."""

    angles: np.ndarray   # sorted distinct angles, unwrapped along the arc
    full: bool           # they cover the whole circle
    tmin: float          # arc start (deg), in (-180, 180]
    tmax: float          # arc end (deg)

    def unwrap(self, a: np.ndarray) -> np.ndarray:
        """Map angles onto the arc's representation (start <= a < start + 360)."""
        return self.tmin + np.mod(np.asarray(a, dtype=float) - self.tmin + 1e-9, 360.0) - 1e-9


def _arc(angles: np.ndarray) -> _Arc:
    """Whether angles cover the full circle; otherwise the arc they span.

    Angles may come canonicalised into [0, 360) (-45..45 as 315..355, 0..45): the
    arc starts after the largest gap between neighbouring angles.
    """
    a = np.asarray(angles, dtype=float)
    a = a[np.isfinite(a)]
    u = np.unique(np.round(np.mod(a, 360.0), 9))
    u = u[u < 360.0 - 1e-9] if u.size > 1 else u
    if u.size == 0:
        return _Arc(np.array([]), False, 0.0, 360.0)
    if u.size == 1:
        t = float(u[0]) - 360.0 if u[0] > 180 else float(u[0])
        return _Arc(np.array([t]), False, t - 1.0, t + 1.0)
    gaps = np.diff(np.concatenate([u, [u[0] + 360.0]]))
    k = int(np.argmax(gaps))
    step = float(np.median(gaps))
    if u.size >= 3 and gaps[k] <= 1.5 * step + 1e-6:
        return _Arc(u, True, 0.0, 360.0)
    start = float(u[(k + 1) % u.size])
    if start > 180.0:
        start -= 360.0
    unwrapped = np.sort(start + np.mod(u - start + 1e-9, 360.0) - 1e-9)
    return _Arc(unwrapped, False, start, start + 360.0 - float(gaps[k]))


def _circular_edges(arc: _Arc) -> np.ndarray:
    """Angular cell edges (deg) for the distinct angles of ``arc``."""
    a = arc.angles
    if arc.full:
        ext = np.concatenate([[a[-1] - 360.0], a, [a[0] + 360.0]])
        mids = (ext[1:] + ext[:-1]) / 2
        return mids  # n + 1 edges, last = first + 360
    if a.size == 1:
        return np.array([a[0] - 2.5, a[0] + 2.5])
    return _edges(a)


def _grid_index(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Index of each value in the sorted grid (nearest)."""
    idx = np.searchsorted(grid, values)
    idx = np.clip(idx, 0, len(grid) - 1)
    left = np.clip(idx - 1, 0, len(grid) - 1)
    closer_left = np.abs(values - grid[left]) < np.abs(values - grid[idx])
    return np.where(closer_left, left, idx)


def _grid_mean(iy: np.ndarray, ix: np.ndarray, v: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Mean of ``v`` per cell (NaN where a cell has no finite value); linear in rows."""
    ok = np.isfinite(v)
    total = np.zeros(shape)
    count = np.zeros(shape)
    np.add.at(total, (iy[ok], ix[ok]), v[ok])
    np.add.at(count, (iy[ok], ix[ok]), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _mean_by(x: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct ``x`` and the mean of ``v`` at each."""
    keep = np.isfinite(x)
    x, v = x[keep], v[keep]
    ux, inv = np.unique(x, return_inverse=True)
    ok = np.isfinite(v)
    total = np.bincount(inv[ok], weights=v[ok], minlength=ux.size)
    count = np.bincount(inv[ok], minlength=ux.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return ux, mean


# ----------------------------------------------------------------------------------------
# Figure assembly


def _figure(frames: dict[str, pd.DataFrame], spec: PlotSpec, metric: str,
            models: Sequence[str], what: str, thumbnail: np.ndarray | None) -> Figure:
    info = metric_info(metric)
    colors = model_colors(list(models))
    n_models = len(frames)
    kind = spec.kind
    if kind in ("polar", "curve"):
        size = (5.4, 4.6) if kind == "polar" else (6.4, 4.2)
    elif kind == "heatmap":
        cols = min(n_models, MAX_HEATMAP_COLUMNS)
        rows = math.ceil(n_models / cols)
        size = (3.0 * cols + 1.0, 3.0 * rows + 0.9)
    elif kind == "disks":
        size = (3 * 2.6 + 1.0, 2.7 * n_models + 0.9)
    elif kind == "mosaic":
        size = (3.2 * n_models + 1.2, 3.4 if len(spec.params) == 3 else 2.2)
    else:  # sphere
        n_rot = min(_distinct_count(frames, spec.params[2]), MAX_SPHERE_COLUMNS)
        size = (2.9 * n_rot + 1.0, 1.6 * n_models + 0.9)
    has_thumb = thumbnail is not None
    width = size[0] + (THUMB_WIDTH if has_thumb else 0.0)
    height = max(size[1], 3.0 if has_thumb else 0.0)
    fig = Figure(figsize=(width, height), layout="constrained")
    if has_thumb:
        gs = fig.add_gridspec(1, 2, width_ratios=[THUMB_WIDTH, size[0]])
        _draw_thumbnail(fig, gs[0, 0], thumbnail)
        region = gs[0, 1]
    else:
        region = fig.add_gridspec(1, 1)[0, 0]
    drawer = _DRAWERS[kind]
    drawer(fig, region, frames, spec, metric, colors)
    title = f"{info['label']} \u2014 {spec.title or spec.group} \u2014 {what}"
    if len(title) * 0.085 > width - 0.3:  # ~0.085 in per character at 11 pt
        title = f"{info['label']} \u2014 {spec.title or spec.group}\n{what}"
    fig.suptitle(title, fontsize=11)
    return fig


def _distinct_count(frames: Mapping[str, pd.DataFrame], col: str) -> int:
    vals = np.concatenate([f[col].to_numpy(dtype=float) for f in frames.values()])
    return max(1, np.unique(vals[np.isfinite(vals)]).size)


def _colorbar(fig: Figure, axes: list, metric: str, vmin: float, vmax: float) -> None:
    sm = ScalarMappable(norm=Normalize(vmin, vmax), cmap=_cmap_name(metric))
    fig.colorbar(sm, ax=axes, shrink=0.85, label=metric_info(metric)["label"])


def _draw_thumbnail(fig: Figure, region, image: np.ndarray) -> None:
    img = np.asarray(image, dtype=float)
    if img.ndim == 2 and img.shape[1] == 3 and img.shape[0] > 3:
        _draw_point_cloud(fig, region, img)
        return
    if img.ndim == 3:
        if img.shape[0] in (1, 3, 4) and img.shape[-1] not in (1, 3, 4):
            img = np.moveaxis(img, 0, -1)  # (C, H, W) -> (H, W, C)
        if img.shape[-1] not in (3, 4):
            img = img[..., 0]  # one channel (or two): show the first as grayscale
    if img.ndim not in (2, 3):
        raise ValueError(f"thumbnail must be (H, W), (C, H, W), (H, W, C) or (P, 3); got {image.shape}")
    img = np.clip(np.nan_to_num(img), 0.0, 1.0)
    ax = fig.add_subplot(region)
    if img.ndim == 2:
        ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(img, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("input", fontsize=9)


def _draw_point_cloud(fig: Figure, region, pts: np.ndarray) -> None:
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) > 2048:
        pts = pts[np.linspace(0, len(pts) - 1, 2048).astype(int)]
    ax = fig.add_subplot(region, projection="3d")
    ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], c=pts[:, 2], cmap="viridis", s=2, depthshade=False)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_zticks([])
    ax.set_box_aspect((1, 1, 1))
    ax.set_title("input", fontsize=9)


# -- polar ----------------------------------------------------------------------------------


def _draw_polar(fig: Figure, region, frames, spec: PlotSpec, metric: str, colors) -> None:
    p = spec.params[0]
    ax = fig.add_subplot(region, projection="polar")
    arc = _arc(np.concatenate([f[p].to_numpy() for f in frames.values()]))
    for model, f in frames.items():
        a, v = _mean_by(f[p].to_numpy(), f["_v"].to_numpy())
        if arc.full:
            a = np.mod(a, 360.0)
            a, v = _mean_by(a, v)
            if a.size > 1:
                a = np.append(a, a[0] + 360.0)
                v = np.append(v, v[0])
        else:
            t = arc.unwrap(a)
            order = np.argsort(t)
            a, v = t[order], v[order]
        ax.plot(np.deg2rad(a), v, color=colors[model], lw=1.6, marker="o", ms=2.5, label=model)
    lo, hi = _limits(_all_values(frames), metric)
    if metric_info(metric)["range"] is None:
        pad = 0.05 * (hi - lo)
        lo, hi = lo - pad, hi + pad
    ax.set_ylim(lo, hi)
    if not arc.full:
        ax.set_thetamin(arc.tmin)
        ax.set_thetamax(arc.tmax)
    ax.tick_params(labelsize=8)
    ax.set_rlabel_position(arc.tmin + 0.25 * (arc.tmax - arc.tmin) if not arc.full else 22.5)
    ax.grid(True, alpha=0.5)
    ax.set_xlabel(p, fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.05, 1.0), fontsize=8, frameon=False)


# -- curve ----------------------------------------------------------------------------------


def _draw_curve(fig: Figure, region, frames, spec: PlotSpec, metric: str, colors) -> None:
    p = spec.params[0]
    ax = fig.add_subplot(region)
    xs_all = []
    for model, f in frames.items():
        x, v = _mean_by(f[p].to_numpy(), f["_v"].to_numpy())
        xs_all.append(x)
        ax.plot(x, v, color=colors[model], lw=1.6, marker="o", ms=3, label=model)
    xs = np.concatenate(xs_all) if xs_all else np.array([])
    if xs.size and np.isclose(xs, 1.0).any():
        ax.axvline(1.0, color="0.4", lw=0.8, ls="--", zorder=0)
    lo, hi = _limits(_all_values(frames), metric)
    pad = 0.03 * (hi - lo)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel(p)
    ax.set_ylabel(metric_info(metric)["label"])
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, frameon=False)


# -- heatmap --------------------------------------------------------------------------------


def _heatmap_grids(frames, spec: PlotSpec):
    """Shared grid (x centres, y centres) and the per-model mean grids (ny, nx)."""
    px, py = spec.params
    xs_all = np.concatenate([f[px].to_numpy() for f in frames.values()])
    ys_all = np.concatenate([f[py].to_numpy() for f in frames.values()])
    xs = np.unique(np.round(xs_all[np.isfinite(xs_all)], 9))
    ys = np.unique(np.round(ys_all[np.isfinite(ys_all)], 9))
    grids = {}
    for model, f in frames.items():
        x, y, v = f[px].to_numpy(), f[py].to_numpy(), f["_v"].to_numpy()
        ok = np.isfinite(x) & np.isfinite(y)
        grids[model] = _grid_mean(_grid_index(y[ok], ys), _grid_index(x[ok], xs), v[ok],
                                  (ys.size, xs.size))
    return xs, ys, grids


def _draw_heatmap(fig: Figure, region, frames, spec: PlotSpec, metric: str, colors) -> None:
    px, py = spec.params
    xs, ys, grids = _heatmap_grids(frames, spec)
    # One colour range shared by all panels: the metric's range, else global min/max.
    vmin, vmax = _limits(np.concatenate([g.ravel() for g in grids.values()]), metric)
    cols = min(len(grids), MAX_HEATMAP_COLUMNS)
    rows = math.ceil(len(grids) / cols)
    sub = region.subgridspec(rows, cols)
    xe, ye = _edges(xs), _edges(ys)
    aspect = float(np.clip((ye[-1] - ye[0]) / max(xe[-1] - xe[0], 1e-12), 0.4, 2.5))
    axes = []
    for i, (model, g) in enumerate(grids.items()):
        ax = fig.add_subplot(sub[i // cols, i % cols])
        ax.pcolormesh(xe, ye, np.ma.masked_invalid(g), cmap=_cmap_name(metric),
                      vmin=vmin, vmax=vmax, shading="flat")
        ax.set_box_aspect(aspect)
        if xs.size <= 9:
            ax.set_xticks(xs, [_fmt(v) for v in xs])
        if ys.size <= 9:
            ax.set_yticks(ys, [_fmt(v) for v in ys])
        if py == "dy":  # image convention: dy points down
            ax.invert_yaxis()
        ax.set_xlabel(px)
        ax.set_ylabel(py)
        ax.set_title(model, fontsize=10, color=colors[model])
        ax.tick_params(labelsize=8)
        axes.append(ax)
    _colorbar(fig, axes, metric, vmin, vmax)


# -- disks ----------------------------------------------------------------------------------


def _planes(frames, col: str) -> list[str]:
    seen = set()
    for f in frames.values():
        seen.update(str(v) for v in pd.unique(f[col]) if not (isinstance(v, float) and math.isnan(v)))
    return [p for p in PLANE_ORDER if p in seen] + sorted(seen - set(PLANE_ORDER))


def _draw_disks(fig: Figure, region, frames, spec: PlotSpec, metric: str, colors) -> None:
    pplane, pth, pr = spec.params
    planes = _planes(frames, pplane)
    arc = _arc(np.concatenate([f[pth].to_numpy() for f in frames.values()]))
    r_all = np.concatenate([f[pr].to_numpy() for f in frames.values()])
    rs = np.unique(np.round(r_all[np.isfinite(r_all)], 9))
    th_edges = _circular_edges(arc)
    r_edges = _edges(rs) if rs.size else np.array([0.0, 1.0])
    r_edges = np.clip(r_edges, 0.0, None)
    if rs.size and rs[-1] <= 180.0 + 1e-9:
        r_edges = np.minimum(r_edges, 180.0)
    cells = []  # (model, plane, grid or None, raw rows)
    for model, f in frames.items():
        fplane = f[pplane].astype(str).to_numpy()
        for plane in planes:
            rows = f[fplane == plane]
            t = arc.unwrap(rows[pth].to_numpy())
            r = rows[pr].to_numpy()
            v = rows["_v"].to_numpy()
            ok = np.isfinite(t) & np.isfinite(r)
            grid = _grid_mean(_grid_index(r[ok], rs), _grid_index(t[ok], arc.angles), v[ok],
                              (rs.size, arc.angles.size)) if ok.any() else None
            if grid is not None and np.isclose(rs[0], 0.0):
                # The identity (rotation by 0) is the same for every axis.
                row0 = grid[0]
                if np.isfinite(row0).any():
                    grid[0] = np.where(np.isfinite(row0), row0, np.nanmean(row0))
            cells.append((model, plane, grid, (t[ok], r[ok], v[ok])))
    vals = np.concatenate([c[3][2] for c in cells]) if cells else np.array([])
    vmin, vmax = _limits(vals, metric)
    cmap = _cmap_name(metric)
    sub = region.subgridspec(len(frames), len(planes))
    axes = []
    for i, (model, plane, grid, (t, r, v)) in enumerate(cells):
        ax = fig.add_subplot(sub[i // len(planes), i % len(planes)], projection="polar")
        dense = grid is not None and np.isfinite(grid).mean() >= 0.5
        if dense:
            ax.pcolormesh(np.deg2rad(th_edges), r_edges, np.ma.masked_invalid(grid), cmap=cmap,
                          vmin=vmin, vmax=vmax, shading="flat")
        elif t.size:
            ax.scatter(np.deg2rad(t), r, c=v, cmap=cmap, vmin=vmin, vmax=vmax, s=40,
                       edgecolors="none")
        ax.set_ylim(0.0, float(r_edges[-1]))
        if not arc.full:
            ax.set_thetamin(float(th_edges[0]))
            ax.set_thetamax(float(th_edges[-1]))
        ax.set_title(f"{model} \u00b7 {plane} plane", fontsize=9, color=colors[model])
        _sparse_polar_ticks(ax, arc, r_edges)
        ax.grid(True, alpha=0.35, color="0.5")
        if i == 0:
            ax.set_xlabel(f"angle: {pth}, radius: {pr}", fontsize=7)
        axes.append(ax)
    _colorbar(fig, axes, metric, vmin, vmax)


def _sparse_polar_ticks(ax, arc: _Arc, r_edges: np.ndarray) -> None:
    """Few, small tick labels: small disks stay legible (and layout stays fast)."""
    if arc.full:
        ax.set_thetagrids([0, 90, 180, 270], fontsize=6)
    else:
        ax.set_thetagrids(np.linspace(arc.tmin, arc.tmax, 3), fontsize=6)
    top = float(r_edges[-1])
    step = 90.0 if top > 120 else (45.0 if top > 45 else top / 2 or 1.0)
    ticks = np.arange(step, top + 1e-9, step)
    ax.set_rgrids(ticks, labels=[f"{_fmt(t)}\u00b0" for t in ticks])
    ax.tick_params(axis="y", labelsize=5, labelcolor="0.3")
    ax.tick_params(pad=1)


# -- sphere ---------------------------------------------------------------------------------


def _pick_columns(values: np.ndarray, k: int) -> np.ndarray:
    if values.size <= k:
        return values
    return values[np.unique(np.round(np.linspace(0, values.size - 1, k)).astype(int))]


def _draw_sphere(fig: Figure, region, frames, spec: PlotSpec, metric: str, colors) -> None:
    plon, plat, prot = spec.params
    rot_all = np.concatenate([f[prot].to_numpy() for f in frames.values()])
    rots = np.unique(np.round(rot_all[np.isfinite(rot_all)], 9))
    shown = _pick_columns(rots, MAX_SPHERE_COLUMNS)
    vmin, vmax = _limits(_all_values(frames), metric)
    cmap = _cmap_name(metric)
    sub = region.subgridspec(len(frames), max(shown.size, 1))
    axes = []
    for i, (model, f) in enumerate(frames.items()):
        rot = f[prot].to_numpy()
        ridx = _grid_index(np.where(np.isfinite(rot), rot, np.inf), rots) if rots.size else None
        lon = f[plon].to_numpy()
        lat = f[plat].to_numpy()
        v = f["_v"].to_numpy()
        for j, rv in enumerate(shown):
            ax = fig.add_subplot(sub[i, j], projection="mollweide")
            k = int(np.searchsorted(rots, rv))
            sel = (ridx == k) & np.isfinite(rot) & np.isfinite(lon) & np.isfinite(lat)
            n = int(sel.sum())
            if n:
                x = np.deg2rad(np.mod(lon[sel] + 180.0, 360.0) - 180.0)
                y = np.deg2rad(np.clip(lat[sel], -90.0, 90.0))
                ax.scatter(x, y, c=v[sel], cmap=cmap, vmin=vmin, vmax=vmax,
                           s=float(np.clip(1500.0 / n, 4.0, 70.0)), edgecolors="none")
            ax.set_title(f"{model} \u00b7 {prot} {_fmt(rv)}\u00b0", fontsize=8, color=colors[model])
            ax.set_longitude_grid(60)
            ax.set_latitude_grid(30)
            ax.set_xticklabels([])
            if j:
                ax.set_yticklabels([])
            ax.tick_params(labelsize=5)
            ax.grid(True, alpha=0.35)
            axes.append(ax)
    _colorbar(fig, axes, metric, vmin, vmax)


def _mosaic_grid(f: pd.DataFrame, params: Sequence[str]) -> np.ndarray:
    """Mean metric per cell: rows = (t, flip) pairs, columns = k quarter turns."""
    k = f["k"].to_numpy().astype(int)
    row = f["flip"].to_numpy().astype(int)
    nrows = 2
    if len(params) == 3:
        row = row + 2 * f["t"].to_numpy().astype(int)
        nrows = 4
    return _grid_mean(row, k, f["_v"].to_numpy(), (nrows, 4))


def _mosaic_labels(nrows: int) -> list[str]:
    return ["", "flip", "T", "flip\u00b7T"][:nrows]


def _draw_mosaic(fig: Figure, region, frames, spec: PlotSpec, metric: str, colors) -> None:
    """NERO's mosaic for D4 (2 x 4) and D4 x time reversal (4 x 4): one cell per element,
    coloured by the metric and labelled with its value."""
    grids = {m: _mosaic_grid(f, spec.params) for m, f in frames.items()}
    vmin, vmax = _limits(np.concatenate([g.ravel() for g in grids.values()]), metric)
    sub = region.subgridspec(1, len(grids))
    axes = []
    for i, (model, g) in enumerate(grids.items()):
        ax = fig.add_subplot(sub[0, i])
        ax.imshow(np.ma.masked_invalid(g), cmap=_cmap_name(metric), vmin=vmin, vmax=vmax, interpolation="nearest")
        for (r, c), v in np.ndenumerate(g):
            if np.isfinite(v):
                ax.text(c, r, f"{v:.3g}", ha="center", va="center", fontsize=7,
                        color="white" if (v - vmin) < 0.5 * (vmax - vmin) else "black")
        ax.set_xticks(range(4), [f"rot{90 * k}" for k in range(4)], fontsize=8)
        ax.set_yticks(range(g.shape[0]), [lbl or "id" for lbl in _mosaic_labels(g.shape[0])], fontsize=8)
        ax.set_title(model, fontsize=10, color=colors[model])
        axes.append(ax)
    _colorbar(fig, axes, metric, vmin, vmax)


def plot_error_maps(maps: Mapping[str, np.ndarray], labels: Sequence[str], models: Sequence[str], sample: int,
                    image: np.ndarray | None, out_dir: Path, stem: str, title: str = "",
                    label: str = "endpoint error (px)") -> list[Path]:
    """Per-pixel error maps of one sample over the orbit, per model: ``maps[model]`` is ``(G, H, W)``.

    Up to 16 elements are drawn (evenly spaced when the orbit is longer), 4 per row, each
    labelled with its element; one colour scale (0 to the largest error) for every model.
    """
    present = [m for m in models if m in maps]
    if not present:
        raise ValueError("no error maps to plot")
    g = next(iter(maps.values())).shape[0]
    pick = np.unique(np.linspace(0, g - 1, min(g, 16)).round().astype(int))
    vmax = max(float(np.nanmax(maps[m][pick])) if np.isfinite(maps[m][pick]).any() else 0.0 for m in present) or 1.0
    cols = 4
    rows = math.ceil(len(pick) / cols)
    thumb_w = THUMB_WIDTH if image is not None else 0.0
    fig = Figure(figsize=(thumb_w + 2.9 * len(present) + 0.8, 0.75 * rows + 1.2), layout="constrained")
    outer = fig.add_gridspec(1, len(present) + (1 if image is not None else 0),
                             width_ratios=([thumb_w] if image is not None else []) + [2.9] * len(present))
    if image is not None:
        _draw_thumbnail(fig, outer[0, 0], image)
    axes = []
    for j, model in enumerate(present):
        sub = outer[0, j + (1 if image is not None else 0)].subgridspec(rows, cols, wspace=0.05, hspace=0.3)
        for n, e in enumerate(pick):
            ax = fig.add_subplot(sub[n // cols, n % cols])
            ax.imshow(np.ma.masked_invalid(maps[model][e]), cmap="magma", vmin=0.0, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(str(labels[e]), fontsize=6, color=model_colors(list(models))[model] if n == 0 else "black")
            axes.append(ax)
        axes[-len(pick)].set_ylabel(model, fontsize=8, color=model_colors(list(models))[model])
    sm = ScalarMappable(norm=Normalize(0.0, vmax), cmap="magma")
    fig.colorbar(sm, ax=axes, shrink=0.85, label=label)
    fig.suptitle(f"per-pixel {label.split(' (')[0]} \u2014 {title} \u2014 sample {sample}", fontsize=10)
    return save_figure(fig, out_dir, stem)


_DRAWERS = {
    "polar": _draw_polar,
    "heatmap": _draw_heatmap,
    "curve": _draw_curve,
    "disks": _draw_disks,
    "sphere": _draw_sphere,
    "mosaic": _draw_mosaic,
}
