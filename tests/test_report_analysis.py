"""``nero report`` with the run folders of ``nero lie``, ``nero layers`` and ``nero search`` beside an evaluate
run: the views appear, and every number they show is the run's summary.json or is recomputed here from the
run's table."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.test_report import _severe, _wait, browser, page_data  # noqa: F401 - the headless-browser fixture
from tests.test_report import run_ok as run

pytestmark = pytest.mark.slow
SAMPLE = ["--data", "sample:mnist500", "--sample", "20"]
MODELS = ["sample:mnist-cnn", "sample:mnist-cnn-aug"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("analysis-runs")
    run("evaluate", MODELS[0], *SAMPLE, "-g", "rotation:step=90", "--out", root / "ev", "-q", "--no-plots")
    run("lie", *MODELS, *SAMPLE, "-g", "rotation:step=90", "--along", "--out", root / "lie", "-q")
    run("layers", MODELS[0], "--data", "sample:mnist500", "--limit", "4", "-g", "shift:extent=1,step=1",
        "--out", root / "layers")
    run("search", *MODELS, *SAMPLE, "-g", "rotation:step=30", "--refine", "4", "--out", root / "search", "-q")
    return {k: root / k for k in ("ev", "lie", "layers", "search")} | {"root": root}


@pytest.fixture(scope="module")
def report(runs) -> Path:
    out = runs["root"] / "report"
    run("report", runs["ev"], runs["lie"], runs["layers"], runs["search"], "--out", out, "-q", "--reduction", "pca",
        "--no-figures")
    return out / "report.html"


class Sections(HTMLParser):
    """The analysis sections of a page: per section id, its kind, text, tables (rows of cell texts) and images."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, dict] = {}
        self.cur: dict | None = None
        self.depth = 0
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and "analysis" in (a.get("class") or ""):
            self.cur = self.sections.setdefault(a["id"], {"kind": a["data-kind"], "text": "", "tables": [], "imgs": []})
            self.depth = 0
        if self.cur is None:
            return
        if tag == "section":
            self.depth += 1
        elif tag == "table":
            self.cur["tables"].append([])
        elif tag == "tr":
            self.cur["tables"][-1].append([])
        elif tag in ("td", "th"):
            self.cell = []
        elif tag == "img":
            self.cur["imgs"].append(a["src"])

    def handle_endtag(self, tag):
        if self.cur is None:
            return
        if tag in ("td", "th") and self.cell is not None:
            self.cur["tables"][-1][-1].append("".join(self.cell).strip())
            self.cell = None
        elif tag == "section":
            self.depth -= 1
            if self.depth == 0:
                self.cur = None

    def handle_data(self, data):
        if self.cur is not None:
            self.cur["text"] += data
            if self.cell is not None:
                self.cell.append(data)


def sections(html_path: Path) -> dict[str, dict]:
    p = Sections()
    p.feed(html_path.read_text(encoding="utf-8"))
    return p.sections


def shown(text: str):
    """A number as the page shows it (4 significant digits); None for the dash."""
    return None if text in ("\u2013", "") else float(text)


def close(text: str, want) -> bool:
    got = shown(text)
    if want is None:
        return got is None
    return got is not None and math.isclose(got, want, rel_tol=5e-4, abs_tol=1e-12)


def body(table: list[list[str]]) -> list[list[str]]:
    return [r for r in table[1:] if r]


# ------------------------------------------------------------------------------------------- the page


def test_report_shows_every_view_beside_the_nero_plots(report):
    data = page_data(report)
    assert [v["label"] for v in data["views"]] == ["rotation"]  # the evaluate run's NERO plot is still there
    assert [(a["id"], a["kind"]) for a in data["analysis"]] == [("a0", "lie"), ("a1", "layers"), ("a2", "search")]
    secs = sections(report)
    assert {k: s["kind"] for k, s in secs.items()} == {"an-a0": "lie", "an-a1": "layers", "an-a2": "search"}
    text = report.read_text(encoding="utf-8")
    for name in ("lie", "layers", "search"):
        assert f"<li><b>{name}</b>: nero {name}," in text  # in the list of runs


