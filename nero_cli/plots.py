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
``curve``, ``disks``, ``sphere`` or ``mosaic``; the drawers are in
:mod:`nero_cli.plot_kinds`). A metric's label, range and direction (hence its colour
map) come from the metric registry through the task records (:func:`metric_info`). Under an
equivariance error, a table's ``floor`` column (the resampling floor) is drawn as
:mod:`nero_cli.plot_floor` describes: a shaded band from 0 on polar and curve plots.
Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot state), so
plotting is thread-safe and nothing needs closing; every figure is written as PNG and SVG, byte
for byte the same on every rerun (no date, a fixed ``Software``/``Creator`` and SVG id salt), with its
title and a description (the group's full spec, the metric and the models) in the files' metadata.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps, rc_context
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, to_hex
from matplotlib.figure import Figure

from .measures import Metric
from .plot_floor import FLOOR, FLOOR_COLUMN, FLOORED_METRICS, has_floor, metrics_with_floor
from .plot_axes import fmt
from .plot_kinds import DRAWERS
from .tasks import TASKS, get_task

# No pyplot and no ``matplotlib.use``: a bare Figure renders with the Agg/SVG canvas
# chosen by ``savefig`` from the file format, whatever the global backend is.

__all__ = [
    "FLOOR_COLUMN",
    "FLOORED_METRICS",
    "KINDS",
    "PlotSpec",
    "build_aggregate_figure",
    "build_individual_figure",
    "metric_info",
    "model_colors",
    "has_floor",
    "metrics_with_floor",
    "plot_aggregate",
    "plot_individual",
    "plot_error_maps",
    "save_figure",
]

#: Plot kinds and the number of parameter columns each one needs.
KINDS: dict[str, int] = {"polar": 1, "heatmap": 2, "curve": 1, "disks": 3, "sphere": 3, "mosaic": 0}
# "mosaic" (D4 and D4 x time reversal): params (k, flip) or (k, flip, t); 0 = checked by _check_spec

PNG_DPI = 110
#: What the PNG's ``Software`` and the SVG's ``Creator`` say (fixed, so reruns are byte-identical).
SOFTWARE = "nero"
THUMB_WIDTH = 2.4  # inches added on the left of individual plots for the thumbnail
ERROR_MAP_WIDTH = 2.9  # inches per model of the per-pixel error maps


@dataclass(frozen=True)
class PlotSpec:
    """How one group is plotted.

    ``group`` is the value of the ``group`` column (e.g. ``"rotation"``), ``kind`` one
    of :data:`KINDS`, ``params`` the parameter columns of that group in the tables
    ``title`` a human description such as ``"rotation (0..355 step 5)"`` and ``spec`` the
    group's full spec string (written into the files' metadata).
    """

    group: str
    kind: str
    params: tuple[str, ...]
    title: str = ""
    spec: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(self.params))
        _check_spec(self)


# ----------------------------------------------------------------------------------------
# Metrics and colours


def _registered_metric(metric: str, task: str | None) -> Metric | None:
    """The registry's metric ``metric`` of ``task`` (without a task: of the first registered task
    that has it), else the metric that reads the results column ``metric`` (``correct``:
    accuracy); None when there is none."""
    records = [get_task(task)] if task is not None else list(TASKS.values())
    for found in ([m for r in records for m in r.metrics if m.name == metric],
                  [m for r in records for m in r.metrics if m.column == metric]):
        if found:
            return found[0]
    return None


def metric_info(metric: str, task: str | None = None) -> dict[str, Any]:
    """``label``, ``unit``, ``range`` and ``higher_is_better`` of ``metric`` from the metric registry:
    the metric of ``task`` (a task name), or without a task of the first registered task that
    has it (``correct`` is accuracy's entry). Unknown metrics get a fallback: the name as label,
    an automatic range, higher is better."""
    m = _registered_metric(metric, task)
    if m is None:
        return {"label": metric.replace("_", " "), "unit": "", "range": None, "higher_is_better": True}
    return {"label": m.label, "unit": m.unit, "range": m.range, "higher_is_better": m.higher_is_better}


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


# ----------------------------------------------------------------------------------------
# Public entry points


