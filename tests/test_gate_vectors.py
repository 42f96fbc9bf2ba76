"""``nero gate --baseline`` reads a run's vectors (issue 14): one model x group block at a time,
never results.csv, and prints exactly what the whole-table path prints for the same runs (every
value, interval and verdict, the bootstrap included), in the JSON report, JUnit, Markdown and the
printed lines."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nero_cli.cli import app
from nero_cli.runrecord import RunRecord, open_run
from nero_cli.vectors import BlockColumns
from tests.fixtures.old_runs import strip_vectors

runner = CliRunner()
MNIST = ["--data", "sample:mnist500", "-g", "rotation:step=45", "-g", "scale:start=0.5,stop=1.5,step=0.25",
         "-q", "--no-plots", "--no-cache"]


def evaluate(out: Path, *args: object) -> Path:
    r = runner.invoke(app, ["evaluate", *map(str, args), "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gate-vectors")


@pytest.fixture(scope="module")
def mnist(root) -> dict[str, Path]:
    """Two models against the augmented one (paired), and a baseline over other samples (independent)."""
    return {"cur": evaluate(root / "cur", "sample:mnist-cnn", "sample:mnist-c4", "--name", "m", "--name", "c4",
                            "--limit", "40", *MNIST),
            "base": evaluate(root / "base", "sample:mnist-cnn-aug", "--name", "m", "--limit", "40", *MNIST),
            "other": evaluate(root / "other", "sample:mnist-cnn-aug", "--name", "m", "--sample", "30", *MNIST)}


def all_keys(run: Path) -> str:
    """Every summary key of the run, the ``max`` reductions included."""
    return ",".join(k.replace("_", "-") for k in json.loads((run / "summary.json").read_text())["higher_is_better"])


def gate_outputs(cur: Path, base: Path, args: list[str], out: Path) -> list[tuple]:
    """Exit code, printed lines, JSON, JUnit (its timestamp masked) and Markdown of a gate call."""
    got = []
    xml, md = out / "gate.xml", out / "gate.md"
    for extra in (["--json"], ["--junit", xml, "--markdown", md]):
        r = runner.invoke(app, ["gate", str(cur), "--baseline", str(base), "--no-config", *map(str, args),
                                *map(str, extra)])
        assert r.exit_code in (0, 1), r.output
        got.append((r.exit_code, r.stdout, r.stderr))
    got.append((re.sub(r'timestamp="[^"]*"', "", xml.read_text()), md.read_text()))
    xml.unlink()
    md.unlink()  # --markdown appends
    return got


def same_both_ways(pair: tuple[Path, Path], work: Path, option_sets: list[list[str]], monkeypatch) -> list[dict]:
    """Gate ``pair`` (copied into ``work``) with each option set through the vectors (results.csv
    never read), then the same runs without their vectors; asserts the outputs are equal, returns
    the JSON reports."""
    cur, base = (shutil.copytree(p, work / p.name) for p in pair)
    (work / "out").mkdir()

    def whole(self):
        raise AssertionError("results.csv read whole")

    with monkeypatch.context() as m:
        m.setattr(RunRecord, "results", whole)
        via_vectors = [gate_outputs(cur, base, opts, work / "out") for opts in option_sets]
    strip_vectors(cur)
    strip_vectors(base)
    assert open_run(cur).vectors() is None and open_run(base).vectors() is None
    via_table = [gate_outputs(cur, base, opts, work / "out") for opts in option_sets]
    for opts, a, b in zip(option_sets, via_vectors, via_table):
        assert a == b, opts
    return [json.loads(v[0][1]) for v in via_vectors]


def test_gate_with_a_baseline_is_the_same_through_the_vectors(mnist, tmp_path, monkeypatch):
    keys = all_keys(mnist["cur"])
    reports = same_both_ways((mnist["cur"], mnist["base"]), tmp_path, [
        ["--bootstrap", "300", "--regression-metrics", keys],
        ["--bootstrap", "200", "--max-regression", "5%", "--confidence", "0.9", "--seed", "3"],
        ["--max-regression", "0.3", "--min-orbit-accuracy", "0.5"]], monkeypatch)
    checks = reports[0]["checks"]
    assert len(checks) == 2 * len(keys.split(",")) and {c["pairing"] for c in checks} == {"paired"}
    assert {c["status"] for c in checks} == {"pass", "fail"}  # both verdicts compared
    assert any(c["interval"][0] < c["interval"][1] for c in checks)  # real intervals, not only [0, 0]
    summary = json.loads((mnist["cur"] / "summary.json").read_text())["metrics"]
    for c in checks:  # the point values are the run's own summary
        assert c["value"] == pytest.approx(summary[c["model"]][c["group"]][c["metric"]], abs=1e-6)


def test_independent_resampling_is_the_same_through_the_vectors(mnist, tmp_path, monkeypatch):
    reports = same_both_ways((mnist["other"], mnist["cur"]), tmp_path,
                             [["--bootstrap", "300", "--regression-metrics", all_keys(mnist["cur"])]], monkeypatch)
    assert {c["pairing"] for c in reports[0]["checks"]} == {"independent"}


@pytest.mark.parametrize("cur,base,args", [
    # point clouds: a grid that repeats rotations (per-element weights of orbit means)
    (["sample:pointnet"], ["sample:pointnet-aug"],
     ["--data", "sample:shapes200", "--limit", "10", "-g", "viewpoint:axis_step=90,rot_step=90"]),
    # optical flow, two models compared under one name
    (["sample:flownet"], ["sample:fft-piv"], ["--data", "sample:piv64", "--limit", "6", "-g", "d4t"]),
    # more samples than one fold of the running sums (256), odd sizes (9 and 3 elements)
    (["sample:mnist-cnn"], ["sample:mnist-cnn-aug"], ["--data", "sample:mnist500", "--limit", "301",
                                                      "-g", "rotation:step=40", "-g", "scale:step=0.5"]),
    # no resampling floor: empty floor columns, keys that cannot be compared
    (["sample:mnist-cnn"], ["sample:mnist-c4"], ["--data", "sample:mnist500", "--limit", "20",
                                                 "-g", "rotation:step=90", "--no-floor"]),
])
def test_other_tasks_are_the_same_through_the_vectors(cur, base, args, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    pair = tuple(evaluate(runs / name, *models, "--name", "x", *args, "-q", "--no-plots", "--no-cache")
                 for name, models in (("cur", cur), ("base", base)))
    reports = same_both_ways(pair, tmp_path / "work", [["--bootstrap", "200", "--regression-metrics",
                                                        all_keys(pair[0])]], monkeypatch)
    assert reports[0]["checks"]
    info = json.loads((pair[0] / "run.json").read_text())
    if "viewpoint" in args[-1]:
        assert any(p["element_weights"] for p in info["record"]["plots"].values())


def test_damaged_vectors_are_refused_in_one_line(mnist, tmp_path):
    bad = shutil.copytree(mnist["cur"], tmp_path / "bad")
    f = bad / "vectors" / "b0_1.npy"
    data = f.read_bytes()
    f.write_bytes(data[:300] + bytes([data[300] ^ 1]) + data[301:])
    r = runner.invoke(app, ["gate", str(bad), "--baseline", str(mnist["base"]), "--no-config"])
    assert r.exit_code == 5 and "b0_1.npy: does not match the checksum in run.json" in r.stderr, r.output
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_block_columns_read_whole_samples_from_the_file_as_stored(mnist):
    vec = open_run(mnist["cur"]).vectors()
    assert vec is not None
    whole = np.load(mnist["cur"] / "vectors" / "b1_0.npy")  # c4 / rotation: 40 samples x 8 elements
    cols = BlockColumns(vec, "c4", "rotation", ["correct", "confidence", "equivariance_error"])
    assert (cols.n, cols.g) == (40, 8) and len(cols["confidence"]) == 320
    for a, b in ((0, 7), (7, 40), (39, 99)):
        for name, col in cols.items():
            got = col[a * 8 : b * 8]
            want = whole[a:b, :, vec.columns.index(name)].reshape(-1)
            assert got.dtype == (bool if name == "correct" else np.float64)
            assert np.array_equal(got, want.astype(got.dtype), equal_nan=True)
    with pytest.raises(ValueError, match="not whole samples"):
        cols["confidence"][3:16]
    assert np.array_equal(vec.rows("c4", "rotation", 35, 99), whole[35:])
