"""The ``nero plot`` typer command: parses the options and forwards to :func:`nero_cli.run_plots.replot_run`.

Light on purpose (no torch, pandas, numpy or matplotlib here): the domain module is imported
inside the command so that ``nero --help`` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from .lazy import gc_paused_imports


def add_command(app: Any, guard: Callable[[Callable[[], Any]], Any]) -> None:
    """Register the ``plot`` command on the typer app."""

    @app.command("plot")
    def plot(
        run_dir: Path = typer.Argument(..., metavar="RUN", help="A run directory written by 'nero evaluate' or 'nero merge'."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder to write the plots to (default: RUN-plots beside the run; never inside it)."),
        metric: Optional[List[str]] = typer.Option(None, "--metric", "-m", help="Metrics to plot (repeatable or comma list; default: the run's --plot-metric; see 'nero list metrics')."),
        samples: Optional[str] = typer.Option(None, "--samples", help="Individual plots: a comma list of worst:K, best:K, spread:K and sample ids, or none (default: the run's --plot-samples)."),
        own_scale: bool = typer.Option(False, "--own-scale", help="Heatmaps and mosaics: each model's panel gets its own colour range, so differences between its cells show."),
        no_thumbnails: bool = typer.Option(False, "--no-thumbnails", help="Do not load the data: individual plots without the input beside them."),
        data: Optional[Path] = typer.Option(None, "--data", help="Where the run's data is now, for the thumbnails (default: where run.json records it); refused unless its sha256 is the recorded one."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a folder an earlier 'nero plot' wrote."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No closing line."),
    ) -> None:
        """Draw every plot of a finished run again, from its tables alone (no model is loaded)."""

        def work() -> None:
            from rich.console import Console
            from rich.markup import escape

            with gc_paused_imports():  # torch (nero_cli.lazy)
                from .run_plots import replot_run

            err = Console(stderr=True)
            folder, files = replot_run(
                run_dir, out, metrics=[p.strip() for m in metric or [] for p in m.split(",") if p.strip()] or None,
                samples=samples, overwrite=overwrite, own_scale=own_scale, thumbnails=not no_thumbnails, data=data,
                warn=lambda text: err.print(f"[yellow]warning:[/yellow] {escape(text)}", highlight=False,
                                            soft_wrap=True))
            if not quiet:
                Console().print(f"Plots written to [bold]{escape(str(folder))}[/bold] ({len(files)} files)",
                                highlight=False, soft_wrap=True)

        guard(work)


__all__ = ["add_command"]
