"""The drawers of NERO plot kinds: polar, curve, heatmap and mosaic here; disks and sphere in
:mod:`nero_cli.plot_sphere`; what they share in :mod:`nero_cli.plot_axes`.

Each drawer fills one gridspec ``region`` of a figure with the per-model ``frames`` (a parameter
column per name in ``params`` plus the float metric column ``_v``), coloured and scaled by
``info``, the metric's registry entry (``label``, ``range``, ``higher_is_better``) as given by
:func:`nero_cli.plots.metric_info`, plus ``own_scale`` (heatmap and mosaic panels: each model its
own colour range). :data:`DRAWERS` gives each kind's drawer and the figure size it wants.

Axes are labelled with their units (:func:`nero_cli.plot_axes.axis_label`); a polar plot's radius
labels stay off the curves (on a ruler beside a full circle, outside an open wedge); the numbers
in mosaic cells are black or white, whichever contrasts more with the cell. A frame may hold the
resampling floor, drawn as :mod:`nero_cli.plot_floor` says.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .plot_axes import (Arc, Frames, Info, arc_of, axis_label, cmap_name, colorbar, column_values, data_limits,
                        distinct, edges, fmt, grid_index, grid_mean, limits, mean_by, text_color)
from .plot_floor import floor_band, floor_note, floor_of, floor_values
from .plot_sphere import disks_size, draw_disks, draw_sphere, sphere_size

MAX_HEATMAP_COLUMNS = 4
#: The radius ruler of a full-circle polar plot: its x (axes coordinates) and the gid of its artists.
RULER_X = -0.14
RULER_GID = "radius-ruler"


# ----------------------------------------------------------------------------------------
# polar and curve: one line per model


def _polar_points(arc: Arc, a: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Angles (deg, along the arc; closed when it is the full circle) and values to draw."""
    if arc.full:
        a, v = mean_by(np.mod(a, 360.0), v)
        if a.size > 1:
            return np.append(a, a[0] + 360.0), np.append(v, v[0])
        return a, v
    t = arc.unwrap(a)
    order = np.argsort(t)
    return t[order], v[order]


def _radius_labels(ax, arc: Arc, lo: float, hi: float) -> None:
    """Radius labels clear of the curves (none at the centre). A full circle has no free angle, so its
    radii are read on a ruler outside the circle, left of its upper half (a tick at the height where
    its grid circle tops the centre); an open arc keeps matplotlib's labels, which run outside the
    wedge along its starting edge."""
    ticks = [float(t) for t in ax.get_yticks() if lo + 1e-9 < t <= hi + 1e-9]
    if arc.full:
        ax.set_yticks(ticks, [""] * len(ticks))
        ax.set_anchor("E")  # the circle at the right of its cell: the ruler lies in the room left of it
        _ruler(ax, ticks, lo, hi)
    else:
        ax.set_yticks(ticks, [f"{t:g}" for t in ticks])


def _ruler(ax, ticks: Sequence[float], lo: float, hi: float) -> None:
    """A radius scale left of a full circle's upper half, drawn in the polar axes' own coordinates (the
    circle fills them: centre (0.5, 0.5), radius 0.5) outside the circle, so the layout keeps room for it."""
    def height(t: float) -> float:
        return 0.5 + 0.5 * (t - lo) / max(hi - lo, 1e-12)

    kw = {"transform": ax.transAxes, "clip_on": False, "color": "0.25", "lw": 0.8, "gid": RULER_GID}
    ax.add_line(Line2D([RULER_X, RULER_X], [0.5, 1.0], **kw))
    for t in ticks:
        ax.add_line(Line2D([RULER_X - 0.015, RULER_X], [height(t)] * 2, **kw))
        ax.text(RULER_X - 0.025, height(t), f"{t:g}", transform=ax.transAxes, ha="right", va="center", fontsize=8,
                clip_on=False, gid=RULER_GID)


