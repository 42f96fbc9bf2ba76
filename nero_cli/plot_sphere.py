"""The drawers of 3-D rotations of point clouds: ``disks`` (the planes grid) and ``sphere`` maps.

``disks``: per model and rotation plane, a polar map whose angle is the direction of the rotation
axis in that plane (labelled with the direction itself, +x, +y, ...) and whose radius is the
rotation angle (0 at the centre, 180 degrees at the rim). ``sphere``: per model and (up to six)
rotation angles, a Mollweide map of where the rotation axis points. Each figure says so in a
plain-language note under its panels; colour bars are at most a few inches tall
(:func:`nero_cli.plot_axes.colorbar`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .plot_axes import (Arc, Frames, Info, arc_of, circular_edges, cmap_name, colorbar, column_values, distinct,
                        edges, fmt, grid_index, grid_mean, limits, radius_texts)

MAX_SPHERE_COLUMNS = 6
PLANE_ORDER = ("xy", "xz", "yz")
DISK_NOTE = ("Each disk: a plane the rotation axis lies in. Around the disk: the direction of the axis; "
             "out from the centre: the rotation angle (centre 0\u00b0, rim {top}\u00b0).")
SPHERE_NOTE = ("Each map: where the rotation axis points (longitude left to right, latitude up), "
               "one map per rotation angle; the identity sits at the north pole.")
#: Radius labels of the disks are small and boxed: they sit on coloured cells.
RADIUS_BOX = {"boxstyle": "round,pad=0.12", "facecolor": "white", "alpha": 0.7, "linewidth": 0}
RADIUS_GID = "disk-radius"


# ----------------------------------------------------------------------------------------
# disks: per model and rotation plane, a polar map of (axis direction, rotation angle)


def planes_of(frames: Frames, col: str) -> list[str]:
    seen = set()
    for f in frames.values():
        seen.update(str(v) for v in pd.unique(f[col]) if not (isinstance(v, float) and math.isnan(v)))
    return [p for p in PLANE_ORDER if p in seen] + sorted(seen - set(PLANE_ORDER))


def direction_labels(plane: str) -> list[str] | None:
    """The directions of the rotation axis at axis angles 0, 90, 180 and 270 degrees in ``plane``
    (``xy``: +x, +y, -x, -y: the axis is cos(a) e_i + sin(a) e_j); None for an unknown plane."""
    if len(plane) != 2 or not set(plane) <= set("xyz"):
        return None
    i, j = plane
    return [f"+{i}", f"+{j}", f"\u2212{i}", f"\u2212{j}"]


@dataclass
class DiskLayout:
    arc: Arc            # the axis angles
    rs: np.ndarray      # distinct rotation angles (the radius)
    th_edges: np.ndarray
    r_edges: np.ndarray


def disk_layout(frames: Frames, pth: str, pr: str) -> DiskLayout:
    arc = arc_of(column_values(frames, pth))
    rs = distinct(column_values(frames, pr))
    r_edges = edges(rs) if rs.size else np.array([0.0, 1.0])
    r_edges = np.clip(r_edges, 0.0, None)
    if rs.size and rs[-1] <= 180.0 + 1e-9:
        r_edges = np.minimum(r_edges, 180.0)
    return DiskLayout(arc, rs, circular_edges(arc), r_edges)


def _disk_cell(rows: pd.DataFrame, pth: str, pr: str, lay: DiskLayout):
    """The mean grid (r, theta) of one model's rows in one plane (None when empty) and the raw points."""
    t = lay.arc.unwrap(rows[pth].to_numpy())
    r = rows[pr].to_numpy()
    v = rows["_v"].to_numpy()
    ok = np.isfinite(t) & np.isfinite(r)
    grid = grid_mean(grid_index(r[ok], lay.rs), grid_index(t[ok], lay.arc.angles), v[ok],
                     (lay.rs.size, lay.arc.angles.size)) if ok.any() else None
    if grid is not None and np.isclose(lay.rs[0], 0.0):
        # The identity (rotation by 0) is the same for every axis.
        row0 = grid[0]
        if np.isfinite(row0).any():
            grid[0] = np.where(np.isfinite(row0), row0, np.nanmean(row0))
    return grid, (t[ok], r[ok], v[ok])


def _draw_disk(ax, grid, points, lay: DiskLayout, plane: str, cmap: str, vmin: float, vmax: float) -> None:
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
    disk_ticks(ax, lay.arc, lay.r_edges, plane)
    ax.grid(True, alpha=0.35, color="0.5")


