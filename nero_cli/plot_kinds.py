"""The drawers of NERO plot kinds: polar, curve, heatmap, disks, sphere and mosaic.

Each drawer fills one gridspec ``region`` of a figure with the per-model ``frames`` (a parameter
column per name in ``params`` plus the float metric column ``_v``), coloured and scaled by
``info``, the metric's registry entry (``label``, ``range``, ``higher_is_better``) as given by
:func:`nero_cli.plots.metric_info`. :func:`figure_size` is the size each kind wants.

A frame may hold the resampling floor, drawn as :mod:`nero_cli.plot_floor` says.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from .plot_floor import floor_band, floor_note, floor_of, floor_values

Frames = Mapping[str, pd.DataFrame]
Info = Mapping[str, Any]

MAX_SPHERE_COLUMNS = 6
MAX_HEATMAP_COLUMNS = 4
PLANE_ORDER = ("xy", "xz", "yz")


# ----------------------------------------------------------------------------------------
# Values, scales and colours


def column_values(frames: Frames, col: str) -> np.ndarray:
    """Column ``col`` of every model's frame, concatenated."""
    return np.concatenate([f[col].to_numpy() for f in frames.values()])


def distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct finite values (rounded to 1e-9)."""
    return np.unique(np.round(values[np.isfinite(values)], 9))


def fmt(v: Any) -> str:
    """A value as a short label (whole floats without the ``.0``)."""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v)


def cmap_name(info: Info) -> str:
    # The "good" end of the scale always has the same (bright) colour.
    return "viridis" if info["higher_is_better"] else "viridis_r"


def limits(values: np.ndarray, info: Info) -> tuple[float, float]:
    """Colour / axis range: the metric's fixed range if known, else data min/max."""
    rng = info["range"]
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


def _colorbar(fig: Figure, axes: list, info: Info, vmin: float, vmax: float) -> None:
    sm = ScalarMappable(norm=Normalize(vmin, vmax), cmap=cmap_name(info))
    fig.colorbar(sm, ax=axes, shrink=0.85, label=info["label"])


# ----------------------------------------------------------------------------------------
# Grids and arcs


def _edges(centers: np.ndarray) -> np.ndarray:
    """Cell edges around sorted cell centres (half-way, ends extrapolated)."""
    c = np.asarray(centers, dtype=float)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


@dataclass
class Arc:
    """Layout of a set of angles (degrees) on the circle."""

    angles: np.ndarray   # sorted distinct angles, unwrapped along the arc
    full: bool           # they cover the whole circle
    tmin: float          # arc start (deg), in (-180, 180]
    tmax: float          # arc end (deg)

    def unwrap(self, a: np.ndarray) -> np.ndarray:
        """Map angles onto the arc's representation (start <= a < start + 360)."""
        return self.tmin + np.mod(np.asarray(a, dtype=float) - self.tmin + 1e-9, 360.0) - 1e-9


def arc_of(angles: np.ndarray) -> Arc:
    """Whether angles cover the full circle; otherwise the arc they span.

    Angles may come canonicalised into [0, 360) (-45..45 as 315..355, 0..45): the
    arc starts after the largest gap between neighbouring angles.
    """
    a = np.asarray(angles, dtype=float)
    a = a[np.isfinite(a)]
    u = np.unique(np.round(np.mod(a, 360.0), 9))
    u = u[u < 360.0 - 1e-9] if u.size > 1 else u
    if u.size == 0:
        return Arc(np.array([]), False, 0.0, 360.0)
    if u.size == 1:
        t = float(u[0]) - 360.0 if u[0] > 180 else float(u[0])
        return Arc(np.array([t]), False, t - 1.0, t + 1.0)
    gaps = np.diff(np.concatenate([u, [u[0] + 360.0]]))
    k = int(np.argmax(gaps))
    step = float(np.median(gaps))
    if u.size >= 3 and gaps[k] <= 1.5 * step + 1e-6:
        return Arc(u, True, 0.0, 360.0)
    start = float(u[(k + 1) % u.size])
    if start > 180.0:
        start -= 360.0
    unwrapped = np.sort(start + np.mod(u - start + 1e-9, 360.0) - 1e-9)
    return Arc(unwrapped, False, start, start + 360.0 - float(gaps[k]))


def _circular_edges(arc: Arc) -> np.ndarray:
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
# polar and curve: one line per model


