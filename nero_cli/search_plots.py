"""Plots of ``nero search``: the survival curve per axis, and each model's worst examples beside their inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .plots import model_colors, save_figure
from .run_plots import safe_name

#: Worst examples drawn per model and axis.
N_WORST = 5
#: ``show(model, axis, positions, params)``: the inputs at those positions moved by those parameters,
#: and the model's top boxes on them ``(M, 6)`` (``x1, y1, x2, y2, score, class``; score < 0: none),
#: or None for a classifier.
Show = Callable[[str, Any, np.ndarray, np.ndarray], tuple[Any, Any]]


def survival(t: pd.DataFrame, radii: np.ndarray) -> np.ndarray:
    """Share of samples correct at the identity (``correct_at_identity``; every sample without labels)
    whose prediction is unchanged for every |parameter| up to each radius."""
    c = t["correct_at_identity"]
    ok = np.ones(len(t), bool) if c.isna().any() else c.to_numpy(dtype=bool)
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


def _draw_box(ax: Any, row: Any, names: Sequence[str] | None, colour: str, dashed: bool = False) -> None:
    """One box ``x1, y1, x2, y2[, score, class]`` (pixel edges) on an ``imshow`` axis."""
    x1, y1, x2, y2 = (float(v) for v in row[:4])
    ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.2,
                           linestyle="--" if dashed else "-"))
    if len(row) > 4:
        k = int(round(float(row[5])))
        name = names[k] if names and 0 <= k < len(names) else str(k)
        ax.text(x1 - 0.5, y1 - 1.0, f"{name} {float(row[4]):.2f}", color=colour, fontsize=6, va="bottom")


def _panel(ax: Any, img: Any, task: Any, title: str, box: Any, truth: Any, names: Sequence[str] | None) -> None:
    ax.imshow(_picture(img, task), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    if truth is not None:
        _draw_box(ax, truth, names, "#44bb44", dashed=True)
    if box is not None and float(box[4]) >= 0:
        _draw_box(ax, box, names, "#ee4444")
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()


def _worst_figure(rows: pd.DataFrame, axis: Any, p: Any, model: str, show: Show) -> Figure:
    where = {int(s): i for i, s in enumerate(p.dataset.index)}
    pos = np.array([where[int(s)] for s in rows["sample"]])
    images = p.dataset.inputs
    _, boxes0 = show(model, axis, pos, np.zeros(len(pos)))
    moved, boxes = show(model, axis, pos, rows["worst_param"].to_numpy(dtype=float))
    truth = p.dataset.targets.get("boxes") if boxes is not None else None
    q = "IoU" if boxes is not None else "p"
    fig = Figure(figsize=(1.9 * len(rows), 4.0), layout="constrained")
    for j, (_, r) in enumerate(rows.iterrows()):
        panels = ((images[pos[j]], f"sample {r['sample']}\n{q}={r['identity_value']:.2f}",
                   None if boxes0 is None else boxes0[j], None if truth is None else truth[pos[j], 0]),
                  (moved[j].cpu(), f"{axis.name}={r['worst_param']:.3g}\n{q}={r['worst_value']:.2f}",
                   None if boxes is None else boxes[j], None))
        for row, (img, title, box, gt) in enumerate(panels):
            _panel(fig.add_subplot(2, len(rows), row * len(rows) + j + 1), img, p.task, title, box, gt, p.class_names)
    boxes_text = "; top box red, ground truth dashed green" if boxes is not None else ""
    fig.suptitle(f"{model}: worst {axis.group} ({axis.name}) — input above, worst element below{boxes_text}",
                 fontsize=9)
    return fig


def write_search_plots(plot_dir: Path, table: pd.DataFrame, axes: Sequence[Any], p: Any, show: Show) -> list[Path]:
    """``survival.png/svg`` and ``worst_<model>_<group>_<axis>.png/svg``; the paths written."""
    files = save_figure(_survival_figure(table, axes), plot_dir, "survival")
    for axis in axes:
        for m in dict.fromkeys(table["model"]):
            t = table[(table["model"] == m) & (table["group"] == axis.group) & (table["axis"] == axis.name)]
            rows = t.nsmallest(min(N_WORST, len(t)), "worst_value")
            fig = _worst_figure(rows, axis, p, m, show)
            files += save_figure(fig, plot_dir, f"worst_{safe_name(m)}_{axis.group}_{axis.name}")
    return files


__all__ = ["write_search_plots", "survival", "N_WORST"]
