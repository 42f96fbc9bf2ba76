"""The CLI end to end, through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from nero_cli.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    r = run("evaluate", "sample:mnist-cnn", "sample:mnist-cnn-aug", "sample:mnist-c4", "--data", "sample:mnist500",
            "--limit", "500", "--classes", "1,3,4,6,7,9", "--group", "rotation:step=30",
            "--group", "shift:extent=2,step=2", "--group", "scale:step=0.25",
            "--out", out, "--quiet", "--plot-samples", "worst:1")
    assert r.exit_code == 0, r.stderr
    return out


def test_run_directory_contents(demo_run):
    names = {p.name for p in demo_run.iterdir()}
    assert {"results.csv", "summary.csv", "summary.json", "run.json", "plots"} <= names
    plots = {p.name for p in (demo_run / "plots").iterdir()}
    for g in ("rotation", "shift", "scale"):
        assert f"{g}_confidence.png" in plots and f"{g}_confidence.svg" in plots
    assert sum("_sample-" in p and p.endswith(".png") for p in plots) == 3
    assert not list(demo_run.parent.glob(".run.partial*"))


def test_results_table_schema(demo_run):
    t = pd.read_csv(demo_run / "results.csv")
    for c in ["model", "sample", "label", "group", "element", "angle", "dx", "dy", "scale", "prediction",
              "reference", "confidence", "correct", "consensus", "equivariance_error"]:
        assert c in t.columns, c
    n = t["sample"].nunique()
    # one row per model x sample x element: rotation 12, shift 9, scale 5 elements
    assert len(t) == 3 * n * (12 + 9 + 5)
    assert set(t["label"]) <= {1, 3, 4, 6, 7, 9}
    assert t["confidence"].between(0, 1).all() and t["equivariance_error"].between(0, 1 + 1e-9).all()
    ident = t[t["identity"]]
    assert (ident["equivariance_error"] == 0).all()


def test_c4_model_is_invariant_at_quarter_turns_and_plain_is_not(demo_run):
    t = pd.read_csv(demo_run / "results.csv")
    rot = t[t["group"] == "rotation"]
    quarter = rot[rot["angle"].isin([90, 180, 270])]
    c4 = quarter[quarter["model"] == "mnist-c4"]["equivariance_error"]
    plain = quarter[quarter["model"] == "mnist-cnn"]["equivariance_error"]
    assert c4.max() < 1e-6
    assert plain.mean() > 0.3
    # and the C4 model is not invariant at 30 degrees (it is only C4-invariant)
    assert rot[(rot["model"] == "mnist-c4") & (rot["angle"] == 30)]["equivariance_error"].mean() > 1e-3


def test_augmented_model_beats_plain_over_the_rotation_orbit(demo_run):
    s = json.loads((demo_run / "summary.json").read_text())
    m = s["metrics"]
    assert m["mnist-cnn-aug"]["rotation"]["orbit_accuracy"] > m["mnist-cnn"]["rotation"]["orbit_accuracy"] + 0.2
    assert m["mnist-cnn"]["rotation"]["accuracy"] > 0.9
    for model in s["models"]:
        for g in ("rotation", "shift", "scale"):
            keys = {"accuracy", "orbit_accuracy", "robust_accuracy", "orbit_confidence", "equivariance_error",
                    "max_equivariance_error", "orbit_spread"}
            assert keys <= set(m[model][g])


def test_summary_csv_is_the_aggregate_curve(demo_run):
    t = pd.read_csv(demo_run / "results.csv")
    agg = pd.read_csv(demo_run / "summary.csv", dtype={"class": str})
    row = agg[(agg["model"] == "mnist-cnn") & (agg["group"] == "rotation") & (agg["class"] == "all") & (agg["angle"] == 90)]
    expect = t[(t["model"] == "mnist-cnn") & (t["group"] == "rotation") & (t["angle"] == 90)]["confidence"].mean()
    assert row["confidence"].item() == pytest.approx(expect)
    assert {"all", "1", "3"} <= set(agg["class"])


def test_run_json_records_provenance(demo_run):
    info = json.loads((demo_run / "run.json").read_text())
    assert info["status"] == "complete"
    assert info["versions"]["torch"].startswith("2.")
    assert all(len(d) == 64 for m in info["models"] for d in m["sha256"].values())
    assert len(info["data"]["sha256"]) == 64
    assert info["groups"]["rotation"].startswith("rotation:")
    assert info["started"] and info["finished"]


def test_consensus_reference_without_labels(tmp_path):
    import sample_models

    z = np.load(sample_models.data_path("mnist500"))
    np.savez(tmp_path / "unlabelled.npz", images=z["images"][::25])
    r = run("evaluate", "sample:mnist-cnn", "--data", tmp_path / "unlabelled.npz", "--group", "rotation:step=90",
            "--out", tmp_path / "run", "--quiet")
    assert r.exit_code == 0, r.stderr
    t = pd.read_csv(tmp_path / "run" / "results.csv")
    assert (t["label"] == -1).all()
    assert (t["reference"] == t["consensus"]).all()
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["reference"] == "consensus"


def test_overwrite_guard(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    args = ["evaluate", "sample:mnist-cnn", "--data", "sample:mnist500", "-g", "rotation:step=90", "--limit", "3",
            "--quiet", "--plot-samples", "none"]
    r = run(*args, "--out", out, "--overwrite")
    assert r.exit_code == 5 and "did not write" in r.stderr  # a user's file is never replaced, not even with --overwrite
    assert (out / "keep.txt").exists()
    (out / "keep.txt").unlink()
    assert run(*args, "--out", out).exit_code == 0  # an empty folder is fine
    r = run(*args, "--out", out)
    assert r.exit_code == 5 and "--overwrite" in r.stderr  # a nero run is replaced only when asked
    r = run(*args, "--out", out, "--overwrite")
    assert r.exit_code == 0, r.stderr
    assert (out / "results.csv").exists()


def test_list_commands():
    r = run("list", "samples")
    assert r.exit_code == 0 and "mnist-c4" in r.stdout and "mnist500" in r.stdout
    r = run("list", "groups")
    assert r.exit_code == 0 and "rotation" in r.stdout and "padding" in r.stdout


def test_help_is_fast_and_lazy():
    import subprocess
    import sys

    code = "import sys; import nero_cli.cli; print(sorted(m for m in ('torch','pandas','matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


HEAVY = """
import atexit, json, os, sys
import nero_cli.console as console
def loaded():  # which heavy modules are loaded by now
    print(json.dumps(sorted(m for m in ("pandas", "matplotlib", "sklearn", "plotly", "PIL.Image") if m in sys.modules)))
    sys.stdout.flush()
