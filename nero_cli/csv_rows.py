"""Rows of ``results.csv`` as text, chunk by chunk, exactly as pandas writes the whole table.

:func:`nero_cli.runrecord.write_table` writes tables with ``DataFrame.to_csv(index=False,
float_format="%.9g")``: floats as ``"%.9g" % v`` and NaN as an empty field, integers in
decimal, booleans as ``True``/``False``, text quoted only when it holds a comma, a quote or a
line break (the csv module's minimal quoting), a float inside a text column as ``str(v)``. A
streamed run formats each chunk itself, with one format string per row: the key columns are
constant per block (model, group) or per element (element, identity, parameters) and are
formatted once, so a row costs a few microseconds, about a quarter of pandas' time, for the
same bytes (the tests compare them).
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any, Mapping, Sequence

import numpy as np

FLOAT = "%.9g"


def quote(text: str) -> str:
    """``text`` as one field of a CSV row (minimal quoting, as pandas and the csv module write it)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([text, ""])  # two fields: an empty text is not quoted
    return buf.getvalue()[:-2]


def cells(values: np.ndarray) -> list[str]:
    """A column's values as the whole table's CSV writes them, by the column's dtype: floats
    ``%.9g`` (NaN empty), integers, ``True``/``False``; in a text column ``str(v)``, quoted as needed."""
    kind = values.dtype.kind
    if kind == "f":
        return ["" if x != x else FLOAT % x for x in values.tolist()]
    if kind in "iub":
        return [str(x) for x in values.tolist()]
    return ["" if x is None or (isinstance(x, float) and math.isnan(x)) else quote(str(x)) for x in values.tolist()]


def header(columns: Sequence[str]) -> str:
    return ",".join(quote(c) for c in columns) + "\n"


class RowFormat:
    """The text of a block's rows: ``model, sample, label`` per sample, the element's columns
    (``group, element, identity`` and the parameters, ``elements[e]``) and the task's columns."""

    def __init__(self, model: str, elements: Mapping[str, np.ndarray]):
        self.prefix = quote(model).replace("%", "%%") + ",%d,%d,"
        self.elements = [",".join(row) for row in zip(*(cells(np.asarray(v)) for v in elements.values()))]

    def text(self, samples: np.ndarray, labels: np.ndarray, cols: Mapping[str, np.ndarray]) -> str:
        """The rows of ``samples`` (sample-major, every element), one per line, each ending in a newline."""
        g = len(self.elements)
        fmt, args = [self.prefix + "%s"], [np.repeat(samples, g).tolist(), np.repeat(labels, g).tolist(),
                                          self.elements * len(samples)]
        for v in cols.values():
            spec, values = _column(np.asarray(v))
            fmt.append(spec)
            if values is not None:  # else the same text on every row, in the format itself
                args.append(values)
        row = ",".join(fmt)
        return "".join([row % r + "\n" for r in zip(*args)])


def _column(v: np.ndarray) -> tuple[str, list[Any] | None]:
    """A column's row format and values: floats ``%.9g`` (NaN as an empty field), integers,
    booleans; no values for a column of NaN only (an empty field on every row)."""
    kind = v.dtype.kind
    if kind == "f":
        nan = np.isnan(v)
        if len(v) and nan.all():
            return "", None
        if nan.any():
            return "%s", ["" if x != x else FLOAT % x for x in v.tolist()]
        return FLOAT, v.tolist()
    if kind in "iu":
        return "%d", v.tolist()
    if kind == "b":
        return "%s", v.tolist()
    return "%s", cells(v)


__all__ = ["RowFormat", "header", "quote", "cells"]
