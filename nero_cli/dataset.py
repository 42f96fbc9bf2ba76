"""The :class:`Dataset` a task evaluates, and what every loader checks and records of it.

A Dataset's ``sha256`` identifies its data (the cache key and run.json's ``data.sha256``);
:func:`shaped_digest` folds ``--resize`` into it, so resized data never share a cache entry
with the data as they are.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from .errors import DataError, OptionError
from .shaping import Shaping
from .sources import ImageRows, LazyImages, converter, held, take


@dataclass
class Dataset:
    """What a task evaluates: inputs, optional labels and targets, and provenance.

    ``inputs`` are images ``(N, C, H, W)`` float32 in [0, 1] (classification, detection),
    frame pairs ``(N, 2C, H, W)`` (flow) or points ``(N, P, 3)`` (point clouds): a tensor, or
    for large images a :class:`~nero_cli.sources.LazyImages` that reads the rows indexed.
    ``labels`` are class ids ``(N,)`` (for detection: the key object's class).
    ``targets`` hold other per-sample ground truth: ``flow`` ``(N, 2, H, W)``,
    ``boxes`` ``(N, M, 4)`` and ``box_labels`` ``(N, M)``.
    """

    inputs: Any
    labels: torch.Tensor | None
    class_names: list[str] | None
    source: str
    sha256: str
    index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # original sample ids
    targets: dict[str, torch.Tensor] = field(default_factory=dict)
    #: Whether ``class_names`` name every class (as an ``.npz`` declares them, checked against the
    #: model's classes); False for ImageFolder subfolder names, which may be a subset.
    names_complete: bool = True
    #: An ImageFolder's class folders, sorted; ``labels`` index them until :func:`relabel_folders`
    #: maps them to the model's classes (then ``class_map``: folder -> class id, and how it was found).
    folders: list[str] | None = None
    class_map: dict[str, int] | None = None
    class_map_from: str | None = None
    #: ``--resize`` / ``--center-crop`` as applied to ``inputs`` (None: the images as they are).
    shaping: Shaping | None = None

    def __post_init__(self) -> None:
        if len(self.index) != len(self.inputs):
            self.index = np.arange(len(self.inputs), dtype=np.int64)

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def images(self) -> Any:
        return self.inputs

    @property
    def size(self) -> tuple[int, int]:
        return int(self.inputs.shape[-2]), int(self.inputs.shape[-1])

    def subset(self, keep: np.ndarray) -> "Dataset":
        keep_t = torch.as_tensor(keep, dtype=torch.long)
        return replace(self, inputs=take(self.inputs, keep), labels=None if self.labels is None else self.labels[keep_t],
                       index=self.index[keep], targets={k: v[keep_t] for k, v in self.targets.items()})

    def record(self) -> dict[str, Any]:
        """run.json's ``data`` entries of an ImageFolder: how its folders map to the model's classes."""
        if self.class_map is None:
            return {}
        return {"class_map": dict(self.class_map), "class_map_from": self.class_map_from}


def class_names_of(arr: np.ndarray) -> list[str]:
    return [str(c) for c in arr.tolist()]


def hash_arrays(*arrays: np.ndarray | None) -> str:
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def check_labels(arr: np.ndarray | None, n: int, source: str) -> np.ndarray | None:
    if arr is None:
        return None
    if arr.ndim != 1:
        raise DataError(f"{source}: 'labels' must be (N,), found shape {arr.shape}")
    if len(arr) != n:
        raise DataError(f"{source}: {n} images but {len(arr)} labels; they must match")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise DataError(f"{source}: 'labels' must be integer class ids, found non-integer floats")
    elif arr.dtype.kind not in "iu":
        raise DataError(f"{source}: 'labels' must be integer class ids, found dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if n and arr.min() < 0:
        raise DataError(f"{source}: labels must be >= 0, found {arr.min()}")
    return arr


def shaped_digest(digest: str, shaping: Shaping | None) -> str:
    """The digest of data brought to one size by ``shaping``: the data's digest and the size."""
    return digest if shaping is None else hashlib.sha256(f"{digest}|{shaping.record()}".encode()).hexdigest()


def reshaped(data: Dataset, shaping: Shaping | None) -> Dataset:
    """A loaded Dataset's images brought to one size by ``shaping`` (read by chunk when large)."""
    if shaping is None or data.shaping == shaping:
        return data
    if data.shaping is not None:
        raise OptionError(f"{data.source}: the images were resized with {data.shaping.record()} already; "
                          f"give one --resize")
    c = int(data.inputs.shape[1])
    images = held(LazyImages(ImageRows(data.inputs), converter(lambda b: b, shaping), (c, *shaping.size), data.source))
    return replace(data, inputs=images, sha256=shaped_digest(data.sha256, shaping), shaping=shaping)
