"""Per-sample NERO vectors (issue 14): written while a run streams, holding the numbers the report
embeds, checked against run.json; the report reads them instead of results.csv and its page data
is the same as the page data built from results.csv."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import sample_models
from nero_cli.cli import app
from nero_cli.report_data import ReportRun, build_report_data, load_run, name_runs
from nero_cli.report_rows import TableRows, VectorRows
from nero_cli.runrecord import RunRecord, open_run
from nero_cli.vectors import decimal9, npy_header
from tests.fixtures.old_runs import strip_vectors

runner = CliRunner()
MNIST = ["sample:mnist-cnn", "sample:mnist-c4", "--data", "sample:mnist500", "-g", "rotation:step=45",
         "-g", "scale:step=0.5", "--batch-size", "16", "-q", "--no-plots", "--no-cache"]


def evaluate(*args) -> Path:
    out = Path(args[-1])
    r = runner.invoke(app, ["evaluate", *map(str, args[:-1]), "--out", str(out)])
    assert r.exit_code == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("vectors")


@pytest.fixture(scope="module")
def run(root) -> Path:
    return evaluate(*MNIST, "--sample", "60", root / "run")


# ------------------------------------------------------------------------------------------ the numbers


def test_decimal9_is_the_number_a_9_digit_csv_cell_reads_back_as():
    rng = np.random.default_rng(0)
    powers = 10.0 ** np.arange(-30, 30)
    x = np.concatenate([rng.random(20000), -rng.random(2000) * 1e-3, np.exp(rng.uniform(-700, 700, 20000)),
                        (rng.integers(0, 10**9, 5000) + 0.5) / 1e9,  # halfway cases in decimal
                        powers, np.nextafter(powers, 0), np.nextafter(powers, np.inf), rng.integers(-99, 99, 50) * 1.0,
                        [0.0, -0.0, np.nan, np.inf, -np.inf, 5e-324, 1.7976931348623157e308, 999999999.5, 9.9999999995]])
    text = "x,y\n" + "\n".join(("" if v != v else "%.9g" % v) + ",0" for v in x.tolist()) + "\n"
    want = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""])["x"].to_numpy(dtype=np.float64)
    got = decimal9(x)
    assert np.array_equal(got, want, equal_nan=True)
    assert np.array_equal(np.signbit(got), np.signbit(np.array([float("%.9g" % v) for v in x.tolist()])))
    assert np.array_equal(decimal9(x[:700].reshape(100, 7)), got[:700].reshape(100, 7))  # any shape


@pytest.mark.parametrize("shape,dtype", [((0,), "<f8"), ((5, 2), "<i8"), ((50000, 72, 11), "<f8"), ((3, 1, 1), "<f4")])
def test_the_npy_header_is_what_numpy_save_writes(shape, dtype):
    buf = io.BytesIO()
    np.save(buf, np.zeros(shape, dtype=dtype))
    assert buf.getvalue()[:128] == npy_header(shape, dtype)


def test_vectors_hold_the_numbers_of_results_csv(run):
    info = json.loads((run / "run.json").read_text())
    index = json.loads((run / "vectors" / "index.json").read_text())
    table = pd.read_csv(run / "results.csv")
    task_cols = [c for c, _ in index["columns"]]
    assert task_cols == list(table.columns[table.columns.get_loc("scale") + 1:])
    assert [(b["model"], b["group"], b["elements"]) for b in index["blocks"]] == [
        ("mnist-cnn", "rotation", 8), ("mnist-cnn", "scale", 3), ("mnist-c4", "rotation", 8), ("mnist-c4", "scale", 3)]
    assert dict(index["columns"])["correct"] == "|b1" and dict(index["columns"])["confidence"] == "<f8"
    samples = np.load(run / "vectors" / "samples.npy")
    for b in index["blocks"]:
        rows = table[(table["model"] == b["model"]) & (table["group"] == b["group"])]
        vec = np.load(run / "vectors" / b["file"])
        n, g = len(samples), b["elements"]
        assert vec.shape == (60, g, len(task_cols)) and vec.dtype == np.float64
        assert (rows["sample"].to_numpy()[::g] == samples[:, 0]).all() and (rows["label"].to_numpy()[::g] == samples[:, 1]).all()
        for i, c in enumerate(task_cols):  # pandas' number of each cell
            want = rows[c].to_numpy(dtype=np.float64).reshape(n, g)
            assert np.array_equal(vec[:, :, i], want, equal_nan=True), (b["file"], c)
    assert set(info["vectors"]["files"]) == {f"vectors/{p.name}" for p in (run / "vectors").iterdir()}
    assert set(info["vectors"]["files"]) <= set(info["files"])


def test_reruns_give_the_same_vector_files(run, root):
    again = evaluate(*MNIST, "--sample", "60", root / "again")
    assert (again / "results.csv").read_bytes() == (run / "results.csv").read_bytes()
    for p in (run / "vectors").iterdir():
        assert (again / "vectors" / p.name).read_bytes() == p.read_bytes(), p.name


# ------------------------------------------------------------------------------------------ the report


def _page_data(runs: list[Path], whole: bool = False, **kw) -> str:
    """build_report_data over ``runs``, through their vectors or (``whole``) results.csv."""
    loaded = []
    for p in runs:
        r = load_run(p)
        if whole:
            r = ReportRun(r.rec, TableRows(r.rec.results(), r.rec.task), r.rec.aggregate())
        loaded.append(r)
    name_runs(loaded)
    return json.dumps(build_report_data(loaded, **kw), sort_keys=False)


def _same_both_ways(runs: list[Path], **kw) -> None:
    assert all(isinstance(load_run(p).rows, VectorRows) for p in runs)
    via_vectors = _page_data(runs, **kw)
    assert via_vectors == _page_data(runs, whole=True, **kw)


def test_page_data_from_vectors_equals_results_csv(run):
    _same_both_ways([run], reductions=("pca", "tsne"))
    _same_both_ways([run], max_samples=25, reductions=("pca", "isomap"))  # a spread of the samples


def test_page_data_equal_for_runs_over_other_samples_and_unlabelled_data(run, root, tmp_path):
    other = evaluate(*MNIST[:2], *MNIST[2:4], "--limit", "40", "-g", "rotation:step=90", "--batch-size", "16",
                     "-q", "--no-plots", "--no-cache", root / "first40")
    _same_both_ways([run, other], reductions=("pca",))  # shown ids missing in one run: NaN rows there
    z = np.load(sample_models.data_path("mnist500"))
    np.save(tmp_path / "digits.npy", z["images"][:30])  # no labels: classes from the reference
    plain = evaluate("sample:mnist-cnn", "sample:mnist-c4", "--data", tmp_path / "digits.npy", "-g", "rotation:step=90",
                     "-q", "--no-plots", "--no-cache", "--no-floor", tmp_path / "unlabelled")
    assert (np.load(plain / "vectors" / "samples.npy")[:, 1] == -1).all()
    _same_both_ways([plain], reductions=("pca",))


@pytest.mark.parametrize("args", [
    ["sample:flownet", "sample:fft-piv", "--data", "sample:piv64", "--limit", "6", "-g", "d4t"],
    ["sample:pointnet", "--data", "sample:shapes200", "--limit", "10", "-g", "viewpoint:axis_step=90,rot_step=90"]])
def test_page_data_equal_for_flow_and_point_clouds(args, tmp_path):
    out = evaluate(*args, "-q", "--no-plots", "--no-cache", tmp_path / "run")
    _same_both_ways([out], reductions=("pca",))


def test_the_report_never_loads_results_csv_of_a_run_with_vectors(run, tmp_path, monkeypatch):
    def whole(self):
        raise AssertionError("results.csv read whole")

    monkeypatch.setattr(RunRecord, "results", whole)
    r = runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "rep"), "--reduction", "pca", "--no-figures", "-q"])
    assert r.exit_code == 0, r.stderr


def test_a_run_without_vectors_is_reported_from_results_csv(run, tmp_path):
    old = tmp_path / "old" / "run"  # the same run name on the page
    shutil.copytree(run, old)
    strip_vectors(old)
    assert isinstance(load_run(old).rows, TableRows)
    assert _page_data([old], reductions=("pca",)) == _page_data([run], reductions=("pca",)).replace(
        json.dumps(str(run))[1:-1], json.dumps(str(old))[1:-1])
    r = runner.invoke(app, ["report", str(old), "--out", str(tmp_path / "rep"), "--reduction", "pca", "--no-figures", "-q"])
    assert r.exit_code == 0, r.stderr


@pytest.mark.parametrize("damage,message", [
    ("flip", "b0_1.npy: does not match the checksum in run.json (the file was changed or cut short)"),
    ("cut", "b0_1.npy: does not match the checksum in run.json (the file was changed or cut short)"),
    ("remove", "samples.npy: missing; the run directory is damaged"),
])
def test_changed_or_cut_vectors_are_refused_in_one_line(run, tmp_path, damage, message):
    bad = tmp_path / "bad"
    shutil.copytree(run, bad)
    f = bad / "vectors" / "b0_1.npy"
    data = f.read_bytes()
    if damage == "flip":
        f.write_bytes(data[:200] + bytes([data[200] ^ 1]) + data[201:])
    elif damage == "cut":
        f.write_bytes(data[:-40])
    else:
        (bad / "vectors" / "samples.npy").unlink()
    r = runner.invoke(app, ["report", str(bad), "--out", str(tmp_path / "rep"), "--no-figures", "-q"])
    assert r.exit_code == 5 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "rep").exists()
    assert open_run(bad).models == ["mnist-cnn", "mnist-c4"]  # gate and plot never read the vectors
