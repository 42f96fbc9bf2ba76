"""``nero report`` features users asked for (issue 13): classes in natural order, one summary column per
quantity, runs of one group on different grids overlaid (each model at its own elements), samples searched
by id and filtered by class, the selection exported as CSV, and tables that scroll instead of being cut."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from nero_cli.report_summary import row_values, summary_columns, summary_table_html
from nero_cli.report_views import natural_key
from nero_cli.tasks import get_task
from tests.test_report import _severe, _wait, browser, decode, page_data  # noqa: F401 - the headless-browser fixture
from tests.test_report import run_ok as run
from tests.test_report_escaping import _choose

#: Class names whose order in the data is not their natural order; one would run as a spreadsheet formula.
CLASSES = ["class 10", "class 2", "Class 1", "b", '=cmd, "x"']
NATURAL = ['=cmd, "x"', "b", "Class 1", "class 2", "class 10"]
PER_CLASS = 3
MODEL_FILE = """
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, seed):
        super().__init__()
        self.w = nn.Parameter(torch.randn(64, %d, generator=torch.Generator().manual_seed(seed)))

    def forward(self, x):
        return x.flatten(1) @ self.w


def coarse():
    return Tiny(1)


def fine():
    return Tiny(2)
""" % len(CLASSES)


@pytest.fixture(scope="module")
def grids(tmp_path_factory) -> dict[str, Path]:
    """One group on two grids: a model on rotation:step=30 and another on rotation:step=10, same data."""
    root = tmp_path_factory.mktemp("grids")
    (root / "tiny.py").write_text(MODEL_FILE)
    data = root / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(data, images=rng.random((PER_CLASS * len(CLASSES), 8, 8)).astype(np.float32),
             labels=np.repeat(np.arange(len(CLASSES)), PER_CLASS), class_names=np.array(CLASSES))
    for name, step in (("coarse", 30), ("fine", 10)):
        run("evaluate", f"{root / 'tiny.py'}:{name}", "--name", f"{name}-model", "--data", data,
            "-g", f"rotation:step={step}", "--out", root / name, "-q", "--no-plots")
    out = root / "report"
    run("report", root / "coarse", root / "fine", "--out", out, "-q", "--reduction", "pca")
    return {"coarse": root / "coarse", "fine": root / "fine", "report": out, "root": root}


# ------------------------------------------------------------------------------------------- natural order


def test_natural_key_orders_numbers_as_numbers():
    names = ["item 10", "Item 9", "item 9b", "a01", "a1", "a2", "b", "B", "10", "9", ""]
    assert sorted(names, key=natural_key) == ["", "9", "10", "a01", "a1", "a2", "B", "b", "Item 9", "item 9b", "item 10"]
    assert sorted(CLASSES, key=natural_key) == NATURAL


def test_classes_are_sorted_in_the_page_data(grids):
    data = page_data(grids["report"] / "report.html")
    v = data["views"][0]
    ds = data["datasets"][v["data"]]
    assert ds["classNames"] == NATURAL and v["classes"] == ["all", *NATURAL]
    # each sample keeps its class: labels are positions in CLASSES, classes positions in the sorted names
    assert all(ds["classNames"][c] == CLASSES[lbl] for c, lbl in zip(ds["classes"], ds["labels"]))


# ------------------------------------------------------------------------------------------- summary columns


def _fake(task: str, name: str, values: dict) -> SimpleNamespace:
    return SimpleNamespace(task=get_task(task), name=name, display={}, rec=SimpleNamespace(
        summary={"metrics": {"m": {"g": values}}}, plots={"g": {"spec": "rotation:step=90"}}))


def test_one_summary_column_per_quantity():
    now = _fake("classification", "now", {"n_samples": 4, "orbit_confidence": 0.5, "worst_element_confidence": 0.1,
                                           "robust_accuracy": 0.25, "orbit_spread": 0.3})
    # schema 1 names of the same quantities, and a twin key beside its current name
    old = _fake("classification", "old", {"n_samples": 4, "mean_confidence": 0.6, "worst_confidence": 0.2,
                                           "worst_case_accuracy": 0.75, "orbit_confidence": 0.6})
    flow = _fake("flow", "flow", {"n_samples": 4, "orbit_aee": 1.5, "orbit_spread": 0.7})
    cols = summary_columns([now, old, flow])
    labels = [c.label for c in cols]
    assert len(labels) == len(set(labels)) == len({c.quantity for c in cols})
    assert labels == ["orbit_confidence", "worst_element_confidence", "robust_accuracy", "orbit_spread (confidence)",
                      "orbit_spread (aee)", "orbit_aee"]
    assert row_values("classification", old.rec.summary["metrics"]["m"]["g"], cols) == {
        "orbit_confidence": 0.6, "worst_element_confidence": 0.2, "robust_accuracy": 0.75}
    assert row_values("flow", flow.rec.summary["metrics"]["m"]["g"], cols) == {"orbit_aee": 1.5, "orbit_spread (aee)": 0.7}
    html = summary_table_html([now, old, flow])
    heads = re.findall(r"<th[^>]*>(.*?)</th>", html[html.index("<thead>"):html.index("</thead>")])
    assert len(heads) == 4 + len(cols) and len(set(heads)) == len(heads)  # run, model, group, samples, quantities
    assert "mean confidence" not in html and "worst case" not in html


def test_summary_table_of_a_run_with_older_twin_keys(grids, tmp_path):
    """A run whose summary.json also holds schema-1 twins of its numbers shows each quantity once."""
    twin = tmp_path / "twin"
    shutil.copytree(grids["coarse"], twin)
    s = json.loads((twin / "summary.json").read_text())
    for m in s["metrics"].values():
        for g in m.values():
            g["mean_confidence"] = g["orbit_confidence"]
            g["worst_case_accuracy"] = g["robust_accuracy"]
    (twin / "summary.json").write_text(json.dumps(s))
    info = json.loads((twin / "run.json").read_text())
    info.pop("summary_sha256")  # as the older nero that wrote such twins recorded it
    (twin / "run.json").write_text(json.dumps(info))
    out = tmp_path / "rep"
    run("report", grids["coarse"], twin, "--out", out, "-q", "--reduction", "none", "--no-figures", "--no-thumbnails")
    text = (out / "report.html").read_text(encoding="utf-8")
    head = text[text.index('<table class="summary"><thead>'):text.index("</thead>")]
    names = [h.split(" &")[0] for h in re.findall(r"<th[^>]*>(.*?)</th>", head)]
    assert "orbit confidence" in names and "robust accuracy" in names
    assert len(names) == len(set(names)) and "mean confidence" not in names and "worst case accuracy" not in names
    rows = page_data(out / "report.html")["summary"]["rows"]
    assert rows[0]["values"] == rows[1]["values"]


# ------------------------------------------------------------------------------------------- overlaid grids


def test_runs_on_different_grids_share_a_view(grids):
    data = page_data(grids["report"] / "report.html")
    assert len(data["views"]) == 1
    v = data["views"][0]
    assert v["n_elements"] == 36 and v["params"]["angle"] == list(range(0, 360, 10)) and v["identity"] == 0
    assert [s["n"] for s in v["specs"]] == [12, 36] and v["members"] == [{"run": "coarse", "group": "rotation"},
                                                                         {"run": "fine", "group": "rotation"}]
    coarse, fine = v["entries"]
    assert (coarse["name"], fine["name"]) == ("coarse-model", "fine-model")
    assert [v["params"]["angle"][u] for u in coarse["elements"]] == list(range(0, 360, 30))
    assert fine["elements"] == list(range(36))
    for e, run_dir in ((coarse, grids["coarse"]), (fine, grids["fine"])):
        agg = pd.read_csv(run_dir / "summary.csv")
        agg = agg[agg["class"] == "all"].sort_values("element")
        curve = e["agg"]["all"]["curves"]["confidence"]
        want = dict(zip(agg["angle"], agg["confidence"]))
        assert [curve[u] for u in e["elements"]] == pytest.approx([want[v["params"]["angle"][u]] for u in e["elements"]],
                                                                  rel=1e-5)
        assert all(c is None for u, c in enumerate(curve) if u not in e["elements"])
        # per sample, the results rows sit at their own elements (NaN elsewhere)
        res = pd.read_csv(run_dir / "results.csv")
        ds = data["datasets"][v["data"]]
        conf = decode(e["cols"]["confidence"]["b"], "<f4").reshape(len(ds["samples"]), 36)
        row = res[res["sample"] == ds["samples"][2]].set_index("angle")["confidence"]
        for u in range(36):
            a = v["params"]["angle"][u]
            assert math.isnan(conf[2, u]) if u not in e["elements"] else conf[2, u] == pytest.approx(row[a], rel=1e-6)
    assert len(v["transform"]["inv"]) == 36 and all(m is not None for m in v["transform"]["inv"])
    figs = sorted(p.name for p in (grids["report"] / "figures").iterdir())
    assert "aggregate_rotation_confidence.png" in figs


# ------------------------------------------------------------------------------------------- in the browser


def _open(d, html: Path) -> None:
    d.get(html.resolve().as_uri())
    _wait(d, lambda: d.execute_script("return document.body.dataset.ready === '1'"), "the page to start")
    assert not _severe(d.get_log("browser"))


def _type(d, text: str) -> None:
    box = d.find_element("id", "sample-search")
    box.clear()
    d.execute_script("var b = document.getElementById('sample-search'); b.dispatchEvent(new Event('input'));")
    box.send_keys(text)


def _table(d) -> list[list[str]]:
    return d.execute_script("return Array.from(document.querySelectorAll('#sample-table tbody tr')).map(function (r)"
                            " { return Array.from(r.cells).map(function (c) { return c.textContent; }); });")


def test_browser_class_selector_and_overlay(browser, grids):  # noqa: F811 - the imported fixture
    d = browser
    _open(d, grids["report"] / "report.html")
    options = d.execute_script("return Array.from(document.querySelectorAll('#sel-class option')).map(function (o)"
                               " { return o.textContent; });")
    assert options == ["all samples", *NATURAL]
    tricky = ["item 10", "Item 9", "a01", "a1", "b", "B", "10", "9", "", "x2y10", "x2y9", "x10y1"]
    assert d.execute_script("return arguments[0].slice().sort(NERO.naturalCompare);", tricky) == sorted(tricky, key=natural_key)
    # both grids on one plot, each model at its own angles (a closed polar curve repeats its first point)
    thetas = d.execute_script("return document.getElementById('aggregate').data.filter(function (t) { return t.name; })"
                              ".map(function (t) { return [t.name, Array.from(t.theta)]; });")
    assert thetas == [["coarse-model", [*range(0, 360, 30), 360]], ["fine-model", [*range(0, 360, 10), 360]]]
    assert "each model at its own elements" in d.find_element("id", "agg-note").text
    # an element only the fine grid has: the coarse model's outputs are not made up
    label = d.execute_script("return NERO.data.views[0].labels[1];")
    _choose(d, "sel-element", "1")  # 10 degrees: on the fine grid only
    _wait(d, lambda: f"Outputs at element {label} " in d.find_element("id", "outputs").text, "the outputs at 10 degrees")
    head = d.execute_script("return Array.from(document.querySelectorAll('#outputs thead th')).map(function (c)"
                            " { return c.textContent; });")
    rows = d.execute_script("return Array.from(document.querySelectorAll('#outputs tbody tr')).map(function (r)"
                            " { return Array.from(r.cells).map(function (c) { return c.textContent; }); });")
    cells = {row[0]: dict(zip(head, row)) for row in rows}
    for col in ("prediction", "confidence", "equivariance error"):
        assert cells["coarse-model"][col] == "\u2013" and cells["fine-model"][col] != "\u2013", col
    assert not _severe(d.get_log("browser"))


def _expected_csv(grids, ids: list[int], metric: str = "confidence") -> list[list[str]]:
    """The CSV of the selection recomputed from results.csv: per model the mean and variance of its curve."""
    rows = []
    tables = {name: pd.read_csv(grids[name] / "results.csv") for name in ("coarse", "fine")}
    for sid in ids:
        lbl = int(tables["coarse"].loc[tables["coarse"]["sample"] == sid, "label"].iloc[0])
        row: list = [sid, "'" + CLASSES[lbl] if CLASSES[lbl].startswith("=") else CLASSES[lbl]]
        for name in ("coarse", "fine"):
            x = tables[name].loc[tables[name]["sample"] == sid, metric].to_numpy(dtype=np.float32).astype(float)
            row += [x.mean(), x.var()]
        rows.append(row)
    return rows


def _check_csv(text: str, want: list[list]) -> None:
    got = list(csv.reader(io.StringIO(text)))
    assert got[0] == ["sample", "class", "coarse-model: mean of confidence", "coarse-model: variance of confidence",
                      "fine-model: mean of confidence", "fine-model: variance of confidence"]
    assert len(got) == 1 + len(want)
    for g, w in zip(got[1:], want):
        assert [int(g[0]), g[1]] == w[:2]
        assert [float(x) for x in g[2:]] == pytest.approx(w[2:], rel=1e-5, abs=1e-7)


def test_browser_search_filter_and_export(browser, grids):  # noqa: F811 - the imported fixture
    d = browser
    _open(d, grids["report"] / "report.html")
    ids = d.execute_script("var v = NERO.data.views[0]; return NERO.data.datasets[v.data].samples;")
    assert len(_table(d)) == len(ids) == PER_CLASS * len(CLASSES)
    # search one id: the table holds it, Enter shows it
    _type(d, "7")
    _wait(d, lambda: [r[0] for r in _table(d)] == ["7"], "the row of sample 7")
    d.find_element("id", "sample-search").send_keys("\n")
    _wait(d, lambda: d.find_element("id", "sample-id").text == "7", "sample 7 in the panel")
    assert d.execute_script("return document.querySelector('#sample-table tr.sel').dataset.si") == str(ids.index(7))
    # a range and a class: the selection drives the table, the ranking and the reduction view
    _type(d, "2-11")
    _choose(d, "sel-class", "class 2")  # label 1: samples 3, 4, 5
    _wait(d, lambda: [r[0] for r in _table(d)] == ["3", "4", "5"], "the rows of class 2 in 2-11")
    assert [r[1] for r in _table(d)] == ["class 2"] * 3
    assert sorted(d.execute_script("var ds = NERO.data.datasets[NERO.data.views[0].data];"
                                   "return NERO.state.ranked.map(function (s) { return ds.samples[s]; });")) == [3, 4, 5]
    assert len(d.find_elements("css selector", "#reduction .scatterlayer .trace:first-child .point")) == 3
    _check_csv(d.execute_script("return NERO.selectionCsv();"), _expected_csv(grids, [3, 4, 5]))
    # the button downloads the same rows; a class named like a formula is quoted and defused
    _choose(d, "sel-class", NATURAL[0])
    _type(d, "")
    _wait(d, lambda: len(_table(d)) == PER_CLASS, "the rows of the formula-named class")
    for f in d.nero_downloads.glob("*"):
        f.unlink()
    d.find_element("id", "btn-csv").click()
    files = _wait(d, lambda: [f for f in d.nero_downloads.glob("*.csv")], "the CSV download", timeout=20)
    assert files[0].name == "nero-samples_rotation_confidence.csv"
    text = files[0].read_bytes().decode("utf-8")  # as written: CRLF line ends
    assert text == d.execute_script("return NERO.selectionCsv();") and "\"'=cmd, \"\"x\"\"\"" in text
    _check_csv(text, _expected_csv(grids, [12, 13, 14]))
    assert not _severe(d.get_log("browser"))


def _reachable(d, container: str) -> dict:
    """After scrolling ``container`` to its far right and bottom: whether its last cell lies inside its
    visible box, whether the container lies inside its card, and whether it can scroll at all."""
    return d.execute_script("""
        var c = document.querySelector(arguments[0]), card = c.closest('.card');
        c.scrollLeft = c.scrollWidth; c.scrollTop = c.scrollHeight;
        var cells = c.querySelectorAll('tr:last-child > *'), last = cells[cells.length - 1];
        var r = last.getBoundingClientRect(), b = c.getBoundingClientRect(), k = card.getBoundingClientRect();
        return {inside: r.right <= b.right + 1 && r.bottom <= b.bottom + 1 && r.left >= b.left - 1,
                inCard: b.right <= k.right + 1 && b.left >= k.left - 1,
                scrolls: c.scrollWidth > c.clientWidth || c.scrollHeight > c.clientHeight,
                overflow: getComputedStyle(c).overflowX + ' ' + getComputedStyle(c).overflowY};""", container)


def test_browser_tables_scroll_instead_of_clipping(browser, grids):  # noqa: F811 - the imported fixture
    d = browser
    size = d.get_window_size()
    try:
        for width in (900, 1150):  # one column, and the narrowest two-column layout
            d.set_window_size(width, 900)
            _open(d, grids["report"] / "report.html")
            for sel in ("#outputs", ".sample-table-wrap", "#summary-section .table-wrap"):
                _wait(d, lambda sel=sel: d.execute_script("return document.querySelectorAll(arguments[0] + ' tr').length",
                                                          sel), f"{sel} to fill")
                got = _reachable(d, sel)
                assert got["inside"] and got["inCard"], (width, sel, got)
                assert "visible" not in got["overflow"] and "hidden" not in got["overflow"], (width, sel, got)
            assert _reachable(d, "#outputs")["scrolls"]  # wider than its column: it scrolls
        rows = d.execute_script("return document.querySelectorAll('#sample-table tbody tr').length")
        assert rows == PER_CLASS * len(CLASSES)  # every row is in the table, none cut
    finally:
        d.set_window_size(size["width"], size["height"])
        time.sleep(0.2)
