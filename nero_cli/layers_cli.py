"""The ``nero layers`` command: parses the options and forwards them to :func:`nero_cli.layer_errors.layers_run`.

Light at import time (no torch): :mod:`nero_cli.layer_errors` is imported when the command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from .lazy import gc_paused_imports


def add_command(app: Any, guard: Callable[[Callable[[], Any]], Any]) -> None:
    """Register ``nero layers`` on the typer ``app``; ``guard(fn)`` turns NeroError into one line + exit code."""

    @app.command("layers")
    def layers_command(
        models: List[str] = typer.Argument(..., metavar="MODEL...", help="nn.Module models: file.py:callable or "
                                           "package.module:callable (with --weights), a pickled module (with "
                                           "--trust-checkpoint), sample:NAME, a scripted nn.Sequential, or a "
                                           "torch.export .pt2 (unflattened into its submodules). Other "
                                           "TorchScript and ONNX graphs cannot be inspected layer by layer."),
        data: str = typer.Option(..., "--data", "-d", help=".npz, an ImageFolder directory, or sample:mnist500."),
        group: List[str] = typer.Option(..., "--group", "-g", help="One planar orbit spec (run once per group), "
                                        "e.g. shift:extent=1,step=1 (one-pixel shifts) or "
                                        "rotation:start=-15,stop=15,step=15."),
        out: Path = typer.Option(Path("nero-layers"), "--out", "-o", help="Run directory to write."),
        task: Optional[str] = typer.Option(None, "--task", help="classification (the only task supported for now)."),
        weights: Optional[List[str]] = typer.Option(None, "--weights", help="State dict for each factory model."),
        random_init: bool = typer.Option(False, "--random-init", help="Factory models without --weights, untrained."),
        meta: Optional[List[str]] = typer.Option(None, "--meta", help="Sidecar JSON for each model, in order."),
        name: Optional[List[str]] = typer.Option(None, "--name", help="Display name for each model, in order."),
        trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help="Allow unpickling whole modules."),
        normalize: Optional[str] = typer.Option(None, "--normalize", help="Per-channel MEAN,STD after the transform."),
        limit: int = typer.Option(64, "--limit", help="Measure on the first N samples."),
        batch_size: int = typer.Option(64, "--batch-size", "-b", help="Samples per forward pass."),
        margin: int = typer.Option(1, "--margin", help="Pixels kept off the border beyond each layer's reach when "
                                   "its own error is compared (the valid interior)."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
        seed: int = typer.Option(0, "--seed", help="Seed of --random-init."),
        no_plots: bool = typer.Option(False, "--no-plots", help="Tables only, no bar charts."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run directory."),
    ) -> None:
        """Which layer breaks the symmetry: each layer's own equivariance error (on the valid interior, its
        input taken on the identity) and its contribution to the output's error, in layers.csv and a bar chart.
        Feature maps are assumed to transform as scalar fields (see the README)."""

        def work() -> None:
            with gc_paused_imports():  # torch (nero_cli.lazy)
                from .console import warn
                from .layer_errors import layers_run

            res = layers_run(models, data, group, out, task=task, weights=weights or [], meta=meta or [],
                             names=name or [], trust_checkpoint=trust_checkpoint, normalize=normalize, limit=limit,
                             random_init=random_init, batch_size=batch_size, margin=margin, device=device,
                             seed=seed, plots=not no_plots, overwrite=overwrite, command=["nero", *sys.argv[1:]])
            for w in res.warnings:
                warn(w)
            for model, s in res.summary["per_model"].items():
                own = "n/a" if s["max_layer_error"] is None else f"{s['max_layer_error']:.4g}"
                typer.echo(f"{model}: largest own error {own} at {s['max_layer_error_layer']}, "
                           f"largest contribution {s['max_contribution']:.4g} at {s['max_contribution_layer']} "
                           f"(output error {s['output_error']:.4g})")
            typer.echo(f"wrote {res.out}")

        guard(work)


__all__ = ["add_command"]
