"""``nero gate``: thresholds, config files, reports and the baseline comparison, end to end."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from nero_cli.cli import app
from nero_cli.gate import GateConfig, gate_after_evaluate, gate_run, load_config

runner = CliRunner()

EVAL = ["--data", "sample:mnist500", "--limit", "40", "-g", "rotation:step=45",
        "-g", "scale:start=0.5,stop=1.5,step=0.25", "-q", "--no-plots"]


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def gate(*args: object):
    """``nero gate`` ignoring any nero.toml / pyproject.toml of the working directory."""
    return run("gate", *args, "--no-config")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gate-runs")
    out = {}
    for key, models in (("current", ["sample:mnist-cnn", "sample:mnist-c4", "--name", "m", "--name", "c4"]),
                        ("rerun", ["sample:mnist-cnn", "sample:mnist-c4", "--name", "m", "--name", "c4"]),
                        ("augmented", ["sample:mnist-cnn-aug", "--name", "m"])):
        r = run("evaluate", *models, *EVAL, "--out", root / key)
        assert r.exit_code == 0, r.output
        out[key] = root / key
    return out


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def n_failing(run_dir: Path, metric: str, bound: str, value: float) -> int:
    vals = [g[metric] for per in summary(run_dir)["metrics"].values() for g in per.values()]
    return sum((v < value) if bound == "min" else (v > value) for v in vals)


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def reseal(run: Path) -> None:
    """Record an edited results.csv's (and summary.json's) checksum and row count in run.json, as nero would have written them;
    its vectors (no longer its rows) are dropped, as from a run written without them."""
    from nero_cli.model_formats import sha256_file

    info = json.loads((run / "run.json").read_text())
    info.update(results_sha256=sha256_file(run / "results.csv"), n_rows=len(pd.read_csv(run / "results.csv")),
                summary_sha256=sha256_file(run / "summary.json"))
    shutil.rmtree(run / "vectors", ignore_errors=True)
    info.pop("vectors", None)
    (run / "run.json").write_text(json.dumps(info))


# -- thresholds ------------------------------------------------------------------------


def test_all_pass_exits_0(runs):
    r = gate(runs["current"], "--max-equivariance-error", "1", "--min-orbit-accuracy", "0")
    assert r.exit_code == 0, r.output
    assert "8 checks, 0 failed" in r.stdout  # 2 models x 2 groups x 2 metrics
    assert "FAIL" not in r.stdout


def test_failing_threshold_exits_1_and_says_why(runs):
    cur = runs["current"]
    r = gate(cur, "--max-equivariance-error", "0.2")
    assert r.exit_code == 1
    k = n_failing(cur, "equivariance_error", "max", 0.2)
    assert k > 0 and f"4 checks, {k} failed" in r.stdout
    assert re.search(r"FAIL m / rotation / equivariance-error: too high: [\d.]+ > max 0\.2 \(lower is better\)", r.stdout)


@pytest.mark.parametrize("option,metric,bound", [("--min-orbit-accuracy", "orbit_accuracy", "min"),
                                                 ("--min-robust-accuracy", "robust_accuracy", "min"),
                                                 ("--max-orbit-spread", "orbit_spread", "max"),
                                                 ("--max-equivariance-error", "equivariance_error", "max")])
def test_fixed_options_read_the_right_metric(runs, option, metric, bound):
    cur = runs["current"]
    value = summary(cur)["metrics"]["m"]["rotation"][metric]  # the bound itself passes
    r = gate(cur, option, repr(value), "--json")
    rows = json.loads(r.stdout)["checks"]
    assert len(rows) == 4 and {row["metric"] for row in rows} == {metric}
    mine = next(row for row in rows if row["model"] == "m" and row["group"] == "rotation")
    assert mine["status"] == "pass" and mine["bound"] == bound
    assert sum(row["status"] == "fail" for row in rows) == n_failing(cur, metric, bound, value)
    assert r.exit_code == (1 if n_failing(cur, metric, bound, value) else 0)


def test_scoped_keys_and_most_specific_wins(runs):
    cur = runs["current"]
    rows = json.loads(gate(cur, "--check", "rotation.m:max-equivariance-error=0.0", "--json").stdout)["checks"]
    assert [(r["model"], r["group"], r["status"]) for r in rows] == [("m", "rotation", "fail")]
    rows = json.loads(gate(cur, "--check", "c4:min-orbit-accuracy=0", "--json").stdout)["checks"]
    assert {(r["model"], r["group"]) for r in rows} == {("c4", "rotation"), ("c4", "scale")}
    # underscores accepted; the group-scoped key overrides the unscoped one for rotation only
    r = gate(cur, "--check", "max_equivariance_error=1", "--check", "rotation.max-equivariance-error=0", "--json")
    rows = json.loads(r.stdout)["checks"]
    assert r.exit_code == 1 and len(rows) == 4
    assert {(x["group"], x["threshold"], x["status"]) for x in rows} == {("rotation", 0.0, "fail"), ("scale", 1.0, "pass")}


def test_min_and_max_of_one_metric_are_two_checks(runs):
    r = gate(runs["current"], "--check", "scale.m:min-orbit-accuracy=0", "--check", "scale.m:max-orbit-accuracy=1")
    assert r.exit_code == 0 and "2 checks, 0 failed" in r.stdout


# -- bad input: exit 2, one line -------------------------------------------------------


def one_error_line(r, code: int = 2) -> str:
    assert r.exit_code == code, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    return lines[0]


def test_refuses_missing_or_unfinished_runs(runs, tmp_path):
    # an unfinished or damaged run: exit 5 (the output), like every nero command
    no_summary = copy_run(runs["current"], tmp_path / "no-summary")
    (no_summary / "summary.json").unlink()
    assert "no summary.json" in one_error_line(gate(no_summary, "--max-orbit-spread", "1"), 5)

    running = copy_run(runs["current"], tmp_path / "running")
    info = json.loads((running / "run.json").read_text())
    (running / "run.json").write_text(json.dumps({**info, "status": "running"}))
    assert "status is 'running', not 'complete'" in one_error_line(gate(running, "--max-orbit-spread", "1"), 5)

    no_info = copy_run(runs["current"], tmp_path / "no-info")
    (no_info / "run.json").unlink()
    assert "no run.json" in one_error_line(gate(no_info, "--max-orbit-spread", "1"), 5)

    partial = tmp_path / ".interrupted.partial"
    partial.mkdir()
    (partial / "run.json").write_text(json.dumps({"status": "interrupted"}))
    line = one_error_line(gate(tmp_path / "interrupted", "--max-orbit-spread", "1"), 5)
    assert "'interrupted'" in line and "--resume" in line

    # a path that is no run at all: a usage error
    assert "no such directory" in one_error_line(gate(tmp_path / "missing", "--max-orbit-spread", "1"))
    # the baseline is checked the same way
    assert "not 'complete'" in one_error_line(gate(runs["current"], "--baseline", running), 5)


@pytest.mark.parametrize("check,message", [
    ("foo=1", "'foo' is not a threshold key; expected [GROUP.][MODEL:]min-METRIC"),
    ("max-equivariance-error", "--check expects KEY=VALUE"),
    ("max-equivariance-error=abc", "needs a number, got 'abc'"),
    ("max-equivariance-error=nan", "needs a finite number"),
])
def test_bad_keys(runs, check, message):
    assert message in one_error_line(gate(runs["current"], "--check", check))


def test_unknown_metric_suggests_and_lists_valid_names(runs):
    line = one_error_line(gate(runs["current"], "--check", "rotation.max-equivarance-error=0.1"))
    assert "unknown metric 'equivarance-error'" in line and "did you mean 'equivariance-error'?" in line
    for valid in ("orbit-accuracy", "robust-accuracy", "orbit-spread", "max-equivariance-error"):
        assert valid in line


def test_unknown_group_or_model_on_the_command_line(runs):
    assert "did you mean 'rotation'?" in one_error_line(gate(runs["current"], "--check", "rotaton.max-orbit-spread=1"))
    assert "model 'c5'" in one_error_line(gate(runs["current"], "--check", "c5:max-orbit-spread=1"))


def test_no_checks_is_a_usage_error(runs):
    assert "no checks" in one_error_line(gate(runs["current"]))


# -- config files ----------------------------------------------------------------------


def test_config_from_nero_toml(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nero.toml").write_text(
        "[gate]\nmax-equivariance-error = 1.0\n\"c4:min-orbit-accuracy\" = 0.0\n\n"
        "[gate.rotation]\nmax-equivariance-error = 0.0\n\n"
        "[gate.scale.m]\nmax-orbit-spread = 1.0\n\n"
        "[gate.shift]\nmax-orbit-spread = 0.1\n")
    r = run("gate", runs["current"], "--json")
    assert r.exit_code == 1, r.output
    rows = json.loads(r.stdout)["checks"]
    got = {(x["model"], x["group"], x["metric"], x["threshold"], x["status"]) for x in rows}
    assert got == {("m", "rotation", "equivariance_error", 0.0, "fail"), ("c4", "rotation", "equivariance_error", 0.0, "fail"),
                   ("m", "scale", "equivariance_error", 1.0, "pass"), ("c4", "scale", "equivariance_error", 1.0, "pass"),
                   ("m", "scale", "orbit_spread", 1.0, "pass"),
                   ("c4", "rotation", "orbit_accuracy", 0.0, "pass"), ("c4", "scale", "orbit_accuracy", 0.0, "pass")}
    assert "group 'shift'" in r.stderr and "skipped" in r.stderr  # a group of another run: a note, not an error


def test_config_from_pyproject_and_options_override_it(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nero.toml").write_text("[report]\ntitle = 'not the gate'\n")  # no [gate]: falls through
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n\n[tool.nero.gate]\nmax-equivariance-error = 0.0\n")
    assert load_config().table == "tool.nero.gate"
    r = run("gate", runs["current"])
    assert r.exit_code == 1 and "4 checks, 4 failed" in r.stdout
    r = run("gate", runs["current"], "--max-equivariance-error", "1")  # the option beats the file
    assert r.exit_code == 0 and "4 checks, 0 failed" in r.stdout
    r = run("gate", runs["current"], "--check", "max-equivariance-error=1")
    assert r.exit_code == 0
    assert "no checks" in one_error_line(run("gate", runs["current"], "--no-config"))


def test_explicit_config_file_and_its_errors(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "ci" / "gate.toml"
    cfg.parent.mkdir()
    cfg.write_text("[gate]\nmin-orbit-accuracy = 0.0\nbaseline = '../base'\nmax-regression = '5%'\n")
    shutil.copytree(runs["rerun"], tmp_path / "base")
    r = run("gate", runs["current"], "--config", cfg, "--regression-metrics", "orbit-accuracy", "--bootstrap", "200")
    assert r.exit_code == 0, r.output
    assert "8 checks, 0 failed" in r.stdout  # 4 thresholds + 4 regressions

    cfg.write_text("[gate]\nmax-equivariance-eror = 0.1\n")
    assert "unknown metric 'equivariance-eror'" in one_error_line(run("gate", runs["current"], "--config", cfg))
    cfg.write_text("[gate]\nbasline = 'x'\n")
    assert "did you mean 'baseline'?" in one_error_line(run("gate", runs["current"], "--config", cfg))
    cfg.write_text("[gate\n")
    assert "not valid TOML" in one_error_line(run("gate", runs["current"], "--config", cfg))
    cfg.write_text("[other]\nx = 1\n")
    assert "no 'gate'" in one_error_line(run("gate", runs["current"], "--config", cfg))
    assert "no such file" in one_error_line(run("gate", runs["current"], "--config", tmp_path / "nope.toml"))


# -- reports ---------------------------------------------------------------------------


def test_junit_markdown_and_json(runs, tmp_path):
    junit, md = tmp_path / "gate.xml", tmp_path / "summary.md"
    md.write_text("old content\n")
    r = gate(runs["current"], "--max-equivariance-error", "0.2", "--min-orbit-accuracy", "0",
             "--junit", junit, "--markdown", md)
    k = n_failing(runs["current"], "equivariance_error", "max", 0.2)
    assert r.exit_code == 1 and f"8 checks, {k} failed" in r.stdout

    root = ET.parse(junit).getroot()
    suites = root.findall("testsuite")
    assert len(suites) == 1
    cases = suites[0].findall("testcase")
    failures = [c for c in cases if c.find("failure") is not None]
    assert len(cases) == 8 and len(failures) == k
    assert suites[0].get("tests") == "8" and suites[0].get("failures") == str(k)
    assert all("too high" in c.find("failure").get("message") for c in failures)

    text = md.read_text()
    assert text.startswith("old content\n") and "| model | group | metric |" in text
    assert text.count("❌") == k and text.count("✅") == 8 - k and "FAILED" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gate.xml", "summary.md"]  # no temp files left

    r = gate(runs["current"], "--min-orbit-accuracy", "0", "--json")
    data = json.loads(r.stdout)
    assert r.exit_code == 0 and data["passed"] is True and data["n_checks"] == 4 and data["n_failed"] == 0
    assert {"model", "group", "metric", "value", "threshold", "status", "interval"} <= set(data["checks"][0])


def test_report_into_a_missing_directory_is_refused(runs, tmp_path):
    line = one_error_line(gate(runs["current"], "--max-orbit-spread", "1", "--junit", tmp_path / "no" / "g.xml"), 5)
    assert "does not exist" in line  # an output problem: exit 5, as for report --out


# -- baseline comparison ---------------------------------------------------------------


def test_rerun_of_the_same_model_passes(runs):
    r = gate(runs["current"], "--baseline", runs["rerun"], "--bootstrap", "300")
    assert r.exit_code == 0, r.output
    assert re.search(r"(\d+) checks, 0 failed", r.stdout) and "paired" in r.stdout


def test_degraded_model_fails_with_its_interval(runs):
    # current: the plain CNN; baseline: the rotation-augmented CNN, both named "m"
    r = gate(runs["current"], "--baseline", runs["augmented"], "--max-regression", "0.05",
             "--regression-metrics", "orbit-accuracy,equivariance-error")
    assert r.exit_code == 1
    m = re.search(r"FAIL m / rotation / orbit-accuracy: worse by ([\d.]+) \[([\d.]+), ([\d.]+)\] > 0\.05", r.stdout)
    assert m, r.stdout
    point, lo, hi = map(float, m.groups())
    assert 0.05 < lo <= point <= hi
    assert "not in both runs" in r.stderr and "c4" in r.stderr  # c4 has no baseline
    data = json.loads(gate(runs["current"], "--baseline", runs["augmented"], "--max-regression", "0.05",
                           "--regression-metrics", "orbit-accuracy", "--json").stdout)
    rot = next(x for x in data["checks"] if x["group"] == "rotation")
    assert rot["pairing"] == "paired" and rot["interval"][0] > 0.05 and rot["status"] == "fail"
    # a huge allowance passes the same comparison
    assert gate(runs["current"], "--baseline", runs["augmented"], "--max-regression", "0.9").exit_code == 0


def test_recomputed_values_match_summary_json(runs):
    res = gate_run(runs["current"], baseline=runs["rerun"], bootstrap=50,
                   regression_metrics=list(summary(runs["current"])["higher_is_better"]))
    s = summary(runs["current"])["metrics"]
    assert res.passed and len(res.rows) == 2 * 2 * len(summary(runs["current"])["higher_is_better"])
    for row in res.rows:
        assert row["value"] == pytest.approx(s[row["model"]][row["group"]][row["metric"]], abs=1e-6)
        assert row["interval"] == [0.0, 0.0]


def test_independent_resampling_and_single_model_pairing(runs, tmp_path):
    other = copy_run(runs["augmented"], tmp_path / "other")
    t = pd.read_csv(other / "results.csv")
    t = t[t["sample"] != t["sample"].min()].assign(model="aug")  # other samples, other name
    t.to_csv(other / "results.csv", index=False)
    s = summary(other)
    s["models"] = ["aug"]
    s["metrics"] = {"aug": s["metrics"]["m"]}
    (other / "summary.json").write_text(json.dumps(s))
    info = json.loads((other / "run.json").read_text())
    info["models"] = [{**info["models"][0], "name": "aug"}]
    (other / "run.json").write_text(json.dumps(info))
    reseal(other)
    r = gate(other, "--baseline", runs["augmented"], "--regression-metrics", "orbit-accuracy", "--json",
             "--max-regression", "0.1")
    data = json.loads(r.stdout)
    assert r.exit_code == 0, r.output
    assert {x["pairing"] for x in data["checks"]} == {"independent"}
    assert {x["baseline_model"] for x in data["checks"]} == {"m"} and "comparing model 'aug'" in r.stderr


def test_baseline_option_errors(runs):
    assert "needs --baseline" in one_error_line(gate(runs["current"], "--max-regression", "0.1"))
    line = one_error_line(gate(runs["current"], "--baseline", runs["rerun"], "--regression-metrics", "orbit-acuracy"))
    assert "did you mean 'orbit-accuracy'?" in line
    assert "non-negative" in one_error_line(gate(runs["current"], "--baseline", runs["rerun"], "--max-regression", "-1"))
    assert "--confidence" in one_error_line(gate(runs["current"], "--baseline", runs["rerun"], "--confidence", "2"))


# -- Python API ------------------------------------------------------------------------


def test_gate_after_evaluate(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert gate_after_evaluate(runs["current"]) == 0
    assert "no thresholds configured" in capsys.readouterr().out
    (tmp_path / "nero.toml").write_text("[gate]\nrotation.max-equivariance-error = 0.0\n")
    assert gate_after_evaluate(runs["current"]) == 1
    assert "2 checks, 2 failed" in capsys.readouterr().out
    res = gate_run(runs["current"], {"max-orbit-spread": 1.0}, config=GateConfig())
    assert res.passed and res.n_checks == 4 and "<testsuite" in res.to_junit() and "| ✅ |" in res.to_markdown()


def test_importing_the_gate_is_light():
    # the typer layer registers the command without the domain modules (nero --help stays instant)
    code = ("import sys, nero_cli.gate_cli; "
            "print(any(m in sys.modules for m in ('pandas', 'numpy', 'torch', 'matplotlib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
