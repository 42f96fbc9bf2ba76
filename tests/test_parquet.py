"""``nero evaluate --parquet``: results.parquet, the twin of results.csv (the nero[parquet] extra)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from nero_cli.cli import app
from nero_cli.runrecord import open_run

runner = CliRunner()
MNIST = ["sample:mnist-cnn", "sample:mnist-c4", "--data", "sample:mnist500", "--limit", "40", "--batch-size", "16",
         "-q", "--no-plots", "--no-cache", "--parquet"]


def evaluate(*args) -> Path:
    out = Path(args[-1])
    r = runner.invoke(app, ["evaluate", *map(str, args[:-1]), "--out", str(out)])
    assert r.exit_code == 0, r.stderr
    return out


def same_table(run: Path) -> pd.DataFrame:
    """results.parquet read back equals results.csv as the run record reads it: rows, columns,
    types and every number."""
    got = pd.read_parquet(run / "results.parquet")
    want = open_run(run).results()
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert "results.parquet" in json.loads((run / "run.json").read_text())["files"]
    return got


def test_the_parquet_twin_equals_results_csv(tmp_path):
    table = same_table(evaluate(*MNIST, "-g", "rotation:step=45", "-g", "shift:extent=2,step=2", tmp_path / "run"))
    assert table["angle"].dtype == "float64" and table["angle"].isna().any()  # absent in the shift group
    assert table["correct"].dtype == bool and table["prediction"].dtype == "int64"
    assert isinstance(table["model"].dtype, pd.StringDtype) and len(table) == 2 * 40 * (8 + 9)


def test_types_follow_the_csv_cells_whole_numbers_and_empty_columns(tmp_path):
    table = same_table(evaluate(*MNIST, "-g", "rotation:step=90", tmp_path / "exact"))
    assert table["angle"].dtype == "int64"  # 0, 90, 180, 270: the CSV writes integers
    assert table["floor"].dtype == "int64" and (table["floor"] == 0).all()  # a float column of whole numbers
    table = same_table(evaluate(*MNIST, "-g", "rotation:step=45", "--no-floor", tmp_path / "nofloor"))
    assert table["floor"].dtype == "float64" and table["floor"].isna().all()  # --no-floor: empty cells


def test_text_parameters_of_point_cloud_groups(tmp_path):
    table = same_table(evaluate("sample:pointnet", "--data", "sample:shapes200", "--limit", "10", "-q", "--no-plots",
                                "--no-cache", "--parquet", "-g", "viewpoint:axis_step=90,rot_step=90",
                                "-g", "viewpoint:grid=sphere,axes=4,rot_step=90", tmp_path / "run"))
    assert set(table["plane"].dropna()) == {"xy", "xz", "yz"} and table["plane"].isna().any()
    assert table["rot_angle"].dtype == "int64" and table["axis_lon"].dtype == "float64"


def test_reruns_and_merged_shards_give_the_same_bytes(tmp_path):
    args = [*MNIST, "-g", "rotation:step=45"]
    whole = evaluate(*args, tmp_path / "whole")
    again = evaluate(*args, tmp_path / "again")
    assert (again / "results.parquet").read_bytes() == (whole / "results.parquet").read_bytes()
    for i in range(2):
        shard = evaluate(*args, "--shard", f"{i}/2", tmp_path / f"s{i}")
        same_table(shard)
    r = runner.invoke(app, ["merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "m"), "-q",
                            "--no-plots"])
    assert r.exit_code == 0, r.stderr
    same_table(tmp_path / "m")
    assert (tmp_path / "m" / "results.parquet").read_bytes() == (whole / "results.parquet").read_bytes()
    meta = pq.ParquetFile(whole / "results.parquet").metadata
    assert meta.num_rows == 2 * 40 * 8 and meta.created_by.startswith("parquet-cpp-arrow")


def test_without_pyarrow_one_line_before_any_work(tmp_path, monkeypatch):
    import nero_cli.run as run_mod

    prepare = run_mod.prepare

    def no_work(*a, **k):
        raise AssertionError("the sweep was prepared")

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    monkeypatch.setattr(run_mod, "prepare", no_work)
    r = runner.invoke(app, ["evaluate", *MNIST, "-g", "rotation:step=90", "--out", str(tmp_path / "run")])
    assert r.exit_code == 2, r.stderr
    assert "pip install 'nero[parquet]'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(run_mod, "prepare", prepare)
    run = evaluate(*MNIST[:-1], "-g", "rotation:step=90", tmp_path / "run")  # pyarrow is needed by --parquet only
    assert not (run / "results.parquet").exists()
