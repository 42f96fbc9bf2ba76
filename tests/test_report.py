"""``nero report``: the page, its data, the refusals, and a real headless browser clicking through it."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from nero_cli.cli import app

runner = CliRunner()
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = next((p for p in (Path("/usr/bin/chromedriver"), Path("/usr/lib/chromium/chromedriver")) if p.exists()), None)
MNIST = ["--data", "sample:mnist500", "--classes", "1,4,7"]  # 150 digits, 50 per class


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def run_ok(*args):
    """A nero command that must succeed."""
    r = run(*args)
    assert r.exit_code == 0, (r.stdout, r.stderr)
    return r


def page_data(html_path: Path) -> dict:
    text = html_path.read_text(encoding="utf-8")
    m = re.search(r'<script id="nero-data" type="application/json">(.*?)</script>', text, re.S)
    assert m, "no embedded data"
    return json.loads(m.group(1))  # the data block holds no "<" (written as \u003c)


def decode(b64: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype=dtype)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("report-runs")
    a, b = root / "a", root / "b"
    r = run("evaluate", "sample:mnist-cnn", "sample:mnist-cnn-aug", *MNIST, "-g", "rotation:step=45",
            "-g", "shift:extent=2,step=2", "--out", a, "-q", "--no-plots")
    assert r.exit_code == 0, r.stderr
    # the same data and rotation orbit, two "checkpoints" named by epoch: overlaid, and drawn over training
    r = run("evaluate", "sample:mnist-cnn", "sample:mnist-cnn-aug", "--name", "net_ep1", "--name", "net_ep5", *MNIST,
            "-g", "rotation:step=45", "--out", b, "-q", "--no-plots")
    assert r.exit_code == 0, r.stderr
    return {"a": a, "b": b, "root": root}


@pytest.fixture(scope="module")
def report(runs) -> Path:
    out = runs["root"] / "report"
    r = run("report", runs["a"], runs["b"], "--out", out, "--reduction", "pca,tsne")
    assert r.exit_code == 0, r.stderr
    assert "report.html" in r.stdout
    return out


@pytest.fixture(scope="module")
def other_reports(tmp_path_factory) -> dict[str, Path]:
    """Small flow (d4t mosaic) and point-cloud (viewpoint disks) reports."""
    root = tmp_path_factory.mktemp("report-other")
    out = {}
    for name, args in {
        "flow": ["sample:flownet", "sample:fft-piv", "--data", "sample:piv64", "--limit", "6", "-g", "d4t"],
        "pointcloud": ["sample:pointnet", "--data", "sample:shapes200", "--limit", "10", "-g", "viewpoint:axis_step=90,rot_step=90"],
    }.items():
        r = run("evaluate", *args, "--out", root / name, "-q", "--no-plots")
        assert r.exit_code == 0, r.stderr
        r = run("report", root / name, "--out", root / f"{name}-report", "-q", "--reduction", "pca", "--no-figures")
        assert r.exit_code == 0, r.stderr
        out[name] = root / f"{name}-report" / "report.html"
    return out


# ------------------------------------------------------------------------------------------- files and data


def test_report_files_are_self_contained(report):
    html = report / "report.html"
    assert html.is_file()
    text = html.read_text(encoding="utf-8")
    assert "plotly.js v" in text  # plotly.js inline
    assert not re.search(r"<script[^>]+src=", text) and not re.search(r"<link[^>]+href=\"https?:", text)
    assert not re.search(r"<img[^>]+src=\"https?:", text)
    assert 1e6 < html.stat().st_size < 15e6
    figs = {p.name for p in (report / "figures").iterdir()}
    assert {"aggregate_rotation_confidence.png", "aggregate_shift_confidence.png"} <= figs
    # the equivariance error with its resampling floor shaded, for the group whose floor is not 0 (45 degrees)
    assert "aggregate_rotation_equivariance_error.png" in figs and "aggregate_shift_equivariance_error.png" not in figs
    assert any(f.startswith("epochs_") for f in figs)
    assert not list(report.parent.glob(".report.partial-*"))


def test_report_data_overlays_models_and_embeds_samples(report, runs):
    data = page_data(report / "report.html")
    views = {v["label"]: v for v in data["views"]}
    assert set(views) == {"rotation", "shift"}
    rot = views["rotation"]
    assert [e["name"] for e in rot["entries"]] == ["mnist-cnn", "mnist-cnn-aug", "net_ep1", "net_ep5"]
    assert [e["name"] for e in views["shift"]["entries"]] == ["mnist-cnn", "mnist-cnn-aug"]
    assert rot["kind"] == "polar" and rot["n_elements"] == 8 and rot["params"]["angle"][2] == 90
    # the parameter columns are the run record's, not every column between identity and the task's
    assert set(rot["params"]) == {"angle"} and set(views["shift"]["params"]) == {"dx", "dy"}
    assert views["shift"]["identity"] == 4 and views["shift"]["plotParams"] == ["dx", "dy"]
    assert rot["metrics"] == ["confidence", "accuracy", "equivariance_error"]
    # labels, directions and the results column of each metric come from the task's metric registry
    assert data["metricInfo"]["accuracy"] == {"label": "accuracy", "unit": "fraction", "range": [0.0, 1.0],
                                              "higher": True, "column": "correct"}
    assert data["metricInfo"]["equivariance_error"]["higher"] is False
    assert data["summary"]["higher"]["orbit_spread"] is False and data["epochMetric"] == "orbit_accuracy"
    assert set(rot["classes"]) == {"all", "1", "4", "7"}
    ds = data["datasets"][rot["data"]]
    assert len(ds["samples"]) == 150 and ds["total"] == 150
    assert all(t[0].startswith("data:image/png;base64,") for t in ds["thumbs"])
    assert {ds["classNames"][c] for c in ds["classes"]} == {"1", "4", "7"}
    # the embedded per-sample columns are results.csv
    table = pd.read_csv(runs["a"] / "results.csv")
    e = rot["entries"][0]
    assert e["cols"]["confidence"]["t"] == "f4" and e["cols"]["prediction"]["t"] == "i1"
    assert e["perSample"]["reference"]["t"] == "i1"
    conf = decode(e["cols"]["confidence"]["b"], "<f4").reshape(150, 8)
    pred = decode(e["cols"]["prediction"]["b"], "i1").reshape(150, 8)
    row = table[(table["model"] == "mnist-cnn") & (table["group"] == "rotation") & (table["sample"] == ds["samples"][3])
                & (table["element"] == 5)]
    assert conf[3, 5] == pytest.approx(float(row["confidence"].iloc[0]), rel=1e-6)
    assert pred[3, 5] == int(row["prediction"].iloc[0])
    # reductions: coordinates for every sample, every metric, both methods
    for metric in rot["metrics"]:
        for method in ("pca", "tsne"):
            q = decode(e["red"][metric][method]["q"], "<u2")
            assert q.shape == (300,) and (q != 65535).all()
    assert [m["id"] for m in data["reductions"]] == ["pca", "tsne"]
    # the aggregate curve is summary.csv
    agg = pd.read_csv(runs["a"] / "summary.csv")
    want = agg[(agg["model"] == "mnist-cnn") & (agg["group"] == "rotation") & (agg["class"] == "all")].sort_values("element")
    assert e["agg"]["all"]["curves"]["confidence"] == pytest.approx(want["confidence"].to_list(), rel=1e-5)
    # the resampling floor's curve, per class subset, from summary.csv: 0 where rotation is exact (quarter turns)
    assert data["floor"] == {"column": "floor", "metrics": ["equivariance_error", "excess_equivariance_error"],
                             "label": "resampling floor"}
    floor = e["agg"]["all"]["floor"]
    assert floor == pytest.approx(want["floor"].to_list(), rel=1e-5, abs=1e-12)
    assert [floor[i] for i in (0, 2, 4, 6)] == [0, 0, 0, 0] and all(floor[i] > 0 for i in (1, 3, 5, 7))
    assert set(e["agg"]) == set(rot["classes"]) and all("floor" in a for a in e["agg"].values())
    per_sample = decode(e["cols"]["floor"]["b"], "<f4").reshape(150, 8)  # the individual plots' band
    assert per_sample[3, 1] == pytest.approx(float(table[(table["model"] == "mnist-cnn") & (table["group"] == "rotation")
                                                         & (table["sample"] == ds["samples"][3])
                                                         & (table["element"] == 1)]["floor"].iloc[0]), rel=1e-6)
    # image transforms: inverse matrices per element; 90 degrees is exact
    tf = rot["transform"]
    assert tf["type"] == "image" and len(tf["inv"]) == 8 and tf["padding"] == "zeros"
    # epochs: net_ep1 and net_ep5 form one series
    assert data["epochs"] == [{"name": "net_ep#", "points": [{"epoch": 1, "entry": "net_ep1"}, {"epoch": 5, "entry": "net_ep5"}]}]
    assert len(data["summary"]["rows"]) == 6


def test_summary_table_lists_every_model_and_group(report):
    text = (report / "report.html").read_text(encoding="utf-8")
    table = text[text.index('<table class="summary">'):text.index("</table>")]
    assert table.count("<tr>") == 1 + 6
    for name in ("mnist-cnn", "mnist-cnn-aug", "net_ep1", "net_ep5"):
        assert f"<td>{name}</td>" in table
    assert "<th>run</th>" in table


def test_colliding_model_names_get_the_run_name(runs, tmp_path):
    copy = tmp_path / "a-copy"
    shutil.copytree(runs["a"], copy)
    out = tmp_path / "rep"
    r = run("report", runs["a"], copy, "--out", out, "-q", "--reduction", "none", "--no-figures", "--no-thumbnails")
    assert r.exit_code == 0, r.stderr
    names = [e["name"] for e in page_data(out / "report.html")["views"][0]["entries"]]
    assert names == ["a/mnist-cnn", "a/mnist-cnn-aug", "a-copy/mnist-cnn", "a-copy/mnist-cnn-aug"]


def test_python_api_and_options(runs, tmp_path):
    from nero_cli.report import report_run

    path = report_run([runs["a"]], tmp_path / "rep", reductions="pca", figures=False, thumbnails=False,
                      metrics=["equivariance_error"], max_samples=10, title="my title")
    assert path == tmp_path / "rep" / "report.html" and path.is_file()
    assert not (tmp_path / "rep" / "figures").exists()
    text = path.read_text(encoding="utf-8")
    assert "<title>my title</title>" in text
    data = page_data(path)
    v = data["views"][0]
    assert v["metrics"] == ["equivariance_error"]
    ds = data["datasets"][v["data"]]
    assert len(ds["samples"]) == 10 and ds["total"] == 150 and ds["thumbs"] is None
    assert set(v["entries"][0]["red"]["equivariance_error"]) == {"pca"}


def test_reduce_curves_degenerate_inputs():
    from nero_cli.report_media import parse_reductions, reduce_curves

    rng = np.random.default_rng(0)
    assert reduce_curves(rng.random((2, 5)), "tsne").shape == (2, 2)
    const = np.ones((12, 6))
    for m in ("pca", "ica", "isomap", "tsne"):
        assert np.array_equal(reduce_curves(const, m), np.zeros((12, 2)))
        x = np.repeat(rng.random((3, 6)), 4, axis=0)  # many duplicate curves
        y = reduce_curves(x, m)
        assert y.shape == (12, 2) and np.isfinite(y).all()
    assert parse_reductions("PCA, t-SNE") == ["pca", "tsne"]
    assert parse_reductions("none") == []


def test_other_tasks(other_reports):
    flow = page_data(other_reports["flow"])
    v = flow["views"][0]
    assert v["kind"] == "mosaic" and v["n_elements"] == 16 and set(v["params"]) == {"k", "flip", "t"}
    assert v["transform"]["type"] == "image" and sum(v["transform"]["swap"]) == 8
    ds = flow["datasets"][v["data"]]
    assert len(ds["thumbs"][0]) == 2  # both frames
    assert set(v["entries"][0]["cols"]) == {"aee", "rmse", "equivariance_error", "coverage", "floor",
                                            "excess_equivariance_error"}
    assert set(v["entries"][0]["agg"]["all"]["floor"]) == {0}  # d4t is exact on the pixel grid: a floor of 0
    pc = page_data(other_reports["pointcloud"])
    v = pc["views"][0]
    assert v["kind"] == "disks" and v["transform"] == {"type": "points"}
    ds = pc["datasets"][v["data"]]
    assert all(c for c in ds["clouds"]) and {"qw", "qx", "qy", "qz"} <= set(v["params"])
    assert "floor" not in v["entries"][0]["agg"]["all"]  # point clouds are never resampled


def test_import_is_light():
    import subprocess
    import sys

    code = ("import sys; import nero_cli.report_cli; "
            "print(sorted(m for m in ('torch','pandas','numpy','matplotlib','plotly','sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------------------------------- refusals


def _one_line_error(r, *needles, code=5):
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_refuses_incomplete_or_missing_runs(runs, tmp_path):
    out = tmp_path / "rep"
    _one_line_error(run("report", tmp_path / "nope", "--out", out), "no such directory", code=2)  # a usage error
    for missing in ("summary.json", "results.csv"):
        bad = tmp_path / f"no-{missing}"
        shutil.copytree(runs["a"], bad)
        (bad / missing).unlink()
        _one_line_error(run("report", bad, "--out", out), str(bad / missing) if missing == "results.csv" else f"no {missing}")
    running = tmp_path / "running"
    shutil.copytree(runs["a"], running)
    info = json.loads((running / "run.json").read_text())
    info["status"] = "running"
    (running / "run.json").write_text(json.dumps(info))
    _one_line_error(run("report", runs["a"], running, "--out", out), "status is 'running'", "not 'complete'")
    _one_line_error(run("report", runs["a"], "--out", out, "--reduction", "pca,magic"), "unknown method 'magic'", code=2)
    _one_line_error(run("report", runs["a"], "--out", out, "--metric", "iou"), "--metric iou", code=2)
    _one_line_error(run("report", runs["a"], runs["a"], "--out", out), "given twice", code=2)
    _one_line_error(run("report", runs["a"], "--out", runs["a"], "--overwrite"), "would replace the run directory")
    assert not out.exists() and not list(tmp_path.glob(".rep.partial-*"))
    assert (runs["a"] / "results.csv").exists()


def test_overwrite_guard(runs, tmp_path):
    """A report nero wrote is replaced only with --overwrite; a folder of the user's files never is,
    and the message does not suggest --overwrite for it."""
    def args(out):
        return ["report", runs["a"], "--out", out, "-q", "--reduction", "pca", "--no-figures", "--no-thumbnails"]

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("x")
    for extra in ([], ["--overwrite"]):
        r = run(*args(mine), *extra)
        _one_line_error(r, "keep.txt", "never replaces")
        assert "--overwrite" not in r.stderr
    assert [p.name for p in mine.iterdir()] == ["keep.txt"] and (mine / "keep.txt").read_text() == "x"
    out = tmp_path / "rep"
    assert run(*args(out)).exit_code == 0
    assert json.loads((out / "report.json").read_text())["files"] == ["report.html", "report.json"]
    (out / "report.html").write_text("old")
    _one_line_error(run(*args(out)), "--overwrite")
    assert (out / "report.html").read_text() == "old"
    r = run(*args(out), "--overwrite")
    assert r.exit_code == 0, r.stderr
    assert (out / "report.html").read_text() != "old" and sorted(p.name for p in tmp_path.iterdir()) == ["mine", "rep"]


# ------------------------------------------------------------------------------------------- the browser


def in_ci() -> bool:
    """Whether CI is set (``.ci/run`` sets it): the browser tests must run there, never skip."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def need_browser() -> None:
    """Skip the browser tests where Chromium, its driver or selenium is missing; fail instead under CI."""
    why = None
    if not CHROMIUM.exists() or CHROMEDRIVER is None:
        why = (f"headless-browser test needs Debian's chromium and chromium-driver (apt-get install -y chromium "
               f"chromium-driver): {CHROMIUM} or chromedriver is absent")
    elif importlib.util.find_spec("selenium") is None:
        why = "headless-browser test needs selenium (pip install -e '.[dev]')"
    if why and in_ci():
        pytest.fail(f"{why}; CI is set, so the browser tests must run here")
    if why:
        pytest.skip(why)


