"""The resampling floor in NERO plots.

``results.csv`` and ``summary.csv`` of tasks on images or frames carry a ``floor`` column: the
model's equivariance error on the round trip g⁻¹·(g·x) against x, what resampling alone causes
(:mod:`nero_cli.resampling`; 0 on elements exact on the pixel grid). It is in units of the
equivariance error, so it is drawn under that metric (and under the error above it): polar and
curve plots shade a band from 0 up to the floor at each element, in the model's colour, labelled
``resampling floor (<model>)`` in the legend. A band cannot be drawn on a map of cells, so heatmap
and mosaic panels give the floor's mean and largest value over the grid under the model's name.
Disks and spheres (SO(3) on point clouds, which are never resampled) have no floor.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

#: The results / summary.csv column of the floor, and the metrics it is drawn under.
FLOOR_COLUMN = "floor"
FLOORED_METRICS = ("equivariance_error", "excess_equivariance_error")
#: The column of a plot frame (see :mod:`nero_cli.plot_kinds`) that holds the floor.
FLOOR = "_floor"


def has_floor(table: pd.DataFrame) -> bool:
    """Whether ``table`` (results or summary rows) has a non-zero resampling floor somewhere."""
    if FLOOR_COLUMN not in table.columns:
        return False
    return bool(np.nan_to_num(pd.to_numeric(table[FLOOR_COLUMN], errors="coerce").to_numpy(dtype=float)).any())


def metrics_with_floor(table: pd.DataFrame, metric: str) -> list[str]:
    """``metric``, then ``equivariance_error`` when ``table`` has it, ``metric`` is not drawn with the
    floor already and the table has a non-zero floor: the plots that show the floor by default."""
    if metric in FLOORED_METRICS or FLOORED_METRICS[0] not in table.columns or not has_floor(table):
        return [metric]
    return [metric, FLOORED_METRICS[0]]


def floor_of(frame: pd.DataFrame) -> np.ndarray | None:
    """A plot frame's floor, or None when it has none or it is 0 everywhere."""
    if FLOOR not in frame:
        return None
    fl = frame[FLOOR].to_numpy(dtype=float)
    return fl if np.nan_to_num(fl).any() else None


def floor_values(frames: Mapping[str, pd.DataFrame]) -> list[np.ndarray]:
    """The floor of every plot frame that has one (for the value axis to cover the bands)."""
    return [f[FLOOR].to_numpy(dtype=float) for f in frames.values() if FLOOR in f]


def floor_band(ax, x: np.ndarray, floor: np.ndarray, model: str, color: str) -> None:
    """The shaded band from 0 up to ``floor`` at ``x`` (curve axes, or polar axes with x in radians)."""
    ax.fill_between(x, 0.0, np.nan_to_num(floor), color=color, alpha=0.2, lw=0, zorder=1,
                    label=f"resampling floor ({model})")


def floor_note(frame: pd.DataFrame) -> str | None:
    """A plot frame's floor in words, for panels of cells (None when it has none)."""
    fl = floor_of(frame)
    if fl is None:
        return None
    return f"resampling floor: mean {np.nanmean(fl):.3g}, max {np.nanmax(fl):.3g}"