def disk_ticks(ax, arc: Arc, r_edges: np.ndarray, plane: str) -> None:
    """Few, small tick labels (small disks stay legible, layout stays fast): the axis directions around
    a full disk (degrees on an open arc), and rotation angles inside the disk, in boxes, but none at
    the rim, which the note names."""
    names = direction_labels(plane)
    if arc.full and names is not None:
        ax.set_thetagrids([0, 90, 180, 270], names, fontsize=7)
    elif arc.full:
        ax.set_thetagrids([0, 90, 180, 270], fontsize=6)
    else:
        ax.set_thetagrids(np.linspace(arc.tmin, arc.tmax, 3), fontsize=6)
    top = float(r_edges[-1])
    step = 90.0 if top > 120 else (45.0 if top > 45 else top / 2 or 1.0)
    ticks = np.arange(step, top - 1e-9, step)
    angle = 22.5 if arc.full else arc.tmin + 0.25 * (arc.tmax - arc.tmin)
    radius_texts(ax, angle, ticks, [f"{fmt(t)}\u00b0" for t in ticks], 5, RADIUS_BOX, RADIUS_GID)
    ax.tick_params(pad=1)


def draw_disks(fig: Figure, region, frames: Frames, params: Sequence[str], info: Info, colors) -> None:
    pplane, pth, pr = params
    planes = planes_of(frames, pplane)
    lay = disk_layout(frames, pth, pr)
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
        _draw_disk(ax, grid, points, lay, plane, cmap_name(info), vmin, vmax)
        ax.set_title(f"{model} \u00b7 axis in the {plane} plane", fontsize=9, color=colors[model])
        axes.append(ax)
    colorbar(fig, axes, info, vmin, vmax)
    fig.supxlabel(DISK_NOTE.format(top=fmt(float(lay.r_edges[-1]))), fontsize=7, color="0.3")


# ----------------------------------------------------------------------------------------
# sphere: per model and (up to six) rotation angles, a Mollweide map of the rotation axis


def pick_columns(values: np.ndarray, k: int) -> np.ndarray:
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


def sphere_title(model: str, rot: float) -> str:
    return f"{model} \u00b7 no rotation (0\u00b0)" if rot == 0 else f"{model} \u00b7 rotated by {fmt(rot)}\u00b0"


def draw_sphere(fig: Figure, region, frames: Frames, params: Sequence[str], info: Info, colors) -> None:
    plon, plat, prot = params
    rots = distinct(column_values(frames, prot))
    shown = pick_columns(rots, MAX_SPHERE_COLUMNS)
    vmin, vmax = limits(column_values(frames, "_v"), info)
    sub = region.subgridspec(len(frames), max(shown.size, 1))
    axes = []
    for i, (model, f) in enumerate(frames.items()):
        rot = f[prot].to_numpy()
        ridx = grid_index(np.where(np.isfinite(rot), rot, np.inf), rots) if rots.size else None
        lon, lat, v = f[plon].to_numpy(), f[plat].to_numpy(), f["_v"].to_numpy()
        for j, rv in enumerate(shown):
            ax = fig.add_subplot(sub[i, j], projection="mollweide")
            k = int(np.searchsorted(rots, rv))
            sel = (ridx == k) & np.isfinite(rot) & np.isfinite(lon) & np.isfinite(lat)
            _sphere_points(ax, lon[sel], lat[sel], v[sel], cmap_name(info), vmin, vmax)
            ax.set_title(sphere_title(model, float(rv)), fontsize=8, color=colors[model])
            ax.set_longitude_grid(60)
            ax.set_latitude_grid(30)
            ax.set_xticklabels([])
            if j:
                ax.set_yticklabels([])
            ax.tick_params(labelsize=5)
            ax.grid(True, alpha=0.35)
            axes.append(ax)
    colorbar(fig, axes, info, vmin, vmax)
    fig.supxlabel(SPHERE_NOTE, fontsize=7, color="0.3")


def disks_size(frames: Frames, params: Sequence[str]) -> tuple[float, float]:
    return 3 * 2.6 + 1.0, 2.7 * len(frames) + 1.1


def sphere_size(frames: Frames, params: Sequence[str]) -> tuple[float, float]:
    n_rot = min(max(1, distinct(column_values(frames, params[2])).size), MAX_SPHERE_COLUMNS)
    return 2.9 * n_rot + 1.0, 1.6 * len(frames) + 1.1


__all__ = ["draw_disks", "draw_sphere", "disks_size", "sphere_size", "direction_labels", "planes_of",
           "MAX_SPHERE_COLUMNS", "PLANE_ORDER"]
