"""nero: NERO evaluation (Non-Equivariance Revealed on Orbits) from the command line and Python.

The command line is ``nero`` (``python -m nero_cli``). From Python::

    import nero_cli
    table, summary = nero_cli.evaluate(model, images, "rotation:step=15", labels=labels)
    result = nero_cli.evaluate_run(["sample:mnist-cnn"], "sample:mnist500", ["rotation:step=15"], out="run")

``nero_cli.testing.assert_orbit_equivariant`` puts an equivariance check in a test suite.

Heavy modules (torch, pandas, matplotlib) are imported on first use only.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "evaluate", "evaluate_run", "layers", "search", "lie"]


def __getattr__(name: str):  # lazy: keep `import nero_cli` and `nero --help` instant
    if name == "evaluate_run":
        from .run import evaluate_run

        return evaluate_run
    if name == "evaluate":
        from .api import evaluate

        return evaluate
    if name == "layers":
        from .layer_errors import layers

        return layers
    if name == "search":
        from .breaking import search

        return search
    if name == "lie":
        from .lie_derivative import lie

        return lie
    raise AttributeError(name)
