"""Streamed results (issue 14): a run's rows go to disk chunk by chunk, its summaries come from
running sums, and every file is byte for byte what the whole table in memory gives."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import nero_cli
from nero_cli import core
from nero_cli.core import evaluate as core_evaluate
from nero_cli.plot_rows import plot_table
from nero_cli.plot_samples import pick_samples
from nero_cli.prepare import prepare
from nero_cli.run import evaluate_run
from nero_cli.running import CurveSums
from nero_cli.runrecord import json_text, open_run, write_columns, write_table
from nero_cli.spill import SpillReader
from nero_cli.stream import RunStream
from nero_cli.summary import aggregate

GOLDEN = Path(__file__).parent / "data" / "golden-run"
FILES = ("results.csv", "summary.csv", "summary.json")
NET = ("import torch\n\ndef build(seed=0):\n    torch.manual_seed(seed)\n"
       "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))\n\n"
       "def other():\n    return build(1)\n")


def _csv(frame: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    write_table(buf, frame)  # type: ignore[arg-type]
    return buf.getvalue().encode()


def _in_memory(*args, **kw) -> dict[str, bytes]:
    """The three files as the whole table in memory gives them (the Python API's path)."""
    r = nero_cli.evaluate(*args, device="cpu", **kw)
    return {"results.csv": _csv(r.table), "summary.csv": _csv(r.aggregate), "summary.json": json_text(r.summary).encode()}


@pytest.fixture(scope="module")
def nets(tmp_path_factory) -> list[str]:
    path = tmp_path_factory.mktemp("nets") / "net.py"
    path.write_text(NET)
    return [f"{path}:build", f"{path}:other"]


@pytest.mark.parametrize("n", [0, 1, 5])
def test_columns_are_written_as_pandas_writes_their_table(tmp_path, n):
    """summary.csv is written from its columns without pandas: the bytes of DataFrame.to_csv."""
    rng = np.random.default_rng(n)
    texts = np.array(["all", "a,b", 'say "hi"', "two\nlines", None][:n] + ["x"] * max(0, n - 5), dtype=object)
    floats = rng.random(n) * 10.0 ** rng.integers(-12, 12, n)
    floats[::2] = np.nan
    cols = {"model": texts, "group": np.full(n, "rotation", dtype=object), "element": np.arange(n, dtype=np.int64),
            "angle": np.linspace(0, 350, n), "flag": np.arange(n) % 2 == 0, "n": np.arange(n, dtype=np.int64) * 7,
            "mixed": np.array([1.5, "t", None, 2, float("nan")][:n], dtype=object), "value": floats}
    write_columns(tmp_path / "a.csv", cols)
    write_table(tmp_path / "b.csv", pd.DataFrame(cols))
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("n", [1, 3])
def test_a_chunks_rows_are_the_text_pandas_writes(n):
    """RowFormat.text (the streamed results.csv) against DataFrame.to_csv of the same rows: float
    columns with some NaN, only NaN (written into the row format itself), none; ints, booleans."""
    from nero_cli.csv_rows import RowFormat

    rng = np.random.default_rng(n)
    g = 4
    elements = {"group": np.full(g, "rotation", dtype=object), "element": np.arange(g), "angle": np.arange(g) * 90.0}
    rows = n * g
    some = rng.random(rows) * 10.0 ** rng.integers(-9, 9, rows)
    some[::3] = np.nan
    cols = {"prediction": rng.integers(0, 10, rows), "confidence": rng.random(rows).astype(np.float32),
            "correct": rng.random(rows) < 0.5, "floor": np.full(rows, np.nan), "some": some,
            "excess": np.full(rows, np.nan), "coverage": np.ones(rows)}
    samples, labels = np.arange(n) * 3 + 1, rng.integers(-1, 10, n)
    text = RowFormat("m,1", elements).text(samples, labels, cols)
    table = pd.DataFrame({"model": "m,1", "sample": np.repeat(samples, g), "label": np.repeat(labels, g),
                          **{k: np.tile(v, n) for k, v in elements.items()}, **cols})
    assert text.encode() == _csv(table).split(b"\n", 1)[1]


def test_golden_run_of_the_whole_table_code(tmp_path):
    """The run of tests/data/golden-run, written before results were streamed, comes out the same."""
    args = (["sample:mnist-cnn", "sample:mnist-c4"], "sample:mnist500", ["rotation:step=90", "scale:step=0.5"])
    out = evaluate_run(*args, tmp_path / "run", sample=40, batch_size=8, plots=False, device="cpu").out
    got = {f: (out / f).read_bytes() for f in FILES}
    want = {f: (GOLDEN / f).read_bytes() for f in FILES}
    if got != want and _in_memory(*args, sample=40, batch_size=8)["results.csv"] != want["results.csv"]:
        pytest.skip("this machine's kernels round differently from the one that wrote the golden files")
    for f in FILES:
        assert got[f] == want[f], f


def test_streamed_files_equal_the_whole_table(nets, tmp_path):
    """300 samples in chunks of 70 (the running sums fold 256 at a time, over chunk edges), two
    models, two groups, named classes: the same bytes as the table in memory."""
    args = (nets, "sample:mnist500", ["rotation:step=90", "shift:extent=2,step=2"])
    kw = dict(limit=300, batch_size=70, class_names=list("abcdefghij"), random_init=True)
    out = evaluate_run(*args, tmp_path / "run", plots=False, device="cpu", **kw).out
    want = _in_memory(*args, **kw)
    for f in FILES:
        assert (out / f).read_bytes() == want[f], f
    run = open_run(out)
    assert run.n_rows == 2 * 300 * (4 + 9) and len(run.results()) == run.n_rows
    assert not any(p.name in ("stream", "shard", "chunks") for p in out.iterdir())  # nothing left behind


def test_a_spill_is_written_only_where_something_reads_it_back(nets, tmp_path, monkeypatch):
    """Plots read the rows' binary spill back; a run without plots, Parquet, shards or torchrun
    writes none. results.csv is the same whether its parts are joined by sendfile or by Python."""
    from nero_cli import spill as spill_module

    written: list[int] = []
    real = spill_module.Spill.write
    monkeypatch.setattr(spill_module.Spill, "write", lambda self, *a: written.append(1) or real(self, *a))
    args = (nets, "sample:mnist500", ["rotation:step=90", "shift:extent=1,step=1"])
    kw = dict(limit=20, batch_size=8, random_init=True)
    plain = evaluate_run(*args, tmp_path / "a", plots=False, device="cpu", **kw).out
    assert written == []
    monkeypatch.setattr("os.sendfile", lambda *a: (_ for _ in ()).throw(OSError("no sendfile here")))
    plotted = evaluate_run(*args, tmp_path / "b", plots=True, plot_samples="worst:1", device="cpu", **kw).out
    assert written and (plotted / "plots").is_dir()
    assert (plain / "results.csv").read_bytes() == (plotted / "results.csv").read_bytes()
    assert (plain / "results.csv").read_bytes() == _in_memory(*args, **kw)["results.csv"]


def test_cache_hits_and_uncached_large_blocks_give_the_same_bytes(tmp_path, monkeypatch):
    args = (["sample:mnist-cnn"], "sample:mnist500", ["rotation:step=90"])
    kw = dict(limit=100, batch_size=64, plots=False, device="cpu", cache=True,
              cache_dir=tmp_path / "cache")
    first = evaluate_run(*args, tmp_path / "a", **kw)
    again = evaluate_run(*args, tmp_path / "b", **kw)  # every block from the cache, streamed in pieces
    assert first.cache == {"hits": 0, "misses": 1} and again.cache == {"hits": 1, "misses": 0}
    monkeypatch.setattr(core, "CACHE_HOLD_BYTES", 1000)  # a block over the budget is not held to be cached
    kw["cache_dir"] = tmp_path / "cache2"
    evaluate_run(*args, tmp_path / "c", **kw)
    big = evaluate_run(*args, tmp_path / "d", **kw)
    assert big.cache == {"hits": 0, "misses": 1}
    for out in ("b", "c", "d"):
        for f in FILES:
            assert (tmp_path / out / f).read_bytes() == (first.out / f).read_bytes(), (out, f)
    assert first.table.equals(open_run(first.out).results())  # RunResult.table reads results.csv


def _streamed(nets, tmp_path, n: int, groups: list[str]):
    """A sweep streamed into a RunStream, and the same sweep's whole table."""
    p = prepare(nets, "sample:mnist500", groups, limit=n, device="cpu", random_init=True)
    stream = RunStream(tmp_path / "stream", p.class_names)
    core_evaluate(p.runners, p.dataset, p.specs, p.task, batch_size=64, sink=stream)
    stream.finish()
    table = core_evaluate(p.runners, p.dataset, p.specs, p.task, batch_size=64).table
    return p, stream, table


@pytest.mark.parametrize("picks", [[("worst", 2), ("spread", 3)], [("best", 1), 7, ("worst", 1)], [],
                                   [("spread", 5), ("best", 4)]])
def test_plot_rows_pick_the_samples_the_whole_table_picks(nets, tmp_path, monkeypatch, picks):
    monkeypatch.setattr("nero_cli.plot_rows.CHUNK_ROWS", 500)  # candidates from many chunks of samples
    p, stream, table = _streamed(nets, tmp_path, 120, ["rotation:step=90", "scale:step=0.5"])
    prim = p.task.metric(p.task.primary)
    sub = plot_table(SpillReader(stream.spill_dir), stream.layout, picks, prim.column, prim.higher_is_better)
    chosen = pick_samples(table, prim.column, prim.higher_is_better, picks)
    assert pick_samples(sub, prim.column, prim.higher_is_better, picks) == chosen
    assert len(sub["sample"].unique()) < 120  # only candidates were read back
    rows = table[table["sample"].isin(sub["sample"].unique())].reset_index(drop=True)
    pd.testing.assert_frame_equal(sub, rows, check_dtype=False)
    with pytest.raises(nero_cli.errors.OptionError, match=r"\[500\] are not in the evaluated data \(ids 0\.\.119\)"):
        pick_samples(plot_table(SpillReader(stream.spill_dir), stream.layout, [500], prim.column, True),
                     prim.column, True, [500])


@pytest.mark.slow
def test_plots_of_a_streamed_run_equal_those_of_the_whole_table(nets, tmp_path):
    from nero_cli.run_plots import write_plots
    from nero_cli.runrecord import make_record

    p, stream, table = _streamed(nets, tmp_path, 60, ["rotation:step=90"])
    prim = p.task.metric(p.task.primary)
    picks = [("worst", 1), ("spread", 1)]
    sub = plot_table(SpillReader(stream.spill_dir), stream.layout, picks, prim.column, prim.higher_is_better)
    agg = aggregate(table, stream.layout.params, p.task, p.class_names)
    record = make_record(p.task, "labels", stream.layout.params, stream.layout.plans, p.class_names)
    a = write_plots(tmp_path / "a", table, agg, record, p.dataset, None, p.task.primary, picks)
    b = write_plots(tmp_path / "b", sub, agg, record, p.dataset, None, p.task.primary, picks)
    assert [f.name for f in a] == [f.name for f in b] and len(a) >= 4
    for x, y in zip(a, b):
        assert x.read_bytes() == y.read_bytes(), x.name


@pytest.mark.parametrize("kind", ["nan_inf", "finite", "huge"])
def test_running_curve_means_equal_the_pandas_group_means(kind):
    """Kahan sums per element and class, fed a few samples at a time, against pandas' group means
    of the whole table: NaN, infinities, float32 columns, a class that changes within a sample;
    finite values only (the in-place steps of CurveSums._kahan_finite); values whose sums
    overflow (its fallback)."""
    rng = np.random.default_rng(3)
    s, g = 700, 5
    vals = rng.normal(size=(s, g, 3)) * rng.choice([1e-6, 1.0, 1e6], size=(s, g, 3))
    if kind == "nan_inf":
        vals[rng.random(vals.shape) < 0.02] = np.nan
        vals[3, 1, 0], vals[9, 2, 2] = np.inf, -np.inf
    if kind == "huge":
        vals[:, :, 0] = rng.normal(size=(s, g)) * 1e306  # finite; their float64 sums overflow
        vals[:, :, 1] = np.abs(rng.normal(size=(s, g))) * 1e36  # finite in float32; sums overflow 3.4e38
    classes = rng.choice(np.array(["x", "y", "z"], dtype=object), size=(s, g))
    dtypes = [np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.float64)]
    sums = CurveSums(g, dtypes)
    for a in range(0, s, 37):
        sums.update(vals[a : a + 37], classes[a : a + 37])
    t = pd.DataFrame({"element": np.tile(np.arange(g), s), "class": classes.reshape(-1),
                      **{f"m{k}": vals[..., k].reshape(-1).astype(dtypes[k]) for k in range(3)}})
    means = sums.means()
    for k in range(3):
        by_all = t.groupby("element", sort=False)[f"m{k}"].mean()
        np.testing.assert_array_equal(means[k][0], by_all.to_numpy())
        by_class = t.groupby(["element", "class"], sort=False)[f"m{k}"].mean()
        order = sums.class_order()
        assert [(e, c) for c, _, e in order] == list(by_class.index)
        np.testing.assert_array_equal(np.array([means[k][sub, e] for _, sub, e in order]), by_class.to_numpy())
        assert means[k].dtype == dtypes[k]
    counts = t.groupby(["element", "class"], sort=False).size()
    assert [int(sums.size[sub, e]) for _, sub, e in sums.class_order()] == counts.tolist()
