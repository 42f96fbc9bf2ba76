"""``nero gate`` reports that stay stable in CI: JUnit XML valid under Jenkins' junit-10.xsd,
test names that do not change with a threshold, and Markdown appended failures first."""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

import pytest

from nero_cli.errors import OutputError
from nero_cli.gate_result import GateResult, check_row

xmlschema = pytest.importorskip("xmlschema", reason="xmlschema is in the dev extra: pip install -e '.[dev]'")

XSD = Path(__file__).parent / "data" / "junit-10.xsd"


@pytest.fixture(scope="module")
def schema():
    return xmlschema.XMLSchema(XSD)


def threshold(model: str, group: str, metric: str, bound: str, limit: float, value: float,
              higher: bool) -> dict:
    ok = value >= limit if bound == "min" else value <= limit
    sign = (">=" if ok else "<") if bound == "min" else ("<=" if ok else ">")
    message = f"{value:g} {sign} {bound} {limit:g}" if ok else f"too {'low' if bound == 'min' else 'high'}: " \
              f"{value:g} {sign} {bound} {limit:g}"
    return check_row(ok, message, kind="threshold", model=model, group=group, metric=metric,
                     higher_is_better=higher, value=value, bound=bound, threshold=limit,
                     key=f"{group}.{model}:{bound}-{metric}", source="--check")


def result(eq_limit: float = 0.2, acc_limit: float = 0.9) -> GateResult:
    rows = [threshold("cnn", "rotation", "orbit_accuracy", "min", acc_limit, 0.9375, True),
            threshold("cnn", "rotation", "equivariance_error", "max", eq_limit, 0.3125, False),
            threshold("c4", "rotation", "equivariance_error", "max", eq_limit, 0.0625, False),
            check_row(False, "worse by 0.125 [0.0625, 0.1875] > 0.05", kind="regression", model="cnn",
                      group="shift", metric="orbit_accuracy", higher_is_better=True, value=0.75,
                      source="--baseline", baseline_model="cnn", baseline_value=0.875, max_regression=0.05,
                      worsening=0.125, interval=[0.0625, 0.1875], pairing="paired")]
    return GateResult(run_dir=Path("runs/current"), rows=rows, baseline_dir=Path("runs/main"),
                      notes=["c4 is not in the baseline; not compared"], config="nero.toml",
                      method="baseline comparison: 1000 bootstrap resamples")


def cases(xml: str) -> list[ET.Element]:
    return ET.fromstring(xml).findall("./testsuite/testcase")


# -- JUnit -----------------------------------------------------------------------------


def test_junit_is_valid_under_the_jenkins_schema(schema):
    xml = result().to_junit()
    schema.validate(xml)  # raises with the offending element when invalid
    # the schema does reject what it should (the check above can fail)
    broken = xml.replace('<testcase classname="nero.gate.cnn.rotation" name=', '<testcase classname="x" nom=', 1)
    assert not schema.is_valid(broken)


def test_test_names_carry_no_threshold():
    a, b = result(0.2, 0.9), result(0.35, 0.95)  # other thresholds, other verdicts
    names_a = [(c.get("classname"), c.get("name")) for c in cases(a.to_junit())]
    names_b = [(c.get("classname"), c.get("name")) for c in cases(b.to_junit())]
    assert names_a == names_b
    assert names_a == [("nero.gate.cnn.rotation", "rotation.cnn:min-orbit-accuracy"),
                       ("nero.gate.cnn.rotation", "rotation.cnn:max-equivariance-error"),
                       ("nero.gate.c4.rotation", "rotation.c4:max-equivariance-error"),
                       ("nero.gate.cnn.shift", "shift.cnn:orbit-accuracy regression")]
    assert not any(re.search(r"0\.\d", name) for _, name in names_a)  # no 0.2, 0.9, 0.05 ...
    # the verdicts did change: orbit accuracy 0.9375 passes min 0.9 and fails min 0.95, the
    # equivariance error 0.3125 fails max 0.2 and passes max 0.35
    assert [r["status"] for r in a.rows] == ["pass", "fail", "pass", "fail"]
    assert [r["status"] for r in b.rows] == ["fail", "pass", "pass", "fail"]


def test_the_value_and_the_threshold_are_in_the_message():
    xml = result().to_junit()
    by_name = {c.get("name"): c for c in cases(xml)}
    fail = by_name["rotation.cnn:max-equivariance-error"].find("failure")
    assert fail is not None and fail.get("type") == "threshold"
    assert "0.3125" in fail.get("message") and "max 0.2" in fail.get("message")
    assert "0.3125" in fail.text and "max 0.2" in fail.text
    reg = by_name["shift.cnn:orbit-accuracy regression"].find("failure")
    assert "0.75" in reg.get("message") and "baseline 0.875" in reg.get("message") and "0.05" in reg.get("message")
    passed = by_name["rotation.c4:max-equivariance-error"]
    assert passed.find("failure") is None
    assert "0.0625" in passed.find("system-out").text and "max 0.2" in passed.find("system-out").text
    suite = ET.fromstring(xml).find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "2", "0")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props == {"run": "runs/current", "baseline": "runs/main", "config": "nero.toml"}
    assert "not in the baseline" in suite.find("system-err").text


