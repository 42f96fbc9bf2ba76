"""Plots of ``nero search``: the survival curve per axis, and each model's worst examples beside their inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .plots import model_colors, save_figure
from .run_plots import safe_name

#: Worst examples drawn per model and axis.
N_WORST = 5
#: ``transform(axis, positions, params)``: the inputs at those positions moved by those parameters.
Transform = Callable[[Any, np.ndarray, np.ndarray], Any]


def survival(t: pd.DataFrame, radii: np.ndarray) -> np.ndarray:
    """Share of samples correct at the identity (every sample without labels) whose prediction is
    unchanged for every |parameter| up to each radius."""
    ok = (t["label"] == t["prediction"]).to_numpy() if (t["label"] >= 0).all() else np.ones(len(t), bool)
    b = np.where(np.isnan(t["breaking"].to_numpy(dtype=float)), np.inf, t["breaking"].to_numpy(dtype=float))
    return np.array([(ok & (b > r)).mean() for r in radii])


def _picture(x: Any, task: Any) -> np.ndarray:
    """An input ``(C, H, W)`` as an image for ``imshow``: grayscale from the first channel unless RGB."""
    img = np.clip(np.asarray(task.thumbnail(x.numpy()), dtype=float), 0.0, 1.0)
    return np.moveaxis(img, 0, -1) if img.shape[0] in (3, 4) else img[0]


def _survival_figure(table: pd.DataFrame, axes: Sequence[Any]) -> Figure:
    models = list(dict.fromkeys(table["model"]))
    colors = model_colors(models)
    fig = Figure(figsize=(4.2 * len(axes), 3.4), layout="constrained")
    for k, axis in enumerate(axes):
        ax = fig.add_subplot(1, len(axes), k + 1)
        radii = np.linspace(0, float(np.abs(axis.grid).max()), 400)
        for m in models:
            t = table[(table["model"] == m) & (table["group"] == axis.group) & (table["axis"] == axis.name)]
            ax.step(radii, survival(t, radii), where="post", color=colors[m], label=m)
        ax.set_xlabel(f"|{axis.name}|")
        ax.set_ylabel("share still correct")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{axis.group}: survival")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=8)
    return fig


def _worst_figure(rows: pd.DataFrame, axis: Any, p: Any, model: str, transform: Transform) -> Figure:
    where = {int(s): i for i, s in enumerate(p.dataset.index)}
    pos = np.array([where[int(s)] for s in rows["sample"]])
    images = p.dataset.inputs
    moved = transform(axis, pos, rows["worst_param"].to_numpy(dtype=float)).cpu()
    fig = Figure(figsize=(1.9 * len(rows), 4.0), layout="constrained")
    for j, (_, r) in enumerate(rows.iterrows()):
        for row, (img, title) in enumerate(((images[pos[j]], f"sample {r['sample']}\np={r['identity_value']:.2f}"),
                                            (moved[j], f"{axis.name}={r['worst_param']:.3g}\np={r['worst_value']:.2f}"))):
            ax = fig.add_subplot(2, len(rows), row * len(rows) + j + 1)
            ax.imshow(_picture(img, p.task), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(title, fontsize=8)
            ax.set_axis_off()
    fig.suptitle(f"{model}: worst {axis.group} ({axis.name}) — input above, worst element below", fontsize=9)
    return fig


def write_search_plots(plot_dir: Path, table: pd.DataFrame, axes: Sequence[Any], p: Any,
                       transform: Transform) -> list[Path]:
    """``survival.png/svg`` and ``worst_<model>_<group>_<axis>.png/svg``; the paths written."""
    files = save_figure(_survival_figure(table, axes), plot_dir, "survival")
    for axis in axes:
        for m in dict.fromkeys(table["model"]):
            t = table[(table["model"] == m) & (table["group"] == axis.group) & (table["axis"] == axis.name)]
            rows = t.nsmallest(min(N_WORST, len(t)), "worst_value")
            fig = _worst_figure(rows, axis, p, m, transform)
            files += save_figure(fig, plot_dir, f"worst_{safe_name(m)}_{axis.group}_{axis.name}")
    return files


__all__ = ["write_search_plots", "survival", "N_WORST"]
