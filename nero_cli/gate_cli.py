"""The ``nero gate`` typer command: parses the options and forwards to :func:`nero_cli.gate.gate_command`.

Light on purpose (no torch, pandas, numpy or matplotlib here): the domain module is imported
inside the command so that ``nero --help`` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from .lazy import gc_paused_imports


def _split_commas(values: Optional[List[str]]) -> list[str] | None:
    """``--regression-metrics a,b --regression-metrics c`` -> ``[a, b, c]`` (None when not given)."""
    return [m for v in values or [] for m in v.split(",") if m.strip()] or None


def add_command(app: Any, guard: Callable[[Callable[[], Any]], Any]) -> None:
    """Register the ``gate`` command on the typer app."""

    @app.command("gate")
    def gate(
        run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A finished run directory (the --out of 'nero evaluate')."),
        max_equivariance_error: Optional[float] = typer.Option(None, "--max-equivariance-error", help="Fail if the mean equivariance error of any model/group exceeds X."),
        min_orbit_accuracy: Optional[float] = typer.Option(None, "--min-orbit-accuracy", help="Fail if the accuracy over the orbit is below X."),
        min_robust_accuracy: Optional[float] = typer.Option(None, "--min-robust-accuracy", help="Fail if the share of samples correct at every element (robust_accuracy) is below X."),
        max_orbit_spread: Optional[float] = typer.Option(None, "--max-orbit-spread", help="Fail if max - min of the primary metric's aggregate curve exceeds X."),
        max_lie_derivative: Optional[float] = typer.Option(None, "--max-lie-derivative", help="On a 'nero lie' run: fail if a model's mean Lie derivative along any generator exceeds X (its unit: TV per degree, pixel or log-scale)."),
        min_breaking_rotation: Optional[float] = typer.Option(None, "--min-breaking-rotation", help="On a 'nero search' run: fail if the --breaking-percentile of a model's breaking rotation (degrees) is below X."),
        breaking_percentile: Optional[float] = typer.Option(None, "--breaking-percentile", metavar="P", help="Percentile of the breaking parameters that --min-breaking-* checks (default 10: 90% of samples hold at least that far)."),
        max_layer_error: Optional[float] = typer.Option(None, "--max-layer-error", help="On a 'nero layers' run: fail if a model's largest own layer equivariance error exceeds X."),
        check: Optional[List[str]] = typer.Option(None, "--check", "-c", metavar="KEY=VALUE", help="KEY=VALUE, KEY = [GROUP.][MODEL:]min-METRIC or max-METRIC, e.g. rotation.max-equivariance-error=0.1; repeatable."),
        config: Optional[Path] = typer.Option(None, "--config", metavar="FILE", help="TOML file with a \\[gate] (or \\[tool.nero.gate]) table (default: ./nero.toml \\[gate], else ./pyproject.toml \\[tool.nero.gate])."),
        no_config: bool = typer.Option(False, "--no-config", help="Ignore nero.toml / pyproject.toml."),
        baseline: Optional[Path] = typer.Option(None, "--baseline", metavar="RUN_DIR", help="Run directory to compare with: fail on metrics significantly worse than there."),
        max_regression: Optional[str] = typer.Option(None, "--max-regression", metavar="M", help="Allowed worsening vs --baseline: absolute (0.01) or relative to the baseline value (5%). Default 0."),
        regression_metrics: Optional[List[str]] = typer.Option(None, "--regression-metrics", metavar="A,B", help="Compare only these metrics with the baseline, e.g. orbit-accuracy,equivariance-error (default: all)."),
        bootstrap: Optional[int] = typer.Option(None, "--bootstrap", help="Bootstrap resamples over samples for the baseline comparison (default 1000)."),
        confidence: Optional[float] = typer.Option(None, "--confidence", help="Confidence level of the bootstrap interval (default 0.95)."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the bootstrap (default 0)."),
        junit: Optional[Path] = typer.Option(None, "--junit", metavar="FILE", help="Write JUnit XML (one testcase per check) to FILE."),
        markdown: Optional[Path] = typer.Option(None, "--markdown", metavar="FILE", help="Write a Markdown report to FILE, e.g. $GITHUB_STEP_SUMMARY."),
        as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON instead of the table."),
    ) -> None:
        """Pass/fail checks on a run directory for CI.

        Thresholds on summary.json and regressions against a baseline run; on a 'nero lie', 'nero layers' or 'nero search' run, thresholds on its own quantities.

        Exit 0 all pass, 1 a check failed, 2 bad usage, 5 run not complete."""
        fixed = {"--max-equivariance-error": max_equivariance_error, "--min-orbit-accuracy": min_orbit_accuracy,
                 "--min-robust-accuracy": min_robust_accuracy, "--max-orbit-spread": max_orbit_spread,
                 "--max-lie-derivative": max_lie_derivative, "--min-breaking-rotation": min_breaking_rotation,
                 "--max-layer-error": max_layer_error}

        def main() -> int:
            with gc_paused_imports():  # torch (nero_cli.lazy)
                from .gate import gate_command

            return gate_command(
                run_dir, checks=check or [], fixed=fixed, config=config, no_config=no_config, baseline=baseline,
                max_regression=max_regression, regression_metrics=_split_commas(regression_metrics),
                bootstrap=bootstrap, confidence=confidence, seed=seed, junit=junit, markdown=markdown,
                as_json=as_json, breaking_percentile=breaking_percentile)

        code = guard(main)
        if code:
            raise typer.Exit(code)


__all__ = ["add_command"]
