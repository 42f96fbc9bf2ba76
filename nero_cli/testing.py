"""Equivariance checks for users' own test suites.

.. code-block:: python

    from nero_cli.testing import assert_orbit_equivariant

    def test_my_model_is_c4_invariant():
        assert_orbit_equivariant(model, "rotation:step=90", images, tol=1e-5)

``inputs`` may be a tensor (or array), a ``TensorDataset``, any map-style ``Dataset`` or a
``DataLoader``, whose items are tensors or ``(x, y, ...)`` tuples (only ``x`` is used: the
check compares the model with itself along each orbit). Mistakes in the arguments are one
line naming the argument (``inputs=``, ``group=``, ``tol=`` ...), never a command-line flag.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .api import evaluate
from .errors import DataError, NeroError, OptionError

#: Command-line wording in messages of the shared code, and this helper's argument for it.
_ARGUMENTS = {"--group": "group=", "--data": "inputs=", "<arrays>": "inputs=", "--batch-size": "batch_size=",
              "--device": "device=", "--task": "task=", "'nero list groups'": "orbits.describe_groups()",
              "'nero list tasks'": "nero_cli.tasks.TASKS"}
_KINDS = "a tensor (N, C, H, W), a TensorDataset, a Dataset or a DataLoader of tensors or (x, y) tuples"


def _arguments(message: str) -> str:
    """``message`` with command-line flags replaced by this helper's arguments:
    ``--group rotaton:step=90: unknown group`` -> ``group='rotaton:step=90': unknown group``."""
    for flag, arg in _ARGUMENTS.items():
        if flag.startswith("--"):
            message = re.sub(re.escape(flag) + r" (\S+?):(?=\s)", lambda m, a=arg: f"{a}'{m.group(1)}':", message)
        message = message.replace(flag, arg)
    return message


def _first(item: Any, where: str) -> torch.Tensor:
    """The input of one item: the item itself, or the first element of an ``(x, y, ...)`` tuple."""
    __tracebackhide__ = True
    if isinstance(item, (tuple, list)) and item:
        item = item[0]
    if isinstance(item, np.ndarray):
        item = torch.from_numpy(item)
    if not isinstance(item, torch.Tensor):
        raise DataError(f"assert_orbit_equivariant: inputs= {where} holds {type(item).__name__}; expected {_KINDS}")
    return item


def _as_inputs(inputs: Any) -> Any:
    """A tensor (or array) of every input in ``inputs``, in order."""
    __tracebackhide__ = True
    if isinstance(inputs, (torch.Tensor, np.ndarray)):
        return inputs
    if isinstance(inputs, TensorDataset):
        if not inputs.tensors:
            raise DataError("assert_orbit_equivariant: inputs= is a TensorDataset without tensors")
        return inputs.tensors[0]
    if isinstance(inputs, DataLoader):
        parts, where = [_first(batch, "a DataLoader batch") for batch in inputs], "DataLoader batch"
    elif isinstance(inputs, Dataset) and hasattr(inputs, "__len__"):
        parts, where = [_first(inputs[i], "a Dataset item")[None] for i in range(len(inputs))], "Dataset item"
    else:
        raise DataError(f"assert_orbit_equivariant: inputs= is of type {type(inputs).__name__}; expected {_KINDS}")
    if not parts:  # an empty loader
        raise DataError(f"assert_orbit_equivariant: inputs= yields no inputs; pass at least one {where}")
    shapes = {tuple(p.shape[1:]) for p in parts}
    if len(shapes) > 1:
        shown = ", ".join(map(str, sorted(shapes)))
        raise DataError(f"assert_orbit_equivariant: inputs= gives inputs of different shapes ({shown}); "
                        "resize them to one shape")
    return torch.cat(parts)


def _checked(model: Any, tol: Any, metric: str) -> None:
    __tracebackhide__ = True
    if not isinstance(model, (torch.nn.Module, str)):
        raise OptionError(f"assert_orbit_equivariant: model= is of type {type(model).__name__}; expected a "
                          "torch.nn.Module (or a MODEL string such as 'sample:mnist-cnn')")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol < 0:
        raise OptionError(f"assert_orbit_equivariant: tol= must be a finite number >= 0, e.g. 1e-5; got {tol!r}")
    if not isinstance(metric, str):
        raise OptionError(f"assert_orbit_equivariant: metric= must be a column name, e.g. 'equivariance_error'; "
                          f"got {metric!r}")


def assert_orbit_equivariant(model: Any, group: str, inputs: Any, *, tol: float = 1e-5,
                             task: str = "classification", metric: str = "equivariance_error",
                             batch_size: int = 256, device: str = "cpu") -> Any:
    """Fail unless ``model`` is equivariant (or invariant) on the orbit of every input.

    Runs the NERO sweep of ``group`` (a spec string such as ``"rotation:step=90"``) over
    ``inputs`` and checks that ``metric`` (default the equivariance error) stays at or below
    ``tol`` everywhere. ``inputs``: images ``(N, C, H, W)``, frames ``(N, 2C, H, W)`` for
    ``task="flow"``, points ``(N, P, 3)`` for ``"pointcloud"``; as a tensor or array, a
    ``TensorDataset``, a map-style ``Dataset`` or a ``DataLoader`` of tensors or ``(x, y)``
    tuples (labels are not used). The failure message names the worst element, its sample
    and its error. Returns the results table on success.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's internals
    _checked(model, tol, metric)
    try:
        result = evaluate(model, _as_inputs(inputs), group, task=task, reference="consensus", batch_size=batch_size,
                          device=device)
    except NeroError as exc:
        text = _arguments(str(exc))
        raise type(exc)(text if text.startswith("assert_orbit_equivariant") else
                        f"assert_orbit_equivariant: {text}", exc.exit_code) from None
    table, params = result.table, result.param_columns
    if metric not in table.columns:
        scores = [c for c in table.columns if table[c].dtype.kind == "f" and c not in params]
        raise OptionError(f"assert_orbit_equivariant: metric='{metric}' is not a column of the {task} results; "
                          f"choose from {', '.join(scores)}")
    values = table[metric].astype(float)
    exceed = ~(values <= tol)  # NaN counts as exceeding: no evidence of equivariance
    if exceed.any():
        worst = table.loc[values.fillna(math.inf).idxmax()]
        where = ", ".join(f"{c}={worst[c]:g}" if isinstance(worst[c], float) else f"{c}={worst[c]}"
                          for c in params if table[c].notna().any())
        raise AssertionError(
            f"{worst['model']} is not equivariant under {group}: worst element {int(worst['element'])} ({where}) "
            f"on sample {int(worst['sample'])} has {metric} {float(worst[metric]):.3g} > tol {tol:g}; "
            f"{int(exceed.sum())} of {len(table)} (sample, element) pairs exceed it (mean {values.mean():.3g})")
    return table
