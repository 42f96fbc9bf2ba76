"""What ``nero lie`` writes: lie.csv's columns, summary.json, the plots and the run folder.

summary.json holds, per model and generator (``summary["metrics"][model][generator]``), the mean,
median and 90th percentile over the samples of the Lie derivative at the identity, its unit and the
method used. With ``--along`` lie.csv has one row per sample, generator and element of the group's
grid (the derivative at ``g·x``) with the columns ``element`` (the index in the grid, identity
added as ``evaluate`` adds it) and ``element_label``, and each entry also holds the orbit keys of
:data:`ORBIT_KEYS`; the identity keys are then computed from the identity's rows.
"""

from __future__ import annotations

import datetime as _dt
import platform
from pathlib import Path
from typing import Any, Sequence

import matplotlib
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from . import __version__
from . import runrecord as rr
from .model_formats import sha256_file
from .outdir import building, listing

matplotlib.use("Agg")

#: lie.csv's columns, in order.
COLUMNS = ("model", "sample", "label", "generator", "value", "unit", "method")
#: The columns ``--along`` adds after them.
ORBIT_COLUMNS = ("element", "element_label")
LIE_CSV = "lie.csv"
#: summary.json keys per model and generator: (key, reduction over samples).
SUMMARY_KEYS = (("lie_derivative_mean", "mean"), ("lie_derivative_median", "median"),
                ("lie_derivative_p90", "p90"))
#: summary.json keys ``--along`` adds per model and generator, with what they are.
ORBIT_KEYS = {
    "lie_derivative_orbit_mean": "mean over the grid's elements (each distinct element once, as evaluate's orbit "
                                 "means) of the mean over samples of the Lie derivative at g·x",
    "lie_derivative_orbit_max": "largest mean over samples of the Lie derivative at g·x over the grid's elements",
    "lie_derivative_orbit_argmax": "the element (label) where that largest mean is reached",
    "lie_derivative_by_element": "mean over samples of the Lie derivative at g·x, per element in grid order "
                                 "(the orbit's elements are listed in summary['orbit']['elements'])",
}
SCHEMA_VERSION = 2


def _reduce(values: pd.Series, how: str) -> float:
    return float(values.quantile(0.9) if how == "p90" else getattr(values, how)())


def _orbit_entry(rows: pd.DataFrame, orbit: dict[str, Any]) -> dict[str, Any]:
    """The :data:`ORBIT_KEYS` of one model and generator from its rows over the orbit."""
    by_element = rows.groupby("element", sort=True)["value"].mean().reindex(range(len(orbit["elements"])))
    means = by_element.to_numpy(dtype=float)
    weights = np.asarray(orbit["weights"] or [1.0] * len(means), dtype=float)
    best = int(np.nanargmax(means)) if np.isfinite(means).any() else 0
    return {"lie_derivative_orbit_mean": float(np.sum(weights * means) / np.sum(weights)),
            "lie_derivative_orbit_max": float(means[best]),
            "lie_derivative_orbit_argmax": orbit["elements"][best],
            "lie_derivative_by_element": [float(v) for v in means]}


def summarise(table: pd.DataFrame, group: str, doc: str = "", orbit: dict[str, Any] | None = None) -> dict[str, Any]:
    """summary.json: per model and generator, :data:`SUMMARY_KEYS` over the samples at the identity
    (``doc`` says what the value is); with ``orbit`` (``elements``: labels, ``weights``: orbit-mean
    weights or None, ``identity``: the identity's index) also :data:`ORBIT_KEYS`."""
    metrics: dict[str, dict[str, Any]] = {}
    for (model, gen), rows in table.groupby(["model", "generator"], sort=False):
        at_identity = rows if orbit is None else rows[rows["element"] == orbit["identity"]]
        entry: dict[str, Any] = {key: _reduce(at_identity["value"], how) for key, how in SUMMARY_KEYS}
        entry.update(unit=str(rows["unit"].iloc[0]), n_samples=int(len(at_identity)),
                     method=",".join(sorted(set(rows["method"]))))
        if orbit is not None:
            entry.update(_orbit_entry(rows, orbit))
        metrics.setdefault(str(model), {})[str(gen)] = entry
    keys: dict[str, Any] = {key: {"reduction": how, "higher_is_better": False,
                                  "doc": f"{how} over samples of the Lie derivative at the identity: {doc}"}
                            for key, how in SUMMARY_KEYS}
    if orbit is not None:
        keys.update({key: {"reduction": "orbit", "higher_is_better": False, "doc": text}
                     for key, text in ORBIT_KEYS.items()})
    summary = {"schema_version": SCHEMA_VERSION, "kind": "lie", "group": group,
               "models": list(dict.fromkeys(table["model"])), "generators": list(dict.fromkeys(table["generator"])),
               "keys": keys, "metrics": metrics}
    if orbit is not None:
        summary["orbit"] = dict(orbit)
    return summary