def draw_polar(fig: Figure, region, frames: Frames, params: Sequence[str], info: Info, colors) -> None:
    p = params[0]
    ax = fig.add_subplot(region, projection="polar")
    arc = arc_of(column_values(frames, p))
    for model, f in frames.items():
        x = f[p].to_numpy()
        a, v = _polar_points(arc, *mean_by(x, f["_v"].to_numpy()))
        ax.plot(np.deg2rad(a), v, color=colors[model], lw=1.6, marker="o", ms=2.5, label=model, zorder=2)
        floor = floor_of(f)
        if floor is not None:
            floor_band(ax, np.deg2rad(a), _polar_points(arc, *mean_by(x, floor))[1], model, colors[model])
    lo, hi = limits(np.concatenate([column_values(frames, "_v"), *floor_values(frames)]), info)
    if info["range"] is None:
        pad = 0.05 * (hi - lo)
        lo, hi = lo - pad, hi + pad
    ax.set_ylim(lo, hi)
    if not arc.full:
        ax.set_thetamin(arc.tmin)
        ax.set_thetamax(arc.tmax)
    ax.tick_params(labelsize=8)
    _radius_labels(ax, arc, lo, hi)
    ax.grid(True, alpha=0.5)
    ax.set_xlabel(axis_label(p), fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.05, 1.0), fontsize=8, frameon=False)


def draw_curve(fig: Figure, region, frames: Frames, params: Sequence[str], info: Info, colors) -> None:
    p = params[0]
    ax = fig.add_subplot(region)
    xs_all = []
    for model, f in frames.items():
        x, v = mean_by(f[p].to_numpy(), f["_v"].to_numpy())
        xs_all.append(x)
        ax.plot(x, v, color=colors[model], lw=1.6, marker="o", ms=3, label=model, zorder=2)
        floor = floor_of(f)
        if floor is not None:
            floor_band(ax, x, mean_by(f[p].to_numpy(), floor)[1], model, colors[model])
    xs = np.concatenate(xs_all) if xs_all else np.array([])
    if xs.size and np.isclose(xs, 1.0).any() and p == "scale":
        ax.axvline(1.0, color="0.4", lw=0.8, ls="--", zorder=0)
    lo, hi = limits(np.concatenate([column_values(frames, "_v"), *floor_values(frames)]), info)
    pad = 0.03 * (hi - lo)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel(axis_label(p))
    ax.set_ylabel(info["label"])
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, frameon=False)


# ----------------------------------------------------------------------------------------
# heatmap and mosaic: one grid of cells per model, one colour scale (or one per model)


