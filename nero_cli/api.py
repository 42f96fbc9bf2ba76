"""The Python API for notebooks and test suites."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from .data import Dataset, hash_arrays, images_from_arrays
from .errors import DataError, OptionError
from .prepare import prepare
from .run import compute
from .shaping import Shaping, parse_resize
from .tasks import get_task
from .torch_data import from_torch_dataset


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


def _tensor_arrays(data: torch.utils.data.TensorDataset, key: str) -> dict[str, Any]:
    """A TensorDataset of ``(inputs,)`` or ``(inputs, labels)`` as arrays."""
    tensors = data.tensors
    if len(tensors) not in (1, 2):
        raise DataError(f"<TensorDataset>: expected (inputs,) or (inputs, labels), found {len(tensors)} tensors")
    return {key: tensors[0], **({"labels": tensors[1]} if len(tensors) == 2 else {})}


def as_dataset(data: Any, task: str = "classification", labels: Any = None, shaping: Shaping | None = None) -> Dataset:
    """Arrays, tensors or a torch Dataset to a :class:`nero_cli.data.Dataset` for ``task``, with
    the same checks as files; images resized by ``shaping`` (classification only).

    ``data`` may be a Dataset, a dict of arrays as in an ``.npz`` (``images``/``labels``,
    ``points``, ``frames``/``flow``, ``boxes``/``box_labels``), one array of inputs, a
    ``torch.utils.data.TensorDataset`` of ``(inputs,)`` or ``(inputs, labels)``, or a map-style
    ``torch.utils.data.Dataset`` of images or ``(image, label)`` items (read by chunk, see
    :mod:`nero_cli.torch_data`). Arrays larger than :data:`nero_cli.sources.EAGER_BYTES` as
    float32 are converted by chunk as the sweep reads them.
    """
    if isinstance(data, Dataset):
        return data
    rec = get_task(task)
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.utils.data.TensorDataset):
        if labels is not None:
            raise DataError("<torch Dataset>: labels= is for arrays; return (image, label) items instead")
        if rec.input_key != "images":
            raise DataError(f"<torch Dataset>: a Dataset is read as images; give task {task}'s inputs as arrays")
        return from_torch_dataset(data, shaping=shaping)
    if isinstance(data, torch.utils.data.TensorDataset):
        data = _tensor_arrays(data, rec.input_key)
    arrays = dict(data) if isinstance(data, dict) else {rec.input_key: data}
    if labels is not None:
        arrays["labels"] = labels
    arrays = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)) for k, v in arrays.items()}
    if rec.input_key not in arrays:
        raise DataError(f"<arrays>: no '{rec.input_key}' array for task {task}; found {', '.join(sorted(arrays))}")
    digest = hash_arrays(*(arrays[k] for k in sorted(arrays)))
    if shaping is not None and rec.arrays is images_from_arrays:
        return images_from_arrays(arrays, digest, "<arrays>", None, shaping)
    return rec.arrays(arrays, digest, "<arrays>", None)


def as_data(data: Any, task: str | None = None, labels: Any = None) -> Any:
    """``data`` as :func:`nero_cli.prepare.prepare` takes it: a path, ``sample:NAME`` or Dataset as
    given (``labels=`` refused: a file carries its own); arrays, a dict of arrays, tensors or a torch
    Dataset as a Dataset for ``task`` (see :func:`as_dataset`)."""
    if isinstance(data, (str, Path, Dataset)):
        if labels is not None and not isinstance(data, Dataset):
            raise DataError("labels= is for in-memory data; a --data file carries its own labels")
        return str(data) if isinstance(data, Path) else data
    return as_dataset(data, task or "classification", labels)


def one_group(group: Any, command: str) -> str:
    """The one group spec of ``command`` (``nero lie``, ``nero layers``): a string, or a list of one;
    several are refused (their run folders record one group), never silently cut to one."""
    groups = [group] if isinstance(group, str) else list(group)
    if len(groups) != 1 or not isinstance(groups[0], str):
        given = " ".join(f"--group {g}" for g in groups) or "no --group"
        raise OptionError(f"{command} takes one --group per run, got {given}; run it once per group")
    return groups[0]


def evaluate(models: Any, data: Any, groups: str | Sequence[str], *, task: str | None = None,
             labels: Any = None, names: Sequence[str] = (), reference: str = "auto", limit: int | None = None,
             classes: Sequence[str] = (), sample: int | None = None, class_names: Sequence[str] = (),
             batch_size: int = 256, device: str = "auto", seed: int = 0, normalize: str | None = None,
             weights: Sequence[str] = (), random_init: bool = False, trust_checkpoint: bool = False,
             score_threshold: float = 0.5, resize: Any = None, center_crop: bool = False) -> Result:
    """Evaluate models over orbits and return the results table and summary, in memory.

    ``models``: one or a list of ``torch.nn.Module`` objects or MODEL strings as on the command
    line (checkpoint paths, ``file.py:callable``, ``sample:NAME``). ``data``: a ``--data``
    string, a Dataset, a dict of arrays, an array of inputs (with ``labels=``), a
    ``TensorDataset`` or a map-style ``torch.utils.data.Dataset`` (see :func:`as_dataset`).
    ``resize=(H, W)`` (or ``"H,W"``) and ``center_crop`` bring every image to one size, as
    ``--resize`` and ``--center-crop`` do.
    ``groups``: one or a list of group specs (``"rotation:step=15"``). As on the command line,
    ``sample`` draws a stratified random subset (for ``seed``), ``class_names`` name the model's
    classes, and a factory MODEL string without ``weights`` is refused unless ``random_init``
    (``nn.Module`` objects are evaluated with the weights they hold).

    >>> table, summary = evaluate(model, images, "rotation:step=90", labels=labels)  # doctest: +SKIP
    """
    models = list(models) if isinstance(models, (list, tuple)) else [models]
    groups = [groups] if isinstance(groups, str) else list(groups)
    if not isinstance(data, str):
        data = as_dataset(data, task or "classification", labels, parse_resize(resize, center_crop))
    elif labels is not None:
        raise DataError("labels= is for in-memory data; a --data file carries its own labels")
    p = prepare(models, data, groups, task=task, weights=weights, names=names, trust_checkpoint=trust_checkpoint,
                normalize=normalize, limit=limit, classes=classes, sample=sample, seed=seed, class_names=class_names,
                random_init=random_init, device=device, resize=resize, center_crop=center_crop)
    ev, agg, summary = compute(p, reference=reference, batch_size=batch_size, seed=seed, score_threshold=score_threshold)
    return Result(ev.table, summary, agg, ev.param_columns)
