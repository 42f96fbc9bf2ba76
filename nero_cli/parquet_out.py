"""``results.parquet``: the twin of ``results.csv`` (``nero evaluate --parquet``; the optional extra
``pip install 'nero[parquet]'``, pyarrow).

The same rows in the same order and the same columns, with the types and the numbers
:meth:`nero_cli.runrecord.RunRecord.results` reads from ``results.csv``: ``pandas.read_parquet``
gives the same table. So floats hold the CSV's 9 significant digits (:func:`nero_cli.vectors.decimal9`),
and a column whose every cell the CSV writes as an integer (every value whole, none missing) is
int64, as pandas reads it; model, group and text parameters are strings, missing values NaN.
The file is written after the sweep from the run's binary spill (:mod:`nero_cli.spill`), a
row group of about :data:`ROWS` rows at a time, never the whole table: one pass over the spill
finds each column's type, a second writes it. Nothing in it varies between reruns (no
timestamps; pyarrow's version is named in the footer).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from .errors import OptionError
from .spill import SpillReader
from .stream import Layout, key_columns
from .vectors import decimal9

EXTRA = "pip install 'nero[parquet]'"
PARQUET = "results.parquet"
#: Rows per row group (and per read of the spill).
ROWS = 1 << 17


def require() -> tuple[Any, Any]:
    """pyarrow and pyarrow.parquet; one OptionError line naming the extra when they are missing."""
    try:  # a module set to None in sys.modules raises ImportError too
        return importlib.import_module("pyarrow"), importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise OptionError(f"--parquet writes results.parquet with pyarrow, which is not installed; install it "
                          f"with {EXTRA}, or leave out --parquet") from None


def whole(values: np.ndarray) -> bool:
    """Whether every value is one the CSV writes as an integer (``%.9g`` without a point or exponent)."""
    r = decimal9(values)
    return bool(np.all(np.isfinite(r) & (r == np.floor(r)) & (np.abs(r) < 1e9)))


def column_types(reader: SpillReader, lay: Layout) -> dict[str, str]:
    """Per column after the keys: ``int``, ``float``, ``bool`` or ``str``, as pandas reads results.csv."""
    types: dict[str, str] = {}
    present = sorted(reader.blocks)
    objects = lay.object_params
    for c in lay.params:
        if c in objects:
            types[c] = "str"
            continue
        vals = [key_columns("", lay.plans[g], lay.params, np.zeros(1, np.int64), np.zeros(1, np.int64))[c]
                for g in sorted({g for _, g in present})]
        types[c] = "int" if all(whole(v) for v in vals) else "float"
    for c, dt in reader.dtypes.items():
        types[c] = {"b": "bool", "i": "int", "u": "int"}.get(dt.kind, "float")
        if dt.kind == "f":
            types[c] = "int" if all(whole(cols[c]) for b in present for _, _, cols in _chunks(reader, b, [c])) else "float"
    return types


def _chunks(reader: SpillReader, b: tuple[int, int], columns: list[str] | None = None):
    n, g = reader.blocks[b]
    size = max(1, ROWS // max(g, 1))
    for p0 in range(0, n, size):
        yield reader.read(b, p0, min(n, p0 + size), columns)


def _array(pa: Any, values: np.ndarray, kind: str) -> Any:
    if kind == "str":
        return pa.array([None if v is None or (isinstance(v, float) and v != v) else str(v) for v in values.tolist()],
                        type=pa.string())
    if kind == "bool":
        return pa.array(np.asarray(values, dtype=bool))
    if np.asarray(values).dtype.kind == "f":
        values = decimal9(values)
    return pa.array(np.asarray(values, dtype=np.int64 if kind == "int" else np.float64))


def write_parquet(path: Path, reader: SpillReader, lay: Layout) -> None:
    """``results.parquet`` of the rows in ``reader`` (a closed spill of the sweep ``lay``)."""
    pa, pq = require()
    types = {"model": "str", "sample": "int", "label": "int", "group": "str", "element": "int", "identity": "bool",
             **column_types(reader, lay)}
    pa_type = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    schema = pa.schema([(c, pa_type[k]) for c, k in types.items()])
    objects = lay.object_params
    with pq.ParquetWriter(path, schema, compression="snappy") as writer:
        for b in lay.blocks:
            if b not in reader.blocks:
                continue
            for samples, labels, cols in _chunks(reader, b):
                keys = key_columns(lay.models[b[0]], lay.plans[b[1]], lay.params, samples, labels, objects)
                data = {**keys, **cols}
                writer.write_table(pa.table({c: _array(pa, np.asarray(data[c]), k) for c, k in types.items()},
                                            schema=schema), row_group_size=ROWS)


__all__ = ["write_parquet", "require", "EXTRA", "PARQUET"]
