"""A run's rows on disk in their exact binary form, block by block (model × group).

Each block is a folder of raw little-endian arrays appended chunk by chunk: ``sample`` and
``label`` (int64, one per sample) and one file per task column (one value per row, sample-major,
in the column's own dtype); ``spill.json`` names the columns, their dtypes and each block's
sample and element counts. Nothing is parsed back from text, so a run rebuilt from its spill
(``nero merge`` from its shards, rank 0 of ``torchrun`` from the other ranks) folds exactly the
numbers a single process folded. Reading takes a few samples at a time: memory stays flat.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

MANIFEST = "spill.json"
Block = tuple[int, int]


def block_dir(root: Path, b: Block) -> Path:
    return root / f"b{b[0]}_{b[1]}"


@dataclass
class Spill:
    """Append-only writer of a spill folder (see the module docstring)."""

    root: Path
    dtypes: dict[str, str] = field(default_factory=dict)
    blocks: dict[Block, list[int]] = field(default_factory=dict)  # block -> [samples, elements]

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def write(self, b: Block, n_elements: int, samples: np.ndarray, labels: np.ndarray,
              cols: Mapping[str, np.ndarray]) -> None:
        """Append one chunk of block ``b``: ``samples``, ``labels`` ``(S,)`` and ``S * G`` rows per column."""
        d = block_dir(self.root, b)
        if b not in self.blocks:
            d.mkdir(exist_ok=True)
            self.blocks[b] = [0, n_elements]
        arrays = {"sample": np.asarray(samples, dtype="<i8"), "label": np.asarray(labels, dtype="<i8")}
        for name, v in cols.items():
            v = np.asarray(v)
            if v.dtype.kind not in "biuf":
                raise TypeError(f"column {name!r}: a streamed results column must be numeric or bool")
            want = self.dtypes.setdefault(name, v.dtype.newbyteorder("<").str)
            arrays[f"c_{name}"] = np.ascontiguousarray(v, dtype=want)
        for name, v in arrays.items():
            with open(d / f"{name}.bin", "ab") as fh:
                fh.write(v.tobytes())
        self.blocks[b][0] += len(samples)

    def close(self) -> None:
        manifest = {"version": 1, "columns": [[k, v] for k, v in self.dtypes.items()],
                    "blocks": {f"{m}_{g}": n for (m, g), n in self.blocks.items()}}
        tmp = self.root / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
        os.replace(tmp, self.root / MANIFEST)


class SpillReader:
    """Reads a closed spill folder a few samples at a time."""

    def __init__(self, root: Path):
        self.root = Path(root)
        info = json.loads((self.root / MANIFEST).read_text())
        self.dtypes = {k: np.dtype(v) for k, v in info["columns"]}
        self.blocks: dict[Block, tuple[int, int]] = {}
        for key, (n, g) in info["blocks"].items():
            m, gi = key.split("_")
            self.blocks[(int(m), int(gi))] = (int(n), int(g))

    @staticmethod
    def exists(root: Path) -> bool:
        return (Path(root) / MANIFEST).is_file()

    def _read(self, b: Block, name: str, dtype: np.dtype, start: int, count: int) -> np.ndarray:
        with open(block_dir(self.root, b) / f"{name}.bin", "rb") as fh:
            fh.seek(start * dtype.itemsize)
            out = np.fromfile(fh, dtype=dtype, count=count)
        if len(out) != count:
            raise OSError(f"{block_dir(self.root, b)}/{name}.bin is cut short")
        return out

    def samples(self, b: Block) -> np.ndarray:
        return self._read(b, "sample", np.dtype("<i8"), 0, self.blocks[b][0])

    def read(self, b: Block, p0: int, p1: int, columns: list[str] | None = None
             ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Samples ``p0:p1`` of block ``b`` (positions in the block): ids, labels and their rows."""
        g = self.blocks[b][1]
        i8 = np.dtype("<i8")
        cols = {c: self._read(b, f"c_{c}", self.dtypes[c], p0 * g, (p1 - p0) * g)
                for c in (self.dtypes if columns is None else columns)}
        return self._read(b, "sample", i8, p0, p1 - p0), self._read(b, "label", i8, p0, p1 - p0), cols

    def chunks(self, b: Block, size: int = 256) -> Iterator[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
        n = self.blocks[b][0]
        for p0 in range(0, n, size):
            yield self.read(b, p0, min(n, p0 + size))


__all__ = ["Spill", "SpillReader", "MANIFEST", "block_dir"]
