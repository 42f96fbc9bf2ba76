"""Images read on demand: only the rows being evaluated are decoded and held.

:class:`LazyImages` is the ``(N, C, H, W)`` float32 array a :class:`~nero_cli.data.Dataset` holds
when its input is too large to hold whole (over :data:`EAGER_BYTES` as float32): indexing it
(``inputs[s0:s1]``, ``inputs[i]``, ``inputs[positions]``) reads those rows from the file and
returns a float32 tensor, so the sweep holds only the current chunk and its orbit. Smaller
inputs are read whole into a tensor, as before (:func:`held`); both give the same pixels.

Rows come from a row source (``read(positions) -> raw rows``, ``positions`` sorted and distinct):

- :class:`ArrayRows`: an array or a memory-mapped ``.npy`` / stored ``.npz`` member
  (:func:`nero_cli.npz.NpzArchive.rows`); rows are copied out of the page cache;
- :class:`nero_cli.npz.StreamRows`: a deflated ``.npz`` member, inflated forward from the last row
  read (a pass in order inflates the member once, going back starts again from its start);
- :class:`nero_cli.folders.FolderRows`: image files, decoded by a small thread pool;
- :class:`nero_cli.torch_data.TorchRows`: a ``torch.utils.data.Dataset``'s items.

For a source marked ``slow`` (image files, datasets) the next chunk of a pass in order is read
in a background thread while the current one is evaluated. Each read first checks that the rows
it decodes fit in memory (:func:`nero_cli.npz.check_memory`).

A sweep by chunk allocates and frees a chunk's buffers (and the orbit's) over and over; the
``nero`` command keeps the freed memory for the next chunk (:mod:`nero_cli.heap`), and the peak
stays flat with the data (3x32x32 images, 2,000 and 20,000 samples: 324 and 308 MB, where
handing blocks of 1 MiB or more back to the system, as nero did before, cost a quarter more CPU
time in page faults for 25 MB less).
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

from .npz import check_memory, human_bytes
from .pixels import PixelStats, needs_check, to_unit
from .shaping import Shaping

#: Inputs up to this size as float32 are read whole into memory; larger ones are read by chunk.
EAGER_BYTES = 32 * 2**20
#: Rows at most per read of a scan or a whole read (bounded by :data:`SCAN_BYTES` too).
SCAN_BYTES = 64 * 2**20

class Rows(Protocol):
    """A source of raw rows: ``n`` rows of ``row_bytes`` bytes at most while decoded; ``read``
    returns a batch, or a list of single samples (image files of different sizes)."""

    n: int
    row_bytes: int
    slow: bool

    def read(self, positions: np.ndarray) -> Any: ...


class ArrayRows:
    """Rows of an array (or a memory map): only the rows asked for are copied."""

    slow = False

    def __init__(self, array: np.ndarray):
        self.array, self.shape, self.dtype = array, tuple(array.shape), array.dtype
        self.n = int(array.shape[0])
        self.row_bytes = int(math.prod(array.shape[1:])) * array.dtype.itemsize

    def read(self, positions: np.ndarray) -> np.ndarray:
        a, b = int(positions[0]), int(positions[-1]) + 1
        if b - a == len(positions):
            return np.array(self.array[a:b])  # one run: a plain copy
        return self.array[positions]


class ImageRows:
    """Rows of images already loaded (a float32 ``(N, C, H, W)`` tensor or :class:`LazyImages`),
    to resize data given as a Dataset."""

    def __init__(self, images: Any):
        self.images, self.n = images, len(images)
        self.row_bytes = 4 * math.prod(images.shape[1:])
        self.slow = bool(getattr(getattr(images, "rows", None), "slow", False))

    def read(self, positions: np.ndarray) -> np.ndarray:
        return np.asarray(self.images[torch.as_tensor(positions)].numpy())


def converter(layout: Callable[[np.ndarray], np.ndarray], shaping: Shaping | None) -> Callable[[Any], np.ndarray]:
    """Raw rows (a batch, or a list of single samples) to float32 ``(k, C, H, W)`` in [0, 1]:
    ``layout`` puts a batch's axes as ``(k, C, h, w)``, then pixels are scaled and (with
    ``shaping``) each image resized on its own."""

    def convert(raw: Any) -> np.ndarray:
        if shaping is None:
            return to_unit(layout(np.stack(raw) if isinstance(raw, list) else raw))
        items = raw if isinstance(raw, list) else [raw[i] for i in range(len(raw))]
        return np.stack([shaping.fit(torch.from_numpy(to_unit(layout(a[None]))[0])).numpy() for a in items])

    return convert


def scan_pixels(rows: Rows, dtype: np.dtype, source: str) -> None:
    """Check every row's pixels (NaN, inf, range) chunk by chunk, with a whole read's messages;
    uint8 rows need no check."""
    if not needs_check(dtype):
        return
    step = max(1, SCAN_BYTES // max(1, rows.row_bytes))
    stats: PixelStats | None = None
    for a in range(0, rows.n, step):
        raw = rows.read(np.arange(a, min(rows.n, a + step)))
        batch = np.stack(raw) if isinstance(raw, list) else raw
        part = PixelStats.of(batch, a)
        stats = part if stats is None else stats.merge(part)
    if stats is not None:
        stats.check(dtype, source)


class LazyImages:
    """A ``(N, C, H, W)`` float32 image array read from ``rows`` on indexing (see the module)."""

    dtype = torch.float32
    device = torch.device("cpu")
    ndim = 4

    def __init__(self, rows: Rows, convert: Callable[[Any], np.ndarray], item_shape: Sequence[int], source: str,
                 positions: np.ndarray | None = None, lock: Any = None):
        self.rows, self.convert, self.source = rows, convert, source
        self.item_shape = tuple(int(s) for s in item_shape)
        self.positions = np.arange(rows.n, dtype=np.int64) if positions is None else positions
        self._lock = lock or threading.Lock()  # one reader of ``rows`` at a time, shared by every take()
        self._ahead: tuple[tuple[int, int], Future] | None = None
        self._pool: ThreadPoolExecutor | None = None

    # -- the array interface the sweep uses ----------------------------------------------------

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.positions), *self.item_shape))

    @property
    def nbytes(self) -> int:
        return 4 * math.prod(self.shape)

    def __len__(self) -> int:
        return len(self.positions)

    def __repr__(self) -> str:
        return f"LazyImages({tuple(self.shape)}, from {self.source})"

    def size(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[dim]

    def __getitem__(self, key: Any) -> torch.Tensor:
        if isinstance(key, tuple):
            head = self[key[0]]
            return head[key[1:]] if _is_int(key[0]) else head[(slice(None), *key[1:])]
        if _is_int(key):
            return self._read(self.positions[[int(key)]])[0]
        if isinstance(key, slice):
            if key.step in (None, 1) and self.rows.slow:
                return self._read_ahead(*key.indices(len(self))[:2])
            return self._read(self.positions[key])
        return self._read(self.positions[_index_array(key)])

    def take(self, keep: Any) -> "LazyImages":
        """The rows at positions ``keep`` (as ``tensor[keep]``), still unread."""
        return LazyImages(self.rows, self.convert, self.item_shape, self.source, self.positions[_index_array(keep)],
                          self._lock)

    def materialise(self) -> torch.Tensor:
        """Every row as one tensor (read in chunks into it)."""
        check_memory(self.nbytes, f"{tuple(self.shape)} images as float32", self.source)
        out = torch.empty(tuple(self.shape), dtype=torch.float32)
        step = max(1, SCAN_BYTES // max(1, self.rows.row_bytes + 4 * math.prod(self.item_shape)))
        for a in range(0, len(self), step):
            out[a : a + step] = self._read(self.positions[a : a + step])
        return out

    def to(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.materialise().to(*args, **kwargs)

    def numpy(self) -> np.ndarray:
        return self.materialise().numpy()

    # -- reading -------------------------------------------------------------------------------

    def _read(self, pos: np.ndarray) -> torch.Tensor:
        """The rows at ``pos`` (any order, repeats allowed) as float32."""
        pos = np.asarray(pos, dtype=np.int64)
        if len(pos) == 0:
            return torch.empty((0, *self.item_shape), dtype=torch.float32)
        ordered = bool(np.all(pos[1:] > pos[:-1]))
        uniq, inverse = (pos, None) if ordered else np.unique(pos, return_inverse=True)
        out = self._decode(uniq)
        return torch.from_numpy(out if inverse is None else out[inverse.reshape(-1)])

    def _decode(self, uniq: np.ndarray) -> np.ndarray:
        k = len(uniq)
        need = k * (self.rows.row_bytes + 4 * math.prod(self.item_shape))
        check_memory(need, f"{k} samples at once ({human_bytes(need / k)} each)", self.source,
                     hint="lower --batch-size to read fewer samples at once")
        with self._lock:
            return np.ascontiguousarray(self.convert(self.rows.read(uniq)), dtype=np.float32)

    def _read_ahead(self, a: int, b: int) -> torch.Tensor:
        """Rows ``a:b`` (from the read started ahead, if it was these), then start reading the next
        ``b - a`` rows in the background."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == (a, b):
            out = ahead[1].result()
        else:
            if ahead is not None:
                ahead[1].cancel()
            out = self._read(self.positions[a:b])
        if b < len(self) and b > a:
            nxt = (b, min(len(self), 2 * b - a))
            self._pool = self._pool or ThreadPoolExecutor(max_workers=1, thread_name_prefix="nero-read")
            self._ahead = (nxt, self._pool.submit(self._read, self.positions[nxt[0] : nxt[1]]))
        return out


def _is_int(key: Any) -> bool:
    if isinstance(key, torch.Tensor):
        return key.ndim == 0 and not key.dtype.is_floating_point and key.dtype != torch.bool
    return isinstance(key, (int, np.integer))


def _index_array(key: Any) -> np.ndarray:
    """An index (list, array or tensor of positions or booleans) as a numpy index."""
    arr = key.detach().cpu().numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
    return arr if arr.dtype == bool else arr.astype(np.int64)


def held(images: LazyImages) -> torch.Tensor | LazyImages:
    """``images`` read whole into a tensor when they fit in :data:`EAGER_BYTES` as float32."""
    return images.materialise() if images.nbytes <= EAGER_BYTES else images


def take(inputs: Any, keep: np.ndarray) -> Any:
    """``inputs[keep]`` of a tensor, or the same rows of a :class:`LazyImages`, unread."""
    if isinstance(inputs, LazyImages):
        return inputs.take(keep)
    return inputs[torch.as_tensor(keep, dtype=torch.long)]


__all__ = ["EAGER_BYTES", "LazyImages", "ArrayRows", "ImageRows", "converter", "scan_pixels", "held", "take"]