def test_browser_tests_fail_not_skip_under_ci(monkeypatch, tmp_path):
    """With CI set, a missing browser fails the browser tests; without it they are skipped."""
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        need_browser()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        need_browser()


@pytest.fixture(scope="module")
def browser():
    need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--window-size=1500,1400"):
        opts.add_argument(a)
    profile = tempfile.mkdtemp(prefix="nero-chromium-")
    downloads = Path(tempfile.mkdtemp(prefix="nero-downloads-"))
    opts.add_argument(f"--user-data-dir={profile}")
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(60)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.nero_downloads = downloads  # where the page's downloads (the CSV export) land
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        shutil.rmtree(downloads, ignore_errors=True)


def _open(driver, html: Path) -> None:
    driver.get(html.resolve().as_uri())
    _wait(driver, lambda: driver.execute_script("return document.body.dataset.ready === '1'"), "the page to start")
    driver.get_log("browser")  # noqa: B018 - the load's messages are checked by the caller via _severe


def _wait(driver, cond, what: str, timeout: float = 15.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            v = cond()
        except Exception:  # noqa: BLE001 - the DOM may be mid-update
            v = None
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _severe(logs) -> list:
    return [entry for entry in logs if entry.get("level") == "SEVERE"]


def test_browser_click_through(browser, report, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    d = browser
    d.get((report / "report.html").resolve().as_uri())
    _wait(d, lambda: d.execute_script("return document.body.dataset.ready === '1'"), "the page to start")
    assert not _severe(d.get_log("browser"))
    assert d.find_elements(By.CSS_SELECTOR, "#aggregate .main-svg")
    shown = d.find_element(By.ID, "sample-id").text

    # a real mouse click on a rendered point of the reduction view, far from its neighbours
    points = d.find_elements(By.CSS_SELECTOR, "#reduction .scatterlayer .trace:first-child .point")
    assert len(points) == 150
    pick = d.execute_script("""
        var pts = arguments[0], shown = arguments[1], best = -1, bestGap = -1;
        var ds = NERO.data.datasets[NERO.data.views[NERO.state.view].data];
        var cd = document.getElementById('reduction').data[0].customdata;
        var r = pts.map(function (p) { var b = p.getBoundingClientRect(); return [b.x + b.width / 2, b.y + b.height / 2]; });
        for (var i = 0; i < pts.length; i++) {
          if (String(ds.samples[cd[pts[i].__data__.i]]) === shown) continue;
          var gap = 1e9;
          for (var j = 0; j < pts.length; j++) if (j !== i) gap = Math.min(gap, Math.hypot(r[i][0] - r[j][0], r[i][1] - r[j][1]));
          if (gap > bestGap) { bestGap = gap; best = i; }
        }
        return [best, String(ds.samples[cd[pts[best].__data__.i]]), bestGap];""", points, shown)
    idx, want, gap = pick
    assert gap > 6, "no isolated point to click"
    assert want != shown
    ActionChains(d).move_to_element(points[idx]).pause(0.2).click().perform()
    _wait(d, lambda: d.find_element(By.ID, "sample-id").text == want, f"the sample panel to show sample {want}")
    assert d.find_element(By.ID, "sample-panel").get_attribute("data-sample") == want
    # its individual NERO plot, one trace per model of this data set (+ the selected-element marker)
    title = _wait(d, lambda: d.execute_script(
        "var g = document.getElementById('individual'); return g.layout && g.layout.title && g.layout.title.text;"),
        "the individual plot")
    assert title.endswith(f"sample {want}")
    names = d.execute_script("return document.getElementById('individual').data.map(function (t) { return t.name; });")
    assert [n for n in names if n] == ["mnist-cnn", "mnist-cnn-aug", "net_ep1", "net_ep5"]
    assert d.find_elements(By.CSS_SELECTOR, "#individual .scatterlayer .trace")
    thumb = d.find_element(By.CSS_SELECTOR, "#sample-thumbs img")
    assert thumb.get_attribute("src").startswith("data:image/png;base64,")
    assert d.execute_script("return arguments[0].complete && arguments[0].naturalWidth;", thumb) == 28

    # an orbit element: the transformed input equals orbits.ImageAction, and the outputs are results.csv
    Select(d.find_element(By.ID, "sel-element")).select_by_value("1")  # 45 degrees: bilinear
    canvas = _wait(d, lambda: d.find_element(By.CSS_SELECTOR, "#transformed canvas[data-drawn='1']"), "the transformed input")
    pixels = np.array(d.execute_script(
        "var c = arguments[0]; return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);", canvas))
    got = pixels.reshape(28, 28, 4)[..., 0].astype(float) / 255.0

    from nero_cli.data import load_images
    from orbits import ImageAction, parse_spec

    x = load_images("sample:mnist500").inputs[int(want)][None]
    spec = parse_spec("rotation:step=45")
    ref = ImageAction(spec.group, (28, 28))(x, [1])[0, 0, 0].numpy()
    assert np.abs(got - ref).max() <= 2.5 / 255
    table = pd.read_csv(report.parent / "a" / "results.csv")
    row = table[(table["model"] == "mnist-cnn") & (table["group"] == "rotation") & (table["sample"] == int(want))
                & (table["element"] == 1)].iloc[0]
    first = d.find_element(By.CSS_SELECTOR, "#outputs tbody tr")
    cells = [c.text for c in first.find_elements(By.TAG_NAME, "td")]
    assert cells[0] == "mnist-cnn" and f"{row['confidence']:.4f}" in cells and str(int(row["prediction"])) in cells

    # the resampling floor: a shaded band under the equivariance error, in the aggregate and individual plots
    def traces(div):
        return d.execute_script(
            "return document.getElementById(arguments[0]).data.map(function (t) {"
            " return {name: t.name || null, fill: t.fill || null, meta: t.meta || null, r: t.r || null}; });", div)

    assert not [t for t in traces("aggregate") if t["meta"] == "floor"]  # confidence: no band
    Select(d.find_element(By.ID, "sel-metric")).select_by_value("equivariance_error")
    _wait(d, lambda: any(t["meta"] == "floor" for t in traces("individual")), "the floor band of the individual plot")
    bands = [t for t in traces("aggregate") if t["meta"] == "floor"]
    assert [t["name"] for t in bands] == [f"resampling floor ({m})" for m in ("mnist-cnn", "mnist-cnn-aug", "net_ep1", "net_ep5")]
    assert all(t["fill"] == "toself" for t in bands)
    rows = table[(table["model"] == "mnist-cnn") & (table["group"] == "rotation") & (table["sample"] == int(want))]
    band = [t for t in traces("individual") if t["name"] == "resampling floor (mnist-cnn)"][0]
    assert max(band["r"]) == pytest.approx(rows["floor"].max(), rel=1e-5) and min(band["r"]) == 0
    assert d.find_elements(By.CSS_SELECTOR, "#aggregate .scatterlayer path.js-fill")  # drawn, not only listed
    assert "resampling floor" in d.find_element(By.ID, "agg-note").text
    Select(d.find_element(By.ID, "sel-metric")).select_by_value("confidence")
    _wait(d, lambda: not [t for t in traces("individual") if t["meta"] == "floor"], "the band to go with the metric")

    # step through the ranking
    ranked = d.execute_script("return NERO.state.ranked.map(function (s) { var ds = NERO.data.datasets[NERO.data.views[NERO.state.view].data]; return String(ds.samples[s]); });")
    pos = ranked.index(want)
    button = "btn-next" if pos + 1 < len(ranked) else "btn-prev"
    d.find_element(By.ID, button).click()
    nxt = ranked[pos + 1] if button == "btn-next" else ranked[pos - 1]
    _wait(d, lambda: d.find_element(By.ID, "sample-id").text == nxt, "the next ranked sample")

    # other groups, metrics and classes redraw without errors
    Select(d.find_element(By.ID, "sel-view")).select_by_visible_text("shift")
    Select(d.find_element(By.ID, "sel-metric")).select_by_value("equivariance_error")
    Select(d.find_element(By.ID, "sel-class")).select_by_value("4")
    Select(d.find_element(By.ID, "sel-method")).select_by_value("tsne")
    _wait(d, lambda: len(d.find_elements(By.CSS_SELECTOR, "#reduction .scatterlayer .trace:first-child .point")) == 50,
          "the class-4 points")
    assert not [t for t in traces("aggregate") if t["meta"] == "floor"]  # integer shifts are exact: no floor
    assert not d.find_element(By.ID, "epochs-section").get_attribute("hidden")
    d.save_screenshot(str(tmp_path / "report.png"))
    assert not _severe(d.get_log("browser"))


def test_browser_other_tasks(browser, other_reports):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    d = browser
    for name, html in other_reports.items():
        d.get(html.resolve().as_uri())
        _wait(d, lambda: d.execute_script("return document.body.dataset.ready === '1'"), f"the {name} page")
        Select(d.find_element(By.ID, "sel-element")).select_by_index(3)
        _wait(d, lambda: d.find_elements(By.CSS_SELECTOR, "#transformed canvas"), f"the {name} transformed input")
        if name == "flow":
            _wait(d, lambda: len(d.find_elements(By.CSS_SELECTOR, "#transformed canvas[data-drawn='1']")) == 2, "two frames")
        assert len(d.find_elements(By.CSS_SELECTOR, "#individual .main-svg")) >= 1
        assert not _severe(d.get_log("browser")), name


def test_thumbnails_found_from_another_folder_through_the_recorded_path(tmp_path, monkeypatch):
    """--data given relative to one folder, the report made from another: the thumbnails come
    from the absolute path run.json records (run.json data.path), checked by its sha256."""
    from sample_models import data_path

    (tmp_path / "a").mkdir()
    shutil.copy(data_path("mnist500"), tmp_path / "a" / "digits.npz")
    monkeypatch.chdir(tmp_path / "a")
    run_ok("evaluate", "sample:mnist-cnn", "--data", "digits.npz", "--limit", "6", "-g", "rotation:step=90", "-q",
           "--no-cache", "--no-plots", "--out", str(tmp_path / "run"))
    monkeypatch.chdir(tmp_path)
    r = run_ok("report", str(tmp_path / "run"), "--out", str(tmp_path / "rep"), "--reduction", "none", "--no-figures")
    assert "cannot load the data" not in r.stderr
    ds = next(iter(page_data(tmp_path / "rep" / "report.html")["datasets"].values()))
    assert ds["thumbs"] and all(t[0].startswith("data:image/png;base64,") for t in ds["thumbs"])