def test_lie_view_numbers_are_summary_json(report, runs):
    summary = json.loads((runs["lie"] / "summary.json").read_text())
    sec = sections(report)["an-a0"]
    rows = body(sec["tables"][0])
    assert sec["tables"][0][0] == ["model", "generator", "samples", "mean", "median", "90th percentile", "orbit mean",
                                   "orbit max", "at", "unit", "method"]
    want = [(m, g, v) for m, gens in summary["metrics"].items() for g, v in gens.items()]
    assert len(rows) == len(want) == 2
    keys = ("lie_derivative_mean", "lie_derivative_median", "lie_derivative_p90", "lie_derivative_orbit_mean",
            "lie_derivative_orbit_max")
    for row, (m, g, v) in zip(rows, want):
        assert row[:3] == [m, g, str(v["n_samples"])] and row[9:] == [v["unit"], v["method"]] == ["TV/degree", "jvp"]
        assert row[8] == v["lie_derivative_orbit_argmax"]
        for cell, key in zip(row[3:8], keys):
            assert close(cell, v[key]), (cell, key, v[key])
    assert "TV/degree" in sec["text"] and "jvp" in sec["text"] and "torch.func.jvp" in sec["text"]
    # the distribution drawn is lie.csv at the identity (--along adds the other elements' rows); its median is the summary's
    table = pd.read_csv(runs["lie"] / "lie.csv")
    table = table[table["element"] == summary["orbit"]["identity"]]
    for s in page_data(report)["analysis"][0]["series"]:
        t = table[(table["model"] == s["model"]) & (table["generator"] == s["generator"])]
        assert len(s["values"]) == 20 and s["values"] == pytest.approx(t["value"].to_list(), rel=1e-5)
        assert float(np.median(s["values"])) == pytest.approx(summary["metrics"][s["model"]][s["generator"]]
                                                               ["lie_derivative_median"], rel=1e-5)
    # the run's own plots, byte for byte
    pngs = sorted((runs["lie"] / "plots").glob("*.png"))
    assert [p.name for p in pngs] == ["lie.png", "lie_orbit.png"]
    assert [base64.b64decode(u.split(",", 1)[1]) for u in sec["imgs"]] == [p.read_bytes() for p in pngs]


def test_layers_view_table_is_the_mean_over_elements(report, runs):
    summary = json.loads((runs["layers"] / "summary.json").read_text())
    table = pd.read_csv(runs["layers"] / "layers.csv")
    sec = sections(report)["an-a1"]
    assert summary["assumption"] in " ".join(sec["text"].split())  # the scalar-field assumption, stated
    rows = body(sec["tables"][0])
    layers = [r for r in rows if r[2] != "(output)"]
    by_layer = {}
    for rec in table.to_dict("records"):  # the mean over elements, by hand
        by_layer.setdefault(rec["layer"], []).append(rec)
    assert [r[2] for r in layers] == sorted(by_layer, key=lambda k: by_layer[k][0]["depth"])
    for r in layers:
        recs = by_layer[r[2]]
        own = [x["own_error"] for x in recs if not math.isnan(x["own_error"])]
        assert r[1] == str(recs[0]["depth"]) and r[3] == recs[0]["kind"]
        assert close(r[4], sum(own) / len(own) if own else None), r
        assert close(r[5], sum(x["contribution"] for x in recs) / len(recs)), r
    pm = summary["per_model"]["mnist-cnn"]
    assert max(shown(r[4]) for r in layers if shown(r[4]) is not None) == pytest.approx(pm["max_layer_error"], rel=5e-4)
    assert max(shown(r[5]) for r in layers) == pytest.approx(pm["max_contribution"], rel=5e-4)
    assert close([r for r in rows if r[2] == "(output)"][0][4], pm["output_error"])
    # the stride-1 convolutions are exact away from the border; the pooling layers are not
    own = {r[2]: shown(r[4]) for r in layers}
    assert own["features.0"] == 0 and own["features.2"] > 0.01
    bars = page_data(report)["analysis"][1]["bars"][0]
    assert [shown(r[4]) or 0 for r in layers] == pytest.approx([x or 0 for x in bars["own"]], rel=5e-4)


def _survival(t: pd.DataFrame, r: float) -> float:
    """Share of rows correct at the identity and not broken within |parameter| <= r, by hand."""
    ok = [bool(c) and (math.isnan(b) or b > r) for c, b in zip(t["correct_at_identity"], t["breaking"])]
    return sum(ok) / len(ok)


def test_search_view_numbers_and_survival(report, runs):
    summary = json.loads((runs["search"] / "summary.json").read_text())
    table = pd.read_csv(runs["search"] / "search.csv")
    info = json.loads((runs["search"] / "run.json").read_text())
    sec = sections(report)["an-a2"]
    rows = body(sec["tables"][0])
    assert len(rows) == 2
    keys = ["median_breaking", "p10_breaking", "share_never_broken", "median_breaking_of_broken",
            "share_correct_at_identity"]
    for r in rows:
        m = summary["models"][r[0]][r[1]]
        assert r[1] == "rotation/angle" and r[2] == str(m["n_samples"]) and r[-1] == "degrees"
        for cell, k in zip(r[3:8], keys):
            assert close(cell, m[k]), (r[0], k, cell, m[k])
    # the survival curve: a step at every breaking angle, each value recomputed from search.csv
    plots = page_data(report)["analysis"][2]["survival"]
    assert len(plots) == 1 and plots[0]["radius"] == 180 and plots[0]["unit"] == "degrees"
    for c in plots[0]["curves"]:
        t = table[table["model"] == c["model"]]
        breaks = sorted({b for b in t["breaking"] if not math.isnan(b)})
        assert c["x"] == sorted({0.0, 180.0, *breaks})
        assert c["y"] == pytest.approx([_survival(t, x) for x in c["x"]])
        never = [bool(ok) and math.isnan(b) for ok, b in zip(t["correct_at_identity"], t["breaking"])]
        assert c["y"][-1] == pytest.approx(sum(never) / len(never))
    # the worst examples are the run's own plots
    worst = sorted(f for f in info["files"] if f.startswith("plots/") and "worst" in f and f.endswith(".png"))
    assert len(sec["imgs"]) == len(worst) == 2
    assert [base64.b64decode(u.split(",", 1)[1]) for u in sec["imgs"]] == [(runs["search"] / f).read_bytes() for f in worst]


