"""The per-sample NERO vectors of a run, stored as binary arrays for ``nero report`` (issue 14).

A run folder's ``vectors/`` holds

- ``b{m}_{g}.npy`` per model × group block: float64 of shape ``(samples, elements, columns)``,
  every task column of ``results.csv`` in its order, samples in the block's (results.csv's) order;
- ``samples.npy``: int64 ``(samples, 2)``, each row's sample id and label (the same for every block);
- ``index.json``: the columns (with their dtypes in results.csv), and per block its model, group
  label, file and element count.

The numbers are those ``nero report`` reads from ``results.csv``: a float rounded to 9 significant
digits as the CSV writes it (:func:`decimal9`, the value pandas reads back), an integer or a boolean
as a float64. So the page built from the vectors is the page built from ``results.csv``, byte for
byte, while the report reads only the shown samples' rows (memory-mapped) instead of the whole
table. They are float64, not float32: the page embeds float32 columns, but its reductions start
from these numbers, and t-SNE given them rounded to float32 draws another layout (measured).

The files are written while the run streams (each chunk appended after a reserved header, the
header written when the block is complete), in the run's sample order, so reruns, merged shards
and torchrun give the same bytes.
run.json's ``vectors`` records every file's sha256; :func:`open_vectors` checks them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import OutputError
from .model_formats import sha256_file

FOLDER, INDEX, SAMPLES = "vectors", "index.json", "samples.npy"
DTYPE = "<f8"
#: Bytes reserved for a ``.npy`` header (format 1.0): room for any shape, and what ``numpy.save``
#: writes for the shapes of a run (so the files equal numpy's own).
HEADER = 128
_POW10 = np.array([float(f"1e{i}") for i in range(23)])  # exact doubles
Block = tuple[int, int]


# ------------------------------------------------------------------------------------------
# Numbers as results.csv holds them


def decimal9(x: Any) -> np.ndarray:
    """``float("%.9g" % v)`` for every value of ``x`` (the number a 9-digit CSV cell reads back as),
    vectorised. The 9-digit rounding is decided in float64 where it is certain and by Python's
    formatting where a value lies within 1e-6 of a rounding tie or outside 1e±22 (rare)."""
    x = np.asarray(x, dtype=np.float64)
    out = x.copy()
    a = np.abs(x)
    idx = np.flatnonzero(np.isfinite(x) & (a > 0))
    if not len(idx):
        return out
    v = a.ravel()[idx]
    k = 8 - np.floor(np.log10(v)).astype(np.int64)  # v * 10**k has 9 digits before the point
    safe = np.abs(k) <= 22
    p = _POW10[np.minimum(np.abs(k), 22)]
    with np.errstate(over="ignore", invalid="ignore"):  # both branches are computed; the unsafe ones are redone
        scaled = np.where(k >= 0, v * p, v / p)  # one rounding: off by at most 1.2e-7 here
        m = np.rint(scaled)
        sure = safe & (np.abs(scaled - np.floor(scaled) - 0.5) > 1e-6) & (scaled >= 1e8) & (m < 1e9)
        val = np.where(k >= 0, m / p, m * p)  # exact operands: correctly rounded, as strtod
    flat = out.reshape(-1)
    flat[idx] = np.copysign(val, x.ravel()[idx])
    slow = idx[~sure]
    flat[slow] = [float("%.9g" % s) for s in x.ravel()[slow].tolist()]
    return out


def page_values(v: Any) -> np.ndarray:
    """A results column as the report reads it from results.csv, as float64 (floats through :func:`decimal9`)."""
    v = np.asarray(v)
    return decimal9(v) if v.dtype.kind == "f" else v.astype(np.float64)


# ------------------------------------------------------------------------------------------
# .npy files written by appending


def npy_header(shape: Sequence[int], descr: str) -> bytes:
    """A ``.npy`` format 1.0 header of :data:`HEADER` bytes (``numpy.save``'s for such shapes)."""
    text = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (descr, tuple(int(s) for s in shape))
    pad = HEADER - 10 - len(text) - 1
    if pad < 0:
        raise ValueError(f"shape {tuple(shape)} does not fit a {HEADER}-byte .npy header")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", HEADER - 10) + (text + " " * pad + "\n").encode("latin1")


def _append(path: Path, data: np.ndarray) -> None:
    with open(path, "ab") as fh:
        if fh.tell() == 0:
            fh.write(b"\0" * HEADER)  # the header, once the shape is known
        fh.write(np.ascontiguousarray(data).tobytes())


def _seal(path: Path, shape: Sequence[int], descr: str) -> None:
    with open(path, "r+b") as fh:
        fh.write(npy_header(shape, descr))


def block_file(b: Block) -> str:
    return f"b{b[0]}_{b[1]}.npy"


@dataclass
class VectorWriter:
    """Appends each chunk of a streamed run to its block's vectors (see the module docstring)."""

    folder: Path
    columns: list[str]
    dtypes: dict[str, str] = field(default_factory=dict)
    counts: dict[Block, list[int]] = field(default_factory=dict)  # block -> [samples, elements]
    digests: dict[Block, Any] = field(default_factory=dict)  # block -> sha256 of its (sample, label) rows
    id_block: Block | None = None

    def __post_init__(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)

    def add(self, b: Block, n_elements: int, samples: np.ndarray, labels: np.ndarray,
            cols: Mapping[str, np.ndarray]) -> None:
        """One chunk of block ``b``: ``S`` samples, ``S * n_elements`` values per column."""
        if b not in self.counts:
            self.counts[b], self.digests[b] = [0, n_elements], hashlib.sha256()
            self.id_block = b if self.id_block is None else self.id_block
        s = len(samples)
        ids = np.stack([np.asarray(samples, dtype="<i8"), np.asarray(labels, dtype="<i8")], axis=1)
        self.digests[b].update(ids.tobytes())
        if b == self.id_block:
            _append(self.folder / SAMPLES, ids)
        out = np.empty((s, n_elements, len(self.columns)), dtype=DTYPE)
        for i, name in enumerate(self.columns):
            v = np.asarray(cols[name])
            self.dtypes.setdefault(name, v.dtype.str)
            out[:, :, i] = page_values(v).reshape(s, n_elements)
        _append(self.folder / block_file(b), out)
        self.counts[b][0] += s

    def close(self, models: Sequence[str], groups: Sequence[str]) -> bool:
        """Write the headers and ``index.json``; False (and nothing kept) when the blocks did not
        all hold the same samples in the same order, which the vectors' one sample list assumes."""
        if self.id_block is None or len({d.hexdigest() for d in self.digests.values()}) != 1:
            shutil.rmtree(self.folder, ignore_errors=True)
            return False
        n = self.counts[self.id_block][0]
        _seal(self.folder / SAMPLES, (n, 2), "<i8")
        blocks = []
        for b in sorted(self.counts):
            g = self.counts[b][1]
            _seal(self.folder / block_file(b), (n, g, len(self.columns)), DTYPE)
            blocks.append({"model": models[b[0]], "group": groups[b[1]], "file": block_file(b), "elements": g})
        index = {"version": 1, "dtype": DTYPE, "n_samples": n, "samples": SAMPLES,
                 "columns": [[c, self.dtypes[c]] for c in self.columns], "blocks": blocks}
        (self.folder / INDEX).write_text(json.dumps(index, indent=1) + "\n")
        return True


def vectors_record(run_dir: Path) -> dict[str, Any]:
    """run.json's ``vectors``: the sha256 of every file of ``run_dir/vectors``."""
    files = sorted(p for p in (run_dir / FOLDER).iterdir() if p.is_file())
    return {"version": 1, "files": {f"{FOLDER}/{p.name}": sha256_file(p) for p in files}}


# ------------------------------------------------------------------------------------------
# Reading


def _damaged(path: Path, what: str) -> OutputError:
    return OutputError(f"{path}: {what}; the run directory is damaged, rerun 'nero evaluate'")


@dataclass
class Vectors:
    """A run's verified vectors: the sample list, the columns, and each block memory-mapped."""

    root: Path
    index: dict[str, Any]
    samples: np.ndarray  # (n, 2) int64, memory-mapped

    @property
    def columns(self) -> list[str]:
        return [c for c, _ in self.index["columns"]]

    @property
    def dtypes(self) -> dict[str, np.dtype]:
        return {c: np.dtype(d) for c, d in self.index["columns"]}

    def block(self, model: str, group: str) -> np.ndarray | None:
        """The ``(samples, elements, columns)`` float64 array of one model and group, memory-mapped."""
        entry = next((e for e in self.index["blocks"] if e["model"] == model and e["group"] == group), None)
        if entry is None:
            return None
        return _load(self.root / entry["file"], (len(self.samples), entry["elements"], len(self.columns)), DTYPE)

    def first_block(self) -> np.ndarray | None:
        """The block whose rows come first in results.csv."""
        e = self.index["blocks"][0] if self.index["blocks"] else None
        return None if e is None else self.block(e["model"], e["group"])

    def rows(self, model: str, group: str, p0: int, p1: int) -> np.ndarray:
        """Samples ``p0:p1`` (positions in the sample list) of one block, ``(p1 - p0, elements, columns)``,
        read from the file alone: no page of the rest of the block stays mapped."""
        blk = self.block(model, group)
        if blk is None:
            raise KeyError((model, group))
        p1 = max(p0, min(p1, blk.shape[0]))
        row = int(np.prod(blk.shape[1:]))
        with open(blk.filename, "rb") as fh:  # type: ignore[arg-type]
            out = np.fromfile(fh, dtype=DTYPE, count=(p1 - p0) * row, offset=blk.offset + p0 * row * 8)
        return out.reshape(p1 - p0, *blk.shape[1:])

    def typed(self, name: str, values: np.ndarray) -> np.ndarray:
        """Values of column ``name`` in the dtype results.csv reads it as: booleans and integers back
        from float64 (exact), floats as they are (float64, results.csv's 9-digit numbers)."""
        kind = self.dtypes[name].kind
        return values.astype(bool) if kind == "b" else values.astype(np.int64) if kind in "iu" else values


class BlockColumns(dict):
    """Columns of one block as flat sample-major sequences (``samples * elements`` values each, as
    results.csv's rows of the block), read from the file when sliced: ``cols[c][a:b]`` for ``a``
    and ``b`` multiples of the element count reads those samples' rows once for every column (the
    last read is kept), in the column's dtype in results.csv. Nothing else of the block is held."""

    def __init__(self, vectors: Vectors, model: str, group: str, names: Sequence[str]):
        blk = vectors.block(model, group)
        if blk is None:
            raise KeyError((model, group))
        self.vectors, self.key, (self.n, self.g) = vectors, (model, group), blk.shape[:2]
        self.last: tuple[tuple[int, int], np.ndarray] | None = None
        super().__init__({c: _Column(self, c) for c in names})

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        p0, p1 = start // self.g, stop // self.g
        if start % self.g or stop % self.g:
            raise ValueError(f"rows {start}:{stop} are not whole samples of {self.g} elements")
        if self.last is None or self.last[0] != (p0, p1):
            self.last = ((p0, p1), self.vectors.rows(*self.key, p0, p1))
        rows = self.last[1][:, :, self.vectors.columns.index(name)]
        return self.vectors.typed(name, np.ascontiguousarray(rows).reshape(-1))  # contiguous, as a table column


@dataclass
class _Column:
    block: BlockColumns
    name: str

    def __len__(self) -> int:
        return self.block.n * self.block.g

    def __getitem__(self, s: slice) -> np.ndarray:
        start, stop, step = s.indices(len(self))
        if step != 1:
            raise ValueError("a block column is read in runs of rows")
        return self.block.read(self.name, start, max(start, stop))


def _load(path: Path, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise _damaged(path, f"cannot read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if arr.shape != tuple(shape) or arr.dtype != np.dtype(dtype):
        raise _damaged(path, f"holds {arr.dtype} {arr.shape}, index.json says {np.dtype(dtype)} {tuple(shape)}")
    return arr


def open_vectors(run_dir: Path, record: Any) -> Vectors:
    """The vectors of ``run_dir`` after checking every file against run.json's ``record``
    (one OutputError line for a missing, changed or cut-short file)."""
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, dict) or f"{FOLDER}/{INDEX}" not in files:
        raise _damaged(run_dir / "run.json", "its 'vectors' entry lists no index.json")
    for rel, want in files.items():
        path = run_dir / rel
        try:
            got = sha256_file(path)
        except FileNotFoundError:
            raise _damaged(path, "missing") from None
        except OSError as exc:
            raise _damaged(path, f"cannot read ({exc.strerror})") from None
        if got != want:
            raise _damaged(path, "does not match the checksum in run.json (the file was changed or cut short)")
    root = run_dir / FOLDER
    index = json.loads((root / INDEX).read_text())
    samples = _load(root / index["samples"], (index["n_samples"], 2), "<i8")
    return Vectors(root, index, samples)


__all__ = ["VectorWriter", "Vectors", "BlockColumns", "open_vectors", "vectors_record", "decimal9", "page_values", "npy_header", "FOLDER"]