if sys.argv[2] == "first":  # at the sweep's first progress update, then stop
    def advance(self, n):
        loaded()
        os._exit(0)
    console.Bar.advance = advance
else:  # once the run is written
    atexit.register(loaded)
from nero_cli.cli import main
sys.argv = ["nero", "evaluate", "sample:mnist-cnn", "--data", "sample:mnist500", "-g", "rotation:step=90",
            "--sample", "20", "--no-cache", "--no-plots", "--out", sys.argv[1]]
main()
"""


@pytest.mark.parametrize("when", ["first", "end"])
def test_evaluate_never_imports_pandas(tmp_path, when):
    """pandas (0.2 to 0.4 s of start-up) is left out of a run without plots: the sweep's first
    progress update comes sooner and the files are written from running sums (nero_cli/lazy.py);
    so is Pillow (0.1 s), which only image files need."""
    import json
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", HEAVY, str(tmp_path / "run"), when], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1]) == []
    assert when == "first" or (tmp_path / "run" / "summary.csv").is_file()


def test_a_lazy_module_is_imported_on_first_use():
    import subprocess
    import sys

    code = ("import sys; from nero_cli.lazy import LazyModule; m = LazyModule('fractions'); "
            "a = 'fractions' in sys.modules; print(a, m.Fraction(1, 2) == 0.5, 'fractions' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "True"]