def _figure(n_panels: int, width: float) -> tuple[Figure, Any]:
    fig = Figure(figsize=(1.0 + width * n_panels, 3.6), constrained_layout=True)
    return fig, fig.subplots(1, n_panels, squeeze=False)[0]


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def plot(table: pd.DataFrame, path: Path) -> Path:
    """Box plots of the per-sample Lie derivatives: one panel per generator, one box per model
    (at the identity: with ``--along``, the identity's rows are given)."""
    gens = list(dict.fromkeys(table["generator"]))
    models = list(dict.fromkeys(table["model"]))
    fig, axes = _figure(len(gens), 1.6 * max(len(models), 2))
    for ax, gen in zip(axes, gens):
        rows = table[table["generator"] == gen]
        ax.boxplot([rows.loc[rows["model"] == m, "value"].dropna().to_numpy() for m in models], showfliers=True)
        ax.set_xticks(range(1, len(models) + 1), models, rotation=20, ha="right")
        ax.set_title(f"d/d{gen}")
        ax.set_ylabel(str(rows["unit"].iloc[0]))
        if (rows["value"] > 0).all():  # spans decades: confident samples barely move
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Lie derivative per sample (0 = locally invariant)")
    return _save(fig, path)


def plot_orbit(table: pd.DataFrame, labels: Sequence[str], path: Path) -> Path:
    """``--along``: the mean over samples of the Lie derivative at each element of the grid, one
    line per model, one panel per generator."""
    gens = list(dict.fromkeys(table["generator"]))
    fig, axes = _figure(len(gens), 4.2)
    for ax, gen in zip(axes, gens):
        rows = table[table["generator"] == gen]
        for model, mrows in rows.groupby("model", sort=False):
            means = mrows.groupby("element", sort=True)["value"].mean()
            ax.plot(means.index, means.to_numpy(), marker="o", ms=3, label=str(model))
        if len(labels) <= 24:
            ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_xlabel("element of the grid")
        ax.set_ylabel(f"mean {rows['unit'].iloc[0]}")
        ax.set_title(f"d/d{gen} at g·x")
        if (rows["value"] > 0).all():
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Lie derivative along the orbit (mean over samples)")
    return _save(fig, path)


def _run_info(p: Any, table: pd.DataFrame, options: dict[str, Any], command: Sequence[str] | None,
              started: _dt.datetime) -> dict[str, Any]:
    finished = _dt.datetime.now(_dt.timezone.utc)
    return {"status": "complete", "kind": "lie", "command": list(command) if command is not None else None,
            "task": p.task.name, "group": p.specs[0].canonical,
            "models": [{"name": m.name, "source": m.source, "format": m.format, "sha256": m.sha256,
                        "random_init": m.name in p.random_init} for m in p.models],
            "data": {"source": p.dataset.source, "sha256": p.dataset.sha256, "n_samples": len(p.dataset),
                     **p.data_record},
            "n_rows": len(table), "options": options, "warnings": p.warnings,
            "versions": {"python": platform.python_version(), "torch": torch.__version__, "nero": __version__},
            "started": started.isoformat(timespec="seconds"), "finished": finished.isoformat(timespec="seconds"),
            "seconds": round((finished - started).total_seconds(), 3)}


def write_lie_run(out: Path, p: Any, table: pd.DataFrame, summary: dict[str, Any], options: dict[str, Any],
                  *, plots: bool, command: Sequence[str] | None, started: _dt.datetime) -> None:
    """Write lie.csv, summary.json, plots/lie.png (and with ``--along`` plots/lie_orbit.png) and run.json
    (the manifest, last) in the partial folder beside ``out`` and swap it in (the caller holds ``out``
    through :func:`nero_cli.outdir.claim`)."""
    orbit = summary.get("orbit")
    with building(out, "run") as tmp:
        rr.write_table(tmp / LIE_CSV, table)
        rr.write_json(tmp / rr.SUMMARY, summary)
        if plots:
            plot(table if orbit is None else table[table["element"] == orbit["identity"]], tmp / "plots" / "lie.png")
            if orbit is not None:
                plot_orbit(table, orbit["elements"], tmp / "plots" / "lie_orbit.png")
        info = _run_info(p, table, options, command, started)
        info.update(written_by="nero", files=sorted({*listing(tmp), rr.RUN_JSON}),
                    lie_sha256=sha256_file(tmp / LIE_CSV))
        rr.write_json(tmp / rr.RUN_JSON, info)


__all__ = ["COLUMNS", "ORBIT_COLUMNS", "LIE_CSV", "SUMMARY_KEYS", "ORBIT_KEYS", "summarise", "plot", "plot_orbit",
           "write_lie_run"]