def plot_aggregate(agg: pd.DataFrame, spec: PlotSpec, metric: str, models: Sequence[str],
                   out_dir: Path, stem: str | None = None, *, subset: str = "all",
                   task: str | None = None, class_names: Sequence[str] | None = None,
                   own_scale: bool = False) -> list[Path]:
    """Plot the aggregate NERO ``metric`` of ``spec.group`` for ``models``.

    Uses the rows with ``class == subset`` (``"all"``: the whole dataset; a class is named in the
    title by ``class_names``). ``task`` names the task whose metric registry labels and scales the
    plot (see :func:`metric_info`); ``own_scale`` gives each model's heatmap or mosaic panel its own
    colour range. Writes ``<out_dir>/<stem>.png`` and ``.svg``; the default stem is
    ``<group>_<metric>`` (plus ``_class-<subset>`` for a class subset). Returns the written paths.
    """
    fig = build_aggregate_figure(agg, spec, metric, models, subset=subset, task=task, class_names=class_names,
                                 own_scale=own_scale)
    if stem is None:
        stem = f"{safe_stem(spec.group)}_{metric}"
        if str(subset) != "all":
            stem += f"_class-{safe_stem(str(subset))}"
    return save_figure(fig, out_dir, stem, description=describe(spec, metric, models))


def plot_individual(results: pd.DataFrame, spec: PlotSpec, metric: str, models: Sequence[str],
                    sample: int, image: np.ndarray | None, out_dir: Path,
                    stem: str | None = None, *, task: str | None = None,
                    class_names: Sequence[str] | None = None, own_scale: bool = False) -> list[Path]:
    """Plot ``metric`` over ``spec.group`` for one sample, beside a thumbnail of it.

    ``image`` is ``(H, W)``, ``(C, H, W)`` or ``(H, W, C)`` in [0, 1], a ``(P, 3)``
    point cloud (drawn as a small 3-D scatter) or None (no thumbnail). A metric
    missing from the table is read from the results column its registry entry names
    (``accuracy``: the ``correct`` column). The title names the sample's class by ``class_names``.
    Writes ``<out_dir>/<stem>.png`` and ``.svg`` (default stem ``<group>_<metric>_sample-<sample>``)
    and returns the paths.
    """
    fig = build_individual_figure(results, spec, metric, models, sample, image, task=task, class_names=class_names,
                                  own_scale=own_scale)
    if stem is None:
        stem = f"{safe_stem(spec.group)}_{metric}_sample-{sample}"
    return save_figure(fig, out_dir, stem, description=describe(spec, metric, models, sample))


def safe_stem(text: str) -> str:
    """``text`` with every character but letters, digits, ``-``, ``_`` and ``.`` replaced by ``_``."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def describe(spec: PlotSpec, metric: str, models: Sequence[str], sample: int | None = None) -> str:
    """The description a plot file carries in its metadata: group, full spec, metric, models (and sample)."""
    parts = [f"group: {spec.group}", f"spec: {spec.spec or spec.group}", f"kind: {spec.kind}", f"metric: {metric}",
             f"models: {', '.join(dict.fromkeys(map(str, models)))}"]
    if sample is not None:
        parts.append(f"sample: {sample}")
    return "; ".join(parts)


def save_figure(fig: Figure, out_dir: Path, stem: str, description: str | None = None) -> list[Path]:
    """Write ``fig`` as ``<stem>.png`` (dpi 110) and ``<stem>.svg``; return both paths.

    Both files carry the figure's title and ``description`` in their metadata, a fixed
    :data:`SOFTWARE` and no date, and the SVG's ids are salted with a constant: the bytes depend
    on the figure only."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{stem}.png"
    svg = out_dir / f"{stem}.svg"
    meta = {"Title": (fig.get_suptitle() or stem).replace("\n", " ")}
    if description:
        meta["Description"] = description
    _settle_layout(fig)
    fig.savefig(png, dpi=PNG_DPI, format="png", metadata={**meta, "Software": SOFTWARE})
    with rc_context({"svg.hashsalt": SOFTWARE}):
        fig.savefig(svg, format="svg", metadata={**meta, "Creator": SOFTWARE, "Date": None})
    fig.clear()  # drop artists right away; the Figure is not registered with pyplot
    return [png, svg]