def test_report_of_analysis_runs_only(runs, tmp_path):
    from nero_cli.report import report_run

    path = report_run([runs["search"], runs["layers"]], tmp_path / "rep", reductions="none")
    data = page_data(path)
    assert data["views"] == [] and [a["kind"] for a in data["analysis"]] == ["search", "layers"]
    assert not (tmp_path / "rep" / "figures").exists() or not list((tmp_path / "rep" / "figures").iterdir())
    assert re.search(r"<title>NERO report: search, layers</title>", path.read_text(encoding="utf-8"))


def test_a_damaged_analysis_run_is_refused_in_one_line(runs, tmp_path):
    from tests.test_report import _one_line_error
    from tests.test_report import run as run_any

    bad = tmp_path / "lie-cut"
    shutil.copytree(runs["lie"], bad)
    text = (bad / "lie.csv").read_text()
    (bad / "lie.csv").write_text(text[: len(text) // 2])
    _one_line_error(run_any("report", runs["ev"], bad, "--out", tmp_path / "rep"), "lie.csv", "checksum", code=5)
    assert not (tmp_path / "rep").exists()


# ------------------------------------------------------------------------------------------- the browser


def _traces(d, div: str) -> list[dict]:
    return d.execute_script(
        "return document.getElementById(arguments[0]).data.map(function (t) { return {type: t.type, name: t.name,"
        " x: Array.from(t.x || []), y: Array.from(t.y || []), shape: t.line && t.line.shape || null}; });", div)


def test_browser_draws_the_analysis_views(browser, report, runs, tmp_path):  # noqa: F811 - the imported fixture
    d = browser
    d.get(report.resolve().as_uri())
    _wait(d, lambda: d.execute_script("return document.body.dataset.ready === '1'"), "the page to start")
    assert not _severe(d.get_log("browser"))
    data = page_data(report)["analysis"]
    lie = _traces(d, "an-a0-dist")
    assert [t["type"] for t in lie] == ["box", "box"] and [t["name"] for t in lie] == ["mnist-cnn", "mnist-cnn-aug"]
    assert [t["y"] for t in lie] == [s["values"] for s in data[0]["series"]]
    bars = _traces(d, "an-a1-bars")
    assert [t["type"] for t in bars] == ["bar", "bar"] and bars[1]["y"] == data[1]["bars"][0]["contribution"]
    surv = _traces(d, "an-a2-surv0")
    assert [t["shape"] for t in surv] == ["hv", "hv"]
    assert [(t["x"], t["y"]) for t in surv] == [(c["x"], c["y"]) for c in data[2]["survival"][0]["curves"]]
    for div in ("an-a0-dist", "an-a1-bars", "an-a2-surv0"):
        assert d.find_elements("css selector", f"#{div} .main-svg")
    assert d.execute_script("return document.querySelectorAll('section.analysis img.run-plot').length") == 4
    assert d.execute_script("return Array.from(document.querySelectorAll('section.analysis img.run-plot'))"
                            ".every(function (i) { return i.complete && i.naturalWidth > 0; })")
    assert not d.find_element("id", "aggregate-section").get_attribute("hidden")  # the NERO plot beside them
    # a page of analysis runs alone: the NERO parts are hidden, the views drawn
    only = tmp_path / "only"
    run("report", runs["lie"], "--out", only, "-q", "--reduction", "none")
    d.get((only / "report.html").resolve().as_uri())
    _wait(d, lambda: d.execute_script("return document.body.dataset.ready === '1'"), "the lie-only page")
    assert d.execute_script("return ['controls', 'aggregate-section', 'explore-section', 'table-section', "
                            "'summary-section'].every(function (id) { return document.getElementById(id).hidden; })")
    assert d.find_elements("css selector", "#an-a0-dist .main-svg")
    assert not _severe(d.get_log("browser"))