def test_timestamp_and_hostname(monkeypatch, schema):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    before = datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None)
    suite = ET.fromstring(result().to_junit()).find("testsuite")
    after = datetime.now(timezone.utc).replace(tzinfo=None)
    stamp = suite.get("timestamp")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", stamp)
    assert before <= datetime.fromisoformat(stamp) <= after
    assert suite.get("hostname") == socket.gethostname()

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # 2023-11-14 22:13:20 UTC
    xml = result().to_junit(hostname="ci-runner-7")
    suite = ET.fromstring(xml).find("testsuite")
    assert (suite.get("timestamp"), suite.get("hostname")) == ("2023-11-14T22:13:20", "ci-runner-7")
    assert xml == result().to_junit(hostname="ci-runner-7")  # reproducible with SOURCE_DATE_EPOCH
    schema.validate(xml)
    paris = datetime(2024, 5, 1, 14, 0, 0).astimezone(timezone.utc)
    assert ET.fromstring(result().to_junit(timestamp=paris)).find("testsuite").get("timestamp") == \
        paris.strftime("%Y-%m-%dT%H:%M:%S")


def test_special_characters_stay_valid(schema):
    rows = [threshold('m<1>&"x"', "rotation", "orbit_accuracy", "min", 0.5, 0.25, True)]
    xml = GateResult(run_dir=Path("run & co"), rows=rows).to_junit(hostname="h")
    schema.validate(xml)
    assert cases(xml)[0].get("name") == 'rotation.m<1>&"x":min-orbit-accuracy'


# -- Markdown --------------------------------------------------------------------------


def table_rows(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("| ✅") or line.startswith("| ❌")]


def test_markdown_lists_failures_first():
    rows = table_rows(result().to_markdown())
    assert [r[:3] for r in rows] == ["| ❌", "| ❌", "| ✅", "| ✅"]
    assert "equivariance-error" in rows[0] and "0.3125" in rows[0] and "max 0.2" in rows[0]
    assert "shift" in rows[1] and "baseline 0.875" in rows[1]
    # within failures and within passes, the checks keep their order
    assert "orbit-accuracy" in rows[2] and "c4" in rows[3]


def test_markdown_appends(tmp_path):
    summary = tmp_path / "step_summary.md"
    summary.write_text("## Tests\n\n12 passed")  # an earlier step's text, without a final newline
    first, second = result(), result(0.35, 0.95)
    first.append_markdown(summary)
    second.append_markdown(summary)
    text = summary.read_text()
    assert text == "## Tests\n\n12 passed\n\n" + first.to_markdown() + "\n" + second.to_markdown()
    assert text.count("### NERO gate FAILED") == 2

    fresh = tmp_path / "new.md"
    first.append_markdown(fresh)
    assert fresh.read_text() == first.to_markdown()


def test_markdown_that_cannot_be_written_is_an_output_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match=r"--markdown .*afile.*cannot append"):
        result().append_markdown(tmp_path / "afile" / "gate.md")
    assert OutputError("x").exit_code == 5


# -- end to end ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from typer.testing import CliRunner

    from nero_cli.cli import app

    out = tmp_path_factory.mktemp("junit") / "run"
    r = CliRunner().invoke(app, ["evaluate", "sample:mnist-cnn", "sample:mnist-c4", "--data", "sample:mnist500",
                                 "--limit", "8", "-g", "rotation:step=90", "--no-plots", "-q", "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


def gate(run_dir: Path, *args: str):
    from typer.testing import CliRunner

    from nero_cli.cli import app

    return CliRunner().invoke(app, ["gate", str(run_dir), "--no-config", *args])


@pytest.mark.slow
def test_nero_gate_junit_is_valid_and_stable(run_dir, tmp_path, schema):
    names = []
    for limit in ("0.01", "0.5"):
        xml = tmp_path / f"gate-{limit}.xml"
        r = gate(run_dir, "--max-equivariance-error", limit, "--min-orbit-accuracy", "0", "--junit", str(xml))
        assert r.exit_code in (0, 1), r.output
        schema.validate(str(xml))
        suite = ET.parse(xml).getroot().find("testsuite")
        assert suite.get("timestamp") and suite.get("hostname")
        names.append([c.get("name") for c in suite.iter("testcase")])
        for case in suite.iter("testcase"):
            text = (case.find("failure") if case.find("failure") is not None else case.find("system-out")).text
            if "equivariance-error" in case.get("name"):
                assert f"max {limit}" in text
    assert names[0] == names[1] and len(names[0]) == 4


@pytest.mark.slow
def test_nero_gate_markdown_appends(run_dir, tmp_path):
    md = tmp_path / "summary.md"
    md.write_text("earlier step\n")
    r = gate(run_dir, "--max-equivariance-error", "0.01", "--markdown", str(md))
    assert r.exit_code == 1, r.output
    text = md.read_text()
    assert text.startswith("earlier step\n\n### NERO gate FAILED")
    assert table_rows(text)[0].startswith("| ❌")
