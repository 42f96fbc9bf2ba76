"""The ``nero report`` typer command: parses the options and forwards to :func:`nero_cli.report.report_run`.

Light on purpose (no torch, pandas, numpy, matplotlib, sklearn or plotly here): the domain
module is imported inside the command so that ``nero --help`` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from .lazy import gc_paused_imports


def _split_commas(values: Optional[List[str]]) -> list[str] | None:
    """``--metric a,b --metric c`` -> ``[a, b, c]`` (None when not given)."""
    return [p.strip() for v in values or [] for p in v.split(",") if p.strip()] or None


def add_command(app: Any, guard: Callable[[Callable[[], Any]], Any]) -> None:
    """Register the ``report`` command on the typer app."""

    @app.command("report")
    def report(
        run_dirs: List[Path] = typer.Argument(..., metavar="RUN_DIR...", help="Run directories written by 'nero evaluate' (several are compared on one page), 'nero lie', 'nero layers' or 'nero search' (each shown in its own view)."),
        out: Path = typer.Option(Path("nero-report"), "--out", "-o", help="Directory to write report.html and figures/ to."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing report directory."),
        metric: Optional[List[str]] = typer.Option(None, "--metric", "-m", help="Metrics to offer (repeatable or comma list; default: every plot metric of the task, see 'nero list metrics')."),
        reduction: Optional[str] = typer.Option(None, "--reduction", help="Dimension reductions, comma list of pca, ica, isomap, tsne, umap (default: all available; 'none' for none)."),
        max_samples: Optional[int] = typer.Option(None, "--max-samples", help="At most this many samples per data set in the reduction view and thumbnails, evenly spaced by id (default 2000)."),
        no_thumbnails: bool = typer.Option(False, "--no-thumbnails", help="Do not load the data for thumbnails and transformed inputs."),
        no_figures: bool = typer.Option(False, "--no-figures", help="Write report.html only, no static figures/."),
        title: Optional[str] = typer.Option(None, "--title", help="Page title (default: the run names)."),
        seed: int = typer.Option(0, "--seed", help="Random seed of ICA, t-SNE and UMAP."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress messages."),
    ) -> None:
        """Write an interactive, self-contained HTML report (report.html) of one or more runs."""

        def work() -> None:
            from rich.console import Console
            from rich.markup import escape

            with gc_paused_imports():  # torch (nero_cli.lazy)
                from .report import report_run

            console = Console(stderr=True)
            status = None if quiet else console.status("reading runs")
            if status is not None:
                status.start()
            options = {"max_samples": max_samples} if max_samples is not None else {}
            try:
                path = report_run(run_dirs, out, overwrite, metrics=_split_commas(metric), reductions=reduction,
                                  thumbnails=not no_thumbnails, figures=not no_figures, title=title, seed=seed,
                                  warn=lambda text: console.print(f"[yellow]warning:[/yellow] {escape(text)}",
                                                                  highlight=False, soft_wrap=True),
                                  progress=None if status is None else lambda text: status.update(f"reducing: {text}"),
                                  **options)
            finally:
                if status is not None:
                    status.stop()
            if not quiet:
                Console().print(f"Report written to [bold]{path}[/bold] ({path.stat().st_size / 1e6:.1f} MB); "
                                f"open it in a browser (file://{path.resolve()})", highlight=False, soft_wrap=True)

        guard(work)


__all__ = ["add_command"]
