"""Which samples get individual plots: ``--plot-samples`` (``nero evaluate``) and ``--samples`` (``nero plot``).

The value is a comma list of picks, taken in order, each adding samples not picked before:

* ``worst:K`` / ``best:K``: the K samples with the lowest / highest mean of the task's primary
  metric over every model and element (lowest / highest by the metric's direction);
* ``spread:K``: the K samples on which the models differ most: per sample, the mean over its
  orbit rows (group x element) of the largest minus the smallest model's value; with one
  model, the largest minus the smallest value over the sample's orbit;
* a sample id (``17``); ``none`` (or nothing) for no individual plots.

The default, :data:`DEFAULT`, is ``worst:1,spread:2``: the worst sample, and two where the
models disagree most, rather than three on which every model scores near 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

import numpy as np

from .errors import OptionError
from .summary import rank_samples

if TYPE_CHECKING:
    import pandas as pd
else:
    from nero_cli.lazy import pandas as pd

DEFAULT = "worst:1,spread:2"
MODES = ("worst", "best", "spread")
Pick = Union[tuple[str, int], int]


def parse_plot_samples(text: str, option: str = "--plot-samples") -> list[Pick]:
    """``worst:1,spread:2,17`` -> ``[("worst", 1), ("spread", 2), 17]``; ``none`` -> ``[]``."""
    items = [p.strip() for p in str(text).split(",") if p.strip()]
    if items in ([], ["none"]):
        return []
    out: list[Pick] = []
    for item in items:
        how, colon, k = item.partition(":")
        if colon and how in MODES and k.isdigit():
            out.append((how, int(k)))
        elif not colon and item.isdigit():
            out.append(int(item))
        else:
            raise OptionError(f"{option} expects a comma list of worst:K, best:K, spread:K and sample ids "
                              f"(e.g. {DEFAULT},17), or none; got '{text}'")
    return out


def spread_ranking(table: pd.DataFrame, column: str) -> list[int]:
    """Sample ids, the largest spread of ``column`` between models first (see the module docstring);
    ties and missing values last, in id order."""
    t = table.assign(_v=pd.to_numeric(table[column], errors="coerce").astype(np.float64))
    keys = ["sample", "group", "element"] if t["model"].nunique() > 1 else ["sample"]
    by = t.groupby(keys, sort=True)["_v"]
    spread = by.max() - by.min()
    if len(keys) > 1:
        spread = spread.groupby(level="sample").mean()
    ids = spread.index.to_numpy().astype(np.int64)
    values = np.nan_to_num(spread.to_numpy(dtype=np.float64), nan=-np.inf)
    order = np.lexsort((ids, -values))  # largest spread first, then by id
    return [int(s) for s in ids[order]]


def pick_samples(table: pd.DataFrame, column: str, higher_is_better: bool, picks: list[Pick],
                 option: str = "--plot-samples") -> list[int]:
    """The sample ids ``picks`` name (see :func:`parse_plot_samples`), in pick order, each once.

    ``column`` is the results column of the primary metric and ``higher_is_better`` its direction."""
    known = sorted({int(s) for s in table["sample"].unique()})
    missing = [p for p in picks if isinstance(p, int) and p not in set(known)]
    if missing:
        raise OptionError(f"{option}: sample id(s) {missing} are not in the evaluated data "
                          f"(ids {known[0]}..{known[-1]})")
    chosen: list[int] = []
    for p in picks:
        if isinstance(p, int):
            ranked = [p]
        elif p[0] == "spread":
            ranked = spread_ranking(table, column)
        else:
            ranked = rank_samples(table, how=p[0], k=len(known), by=column, higher_is_better=higher_is_better)
        fresh = [s for s in ranked if s not in chosen]
        chosen += fresh[: 1 if isinstance(p, int) else p[1]]
    return chosen


__all__ = ["DEFAULT", "MODES", "parse_plot_samples", "pick_samples", "spread_ranking"]
