"""The ``nero search`` command: parses the options and forwards them to :func:`nero_cli.breaking.search_run`.

Light at import time (no torch): :mod:`nero_cli.breaking` is imported when the command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from .lazy import gc_paused_imports


def add_command(app: Any, guard: Callable[[Callable[[], Any]], Any]) -> None:
    """Register ``nero search`` on the typer ``app``; ``guard(fn)`` turns NeroError into one line + exit code."""

    @app.command("search")
    def search_command(
        models: List[str] = typer.Argument(..., metavar="MODEL...", help="Checkpoints, file.py:callable (with "
                                           "--weights) or sample:NAME, as for evaluate."),
        data: str = typer.Option(..., "--data", "-d", help="As for evaluate, e.g. sample:mnist500."),
        group: List[str] = typer.Option(..., "--group", "-g", help="rotation, shift, scale or perspective, with "
                                        "spec options; the spec's grid along each axis is the coarse grid "
                                        "(e.g. rotation:step=5). Repeatable."),
        out: Path = typer.Option(Path("nero-search"), "--out", "-o", help="Run directory to write."),
        task: Optional[str] = typer.Option(None, "--task", help="classification or detection (default: the "
                                           "model's declared task, else classification)."),
        refine: int = typer.Option(12, "--refine", help="Golden-section evaluations per sample around the worst "
                                   "grid point (0: the grid only)."),
        tol: Optional[float] = typer.Option(None, "--tol", help="Bisection tolerance of the breaking parameter, in "
                                            "the axis's unit (default 0.1 degrees, 0.05 px, 0.005 log2 scale)."),
        reference: str = typer.Option("auto", "--reference", help="auto, labels or prediction: the class whose "
                                      "confidence is minimised (detection: the box and class the top box's IoU "
                                      "is measured against)."),
        iou_threshold: Optional[float] = typer.Option(None, "--iou-threshold", help="Detection: the top box counts as "
                                                      "changed when its IoU with the identity's top box (mapped "
                                                      "back) falls below this (default 0.5), or its class changes."),
        weights: Optional[List[str]] = typer.Option(None, "--weights", help="State dict for each factory model, in order."),
        meta: Optional[List[str]] = typer.Option(None, "--meta", help="Sidecar JSON for each model, in order."),
        name: Optional[List[str]] = typer.Option(None, "--name", help="Display name for each model, in order."),
        trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help="Allow unpickling whole pickled modules."),
        normalize: Optional[str] = typer.Option(None, "--normalize", help="Per-channel MEAN,STD after the transform."),
        limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N samples."),
        sample: Optional[int] = typer.Option(None, "--sample", help="A random N samples, stratified by class."),
        seed: int = typer.Option(0, "--seed", help="Random seed of --sample."),
        batch_size: str = typer.Option("256", "--batch-size", "-b", help="Inputs per forward pass, or auto."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
        no_plots: bool = typer.Option(False, "--no-plots", help="Write tables only."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run directory."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary lines."),
    ) -> None:
        """Per sample: the worst element of a continuous group (grid, then golden-section refinement) and the
        smallest breaking transformation (scan outward, then bisect), for image classifiers and detectors (the
        top box); writes search.csv, summary.json, plots."""

        def work() -> None:
            with gc_paused_imports():  # torch (nero_cli.lazy)
                from .breaking import search_run

            result = search_run(models, data, group, out, refine=refine, tol=tol, reference=reference,
                                batch_size=batch_size, plots=not no_plots, iou_threshold=iou_threshold,
                                overwrite=overwrite,
                                command=["nero", *sys.argv[1:]], weights=weights or [], meta=meta or [],
                                names=name or [], trust_checkpoint=trust_checkpoint, normalize=normalize,
                                limit=limit, sample=sample, seed=seed, device=device, task=task)
            if not quiet:
                _echo_summary(result.summary, result.out)

        guard(work)


def _echo_summary(summary: dict[str, Any], out: Path) -> None:
    """One line per model and axis: the median breaking parameter, the share never broken and the
    median worst value; then the run directory."""
    quantity = summary.get("quantity", "confidence")
    for model, per_axis in summary["models"].items():
        for key, s in per_axis.items():
            med = "beyond the range" if s["median_breaking"] is None else f"{s['median_breaking']:.3g}"
            typer.echo(f"{model} {key}: median breaking {med}, never broken "
                       f"{100 * s['share_never_broken']:.0f}%, median worst {quantity} "
                       f"{s['median_worst_value']:.3f}")
    typer.echo(f"wrote {out}")


__all__ = ["add_command"]
