"""nero merge and nero plot: the data found where the run recorded it (and checked), mismatched
splits and missing RUN_DIRs refused like the other commands, the warnings of one process kept."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from nero_cli.cli import app

runner = CliRunner()
MNIST = Path(__file__).resolve().parents[1] / "sample_models" / "data" / "mnist500.npz"
EVAL = ["evaluate", "sample:mnist-cnn", "-g", "rotation:step=90", "--batch-size", "4", "-q", "--no-cache",
        "--plot-samples", "worst:1"]
SAME = ("results.csv", "summary.csv", "summary.json")


@contextmanager
def cwd(folder: Path):
    old = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old)


def cli(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


def one_line(r, code: int) -> str:
    assert r.exit_code == code, (r.exit_code, r.output)
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in r.output, err
    return err


def image_folder(root: Path, offset: int = 0, n: int = 20) -> Path:
    """``n`` MNIST digits as PNGs in class folders (spread over the classes)."""
    arrays = np.load(MNIST)
    for i in range(n):
        j = i * 25 + offset
        sub = root / str(int(arrays["labels"][j]))
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arrays["images"][j]).save(sub / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """``work/f_cls`` evaluated from ``work`` (relative --data): the whole run and shards 0/2, 1/2 in ``work/sh``."""
    root = tmp_path_factory.mktemp("mergefix")
    image_folder(root / "f_cls")
    with cwd(root):
        assert cli(*EVAL, "--data", "f_cls", "--out", "whole").exit_code == 0
        for i in range(2):
            r = cli(*EVAL, "--data", "f_cls", "--shard", f"{i}/2", "--out", f"sh/s{i}")
            assert r.exit_code == 0, r.output
    return root


def info(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def test_run_json_records_the_absolute_path_of_relative_data(work):
    data = info(work / "whole")["data"]
    assert data["source"] == "f_cls" and data["path"] == str(work / "f_cls")
    assert info(work / "sh" / "s0")["data"]["path"] == str(work / "f_cls")


def test_merge_without_plots_never_loads_the_data(work, tmp_path):
    with cwd(tmp_path):  # f_cls is not here, nor at its recorded path
        moved = tmp_path / "elsewhere"
        shutil.move(work / "f_cls", moved)
        try:
            r = cli("merge", work / "sh" / "s0", work / "sh" / "s1", "--no-plots", "--out", "m", "-q")
        finally:
            shutil.move(moved, work / "f_cls")
    assert r.exit_code == 0, r.output
    for f in SAME:
        assert (tmp_path / "m" / f).read_bytes() == (work / "whole" / f).read_bytes(), f
    assert info(tmp_path / "m")["data"] == info(work / "whole")["data"]


def test_merge_finds_the_data_at_its_recorded_path(work, tmp_path):
    with cwd(work / "sh"):  # 'f_cls' relative to here does not exist
        r = cli("merge", "s0", "s1", "--out", tmp_path / "m", "-q")
    assert r.exit_code == 0, r.output
    whole = {p.name: p.read_bytes() for p in (work / "whole" / "plots").iterdir()}
    merged = {p.name: p.read_bytes() for p in (tmp_path / "m" / "plots").iterdir()}
    assert merged == whole  # the same samples (the shards' --plot-samples) and thumbnails as one process drew
    assert info(tmp_path / "m")["data"] == info(work / "whole")["data"]
    assert info(tmp_path / "m")["options"] == info(work / "whole")["options"]


def test_merge_refuses_other_data_and_takes_data_given(work, tmp_path):
    other = image_folder(tmp_path / "f_cls", offset=7)
    moved = tmp_path / "moved"
    shutil.move(work / "f_cls", moved)
    try:
        with cwd(tmp_path):  # a different 'f_cls' here, the recorded one gone
            err = one_line(cli("merge", work / "sh" / "s0", work / "sh" / "s1", "--out", "m"), 4)
            assert "sha256" in err and "--data" in err and "--no-plots" in err and str(other.name) in err
            assert not (tmp_path / "m").exists()
            err = one_line(cli("merge", work / "sh" / "s0", work / "sh" / "s1", "--out", "m", "--data", other), 4)
            assert "sha256" in err
            err = one_line(cli("merge", work / "sh" / "s0", work / "sh" / "s1", "--out", "m", "--data", "nowhere"), 4)
            assert "nowhere" in err and "not found" in err
            r = cli("merge", work / "sh" / "s0", work / "sh" / "s1", "--out", "m", "--data", moved, "-q")
            assert r.exit_code == 0, r.output
    finally:
        shutil.move(moved, work / "f_cls")
    whole = {p.name: p.read_bytes() for p in (work / "whole" / "plots").iterdir()}
    assert {p.name: p.read_bytes() for p in (tmp_path / "m" / "plots").iterdir()} == whole
    assert info(tmp_path / "m")["data"] == info(work / "whole")["data"]


def test_nero_plot_finds_checks_and_takes_the_data(work, tmp_path):
    with cwd(tmp_path):
        r = cli("plot", work / "whole", "--out", "p1", "-q")
        assert r.exit_code == 0 and "warning" not in r.output, r.output
        image_folder(tmp_path / "f_cls", offset=7)
        moved = tmp_path / "moved"
        shutil.move(work / "f_cls", moved)
        try:
            r = cli("plot", work / "whole", "--out", "p2", "-q")  # only other data at the path as given
            assert r.exit_code == 0 and "sha256" in r.output and "individual plots have none" in r.output
            err = one_line(cli("plot", work / "whole", "--out", "p3", "--data", tmp_path / "f_cls"), 4)
            assert "sha256" in err and not (tmp_path / "p3").exists()
            r = cli("plot", work / "whole", "--out", "p4", "-q", "--data", moved)
            assert r.exit_code == 0 and "warning" not in r.output, r.output
        finally:
            shutil.move(moved, work / "f_cls")
    drawn = {p.name: p.read_bytes() for p in (work / "whole" / "plots").iterdir()}
    for out in ("p1", "p4"):
        assert {p.name: p.read_bytes() for p in (tmp_path / out).iterdir() if p.name != "plots.json"} == drawn


def test_merge_refuses_shards_of_different_splits(work, tmp_path):
    with cwd(work):
        for i in (0, 2):
            assert cli(*EVAL, "--data", "f_cls", "--shard", f"{i}/3", "--out", tmp_path / f"t{i}").exit_code == 0
    err = one_line(cli("merge", tmp_path / "t0", work / "sh" / "s1", tmp_path / "t2", "--out", tmp_path / "m"), 5)
    assert "different splits" in err and "1/2" in err and "/3" in err
    assert not (tmp_path / "m").exists()


def test_merge_of_a_missing_or_plain_file_run_dir_is_a_usage_error(work, tmp_path):
    (tmp_path / "file").write_text("x")
    for bad in (tmp_path / "nope", tmp_path / "file"):
        err = one_line(cli("merge", work / "sh" / "s0", bad, "--out", tmp_path / "m"), 2)
        assert str(bad) in err
    assert not (tmp_path / "m").exists()


def test_merged_run_keeps_the_warnings_of_one_process(tmp_path):
    args = ["evaluate", "sample:mnist-cnn", "--data", "sample:mnist500", "--limit", "20", "-g", "shift:extent=16",
            "--batch-size", "4", "-q", "--no-cache", "--no-plots"]
    assert cli(*args, "--out", tmp_path / "whole").exit_code == 0
    for i in range(2):
        assert cli(*args, "--shard", f"{i}/2", "--out", tmp_path / f"s{i}").exit_code == 0
    r = cli("merge", tmp_path / "s0", tmp_path / "s1", "--out", tmp_path / "m", "--no-plots", "-q")
    assert r.exit_code == 0, r.output
    want = info(tmp_path / "whole")["warnings"]
    assert any("content in frame" in w for w in want) and any("--limit 20" in w for w in want)
    assert info(tmp_path / "m")["warnings"] == want