def _grid_panels(fig: Figure, region, frames: Frames, grids: Mapping[str, np.ndarray], cols: int, info: Info,
                 colors, draw: Callable[..., None]) -> None:
    """One axes per model's grid (``cols`` per row) drawn by ``draw(ax, grid, cmap, vmin, vmax)``,
    titled with the model (and its resampling floor, when its frame has one). One colour range for
    all (the metric's, else the global min/max) and one colour bar; with ``info["own_scale"]`` each
    panel its own range (its data's min/max, so differences between its cells show) and colour bar."""
    own = bool(info.get("own_scale"))
    vmin, vmax = limits(np.concatenate([g.ravel() for g in grids.values()]), info)
    rows = math.ceil(len(grids) / cols)
    sub = region.subgridspec(rows, cols)
    axes = []
    for i, (model, g) in enumerate(grids.items()):
        ax = fig.add_subplot(sub[i // cols, i % cols])
        lo, hi = data_limits(g) if own else (vmin, vmax)
        draw(ax, g, cmap_name(info), lo, hi)
        note = floor_note(frames[model])
        ax.set_title(model if note is None else f"{model}\n{note}", fontsize=10 if note is None else 8,
                     color=colors[model])
        axes.append(ax)
        if own:
            colorbar(fig, [ax], info, lo, hi, span_in=fig.get_figheight() / rows)
    if not own:
        colorbar(fig, axes, info, vmin, vmax)


def _heatmap_grids(frames: Frames, params: Sequence[str]):
    """Shared grid (x centres, y centres) and the per-model mean grids (ny, nx)."""
    px, py = params
    xs = distinct(column_values(frames, px))
    ys = distinct(column_values(frames, py))
    grids = {}
    for model, f in frames.items():
        x, y, v = f[px].to_numpy(), f[py].to_numpy(), f["_v"].to_numpy()
        ok = np.isfinite(x) & np.isfinite(y)
        grids[model] = grid_mean(grid_index(y[ok], ys), grid_index(x[ok], xs), v[ok], (ys.size, xs.size))
    return xs, ys, grids


def draw_heatmap(fig: Figure, region, frames: Frames, params: Sequence[str], info: Info, colors) -> None:
    px, py = params
    xs, ys, grids = _heatmap_grids(frames, params)
    xe, ye = edges(xs), edges(ys)
    aspect = float(np.clip((ye[-1] - ye[0]) / max(xe[-1] - xe[0], 1e-12), 0.4, 2.5))

    def draw(ax, g, cmap, vmin, vmax) -> None:
        ax.pcolormesh(xe, ye, np.ma.masked_invalid(g), cmap=cmap, vmin=vmin, vmax=vmax, shading="flat")
        ax.set_box_aspect(aspect)
        if xs.size <= 9:
            ax.set_xticks(xs, [fmt(v) for v in xs])
        if ys.size <= 9:
            ax.set_yticks(ys, [fmt(v) for v in ys])
        if py == "dy":  # image convention: dy points down
            ax.invert_yaxis()
        ax.set_xlabel(axis_label(px))
        ax.set_ylabel(axis_label(py))
        ax.tick_params(labelsize=8)

    _grid_panels(fig, region, frames, grids, min(len(grids), MAX_HEATMAP_COLUMNS), info, colors, draw)


MOSAIC_ROWS = ("id", "flip", "T", "flip\u00b7T")


def _mosaic_grid(f: pd.DataFrame, params: Sequence[str]) -> np.ndarray:
    """Mean metric per cell: rows = (t, flip) pairs, columns = k quarter turns."""
    k = f["k"].to_numpy().astype(int)
    row = f["flip"].to_numpy().astype(int)
    nrows = 2
    if len(params) == 3:
        row = row + 2 * f["t"].to_numpy().astype(int)
        nrows = 4
    return grid_mean(row, k, f["_v"].to_numpy(), (nrows, 4))


def mosaic_cells(ax, g: np.ndarray, cmap: str, vmin: float, vmax: float) -> None:
    """The mosaic's cells coloured by value, each labelled with its value in black or white, whichever
    contrasts more with the cell's own colour (:func:`nero_cli.plot_axes.text_color`)."""
    ax.imshow(np.ma.masked_invalid(g), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    cm, norm = colormaps[cmap], Normalize(vmin, vmax)
    for (r, c), v in np.ndenumerate(g):
        if np.isfinite(v):
            ax.text(c, r, f"{v:.3g}", ha="center", va="center", fontsize=7, color=text_color(cm(norm(v))))
    ax.set_xticks(range(4), [f"rot{90 * k}" for k in range(4)], fontsize=8)
    ax.set_yticks(range(g.shape[0]), list(MOSAIC_ROWS[: g.shape[0]]), fontsize=8)


def draw_mosaic(fig: Figure, region, frames: Frames, params: Sequence[str], info: Info, colors) -> None:
    """NERO's mosaic for D4 (2 x 4) and D4 x time reversal (4 x 4): one cell per element,
    coloured by the metric and labelled with its value."""
    grids = {m: _mosaic_grid(f, params) for m, f in frames.items()}
    _grid_panels(fig, region, frames, grids, len(grids), info, colors, mosaic_cells)


# ----------------------------------------------------------------------------------------
# The kinds


def _polar_size(frames: Frames, params: Sequence[str]) -> tuple[float, float]:
    """Room for the circle, the radius ruler left of it and the legend right of it (about 0.07 in per
    character of its longest entry, a model's name or "resampling floor (<model>)")."""
    longest = max(len(str(m)) + (19 if floor_of(f) is not None else 0) for m, f in frames.items())
    return max(6.0, 4.7 + 0.07 * longest), 4.6


def _heatmap_size(frames: Frames, params: Sequence[str]) -> tuple[float, float]:
    cols = min(len(frames), MAX_HEATMAP_COLUMNS)
    return 3.0 * cols + 1.0, 3.0 * math.ceil(len(frames) / cols) + 0.9


def _mosaic_size(frames: Frames, params: Sequence[str]) -> tuple[float, float]:
    return 3.2 * len(frames) + 1.2, 3.4 if len(params) == 3 else 2.2


Drawer = Callable[[Figure, Any, Frames, Sequence[str], Info, Mapping[str, str]], None]

#: kind -> (drawer, (frames, params) -> figure size in inches without the thumbnail)
DRAWERS: dict[str, tuple[Drawer, Callable[[Frames, Sequence[str]], tuple[float, float]]]] = {
    "polar": (draw_polar, _polar_size),
    "heatmap": (draw_heatmap, _heatmap_size),
    "curve": (draw_curve, lambda frames, params: (6.4, 4.2)),
    "disks": (draw_disks, disks_size),
    "sphere": (draw_sphere, sphere_size),
    "mosaic": (draw_mosaic, _mosaic_size),
}

__all__ = ["DRAWERS", "MOSAIC_ROWS", "draw_curve", "draw_heatmap", "draw_mosaic", "draw_polar", "fmt", "mosaic_cells"]