def _settle_layout(fig: Figure) -> None:
    """Solve the figure's layout once, at the PNG's resolution, and fix every axes where it put it,
    rounded to 1e-9 of the figure: the solver's last bits vary from call to call (it sums in an order
    that depends on memory addresses), and the SVG's clip-path ids hash the exact positions. Both
    files are then drawn from the fixed layout (solving it once is also faster: constrained layout
    over many polar/map axes is the slowest part of plotting)."""
    fig.set_dpi(PNG_DPI)
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    for ax in fig.axes:
        ax.set_position([round(float(v), 9) for v in ax.get_position(original=True).bounds], which="both")


def build_aggregate_figure(agg: pd.DataFrame, spec: PlotSpec, metric: str,
                           models: Sequence[str], *, subset: str = "all",
                           task: str | None = None, class_names: Sequence[str] | None = None,
                           own_scale: bool = False) -> Figure:
    """The figure :func:`plot_aggregate` saves (useful for notebooks and tests)."""
    _check_spec(spec)
    df = _rows_for_group(agg, spec, "aggregate table")
    if "class" in df.columns:
        df = df[df["class"].astype(str) == str(subset)]
        if df.empty:
            raise ValueError(f"no aggregate rows for group {spec.group!r} and class {subset!r}")
    frames = _frames(df, spec, metric, models, task)
    n = None
    if "n" in df.columns and len(df):
        n_max = pd.to_numeric(df["n"], errors="coerce").max()
        if pd.notna(n_max):
            n = int(n_max)
    what = f"aggregate over {n} samples" if n is not None else "aggregate"
    if str(subset) != "all":
        what = f"{class_text(subset, class_names)}, {what}"
    info = {**metric_info(metric, task), "own_scale": own_scale}
    return _figure(frames, spec, info, models, what, thumbnail=None)


def build_individual_figure(results: pd.DataFrame, spec: PlotSpec, metric: str,
                            models: Sequence[str], sample: int,
                            image: np.ndarray | None, *, task: str | None = None,
                            class_names: Sequence[str] | None = None, own_scale: bool = False) -> Figure:
    """The figure :func:`plot_individual` saves."""
    _check_spec(spec)
    if "sample" not in results.columns:
        raise ValueError("results table has no 'sample' column")
    df = results[results["sample"] == sample]
    if df.empty:
        raise ValueError(f"no results rows for sample {sample!r}")
    df = _rows_for_group(df, spec, f"results of sample {sample!r}")
    frames = _frames(df, spec, metric, models, task)
    what = f"sample {sample}"
    if "label" in df.columns:
        label = df["label"].iloc[0]
        if label is not None and not (isinstance(label, float) and math.isnan(label)) and str(label) != "-1":
            what += f", {class_text(label, class_names)}"
    info = {**metric_info(metric, task), "own_scale": own_scale}
    return _figure(frames, spec, info, models, what, thumbnail=image)


def class_text(label: Any, class_names: Sequence[str] | None) -> str:
    """``class <name>`` for a class id (its name from ``class_names`` when there is one)."""
    try:
        i = int(float(label))
    except (TypeError, ValueError):
        return f"class {label}"
    if class_names and 0 <= i < len(class_names):
        return f"class {class_names[i]}"
    return f"class {fmt(label)}"


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


def _value_column(df: pd.DataFrame, metric: str, task: str | None) -> str:
    """The table column holding ``metric``: its own, else the results column its registry entry
    reads (``accuracy`` reads ``correct``)."""
    if metric in df.columns:
        return metric
    m = _registered_metric(metric, task)
    if m is not None and m.column in df.columns:
        return m.column
    raise ValueError(f"metric column {metric!r} not in the table "
                     f"(columns: {', '.join(map(str, df.columns))})")


