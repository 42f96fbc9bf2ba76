"""The ``nero lie`` typer command: parses the options and forwards to :func:`nero_cli.lie_derivative.lie_run`.

Light on purpose (no torch, pandas, numpy or matplotlib here): the domain module is imported
inside the command so that ``nero --help`` stays instant.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from .lazy import gc_paused_imports


def _print_summary(summary: dict[str, Any]) -> None:
    """Mean, median and 90th percentile of the Lie derivative at the identity per model and generator
    (and with ``--along`` its mean and largest value over the orbit), as a table on stdout."""
    from rich.console import Console
    from rich.table import Table

    along = "orbit" in summary
    numbers = ["mean", "median", "90th pct", *(["orbit mean", "orbit max"] if along else [])]
    table = Table(title=f"Lie derivative ({summary['group']}) per sample at the identity"
                  + (" and along the orbit" if along else ""))
    for col in ("model", "generator", *numbers, "unit", "method"):
        table.add_column(col, justify="right" if col in numbers else "left")
    for model, gens in summary["metrics"].items():
        for gen, m in gens.items():
            keys = ["mean", "median", "p90", *(["orbit_mean", "orbit_max"] if along else [])]
            table.add_row(model, gen, *(f"{m['lie_derivative_' + k]:.3g}" for k in keys), m["unit"], m["method"])
    Console().print(table)


def add_command(app: Any, guard: Callable[[Callable[[], Any]], Any]) -> None:
    """Register ``nero lie`` on the typer ``app``; ``guard(fn)`` turns NeroError into one line + exit code."""

    @app.command("lie")
    def lie_command(
        models: List[str] = typer.Argument(..., metavar="MODEL...", help="Models to measure, as for 'nero evaluate' "
                                           "(checkpoint, file.py:callable with --weights, sample:NAME)."),
        data: str = typer.Option(..., "--data", "-d", help="Images and labels, frame pairs (flow) or point clouds, as for "
                           "'nero evaluate'."),
        group: List[str] = typer.Option(["rotation"], "--group", "-g", help="One group (run once per group): "
                                  "rotation (d/dθ per degree), shift (d/dx, d/dy "
                                  "per pixel), scale (d/d log s), perspective (d/dyaw, d/dpitch per degree; "
                                  "classification only) or, for point clouds, viewpoint (d/drot_x, rot_y, rot_z per "
                                  "degree); action options such as padding=border apply; with --along its grid is "
                                  "the orbit."),
        out: Path = typer.Option(Path("nero-lie"), "--out", "-o", help="Run directory to write (lie.csv, "
                                 "summary.json, plots/lie.png, run.json)."),
        method: str = typer.Option("auto", "--method", help="auto (torch.func.jvp; central finite differences where "
                                   "the model cannot be differentiated), jvp or fd."),
        step: float = typer.Option(0.01, "--step", help="h of the finite differences, in the generator's unit."),
        task: Optional[str] = typer.Option(None, "--task", help="classification (TV of the probabilities per unit), "
                                           "pointcloud (the same, per degree about each axis) or flow (mean over valid "
                                           "pixels of the pulled-back flow's rate, px per unit); default: the models' own."),
        along: bool = typer.Option(False, "--along", help="Also at every element g of the group's grid (the "
                                   "derivative at g·x): lie.csv gains element columns, summary.json orbit keys."),
        weights: Optional[List[str]] = typer.Option(None, "--weights", help="State dict of each factory model, in order."),
        meta: Optional[List[str]] = typer.Option(None, "--meta", help="Sidecar JSON of each model, in order."),
        name: Optional[List[str]] = typer.Option(None, "--name", help="Display name of each model, in order."),
        trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help="Allow unpickling whole modules."),
        random_init: bool = typer.Option(False, "--random-init", help="Measure factory models without --weights."),
        normalize: Optional[str] = typer.Option(None, "--normalize", help="Per-channel MEAN,STD after the transform."),
        limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N samples."),
        sample: Optional[int] = typer.Option(None, "--sample", help="A random N samples, stratified by class."),
        seed: int = typer.Option(0, "--seed", help="Seed of --sample and --random-init."),
        batch_size: int = typer.Option(64, "--batch-size", "-b", help="Samples per jvp (about 3x a forward's memory)."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
        no_plots: bool = typer.Option(False, "--no-plots", help="Tables only."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run directory."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary table."),
    ) -> None:
        """Local equivariance: the Lie derivative of each model's output at the identity, per sample and generator
        (classifiers: total variation of the probabilities per degree, pixel or unit of log-scale; flow: mean
        endpoint rate of the pulled-back field, px per unit; 0 = locally equivariant)."""

        def work() -> None:
            with gc_paused_imports():  # torch (nero_cli.lazy)
                from . import console
                from .lie_derivative import lie_run

            result = lie_run(models, data, group, out, task=task, method=method, step=step, batch_size=batch_size,
                             along=along, device=device, plots=not no_plots, overwrite=overwrite,
                             command=["nero", *sys.argv[1:]], weights=weights or [], meta=meta or [], names=name or [],
                             trust_checkpoint=trust_checkpoint, random_init=random_init, normalize=normalize,
                             limit=limit, sample=sample, seed=seed)
            for w in result.warnings:
                console.warn(w)
            if not quiet:
                _print_summary(result.summary)

        guard(work)


__all__ = ["add_command"]
