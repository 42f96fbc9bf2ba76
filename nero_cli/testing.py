"""Equivariance checks for users' own test suites.

.. code-block:: python

    from nero_cli.testing import assert_orbit_equivariant

    def test_my_model_is_c4_invariant():
        assert_orbit_equivariant(model, "rotation:step=90", images, tol=1e-5)
"""

from __future__ import annotations

from typing import Any

from .api import evaluate


def assert_orbit_equivariant(model: Any, group: str, inputs: Any, *, tol: float = 1e-5,
                             task: str = "classification", metric: str = "equivariance_error",
                             batch_size: int = 256, device: str = "cpu") -> Any:
    """Fail unless ``model`` is equivariant (or invariant) on the orbit of every input.

    Runs the NERO sweep of ``group`` (a spec string) over ``inputs`` (images ``(N, C, H, W)``,
    frames ``(N, 2C, H, W)`` for ``task="flow"``, points ``(N, P, 3)`` for ``"pointcloud"``)
    and checks that ``metric`` (default the equivariance error) stays at or below ``tol``
    everywhere. The failure message names the worst element, its sample and its error.
    Returns the results table on success.
    """
    result = evaluate(model, inputs, group, task=task, reference="consensus", batch_size=batch_size, device=device)
    table = result.table
    worst = table.loc[table[metric].idxmax()]
    if worst[metric] > tol:
        params = [c for c in result.param_columns if table[c].notna().any()]
        where = ", ".join(f"{c}={worst[c]:g}" if isinstance(worst[c], float) else f"{c}={worst[c]}" for c in params)
        bad = int((table[metric] > tol).sum())
        raise AssertionError(
            f"{worst['model']} is not equivariant under {group}: worst element {int(worst['element'])} ({where}) "
            f"on sample {int(worst['sample'])} has {metric} {worst[metric]:.3g} > tol {tol:g}; "
            f"{bad} of {len(table)} (sample, element) pairs exceed it (mean {table[metric].mean():.3g})")
    return table
