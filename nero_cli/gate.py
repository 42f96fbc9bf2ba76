"""``nero gate``: pass/fail checks on a finished run directory, for CI.

Two kinds of check, reported together:

- **thresholds** on the numbers in ``summary.json`` (:mod:`nero_cli.gate_checks`), from a
  config file (:mod:`nero_cli.gate_config`) and the command line;
- **regressions** against a baseline run (:mod:`nero_cli.gate_baseline`): every summary key is
  recomputed from the run's rows (its vectors, else ``results.csv``) through the metric registry for ``--bootstrap`` resamples of
  the samples, and a check fails only when the whole confidence interval of the worsening
  lies above ``--max-regression``.

Runs are read only through :func:`nero_cli.runrecord.open_run`. :func:`gate_run` is the pure
entry point, :class:`~nero_cli.gate_result.GateResult` its result, :func:`gate_after_evaluate`
serves ``nero evaluate --gate`` and :func:`gate_command` the typer command of
:mod:`nero_cli.gate_cli`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from rich.console import Console

from .errors import OptionError, OutputError
from .analysis_runs import GATE_METRICS, open_analysis, run_kind
from .gate_analysis import analysis_rows, analysis_view, check_percentile, check_signs, offered
from .gate_baseline import parse_max_regression, regression_rows
from .gate_checks import threshold_rows
from .gate_config import GateConfig, Threshold, as_thresholds, cli_thresholds, load_config, parse_check, parse_threshold
from .gate_result import GateResult, print_notes
from .runrecord import open_run, write_atomic

#: Defaults of the baseline comparison settings.
DEFAULTS = {"bootstrap": 1000, "confidence": 0.95, "seed": 0, "breaking_percentile": 10.0}
#: Threshold keys of lie, layers and search runs that have an option of their own (gate_cli.py);
#: the others are given as --check KEY=X.
OPTION_KEYS = ("max_lie_derivative", "min_breaking_rotation", "max_layer_error")

_HOW = {"paired": "paired (both runs scored the same samples)",
        "independent": "independent resampling of each run's samples"}


def _settings(cfg: GateConfig, given: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`gate_run`, each falling back to the config's setting, then
    to :data:`DEFAULTS`; checked and typed."""
    settings = cfg.settings
    out = {k: v if v is not None else settings.get(k.replace("_", "-"), DEFAULTS.get(k)) for k, v in given.items()}
    rm = out["regression_metrics"]
    if given["regression_metrics"] is None and rm is not None:
        out["regression_metrics"] = [s for s in (rm.split(",") if isinstance(rm, str) else rm) if str(s).strip()]
    if out["max_regression"] is not None and out["baseline"] is None:
        raise OptionError("--max-regression needs --baseline RUN_DIR to compare with")
    if out["regression_metrics"] and out["baseline"] is None:
        raise OptionError("--regression-metrics needs --baseline RUN_DIR to compare with")
    try:
        out["bootstrap"], out["seed"] = int(out["bootstrap"]), int(out["seed"])
        out["confidence"] = float(out["confidence"])
    except (TypeError, ValueError):
        raise OptionError(f"bootstrap and seed must be integers and confidence a number; got {out['bootstrap']}, "
                          f"{out['seed']}, {out['confidence']}") from None
    out["breaking_percentile"] = check_percentile(out["breaking_percentile"])
    if out["bootstrap"] < 1:
        raise OptionError(f"--bootstrap must be at least 1 (e.g. 1000), got {out['bootstrap']}")
    if not 0 < out["confidence"] < 1:
        raise OptionError(f"--confidence must be between 0 and 1 (e.g. 0.95), got {out['confidence']}")
    return out


def _method(bootstrap: int, confidence: float, pairings: Sequence[str]) -> str:
    return (f"baseline comparison: {bootstrap} bootstrap resamples over samples, {confidence * 100:.4g}% intervals, "
            f"{' / '.join(_HOW[p] for p in pairings)}; a check fails when the whole interval of the worsening "
            f"lies above the allowed regression")


