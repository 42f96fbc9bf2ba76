"""The output of ``nero layers``: the bar chart of error by layer and the run folder (layers.csv,
summary.json, plots/, run.json), written through :mod:`nero_cli.outdir` like ``nero evaluate``'s.
"""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch
from matplotlib.figure import Figure

from . import __version__
from . import runrecord as rr
from .outdir import building, listing
from .plots import save_figure
from .prepare import Prepared
from .run_plots import safe_name

LAYERS_CSV = "layers.csv"
SCHEMA_VERSION = 1
ASSUMPTION = ("feature maps (N, C, h, w) transform as scalar fields (every channel moved alike, the action rescaled "
              "to the map's resolution); for steerable networks whose channels permute, per-layer errors are "
              "overstated")


def summarise(table: pd.DataFrame, output: dict[str, float], spec: Any, n_samples: int) -> dict[str, Any]:
    """summary.json: per model the largest own error and contribution over layers (mean over elements)."""
    models = {}
    for name, t in table.groupby("model", sort=False):
        mean = t.groupby(["depth", "layer"], sort=True)[["own_error", "contribution"]].mean().reset_index()
        own = mean.dropna(subset=["own_error"])
        worst = own.loc[own["own_error"].idxmax()] if len(own) else None
        top = mean.loc[mean["contribution"].idxmax()]
        models[str(name)] = {
            "max_layer_error": float(worst["own_error"]) if worst is not None else None,
            "max_layer_error_layer": str(worst["layer"]) if worst is not None else None,
            "max_contribution": float(top["contribution"]), "max_contribution_layer": str(top["layer"]),
            "output_error": output[name], "n_layers": int(len(mean) - 1)}
    return {"schema_version": SCHEMA_VERSION, "kind": "layers", "group": spec.canonical, "n_samples": n_samples,
            "models": list(models), "assumption": ASSUMPTION, "per_model": models}


def figure(table: pd.DataFrame, model: str) -> Figure:
    """Bars of own error and contribution by layer, in execution order (mean over elements)."""
    t = table[table["model"] == model]
    mean = t.groupby(["depth", "layer", "kind"], sort=True)[["own_error", "contribution"]].mean().reset_index()
    ticks = [f"{d} {lay}\n{k}" for d, lay, k in zip(mean["depth"], mean["layer"], mean["kind"])]
    fig = Figure(figsize=(max(6.0, 0.7 * len(mean) + 2), 5.5), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    for ax, col, label, colour in zip(axes, ("own_error", "contribution"),
                                      ("own error ‖f(g·z) − g·f(z)‖ / ‖f(z)‖\n(interior)",
                                       "contribution\n(TV change at the output)"), ("#4477aa", "#cc6677")):
        ax.bar(range(len(mean)), mean[col].fillna(0.0), color=colour)
        for i, v in enumerate(mean[col]):
            if math.isnan(v):
                ax.text(i, 0, "n/a", ha="center", va="bottom", fontsize=7, color="grey")
        ax.set_ylabel(label, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_xticks(range(len(mean)), ticks, rotation=60, ha="right", fontsize=7)
    axes[1].set_xlabel("layer, by depth (execution order)")
    fig.suptitle(f"{model}: equivariance error by layer", fontsize=10)
    return fig


def _run_info(p: Prepared, table: pd.DataFrame, tmp: Path, options: dict[str, Any], command: Sequence[str] | None,
              started: _dt.datetime, warnings: list[str]) -> dict[str, Any]:
    finished = _dt.datetime.now(_dt.timezone.utc)
    return {"status": "complete", "kind": "layers", "written_by": "nero",
            "command": list(command) if command is not None else None,
            "models": [{"name": m.name, "source": m.source, "format": m.format, "sha256": m.sha256} for m in p.models],
            "data": {"source": p.dataset.source, "sha256": p.dataset.sha256, "n_samples": len(p.dataset)},
            "group": p.specs[0].canonical, "assumption": ASSUMPTION, "options": options, "n_rows": len(table),
            "layers_sha256": rr.sha256_file(tmp / LAYERS_CSV), "warnings": warnings,
            "versions": {"torch": torch.__version__, "pandas": pd.__version__, "nero": __version__},
            "started": started.isoformat(timespec="seconds"), "finished": finished.isoformat(timespec="seconds"),
            "seconds": round((finished - started).total_seconds(), 3),
            "files": sorted({*listing(tmp), rr.RUN_JSON})}


def write_layers_run(out: Path, p: Prepared, table: pd.DataFrame, summary: dict[str, Any], options: dict[str, Any],
                     *, plots: bool, command: Sequence[str] | None, started: _dt.datetime) -> list[Path]:
    """Write layers.csv, summary.json, plots/ and run.json into the partial folder, then commit it to ``out``
    (the caller holds ``out`` through :func:`nero_cli.outdir.claim`); the plot paths in ``out``."""
    with building(out, "run") as tmp:
        rr.write_json(tmp / rr.RUN_JSON, {"written_by": "nero", "files": [], "status": "running", "kind": "layers"})
        rr.write_json(tmp / rr.SUMMARY, summary)
        files = [f for m in summary["models"] for f in save_figure(figure(table, m), tmp / "plots",
                                                                   f"layers_{safe_name(m)}")] if plots else []
        rr.write_table(tmp / LAYERS_CSV, table)
        rr.write_json(tmp / rr.RUN_JSON, _run_info(p, table, tmp, options, command, started, p.warnings))
    return [out / f.relative_to(tmp) for f in files]


__all__ = ["figure", "summarise", "write_layers_run", "LAYERS_CSV", "ASSUMPTION"]