def _polar_points(arc: Arc, a: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Angles (deg, along the arc; closed when it is the full circle) and values to draw."""
    if arc.full:
        a, v = _mean_by(np.mod(a, 360.0), v)
        if a.size > 1:
            return np.append(a, a[0] + 360.0), np.append(v, v[0])
        return a, v
    t = arc.unwrap(a)
    order = np.argsort(t)
    return t[order], v[order]


def draw_polar(fig: Figure, region, frames: Frames, params: Sequence[str], info: Info, colors) -> None:
    p = params[0]
    ax = fig.add_subplot(region, projection="polar")
    arc = arc_of(column_values(frames, p))
    for model, f in frames.items():
        x = f[p].to_numpy()
        a, v = _polar_points(arc, *_mean_by(x, f["_v"].to_numpy()))
        ax.plot(np.deg2rad(a), v, color=colors[model], lw=1.6, marker="o", ms=2.5, label=model, zorder=2)
        floor = floor_of(f)
        if floor is not None:
            floor_band(ax, np.deg2rad(a), _polar_points(arc, *_mean_by(x, floor))[1], model, colors[model])
    lo, hi = limits(np.concatenate([column_values(frames, "_v"), *floor_values(frames)]), info)
    if info["range"] is None:
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


def draw_curve(fig: Figure, region, frames: Frames, params: Sequence[str], info: Info, colors) -> None:
    p = params[0]
    ax = fig.add_subplot(region)
    xs_all = []
    for model, f in frames.items():
        x, v = _mean_by(f[p].to_numpy(), f["_v"].to_numpy())
        xs_all.append(x)
        ax.plot(x, v, color=colors[model], lw=1.6, marker="o", ms=3, label=model, zorder=2)
        floor = floor_of(f)
        if floor is not None:
            floor_band(ax, x, _mean_by(f[p].to_numpy(), floor)[1], model, colors[model])
    xs = np.concatenate(xs_all) if xs_all else np.array([])
    if xs.size and np.isclose(xs, 1.0).any():
        ax.axvline(1.0, color="0.4", lw=0.8, ls="--", zorder=0)
    lo, hi = limits(np.concatenate([column_values(frames, "_v"), *floor_values(frames)]), info)
    pad = 0.03 * (hi - lo)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel(p)
    ax.set_ylabel(info["label"])
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, frameon=False)


# ----------------------------------------------------------------------------------------
# heatmap and mosaic: one grid of cells per model, one colour scale


def _grid_panels(fig: Figure, region, frames: Frames, grids: Mapping[str, np.ndarray], cols: int, info: Info,
                 colors, draw: Callable[..., None]) -> None:
    """One axes per model's grid (``cols`` per row) drawn by ``draw(ax, grid, cmap, vmin, vmax)``,
    titled with the model (and its resampling floor, when its frame has one); one colour range for
    all: the metric's, else the global min/max."""
    vmin, vmax = limits(np.concatenate([g.ravel() for g in grids.values()]), info)
    sub = region.subgridspec(math.ceil(len(grids) / cols), cols)
    axes = []
    for i, (model, g) in enumerate(grids.items()):
        ax = fig.add_subplot(sub[i // cols, i % cols])
        draw(ax, g, cmap_name(info), vmin, vmax)
        note = floor_note(frames[model])
        ax.set_title(model if note is None else f"{model}\n{note}", fontsize=10 if note is None else 8,
                     color=colors[model])
        axes.append(ax)
    _colorbar(fig, axes, info, vmin, vmax)


def _heatmap_grids(frames: Frames, params: Sequence[str]):
    """Shared grid (x centres, y centres) and the per-model mean grids (ny, nx)."""
    px, py = params
    xs = distinct(column_values(frames, px))
    ys = distinct(column_values(frames, py))
    grids = {}
    for model, f in frames.items():
        x, y, v = f[px].to_numpy(), f[py].to_numpy(), f["_v"].to_numpy()
        ok = np.isfinite(x) & np.isfinite(y)
        grids[model] = _grid_mean(_grid_index(y[ok], ys), _grid_index(x[ok], xs), v[ok],
                                  (ys.size, xs.size))
    return xs, ys, grids


def draw_heatmap(fig: Figure, region, frames: Frames, params: Sequence[str], info: Info, colors) -> None:
    px, py = params
    xs, ys, grids = _heatmap_grids(frames, params)
    xe, ye = _edges(xs), _edges(ys)
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
        ax.set_xlabel(px)
        ax.set_ylabel(py)
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
    return _grid_mean(row, k, f["_v"].to_numpy(), (nrows, 4))


def draw_mosaic(fig: Figure, region, frames: Frames, params: Sequence[str], info: Info, colors) -> None:
    """NERO's mosaic for D4 (2 x 4) and D4 x time reversal (4 x 4): one cell per element,
    coloured by the metric and labelled with its value."""

    def draw(ax, g, cmap, vmin, vmax) -> None:
        ax.imshow(np.ma.masked_invalid(g), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        for (r, c), v in np.ndenumerate(g):
            if np.isfinite(v):
                ax.text(c, r, f"{v:.3g}", ha="center", va="center", fontsize=7,
                        color="white" if (v - vmin) < 0.5 * (vmax - vmin) else "black")
        ax.set_xticks(range(4), [f"rot{90 * k}" for k in range(4)], fontsize=8)
        ax.set_yticks(range(g.shape[0]), list(MOSAIC_ROWS[: g.shape[0]]), fontsize=8)

    grids = {m: _mosaic_grid(f, params) for m, f in frames.items()}
    _grid_panels(fig, region, frames, grids, len(grids), info, colors, draw)


# ----------------------------------------------------------------------------------------
# disks: per model and rotation plane, a polar map of (axis angle, rotation angle)


def _planes(frames: Frames, col: str) -> list[str]:
    seen = set()
    for f in frames.values():
        seen.update(str(v) for v in pd.unique(f[col]) if not (isinstance(v, float) and math.isnan(v)))
    return [p for p in PLANE_ORDER if p in seen] + sorted(seen - set(PLANE_ORDER))


@dataclass
class _DiskLayout:
    arc: Arc            # the axis angles
    rs: np.ndarray      # distinct rotation angles (the radius)
    th_edges: np.ndarray
    r_edges: np.ndarray


def _disk_layout(frames: Frames, pth: str, pr: str) -> _DiskLayout:
    arc = arc_of(column_values(frames, pth))
    rs = distinct(column_values(frames, pr))
    r_edges = _edges(rs) if rs.size else np.array([0.0, 1.0])
    r_edges = np.clip(r_edges, 0.0, None)
    if rs.size and rs[-1] <= 180.0 + 1e-9:
        r_edges = np.minimum(r_edges, 180.0)
    return _DiskLayout(arc, rs, _circular_edges(arc), r_edges)


def _disk_cell(rows: pd.DataFrame, pth: str, pr: str, lay: _DiskLayout):
    """The mean grid (r, theta) of one model's rows in one plane (None when empty) and the raw points."""
    t = lay.arc.unwrap(rows[pth].to_numpy())
    r = rows[pr].to_numpy()
    v = rows["_v"].to_numpy()
    ok = np.isfinite(t) & np.isfinite(r)
    grid = _grid_mean(_grid_index(r[ok], lay.rs), _grid_index(t[ok], lay.arc.angles), v[ok],
                      (lay.rs.size, lay.arc.angles.size)) if ok.any() else None
    if grid is not None and np.isclose(lay.rs[0], 0.0):
        # The identity (rotation by 0) is the same for every axis.
        row0 = grid[0]
        if np.isfinite(row0).any():
            grid[0] = np.where(np.isfinite(row0), row0, np.nanmean(row0))
    return grid, (t[ok], r[ok], v[ok])


def _draw_disk(ax, grid, points, lay: _DiskLayout, cmap: str, vmin: float, vmax: float) -> None:
    t, r, v = points
    if grid is not None and np.isfinite(grid).mean() >= 0.5:
        ax.pcolormesh(np.deg2rad(lay.th_edges), lay.r_edges, np.ma.masked_invalid(grid), cmap=cmap,
                      vmin=vmin, vmax=vmax, shading="flat")
    elif t.size:
        ax.scatter(np.deg2rad(t), r, c=v, cmap=cmap, vmin=vmin, vmax=vmax, s=40, edgecolors="none")
    ax.set_ylim(0.0, float(lay.r_edges[-1]))
    if not lay.arc.full:
        ax.set_thetamin(float(lay.th_edges[0]))
        ax.set_thetamax(float(lay.th_edges[-1]))
    _sparse_polar_ticks(ax, lay.arc, lay.r_edges)
    ax.grid(True, alpha=0.35, color="0.5")


def draw_disks(fig: Figure, region, frames: Frames, params: Sequence[str], info: Info, colors) -> None:
    pplane, pth, pr = params
    planes = _planes(frames, pplane)
    lay = _disk_layout(frames, pth, pr)
    cells = []  # (model, plane, grid or None, raw points)
    for model, f in frames.items():
        fplane = f[pplane].astype(str).to_numpy()
        for plane in planes:
            cells.append((model, plane, *_disk_cell(f[fplane == plane], pth, pr, lay)))
    vals = np.concatenate([c[3][2] for c in cells]) if cells else np.array([])
    vmin, vmax = limits(vals, info)
    sub = region.subgridspec(len(frames), len(planes))
    axes = []
    for i, (model, plane, grid, points) in enumerate(cells):
        ax = fig.add_subplot(sub[i // len(planes), i % len(planes)], projection="polar")
        _draw_disk(ax, grid, points, lay, cmap_name(info), vmin, vmax)
        ax.set_title(f"{model} \u00b7 {plane} plane", fontsize=9, color=colors[model])
        if i == 0:
            ax.set_xlabel(f"angle: {pth}, radius: {pr}", fontsize=7)
        axes.append(ax)
    _colorbar(fig, axes, info, vmin, vmax)


def _sparse_polar_ticks(ax, arc: Arc, r_edges: np.ndarray) -> None:
    """Few, small tick labels: small disks stay legible (and layout stays fast)."""
    if arc.full:
        ax.set_thetagrids([0, 90, 180, 270], fontsize=6)
    else:
        ax.set_thetagrids(np.linspace(arc.tmin, arc.tmax, 3), fontsize=6)
    top = float(r_edges[-1])
    step = 90.0 if top > 120 else (45.0 if top > 45 else top / 2 or 1.0)
    ticks = np.arange(step, top + 1e-9, step)
    ax.set_rgrids(ticks, labels=[f"{fmt(t)}\u00b0" for t in ticks])
    ax.tick_params(axis="y", labelsize=5, labelcolor="0.3")
    ax.tick_params(pad=1)


# ----------------------------------------------------------------------------------------
# sphere: per model and (up to six) rotation angles, a Mollweide map of the rotation axis


def _pick_columns(values: np.ndarray, k: int) -> np.ndarray:
    if values.size <= k:
        return values
    return values[np.unique(np.round(np.linspace(0, values.size - 1, k)).astype(int))]


def _sphere_points(ax, lon: np.ndarray, lat: np.ndarray, v: np.ndarray, cmap: str, vmin: float,
                   vmax: float) -> None:
    n = lon.size
    if n:
        x = np.deg2rad(np.mod(lon + 180.0, 360.0) - 180.0)
        y = np.deg2rad(np.clip(lat, -90.0, 90.0))
        ax.scatter(x, y, c=v, cmap=cmap, vmin=vmin, vmax=vmax, s=float(np.clip(1500.0 / n, 4.0, 70.0)),
                   edgecolors="none")


def draw_sphere(fig: Figure, region, frames: Frames, params: Sequence[str], info: Info, colors) -> None:
    plon, plat, prot = params
    rots = distinct(column_values(frames, prot))
    shown = _pick_columns(rots, MAX_SPHERE_COLUMNS)
    vmin, vmax = limits(column_values(frames, "_v"), info)
    sub = region.subgridspec(len(frames), max(shown.size, 1))
    axes = []
    for i, (model, f) in enumerate(frames.items()):
        rot = f[prot].to_numpy()
        ridx = _grid_index(np.where(np.isfinite(rot), rot, np.inf), rots) if rots.size else None
        lon, lat, v = f[plon].to_numpy(), f[plat].to_numpy(), f["_v"].to_numpy()
        for j, rv in enumerate(shown):
            ax = fig.add_subplot(sub[i, j], projection="mollweide")
            k = int(np.searchsorted(rots, rv))
            sel = (ridx == k) & np.isfinite(rot) & np.isfinite(lon) & np.isfinite(lat)
            _sphere_points(ax, lon[sel], lat[sel], v[sel], cmap_name(info), vmin, vmax)
            ax.set_title(f"{model} \u00b7 {prot} {fmt(rv)}\u00b0", fontsize=8, color=colors[model])
            ax.set_longitude_grid(60)
            ax.set_latitude_grid(30)
            ax.set_xticklabels([])
            if j:
                ax.set_yticklabels([])
            ax.tick_params(labelsize=5)
            ax.grid(True, alpha=0.35)
            axes.append(ax)
    _colorbar(fig, axes, info, vmin, vmax)


# ----------------------------------------------------------------------------------------
# The kinds


def _heatmap_size(frames: Frames, params: Sequence[str]) -> tuple[float, float]:
    cols = min(len(frames), MAX_HEATMAP_COLUMNS)
    return 3.0 * cols + 1.0, 3.0 * math.ceil(len(frames) / cols) + 0.9


def _sphere_size(frames: Frames, params: Sequence[str]) -> tuple[float, float]:
    n_rot = min(max(1, distinct(column_values(frames, params[2])).size), MAX_SPHERE_COLUMNS)
    return 2.9 * n_rot + 1.0, 1.6 * len(frames) + 0.9


Drawer = Callable[[Figure, Any, Frames, Sequence[str], Info, Mapping[str, str]], None]

#: kind -> (drawer, (frames, params) -> figure size in inches without the thumbnail)
DRAWERS: dict[str, tuple[Drawer, Callable[[Frames, Sequence[str]], tuple[float, float]]]] = {
    "polar": (draw_polar, lambda frames, params: (5.4, 4.6)),
    "heatmap": (draw_heatmap, _heatmap_size),
    "curve": (draw_curve, lambda frames, params: (6.4, 4.2)),
    "disks": (draw_disks, lambda frames, params: (3 * 2.6 + 1.0, 2.7 * len(frames) + 0.9)),
    "sphere": (draw_sphere, _sphere_size),
    "mosaic": (draw_mosaic, lambda frames, params: (3.2 * len(frames) + 1.2, 3.4 if len(params) == 3 else 2.2)),
}