def _frames(df: pd.DataFrame, spec: PlotSpec, metric: str, models: Sequence[str],
            task: str | None) -> dict[str, pd.DataFrame]:
    """Per model (in ``models`` order, present ones only): params + float column ``_v`` (and, under an
    equivariance error with a ``floor`` column, the resampling floor as :data:`~nero_cli.plot_floor.FLOOR`)."""
    column = _value_column(df, metric, task)
    data = pd.DataFrame({"model": df["model"].to_numpy()})
    for p in spec.params:
        col = df[p]
        data[p] = col.to_numpy() if p == "plane" else _as_float(col)
    data["_v"] = _as_float(df[column])
    if metric in FLOORED_METRICS and FLOOR_COLUMN in df.columns:
        data[FLOOR] = _as_float(df[FLOOR_COLUMN])
    by_model = {m: g for m, g in data.groupby("model", sort=False)}
    frames = {m: by_model[m] for m in dict.fromkeys(models) if m in by_model}
    if not frames:
        raise ValueError(f"none of the models {list(models)} has rows for group {spec.group!r}")
    return frames


# ----------------------------------------------------------------------------------------
# Figure assembly


def _figure(frames: dict[str, pd.DataFrame], spec: PlotSpec, info: Mapping[str, Any],
            models: Sequence[str], what: str, thumbnail: np.ndarray | None) -> Figure:
    drawer, size_of = DRAWERS[spec.kind]
    size = size_of(frames, spec.params)
    width = size[0] + (THUMB_WIDTH if thumbnail is not None else 0.0)
    height = max(size[1], 3.0 if thumbnail is not None else 0.0)
    fig = Figure(figsize=(width, height), layout="constrained")
    (region,) = _regions(fig, thumbnail, [size[0]])
    drawer(fig, region, frames, spec.params, info, model_colors(list(models)))
    title = f"{info['label']} \u2014 {spec.title or spec.group} \u2014 {what}"
    if len(title) * 0.085 > width - 0.3:  # ~0.085 in per character at 11 pt
        title = f"{info['label']} \u2014 {spec.title or spec.group}\n{what}"
    fig.suptitle(title, fontsize=11)
    return fig


def _regions(fig: Figure, thumbnail: np.ndarray | None, widths: Sequence[float]) -> list:
    """One gridspec cell per width (inches), after a column with the thumbnail of the input
    (drawn here) when there is one."""
    if thumbnail is None:
        gs = fig.add_gridspec(1, len(widths), width_ratios=list(widths))
        return [gs[0, i] for i in range(len(widths))]
    gs = fig.add_gridspec(1, len(widths) + 1, width_ratios=[THUMB_WIDTH, *widths])
    _draw_thumbnail(fig, gs[0, 0], thumbnail)
    return [gs[0, i + 1] for i in range(len(widths))]


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


# ----------------------------------------------------------------------------------------
# Per-pixel error maps


def plot_error_maps(maps: Mapping[str, np.ndarray], labels: Sequence[str], models: Sequence[str], sample: int,
                    image: np.ndarray | None, out_dir: Path, stem: str, title: str = "",
                    label: str = "endpoint error (px)", description: str | None = None) -> list[Path]:
    """Per-pixel error maps of one sample over the orbit, per model: ``maps[model]`` is ``(G, H, W)``.

    Up to 16 elements are drawn (evenly spaced when the orbit is longer), 4 per row, each
    labelled with its element; one colour scale (0 to the largest error) for every model.
    ``description`` goes into the files' metadata.
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
    fig = Figure(figsize=(thumb_w + ERROR_MAP_WIDTH * len(present) + 0.8, 0.75 * rows + 1.2), layout="constrained")
    colors = model_colors(list(models))
    axes = []
    for model, region in zip(present, _regions(fig, image, [ERROR_MAP_WIDTH] * len(present))):
        sub = region.subgridspec(rows, cols, wspace=0.05, hspace=0.3)
        for n, e in enumerate(pick):
            ax = fig.add_subplot(sub[n // cols, n % cols])
            ax.imshow(np.ma.masked_invalid(maps[model][e]), cmap="magma", vmin=0.0, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(str(labels[e]), fontsize=6, color=colors[model] if n == 0 else "black")
            axes.append(ax)
        axes[-len(pick)].set_ylabel(model, fontsize=8, color=colors[model])
    sm = ScalarMappable(norm=Normalize(0.0, vmax), cmap="magma")
    fig.colorbar(sm, ax=axes, shrink=0.85, label=label)
    fig.suptitle(f"per-pixel {label.split(' (')[0]} \u2014 {title} \u2014 sample {sample}", fontsize=10)
    return save_figure(fig, out_dir, stem, description=description)