def gate_run(run_dir: Path | str, checks: Any = None, *, baseline: Path | str | None = None,
             max_regression: Any = None, regression_metrics: Sequence[str] | None = None,
             bootstrap: int | None = None, confidence: float | None = None, seed: int | None = None,
             config: GateConfig | None = None, breaking_percentile: float | None = None,
             allow_empty: bool = False) -> GateResult:
    """Check a run directory.

    ``checks``: threshold keys and values, as a mapping ``{"rotation.max-equivariance-error": 0.1}``,
    ``KEY=VALUE`` strings, ``(key, value)`` pairs or :class:`Threshold` objects (command-line
    precedence). ``config``: a :class:`GateConfig` (from :func:`load_config`) whose thresholds
    and settings apply under ``checks`` and the keyword arguments. ``baseline``: a run to
    compare with; fails a metric when the whole ``confidence`` bootstrap interval of its
    worsening exceeds ``max_regression`` (absolute, or ``"5%"`` of the baseline value; default 0).
    ``bootstrap`` (default 1000 resamples), ``confidence`` (0.95) and ``seed`` (0) default to
    the config's settings, then to those values.

    A run of ``nero lie``, ``nero layers`` or ``nero search`` is checked on its own metrics
    (:mod:`nero_cli.gate_analysis`: ``max-lie-derivative``, ``max-layer-error``,
    ``min-breaking-rotation`` at the ``breaking_percentile``-th percentile, default 10); it has no baseline
    comparison.

    Thresholds that make no check at all (every key skipped as another run's) raise
    :class:`~nero_cli.errors.OptionError`, unless ``allow_empty`` (``nero evaluate --gate``).
    """
    cfg = config or GateConfig()
    thresholds = [*cfg.thresholds, *as_thresholds(checks)]
    s = _settings(cfg, {"baseline": baseline, "max_regression": max_regression,
                        "regression_metrics": regression_metrics, "bootstrap": bootstrap,
                        "confidence": confidence, "seed": seed, "breaking_percentile": breaking_percentile})
    if run_kind(run_dir) is not None:
        return _gate_analysis(Path(run_dir), thresholds, s, cfg, allow_empty)
    run = open_run(run_dir)
    if not thresholds and s["baseline"] is None:
        raise OptionError("no checks: pass thresholds (e.g. --max-equivariance-error 0.1 or --check "
                          "rotation.min-orbit-accuracy=0.9), --baseline RUN_DIR, or a config file "
                          "(a 'gate' table in nero.toml or 'tool.nero.gate' in pyproject.toml)")
    notes: list[str] = []
    rows = threshold_rows(run, thresholds, notes)
    if not rows and s["baseline"] is None and not allow_empty:
        raise OptionError(f"no checks: none of the {len(thresholds)} threshold(s) applies to this run (groups: "
                          f"{', '.join(run.groups)}; models: {', '.join(run.models)}); pass thresholds for them, "
                          f"e.g. --check {run.groups[0]}.max-equivariance-error=0.1")
    base_dir, method = None, ""
    if s["baseline"] is not None:
        base_run = open_run(s["baseline"], what="--baseline")
        reg = regression_rows(run, base_run, max_regression=0.0 if s["max_regression"] is None else s["max_regression"],
                              metrics=s["regression_metrics"], n_boot=s["bootstrap"], confidence=s["confidence"],
                              seed=s["seed"], notes=notes)
        rows += reg
        base_dir = base_run.path
        method = _method(s["bootstrap"], s["confidence"], sorted({r["pairing"] for r in reg}))
    return GateResult(run_dir=run.path, rows=rows, baseline_dir=base_dir, notes=notes,
                      config=str(cfg.path) if cfg.path else "", method=method)


def _gate_analysis(run_dir: Path, thresholds: Sequence[Threshold], s: Mapping[str, Any],
                   cfg: GateConfig, allow_empty: bool = False) -> GateResult:
    """Thresholds on a lie, layers or search run (no baseline comparison there)."""
    run = open_analysis(run_dir)
    if s["baseline"] is not None:
        raise OptionError(f"--baseline compares 'nero evaluate' runs; {run_dir} is a 'nero {run.kind}' run: "
                          f"use thresholds such as {', '.join(_flags(run.kind))}")
    if not thresholds:
        raise OptionError(f"no checks for this 'nero {run.kind}' run: pass {' or '.join(_flags(run.kind))} "
                          f"(or a 'gate' table in nero.toml)")
    check_signs(run.kind, thresholds)
    notes: list[str] = []
    view = analysis_view(run, s["breaking_percentile"])
    rows = analysis_rows(view, thresholds, notes)
    if not rows and not allow_empty:
        raise OptionError(f"no checks: none of the {len(thresholds)} threshold(s) applies to this 'nero {run.kind}' "
                          f"run ({offered(view)}); pass {' or '.join(_flags(run.kind))}")
    return GateResult(run_dir=run.path, rows=rows, baseline_dir=None, notes=notes,
                      config=str(cfg.path) if cfg.path else "", method="")


