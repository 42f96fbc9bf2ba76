"""``torch.utils.data.Dataset`` inputs of the Python API, read by chunk.

A map-style Dataset whose items are an image (a tensor, an array or a PIL image, laid out
``(H, W)``, ``(C, H, W)`` or ``(H, W, C)``) or a tuple ``(image, label, ...)`` is read once at
load, item by item (holding one at a time), for its labels, its digest (every item's dtype, shape,
bytes and label), the pixel checks and the image sizes; the sweep then reads its items again by
chunk through :class:`~nero_cli.sources.LazyImages`. Its first item is read twice: a Dataset that
returns different images for the same index (random transforms) is refused, since its results
could not be repeated. A ``TensorDataset`` is read as arrays (:func:`nero_cli.api.as_dataset`).
"""

from __future__ import annotations

import hashlib
from functools import partial
from typing import Any

import numpy as np
import torch

from .dataset import Dataset, check_labels, shaped_digest
from .errors import DataError
from .pixels import PixelStats, to_nchw
from .shaping import Shaping
from .sources import LazyImages, converter, held

SOURCE = "<torch Dataset>"


def _image(item: Any, i: int) -> tuple[np.ndarray, Any]:
    """An item's image as an array, and its label (None when the item is an image alone)."""
    label = None
    if isinstance(item, (tuple, list)):
        if not item:
            raise DataError(f"{SOURCE}: item {i} is empty; return an image or (image, label)")
        item, label = item[0], (item[1] if len(item) > 1 else None)
    if isinstance(item, torch.Tensor):
        arr = item.detach().cpu().numpy()
    elif isinstance(item, np.ndarray) or hasattr(item, "getbands"):  # an array or a PIL image
        arr = np.asarray(item)
    else:
        raise DataError(f"{SOURCE}: item {i} is a {type(item).__name__}; return an image tensor or (image, label)")
    if arr.ndim not in (2, 3):
        raise DataError(f"{SOURCE}: item {i} has shape {arr.shape}; an image is (H, W), (C, H, W) or (H, W, C)")
    return arr, label


def _label(label: Any, i: int) -> int:
    value = label.item() if isinstance(label, (torch.Tensor, np.ndarray)) and np.size(label) == 1 else label
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, float, np.floating)):
        raise DataError(f"{SOURCE}: item {i}'s label is {type(label).__name__}; labels must be integer class ids")
    return value  # type: ignore[return-value]


class TorchRows:
    """The images of a map-style Dataset, read item by item."""

    slow = True

    def __init__(self, dataset: Any, n: int, row_bytes: int):
        self.dataset, self.n, self.row_bytes = dataset, n, row_bytes

    def read(self, positions: np.ndarray) -> list[np.ndarray]:
        return [_image(self.dataset[int(p)], int(p))[0] for p in positions]


def _scan(dataset: Any, n: int) -> tuple[list[Any], set[tuple[int, ...]], np.dtype, PixelStats, str, int]:
    """One pass over the items: labels, shapes, dtype, pixel stats, digest and the largest item's bytes."""
    h = hashlib.sha256()
    labels: list[Any] = []
    shapes: set[tuple[int, ...]] = set()
    dtype, stats, largest = None, None, 0
    for i in range(n):
        arr, label = _image(dataset[i], i)
        if dtype is None:
            dtype = arr.dtype
        elif arr.dtype != dtype:
            raise DataError(f"{SOURCE}: item {i} is {arr.dtype}, item 0 is {dtype}; return one dtype")
        if i and (label is None) != (len(labels) == 0):
            raise DataError(f"{SOURCE}: item {i} {'has no' if label is None else 'has a'} label and item 0 "
                            f"{'has' if label is None else 'has none'}; return (image, label) for every item or for none")
        labels += [] if label is None else [_label(label, i)]
        shapes.add(arr.shape)
        largest = max(largest, arr.nbytes)
        part = PixelStats.of(arr[None], i) if arr.dtype.kind in "iuf" else PixelStats(0.0, 0.0)
        stats = part if stats is None else stats.merge(part)
        h.update(f"{arr.dtype}{arr.shape}{label if label is None else labels[-1]}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return labels, shapes, dtype, stats, h.hexdigest(), largest  # type: ignore[return-value]


def _repeatable(dataset: Any) -> None:
    a, b = _image(dataset[0], 0)[0], _image(dataset[0], 0)[0]
    if a.shape != b.shape or not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
        raise DataError(f"{SOURCE}: item 0 differs between two reads (random transforms?); evaluate a Dataset "
                        "whose items are the same every time")


def from_torch_dataset(dataset: Any, channels: int | None = None, shaping: Shaping | None = None) -> Dataset:
    """A map-style ``torch.utils.data.Dataset`` as a Dataset read by chunk (see the module)."""
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise DataError(f"{SOURCE}: an iterable-style Dataset has no length or indexing; give a map-style Dataset "
                        "(with __len__ and __getitem__) or arrays")
    n = len(dataset)
    if n == 0:
        raise DataError(f"{SOURCE}: no images (the Dataset is empty)")
    _repeatable(dataset)
    labels, shapes, dtype, stats, digest, largest = _scan(dataset, n)
    if dtype.kind not in "iuf":
        raise DataError(f"{SOURCE}: images must be uint8 or float, found dtype {dtype}")
    stats.check(dtype, SOURCE)
    layout = partial(to_nchw, source=SOURCE, channels=channels)
    laid = {layout(np.broadcast_to(np.zeros((), dtype), (1, *s))).shape[1:] for s in shapes}
    if len({c for c, _, _ in laid}) > 1 or (len(laid) > 1 and shaping is None):
        sizes = ", ".join(f"{s}" for s in sorted(laid)[:3])
        raise DataError(f"{SOURCE}: items differ in shape ({sizes}); give resize=(H, W) to resize each image, "
                        "with center_crop=True to keep the aspect ratio")
    c, h, w = next(iter(laid))
    item = (c, *shaping.size) if shaping else (c, h, w)
    images = held(LazyImages(TorchRows(dataset, n, largest), converter(layout, shaping), item, SOURCE))
    label_arr = check_labels(np.asarray(labels), n, SOURCE) if labels else None
    return Dataset(images, None if label_arr is None else torch.from_numpy(label_arr), None, SOURCE,
                   shaped_digest(digest, shaping), shaping=shaping)
