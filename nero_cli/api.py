"""The Python API for notebooks and test suites."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from .data import Dataset, hash_arrays
from .errors import DataError
from .prepare import prepare
from .run import compute
from .tasks import get_task


@dataclass
class Result:
    """What :func:`evaluate` returns: the tidy table, the summary and the aggregate curves.

    Unpacks as ``table, summary = nero_cli.evaluate(...)``.
    """

    table: pd.DataFrame
    summary: dict[str, Any]
    aggregate: pd.DataFrame
    #: The groups' parameter columns of ``table`` (``angle``, ``dx``, ``dy`` ...).
    param_columns: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.table, self.summary))


def as_dataset(data: Any, task: str = "classification", labels: Any = None) -> Dataset:
    """Arrays or tensors to a :class:`nero_cli.data.Dataset` for ``task``, with the same checks as files.

    ``data`` may be a Dataset, a dict of arrays as in an ``.npz`` (``images``/``labels``,
    ``points``, ``frames``/``flow``, ``boxes``/``box_labels``), or one array of inputs.
    """
    if isinstance(data, Dataset):
        return data
    rec = get_task(task)
    arrays = dict(data) if isinstance(data, dict) else {rec.input_key: data}
    if labels is not None:
        arrays["labels"] = labels
    arrays = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)) for k, v in arrays.items()}
    if rec.input_key not in arrays:
        raise DataError(f"<arrays>: no '{rec.input_key}' array for task {task}; found {', '.join(sorted(arrays))}")
    return rec.arrays(arrays, hash_arrays(*(arrays[k] for k in sorted(arrays))), "<arrays>", None)


def evaluate(models: Any, data: Any, groups: str | Sequence[str], *, task: str | None = None,
             labels: Any = None, names: Sequence[str] = (), reference: str = "auto", limit: int | None = None,
             classes: Sequence[str] = (), sample: int | None = None, class_names: Sequence[str] = (),
             batch_size: int = 256, device: str = "auto", seed: int = 0, normalize: str | None = None,
             weights: Sequence[str] = (), random_init: bool = False, trust_checkpoint: bool = False,
             score_threshold: float = 0.5) -> Result:
    """Evaluate models over orbits and return the results table and summary, in memory.

    ``models``: one or a list of ``torch.nn.Module`` objects or MODEL strings as on the command
    line (checkpoint paths, ``file.py:callable``, ``sample:NAME``). ``data``: a ``--data``
    string, a Dataset, a dict of arrays, or an array of inputs (with ``labels=``).
    ``groups``: one or a list of group specs (``"rotation:step=15"``). As on the command line,
    ``sample`` draws a stratified random subset (for ``seed``), ``class_names`` name the model's
    classes, and a factory MODEL string without ``weights`` is refused unless ``random_init``
    (``nn.Module`` objects are evaluated with the weights they hold).

    >>> table, summary = evaluate(model, images, "rotation:step=90", labels=labels)  # doctest: +SKIP
    """
    models = list(models) if isinstance(models, (list, tuple)) else [models]
    groups = [groups] if isinstance(groups, str) else list(groups)
    if not isinstance(data, str):
        data = as_dataset(data, task or "classification", labels)
    elif labels is not None:
        raise DataError("labels= is for in-memory data; a --data file carries its own labels")
    p = prepare(models, data, groups, task=task, weights=weights, names=names, trust_checkpoint=trust_checkpoint,
                normalize=normalize, limit=limit, classes=classes, sample=sample, seed=seed, class_names=class_names,
                random_init=random_init, device=device)
    ev, agg, summary = compute(p, reference=reference, batch_size=batch_size, seed=seed, score_threshold=score_threshold)
    return Result(ev.table, summary, agg, ev.param_columns)
