"""What every NERO plot kind shares: values and grids, colour scales, axis names with their units,
text that stays readable on any cell, and radius labels written in boxes on polar maps.

Used by the drawers in :mod:`nero_cli.plot_kinds` and :mod:`nero_cli.plot_sphere`. A drawer's
``info`` is the metric's registry entry (``label``, ``range``, ``higher_is_better``, see
:func:`nero_cli.plots.metric_info`) plus ``own_scale``: whether each model's panel of cells gets its
own colour range.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, to_rgb
from matplotlib.figure import Figure

Frames = Mapping[str, pd.DataFrame]
Info = Mapping[str, Any]

#: A plot parameter column -> its axis label with the unit (the direction, where the image convention fixes one).
AXIS_LABELS = {
    "angle": "angle (\u00b0, counter-clockwise)",
    "dx": "dx (px, right)",
    "dy": "dy (px, down)",
    "scale": "scale (\u00d7)",
    "yaw": "yaw (\u00b0)",
    "pitch": "pitch (\u00b0)",
    "axis_angle": "axis angle (\u00b0)",
    "rot_angle": "rotation angle (\u00b0)",
    "axis_lon": "axis longitude (\u00b0)",
    "axis_lat": "axis latitude (\u00b0)",
    "plane": "plane of the axis",
    "k": "quarter turns (\u00d790\u00b0)",
    "flip": "flip",
    "t": "time reversal",
}
#: Largest colour bar, in inches along the figure's height.
COLORBAR_MAX_IN = 3.2
#: WCAG's smallest contrast ratio for normal text.
MIN_CONTRAST = 4.5


def axis_label(param: str) -> str:
    """The axis label of a parameter column: its name with its unit (the name alone when unknown)."""
    return AXIS_LABELS.get(param, param.replace("_", " "))


# ----------------------------------------------------------------------------------------
# Values


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


def mean_by(x: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def edges(centers: np.ndarray) -> np.ndarray:
    """Cell edges around sorted cell centres (half-way, ends extrapolated)."""
    c = np.asarray(centers, dtype=float)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def grid_index(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Index of each value in the sorted grid (nearest)."""
    idx = np.searchsorted(grid, values)
    idx = np.clip(idx, 0, len(grid) - 1)
    left = np.clip(idx - 1, 0, len(grid) - 1)
    closer_left = np.abs(values - grid[left]) < np.abs(values - grid[idx])
    return np.where(closer_left, left, idx)


def grid_mean(iy: np.ndarray, ix: np.ndarray, v: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Mean of ``v`` per cell (NaN where a cell has no finite value); linear in rows."""
    ok = np.isfinite(v)
    total = np.zeros(shape)
    count = np.zeros(shape)
    np.add.at(total, (iy[ok], ix[ok]), v[ok])
    np.add.at(count, (iy[ok], ix[ok]), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


# ----------------------------------------------------------------------------------------
# Colour scales and colour bars


def cmap_name(info: Info) -> str:
    # The "good" end of the scale always has the same (bright) colour.
    return "viridis" if info["higher_is_better"] else "viridis_r"


def data_limits(values: np.ndarray) -> tuple[float, float]:
    """The finite min and max of ``values``, widened when they (nearly) coincide; (0, 1) when none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = float(v.min()), float(v.max())
    if hi - lo <= 1e-6 * max(abs(lo), abs(hi), 1e-6):  # equal up to rounding: a flat range
        pad = 0.5 if lo == 0 else abs(lo) * 0.1
        return lo - pad, hi + pad
    return lo, hi


def limits(values: np.ndarray, info: Info) -> tuple[float, float]:
    """Colour / axis range: the metric's fixed range if known, else data min/max."""
    rng = info["range"]
    if rng is not None:
        return float(rng[0]), float(rng[1])
    return data_limits(values)


def colorbar(fig: Figure, axes: list, info: Info, vmin: float, vmax: float, span_in: float | None = None) -> Any:
    """A colour bar for ``axes``, at most :data:`COLORBAR_MAX_IN` tall: a bar beside several rows of
    panels takes ``span_in`` inches (default: the figure's height) and is shrunk to fit."""
    sm = ScalarMappable(norm=Normalize(vmin, vmax), cmap=cmap_name(info))
    span = span_in if span_in is not None else fig.get_figheight()
    shrink = float(min(0.85, COLORBAR_MAX_IN / max(span, 1e-6)))
    bar = fig.colorbar(sm, ax=axes, shrink=shrink, aspect=max(8.0, 20.0 * shrink), label=info["label"])
    bar.formatter.set_useOffset(False)  # plain values, never "1e-8 + 0.197"
    return bar


def relative_luminance(color: Any) -> float:
    """WCAG 2 relative luminance of a colour (0 black, 1 white)."""
    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(c) for c in to_rgb(color))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: Any, b: Any) -> float:
    """WCAG 2 contrast ratio of two colours, from 1 (the same) to 21 (black on white)."""
    la, lb = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def text_color(background: Any) -> str:
    """Black or white, whichever contrasts more with ``background`` (at least 4.58:1 on any colour)."""
    return "black" if contrast_ratio(background, "black") >= contrast_ratio(background, "white") else "white"


# ----------------------------------------------------------------------------------------
# Angles on the circle


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


def circular_edges(arc: Arc) -> np.ndarray:
    """Angular cell edges (deg) for the distinct angles of ``arc``."""
    a = arc.angles
    if arc.full:
        ext = np.concatenate([[a[-1] - 360.0], a, [a[0] + 360.0]])
        return (ext[1:] + ext[:-1]) / 2  # n + 1 edges, last = first + 360
    if a.size == 1:
        return np.array([a[0] - 2.5, a[0] + 2.5])
    return edges(a)


def radius_texts(ax, angle: float, ticks: Sequence[float], labels: Sequence[str], fontsize: float, box: Mapping[str, Any],
                 gid: str) -> None:
    """Write a polar axes' radius labels as texts along the ray at ``angle`` (deg), each in ``box``, in place
    of its tick labels (whose boxes matplotlib does not keep)."""
    ax.set_yticks(list(ticks), [""] * len(ticks))
    for t, text in zip(ticks, labels):
        ax.text(np.deg2rad(angle), t, text, ha="center", va="center", fontsize=fontsize, bbox=dict(box), zorder=5,
                gid=gid, color="0.2")


__all__ = ["AXIS_LABELS", "Arc", "arc_of", "axis_label", "circular_edges", "cmap_name", "colorbar", "column_values",
           "contrast_ratio", "data_limits", "distinct", "edges", "fmt", "grid_index", "grid_mean", "limits", "mean_by",
           "radius_texts", "relative_luminance", "text_color"]
