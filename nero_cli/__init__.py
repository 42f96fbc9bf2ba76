"""nero: NERO evaluation (Non-Equivariance Revealed on Orbits) from the command line and Python.

The command line is ``nero`` (``python -m nero_cli``). From Python::

    from nero_cli import evaluate_run
    result = evaluate_run(["sample:mnist-cnn"], "sample:mnist500", ["rotation:step=15"], out="run")
    result.table      # tidy table: one row per model x sample x orbit element
    result.summary    # what summary.json holds

Heavy modules (torch, pandas, matplotlib) are imported on first use only.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "evaluate_run"]


def __getattr__(name: str):  # lazy: keep `import nero_cli` and `nero --help` instant
    if name == "evaluate_run":
        from .run import evaluate_run

        return evaluate_run
    raise AttributeError(name)
