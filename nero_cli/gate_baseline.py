"""``nero gate --baseline``: regressions against a baseline run, by a bootstrap over samples.

Every summary key is recomputed from the run's rows through the metric registry
(:func:`nero_cli.summary.fold_stats` with per-sample weights, then
:meth:`~nero_cli.measures.BlockStats.compute`) for ``n_boot`` resamples of the samples:
multinomial counts of a resample, paired when both runs scored the same samples of the same
data. A check fails only when the whole confidence interval of the worsening lies above the
allowed regression.

The rows are read from the run's vectors (:mod:`nero_cli.vectors`) one model x group block at a
time, only its metric columns, a chunk of samples at a time each time the block is folded; a run written without them is read
from ``results.csv`` whole. The vectors hold results.csv's numbers and the blocks are folded in
the same order (samples by increasing id), so every value, interval and verdict is the same either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import OptionError, OutputError
from .gate_config import did_you_mean, metric_key
from .gate_result import check_row, distinct, fmt
from .measures import SummaryKey, summary_keys
from .runrecord import RunRecord
from .summary import blocks, fold_stats
from .tasks import TaskRecord
from .vectors import BlockColumns

#: Values per bootstrap chunk of weights (resamples x samples) at most.
CHUNK_VALUES = 4_000_000


def parse_max_regression(value: Any) -> tuple[float, bool]:
    """``0.01`` (absolute, in the metric's units) or ``"5%"`` (relative to the baseline value)."""
    text = str(value).strip()
    relative = text.endswith("%")
    try:
        number = float(text[:-1] if relative else text)
    except ValueError:
        raise OptionError(f"--max-regression expects a number (absolute, e.g. 0.01) or a percentage of the "
                          f"baseline value (e.g. 5%); got '{value}'") from None
    if not math.isfinite(number) or number < 0:
        raise OptionError(f"--max-regression must be a non-negative number, got '{value}'")
    return (number / 100.0 if relative else number), relative


@dataclass
class _Block:
    """One model x group of a run: its metric columns (sample-major, samples in increasing id) and
    its sorted sample ids."""

    cols: Mapping[str, Any]  # arrays, or a run's vectors read when sliced
    samples: np.ndarray
    n_elements: int
    identity: int
    #: The group's per-element weights of orbit means (run.json), None for equal weights.
    elements: Any = None

    @property
    def n_rows(self) -> int:
        """Samples x elements (rows of results.csv), as many as each column holds."""
        return len(next(iter(self.cols.values()))) if self.cols else 0


def _damaged(run: RunRecord, model: str, group: str, what: str) -> OutputError:
    return OutputError(f"{run.path / 'results.csv'}: {model} / {group} has {what}; the run directory is damaged, "
                       f"rerun 'nero evaluate'")


def _table_blocks(run: RunRecord) -> dict[tuple[str, str], _Block]:
    """Every block of results.csv, read whole (a run written without vectors)."""
    out = {}
    for model, group, rows in blocks(run.results()):
        idents = rows.loc[rows["identity"].to_numpy(dtype=bool), "element"]
        if idents.nunique() != 1:
            raise _damaged(run, model, group, f"{idents.nunique()} identity elements, expected 1")
        cols = {m.column: rows[m.column].to_numpy() for m in run.task.metrics if m.column in rows}
        out[(model, group)] = _Block(cols, np.unique(rows["sample"].to_numpy()), int(rows["element"].nunique()),
                                     int(idents.iloc[0]), run.plots.get(group, {}).get("element_weights"))
    return out


class _Rows:
    """Where the blocks of one run are read: its vectors, one block at a time, only the metric
    columns, a chunk of samples at a time each time the block is folded (:class:`~nero_cli.vectors.BlockColumns`:
    nothing of the block is held), or results.csv whole for a run written without them (or whose
    samples are not in increasing id, as results.csv's blocks are sorted)."""

    def __init__(self, run: RunRecord):
        self.run, self.vectors = run, run.vectors()
        self.table: dict[tuple[str, str], _Block] | None = None
        if self.vectors is not None:
            self.ids = np.asarray(self.vectors.samples[:, 0]).copy()
            if not bool((np.diff(self.ids) > 0).all()):
                self.vectors = None

    def block(self, model: str, group: str) -> _Block | None:
        vec, run = self.vectors, self.run
        if vec is None:
            self.table = _table_blocks(run) if self.table is None else self.table
            return self.table.get((model, group))
        if vec.block(model, group) is None:
            return None
        cols = BlockColumns(vec, model, group, [m.column for m in run.task.metrics if m.column in vec.columns])
        ident = run.plots.get(group, {}).get("identity")
        if not isinstance(ident, int) or not 0 <= ident < cols.g:
            raise _damaged(run, model, group, f"identity element {ident!r} in run.json of {cols.g} elements")
        return _Block(cols, self.ids, cols.g, ident, run.plots.get(group, {}).get("element_weights"))


def _pair_models(run: RunRecord, base: RunRecord, notes: list[str]) -> list[tuple[str, str]]:
    """(model, baseline model) pairs: the models of both runs, else the only model of each."""
    common = [m for m in run.models if m in base.models]
    if common:
        pairs = [(m, m) for m in common]
    elif len(run.models) == 1 and len(base.models) == 1:
        pairs = [(run.models[0], base.models[0])]
        notes.append(f"comparing model '{run.models[0]}' with baseline model '{base.models[0]}' "
                     f"(the only model of each run)")
    else:
        raise OptionError(f"--baseline {base.path}: no model in common (run: {', '.join(run.models)}; baseline: "
                          f"{', '.join(base.models)}); give them the same --name in 'nero evaluate'")
    only = ([m for m in run.models if m not in {p[0] for p in pairs}]
            + [m for m in base.models if m not in {p[1] for p in pairs}])
    if only:
        notes.append(f"not in both runs, not compared with the baseline: {', '.join(only)}")
    return pairs


def _common_groups(run: RunRecord, base: RunRecord, notes: list[str]) -> list[str]:
    groups = [g for g in run.groups if g in base.groups]
    if not groups:
        raise OptionError(f"--baseline {base.path}: no group in common (run: {', '.join(run.groups)}; baseline: "
                          f"{', '.join(base.groups)}); evaluate the baseline on the same --group")
    for g in groups:
        s1, s2 = run.plots[g].get("spec"), base.plots[g].get("spec")
        if s1 and s2 and s1 != s2:
            notes.append(f"group '{g}' has different grids: {s1} (run) vs {s2} (baseline); worst-element metrics "
                         f"may differ for that reason")
    return groups


def _summary_keys(run: RunRecord, base: RunRecord) -> dict[str, SummaryKey]:
    """The summary keys of the run's task, ``orbit_spread`` of the run record's primary metric."""
    task, primary = run.task, run.primary_metric
    if primary not in {m.name for m in task.metrics}:
        raise OutputError(f"{run.path / 'run.json'}: primary metric '{primary}' is no metric of the {task.name} task; "
                          f"the run directory is damaged, rerun 'nero evaluate'")
    if base.primary_metric != primary:
        raise OptionError(f"--baseline {base.path}: its primary metric is '{base.primary_metric}', the run's "
                          f"'{primary}'; compare runs with the same primary metric")
    return summary_keys(task.metrics, primary)


def _chosen_keys(run: RunRecord, keys: dict[str, SummaryKey], metrics: Sequence[str] | None) -> dict[str, SummaryKey]:
    """The keys to compare: ``metrics`` if given, else every key but the ``max`` reductions (the
    bootstrap of a sample maximum is inconsistent: a resample never exceeds the sample's maximum)."""
    if not metrics:
        return {k: sk for k, sk in keys.items() if sk.reduction != "max"}
    valid = [metric_key(k) for k in keys]
    chosen = []
    for name in metrics:
        k = name.strip().lower().replace("-", "_")
        if k not in keys:
            raise OptionError(f"--regression-metrics: unknown metric '{metric_key(k)}' for this {run.task.name} run; "
                              f"{did_you_mean(metric_key(k), valid)}valid metrics: {', '.join(valid)}")
        chosen.append(k)
    return {k: keys[k] for k in dict.fromkeys(chosen)}


@dataclass
class _Comparison:
    """What every model x group comparison shares."""

    task: TaskRecord
    keys: dict[str, SummaryKey]
    limit: float
    relative: bool
    n_boot: int
    alpha: float
    rng: np.random.Generator
    same_data: bool

    def values(self, block: _Block, weights: np.ndarray | None = None) -> dict[str, Any]:
        """Every compared summary key of one block, its samples weighted by ``weights`` (``(S,)``, or
        ``(R, S)`` for R resamples at once)."""
        present = tuple(m for m in self.task.metrics if m.column in block.cols)
        return fold_stats(block.cols, block.n_rows // block.n_elements, block.n_elements, block.identity, present, weights,
                          block.elements).compute(self.keys)

    def worsening(self, value: float, base_value: float, key: str) -> float:
        return base_value - value if self.keys[key].higher_is_better else value - base_value


def _resample(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """``size`` resamples of ``n`` samples as multinomial counts (size x n)."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(np.float64)


def _bootstrap(cmp: _Comparison, cur: _Block, ref: _Block, paired: bool) -> dict[str, np.ndarray]:
    """Per key, the finite worsenings of ``cur`` against ``ref`` over ``n_boot`` resamples."""
    n, nb = len(cur.samples), len(ref.samples)
    chunk = max(1, min(cmp.n_boot, CHUNK_VALUES // max(n, nb, 1)))
    diffs: dict[str, list[float]] = {k: [] for k in cmp.keys}
    done = 0
    while done < cmp.n_boot:
        b = min(chunk, cmp.n_boot - done)
        w = _resample(cmp.rng, n, b)
        wb = w if paired else _resample(cmp.rng, nb, b)
        s_cur, s_ref = cmp.values(cur, w), cmp.values(ref, wb)  # (b,) per key: all resamples at once
        for k in cmp.keys:
            diffs[k].extend(np.atleast_1d(cmp.worsening(s_cur[k], s_ref[k], k)).tolist())
        done += b
    out = {}
    for k, d in diffs.items():
        arr = np.asarray(d, dtype=np.float64)
        out[k] = arr[np.isfinite(arr)]
    return out


def _compare(cmp: _Comparison, model: str, bmodel: str, group: str, cur: _Block, ref: _Block) -> list[dict[str, Any]]:
    """The regression rows of one model x group."""
    paired = cmp.same_data and len(cur.samples) == len(ref.samples) and bool(np.array_equal(cur.samples, ref.samples))
    point, bpoint = cmp.values(cur), cmp.values(ref)
    diffs = _bootstrap(cmp, cur, ref, paired)
    rows = []
    for k, sk in cmp.keys.items():
        d = diffs[k]
        v, bv = float(point[k]), float(bpoint[k])
        lo, hi = ((float(np.quantile(d, cmp.alpha)), float(np.quantile(d, 1 - cmp.alpha))) if len(d)
                  else (math.nan, math.nan))
        allowed = cmp.limit * abs(bv) if cmp.relative else cmp.limit
        rows.append(regression_row(
            model, bmodel, group, k, sk.higher_is_better, v, bv, cmp.worsening(v, bv, k), lo, hi, allowed,
            f"{fmt(cmp.limit * 100)}% of {fmt(abs(bv))}" if cmp.relative else None,
            "paired" if paired else "independent"))
    return rows


def regression_rows(run: RunRecord, base: RunRecord, *, max_regression: Any, metrics: Sequence[str] | None,
                    n_boot: int, confidence: float, seed: int, notes: list[str]) -> list[dict[str, Any]]:
    """One regression check per model pair, common group and compared summary key."""
    if base.task.name != run.task.name:
        raise OptionError(f"--baseline {base.path} is a {base.task.name} run and {run.path} a {run.task.name} run; "
                          f"compare runs of the same task")
    limit, relative = parse_max_regression(max_regression)
    pairs = _pair_models(run, base, notes)
    groups = _common_groups(run, base, notes)
    keys = _chosen_keys(run, _summary_keys(run, base), metrics)
    same_data = run.data_sha256 is None or base.data_sha256 is None or run.data_sha256 == base.data_sha256
    cmp = _Comparison(run.task, keys, limit, relative, n_boot, (1.0 - confidence) / 2.0, np.random.default_rng(seed),
                      same_data)
    cur_rows, ref_rows = _Rows(run), _Rows(base)
    rows = []
    for model, bmodel in pairs:
        for group in groups:  # one block of each run at a time
            cur, ref = cur_rows.block(model, group), ref_rows.block(bmodel, group)
            if cur is None or ref is None:
                notes.append(f"{model} / {group}: no rows in results.csv of "
                             f"{'the run' if cur is None else 'the baseline'}; not compared")
                continue
            rows += _compare(cmp, model, bmodel, group, cur, ref)
    return rows


def regression_row(model: str, bmodel: str, group: str, metric: str, higher: bool, v: float, bv: float,
                   worse: float, lo: float, hi: float, allowed: float, allowed_text: str | None,
                   pairing: str) -> dict[str, Any]:
    """The check of one worsening and its interval ``[lo, hi]`` against the allowed regression."""
    limit_s = fmt(allowed) + (f" ({allowed_text})" if allowed_text else "")
    if not (math.isfinite(worse) and math.isfinite(lo) and math.isfinite(hi)):
        ok, msg = False, f"cannot compare: value {fmt(v)}, baseline {fmt(bv)}"
    elif lo > allowed:
        slo, slim = distinct(lo, allowed)
        limit_s = slim + (f" ({allowed_text})" if allowed_text else "")
        ok, msg = False, f"worse by {fmt(worse)} [{slo}, {fmt(hi)}] > {limit_s}"
    elif worse > 0:
        ok, msg = True, f"worse by {fmt(worse)} [{fmt(lo)}, {fmt(hi)}], not all > {limit_s}"
    elif worse == 0 and lo == 0 and hi == 0:
        ok, msg = True, "unchanged [0, 0]"
    else:
        ok, msg = True, f"better by {fmt(-worse)} [{fmt(-hi)}, {fmt(-lo)}]"
    return check_row(ok, msg, kind="regression", model=model, group=group, metric=metric, higher_is_better=higher,
                     value=v, source="--baseline", baseline_model=bmodel, baseline_value=bv, max_regression=allowed,
                     worsening=worse, interval=[lo, hi], pairing=pairing)


__all__ = ["parse_max_regression", "regression_rows", "regression_row"]
