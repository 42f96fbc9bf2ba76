"""``nero gate`` on the runs of ``nero lie``, ``nero layers`` and ``nero search``: each value the
gate checks is recomputed here from the run's own table, independently of the gate's code."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from nero_cli.cli import app

runner = CliRunner()
DATA = ["--data", "sample:mnist500", "--sample", "10", "--no-plots"]


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def gate_json(*args: object) -> dict:
    r = run("gate", *args, "--no-config", "--json")
    assert r.exit_code in (0, 1), r.output
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("analysis-runs")
    commands = {
        "lie": ["lie", "sample:mnist-cnn", "sample:mnist-cnn-aug", *DATA, "-g", "rotation", "-q"],
        "search": ["search", "sample:mnist-cnn", "sample:mnist-cnn-aug", *DATA, "-g", "rotation:step=30",
                   "-g", "shift:extent=8,step=4", "--refine", "4", "-q"],
        "layers": ["layers", "sample:mnist-cnn", "--data", "sample:mnist500", "--limit", "4", "--no-plots",
                   "-g", "shift:extent=1,step=1"],
        "evaluate": ["evaluate", "sample:mnist-cnn", "--data", "sample:mnist500", "--limit", "8", "-g",
                     "rotation:step=90", "-q", "--no-plots"],
    }
    out = {}
    for kind, cmd in commands.items():
        r = run(*cmd, "--out", root / kind)
        assert r.exit_code == 0, r.output
        out[kind] = root / kind
    return out


def values(result: dict) -> dict[tuple[str, str], float | None]:
    return {(c["model"], c["group"]): c["value"] for c in result["checks"]}


def test_lie_gate_checks_the_mean_over_samples(runs):
    table = pd.read_csv(runs["lie"] / "lie.csv")
    expected = table.groupby(["model", "generator"])["value"].mean()
    threshold = float(expected.median())
    result = gate_json(runs["lie"], "--max-lie-derivative", threshold)
    got = values(result)
    assert set(got) == set(expected.index)
    for key, v in expected.items():
        assert got[key] == pytest.approx(v, rel=1e-6)
    assert result["n_failed"] == int((expected > threshold).sum())


def _lower_percentile(b: np.ndarray, p: float) -> float:
    """By hand: sort (never broken last, as +inf) and take the element at floor(p/100 * (n-1))."""
    ordered = sorted(math.inf if math.isnan(x) else x for x in b)
    return ordered[int(math.floor(p / 100 * (len(ordered) - 1)))]


@pytest.mark.parametrize("percentile", [10, 50, 90])
def test_breaking_rotation_is_a_percentile_of_search_csv(runs, percentile):
    table = pd.read_csv(runs["search"] / "search.csv")
    rot = table[table["group"] == "rotation"]
    result = gate_json(runs["search"], "--min-breaking-rotation", 20, "--breaking-percentile", percentile)
    got = values(result)
    assert {g for _, g in got} == {"rotation/angle"}  # shift axes have no breaking-rotation check
    for model, rows in rot.groupby("model"):
        want = _lower_percentile(rows["breaking"].to_numpy(dtype=float), percentile)
        check = next(c for c in result["checks"] if c["model"] == model)
        if math.isinf(want):
            assert check["value"] is None and check["status"] == "pass" and "beyond" in check["message"]
        else:
            assert check["value"] == pytest.approx(want, abs=1e-6)
            assert check["status"] == ("pass" if want >= 20 else "fail")
        assert f"percentile" in check["message"]


def test_breaking_shift_checks_only_shift_axes(runs):
    result = gate_json(runs["search"], "--check", "min-breaking-shift=1")
    assert {g for _, g in values(result)} == {"shift/dx", "shift/dy"}


def test_layer_error_is_the_largest_mean_own_error(runs):
    table = pd.read_csv(runs["layers"] / "layers.csv")
    per_layer = table.groupby("layer")["own_error"].mean()
    result = gate_json(runs["layers"], "--max-layer-error", 0.01)
    (check,) = result["checks"]
    assert check["value"] == pytest.approx(per_layer.max(), rel=1e-6)
    assert per_layer.idxmax() in check["message"]
    assert check["status"] == "fail" and result["passed"] is False


def test_flags_of_another_kind_are_refused_in_one_line(runs):
    for run_dir, flag in ((runs["lie"], "--max-layer-error"), (runs["evaluate"], "--max-lie-derivative"),
                          (runs["layers"], "--max-equivariance-error")):
        r = run("gate", run_dir, flag, "0.1", "--no-config")
        assert r.exit_code == 2, r.output
        assert "does not apply" in r.output and "Traceback" not in r.output
    r = run("gate", runs["lie"], "--no-config")
    assert r.exit_code == 2 and "--max-lie-derivative" in r.output
    r = run("gate", runs["search"], "--min-breaking-rotation", "1", "--breaking-percentile", "101", "--no-config")
    assert r.exit_code == 2 and "between 0 and 100" in r.output
    r = run("gate", runs["lie"], "--max-lie-derivative", "1", "--baseline", runs["lie"], "--no-config")
    assert r.exit_code == 2 and "baseline" in r.output


def test_a_shared_config_applies_what_fits_each_run(runs, tmp_path, monkeypatch):
    (tmp_path / "nero.toml").write_text('[gate]\nmax-equivariance-error = 2\nmax-lie-derivative = 10\n'
                                        'breaking-percentile = 50\nmin-breaking-rotation = 0\n')
    monkeypatch.chdir(tmp_path)
    for kind, metric in (("lie", "lie_derivative"), ("evaluate", "equivariance_error"),
                         ("search", "breaking_rotation")):
        r = run("gate", runs[kind], "--json")
        assert r.exit_code == 0, r.output
        result = json.loads(r.stdout)
        assert {c["metric"] for c in result["checks"]} == {metric}
        assert "(skipped)" in r.stderr or "(skipped)" in r.output


def test_a_changed_table_is_refused(runs, tmp_path):
    import shutil

    bad = tmp_path / "lie"
    shutil.copytree(runs["lie"], bad)
    with (bad / "lie.csv").open("a") as fh:
        fh.write("x,1,0,rotation,0.5,TV/degree,jvp\n")
    r = run("gate", bad, "--max-lie-derivative", "1", "--no-config")
    assert r.exit_code == 5 and "checksum" in r.output


def test_lie_along_the_orbit_is_gated_on_its_orbit_mean(tmp_path):
    out = tmp_path / "along"
    r = run("lie", "sample:mnist-cnn", *DATA, "-g", "rotation:step=90", "--along", "-q", "--out", out)
    assert r.exit_code == 0, r.output
    table = pd.read_csv(out / "lie.csv")
    # the orbit mean weighs each distinct element once: here the identity is one of the four quarter turns
    per_element = table.groupby("element")["value"].mean()
    result = gate_json(out, "--check", "max-lie-derivative-orbit=1")
    (check,) = result["checks"]
    assert check["metric"] == "lie_derivative_orbit"
    assert check["value"] == pytest.approx(per_element.mean(), rel=1e-6)


def one_error(r) -> str:
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    return lines[0]


@pytest.mark.parametrize("kind,check,has", [
    ("search", "min-breaking-scale=0.1", "rotation/angle"),  # the run searched rotation and shift only
    ("search", "mnist-cnn:min-breaking-perspective=1", "shift/dx"),
    ("search", "shift/dx.min-breaking-rotation=1", "rotation/angle"),  # the axis exists, not with that metric
    ("lie", "max-lie-derivative-orbit=1", "lie-derivative"),  # a run without --along
])
def test_a_check_the_run_lacks_is_a_usage_error(runs, kind, check, has):
    """As a 'shift.' key on an evaluate run without shift: an error naming what the run has, not 0 checks."""
    r = run("gate", runs[kind], "--no-config", "--check", check)
    assert r.exit_code == 2, r.output
    line = one_error(r)
    assert check.split("=")[0] in line and has in line


def test_a_gate_of_zero_checks_is_a_usage_error(runs, tmp_path, monkeypatch):
    """A config whose keys all belong to other runs makes no check: exit 2, not '0 checks, 0 failed'."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nero.toml").write_text("[gate]\nmin-breaking-scale = 1\nmax-lie-derivative = 1\n")
    for kind in ("search", "layers"):
        r = run("gate", runs[kind])
        assert r.exit_code == 2, r.output
        assert "no checks" in r.output and "0 checks" not in r.output
    r = run("gate", runs["lie"], "--json")  # the lie key applies there
    assert r.exit_code in (0, 1) and json.loads(r.stdout)["checks"], r.output


def test_suggested_flags_exist(runs):
    """--baseline on a lie run suggests thresholds that exist: --check max-lie-derivative-orbit=X."""
    r = run("gate", runs["lie"], "--baseline", runs["lie"], "--no-config")
    line = one_error(r)
    assert r.exit_code == 2 and "--max-lie-derivative-orbit" not in line
    assert "--check max-lie-derivative-orbit=" in line and "--max-lie-derivative" in line
    r = run("gate", runs["search"], "--no-config")
    line = one_error(r)
    assert r.exit_code == 2 and "--min-breaking-shift" not in line and "--check min-breaking-shift=" in line


@pytest.mark.parametrize("kind,flag", [("search", "--min-breaking-rotation"), ("lie", "--max-lie-derivative"),
                                       ("layers", "--max-layer-error")])
def test_negative_thresholds_of_never_negative_quantities_are_refused(runs, kind, flag):
    """A breaking |parameter|, a Lie derivative or a layer error is never negative: such a threshold
    would pass (or fail) whatever the model; nan and inf are refused as for every threshold."""
    for value in ("-5", "nan", "inf"):
        r = run("gate", runs[kind], "--no-config", flag, value)
        assert r.exit_code == 2, r.output
        assert flag in one_error(r)