def _flags(kind: str) -> list[str]:
    """How the threshold keys of a kind are given on the command line: ``--max-lie-derivative X``
    where the key has an option, else ``--check max-lie-derivative-orbit=X``."""
    keys = [("min_" if hib else "max_") + m for m, hib in GATE_METRICS[kind].items()]
    return [f"--{k.replace('_', '-')} X" if k in OPTION_KEYS else f"--check {k.replace('_', '-')}=X" for k in keys]


def gate_after_evaluate(run_dir: Path, config: Path | str | None = None, console: Any = None) -> int:
    """For ``nero evaluate --gate``: gate ``run_dir`` with the discovered config (``nero.toml``
    ``[gate]``, else ``pyproject.toml`` ``[tool.nero.gate]``, or ``config``); print the table;
    return 0 when every check passes, 1 otherwise, and 0 (saying so) when nothing is configured.
    Raises :class:`~nero_cli.errors.NeroError` for a bad config (exit 2 under the CLI guard)."""
    cfg = load_config(config)
    out = console or Console()
    if not cfg.thresholds and cfg.settings.get("baseline") is None:
        out.print("nero gate: no thresholds configured (nero.toml [gate] or pyproject.toml [tool.nero.gate]); "
                  "nothing to check", highlight=False, soft_wrap=True, markup=False)
        return 0
    result = gate_run(run_dir, config=cfg, allow_empty=True)
    print_notes(result.notes)
    if not result.rows:
        out.print("nero gate: no configured threshold applies to this run; nothing to check", highlight=False,
                  soft_wrap=True, markup=False)
        return 0
    result.print(console)
    return result.exit_code


def gate_command(run_dir: Path, *, checks: Sequence[str], fixed: Mapping[str, float | None], config: Path | None,
                 no_config: bool, baseline: Path | None, max_regression: str | None,
                 regression_metrics: Sequence[str] | None, bootstrap: int | None, confidence: float | None,
                 seed: int | None, junit: Path | None, markdown: Path | None, as_json: bool,
                 breaking_percentile: float | None = None) -> int:
    """``nero gate``: gate ``run_dir``, write the ``junit`` / ``markdown`` reports, print the notes
    and the table (or JSON); return the exit code."""
    if no_config and config is not None:
        raise OptionError("--config and --no-config contradict each other; pass one")
    for opt, target in (("--junit", junit), ("--markdown", markdown)):
        if target is not None and not Path(target).parent.is_dir():
            raise OutputError(f"{opt} {target}: the directory {Path(target).parent} does not exist; create it or "
                              f"choose another path")
    cfg = GateConfig() if no_config else load_config(config)
    result = gate_run(run_dir, cli_thresholds(fixed, checks), baseline=baseline, max_regression=max_regression,
                      regression_metrics=regression_metrics, bootstrap=bootstrap, confidence=confidence, seed=seed,
                      config=cfg, breaking_percentile=breaking_percentile)
    if junit is not None:
        write_atomic(junit, result.to_junit(), "--junit")
    if markdown is not None:
        result.append_markdown(markdown)  # appended: $GITHUB_STEP_SUMMARY collects every step
    print_notes(result.notes)
    if as_json:
        sys.stdout.write(result.to_json())
        sys.stdout.flush()
    else:
        result.print()
    return result.exit_code


__all__ = ["GateConfig", "GateResult", "Threshold", "gate_after_evaluate", "gate_command", "gate_run", "load_config",
           "open_run", "parse_check", "parse_max_regression", "parse_threshold", "write_atomic"]
