"""``nero report`` with hostile names: every run-controlled string is escaped for its context (HTML
text and attributes, JSON in a ``<script>`` block, plotly's pseudo-HTML), so a model, class, run,
data file or title can neither stop the page from initialising nor inject markup."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nero_cli.cli import app
from nero_cli.report import html_text, script_json
from tests.test_report import _severe, _wait, browser  # noqa: F401 - the headless-browser fixture

#: Names that broke, or could break, the page: an HTML comment opener that makes the data block
#: swallow the app script, a script close, attribute breakers, entities, JS line terminators,
#: a very long name, non-ASCII text, plotly markup and template fields.
HOSTILE = [
    "<!--<script>",
    "</script><script>alert(1)</script>",
    "\"'><img src=x onerror=alert(1)>",
    "&amp; &lt;b&gt; &#60;",
    "line\u2028sep\u2029para",
    "n" * 2000,
    "Grüße, 数字 ✓ — ñ",
    "%{x} <b>bold</b><br>",
]
#: Model names: the hostile ones, and a checkpoint series (epoch 1 and 2) for the training view.
MODELS = [*HOSTILE, "ep1 <!--<script>", "ep2 <!--<script>"]
#: Class names: the hostile ones, and names that are properties of every JS object.
CLASSES = [*(h.replace("1", "2") for h in HOSTILE), "constructor", "__proto__"]
RUN_NAME = "run <!--<script> & \"q\" 'a'"
#: A second run, of two classes only, whose folder and model are named after JS object properties.
RUN2, MODEL2 = "__proto__", "constructor"
ENTRIES = [*MODELS, MODEL2]
TITLE = "</title><script>alert(3)</script><!--"

MODEL_FILE = """
import functools

import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, k, seed):
        super().__init__()
        self.w = nn.Parameter(torch.randn(64, k, generator=torch.Generator().manual_seed(seed)))

    def forward(self, x):
        return x.flatten(1) @ self.w


for _i in range(%d):
    globals()[f"make{_i}"] = functools.partial(Tiny, %d, _i)
"""


# ------------------------------------------------------------------------------------------- the escaping functions


def test_html_text_escapes_markup_and_quotes():
    for text in [*MODELS, *CLASSES, RUN_NAME, TITLE]:
        out = html_text(text)
        assert not set("<>\"'") & set(out), text
        assert html.unescape(out) == text
    assert html_text("a&b") == "a&amp;b" and html_text(3) == "3"


def test_script_json_cannot_end_or_disturb_a_script_block():
    data = {"names": [*MODELS, *CLASSES, RUN_NAME, TITLE], "<!--": "</SCRIPT >", "n": [1, 2.5, None, True]}
    out = script_json(data)
    for ch in ("<", ">", "&", "\u2028", "\u2029"):
        assert ch not in out, ch
    for esc in ("\\u003c", "\\u003e", "\\u0026", "\\u2028", "\\u2029"):
        assert esc in out, esc
    assert json.loads(out) == data
    with pytest.raises(ValueError):  # NaN is not JSON
        script_json({"x": float("nan")})


# ------------------------------------------------------------------------------------------- a report of hostile names


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory) -> Path:
    """Two tiny runs of linear models (each its own weights) with hostile names, on 10 hostile class
    names (2 samples a class; the second run: 2 classes), in hostile run folders, of a hostile data
    file, under a hostile title."""
    root = tmp_path_factory.mktemp("hostile")
    (root / "tiny_models.py").write_text(MODEL_FILE % (len(MODELS), len(CLASSES)))
    data = root / "data <!--<script> & 'q'.npz"
    rng = np.random.default_rng(0)
    np.savez(data, images=rng.random((2 * len(CLASSES), 8, 8)).astype(np.float32),
             labels=np.repeat(np.arange(len(CLASSES)), 2), class_names=np.array(CLASSES))
    for run, names, extra in ((RUN_NAME, MODELS, []), (RUN2, [MODEL2], ["--classes", "0,1"])):
        models = [f"{root / 'tiny_models.py'}:make{i}" for i in range(len(names))]
        r = CliRunner().invoke(app, ["evaluate", *models, *[a for m in names for a in ("--name", m)], "--data", str(data),
                                     *extra, "-g", "rotation:step=90", "--out", str(root / run), "-q", "--no-plots"])
        assert r.exit_code == 0, r.stderr
    out = root / "report"
    r = CliRunner().invoke(app, ["report", str(root / RUN_NAME), str(root / RUN2), "--out", str(out), "-q",
                                 "--reduction", "pca", "--no-figures", "--title", TITLE])
    assert r.exit_code == 0, r.stderr
    return out / "report.html"


def test_hostile_names_stay_inside_their_context(hostile_report):
    text = hostile_report.read_text(encoding="utf-8")
    assert len(re.findall(r"<script\b", text, re.I)) == 3 and len(re.findall(r"</script", text, re.I)) == 3
    assert "<!--" not in text and not re.search(r"<img\b", text)
    m = re.search(r'<script id="nero-data" type="application/json">(.*?)</script>', text, re.S)
    data = json.loads(m.group(1))
    v = data["views"][0]
    assert [e["name"] for e in v["entries"]] == ENTRIES
    assert set(data["datasets"][v["data"]]["classNames"]) == set(CLASSES)
    assert f"<title>{html.escape(TITLE)}</title>" in text


def _texts(d, selector: str) -> list[str]:
    return d.execute_script("return Array.from(document.querySelectorAll(arguments[0])).map(function (n) "
                            "{ return n.textContent; });", selector)


def _hover(d, plot_id: str, curve: int, subplot: str = "xy") -> list[str]:
    """The hover labels after hovering the first point of trace ``curve`` of a plot (plotly throttles
    hovering: poll with :func:`_wait`)."""
    return d.execute_script("var g = document.getElementById(arguments[0]);"
                            "Plotly.Fx.hover(g, [{curveNumber: arguments[1], pointNumber: 0}], arguments[2]);"
                            "return Array.from(g.querySelectorAll('.hoverlayer .hovertext')).map(function (n) "
                            "{ return n.textContent; });", plot_id, curve, subplot)


def _choose(d, select_id: str, value: str) -> None:
    """Pick an option as a user would (selenium's select_by_value cannot quote every name in CSS)."""
    d.execute_script("var s = document.getElementById(arguments[0]); s.value = arguments[1]; "
                     "if (s.value !== arguments[1]) throw new Error('no such option'); "
                     "s.dispatchEvent(new Event('change'));", select_id, value)


def test_browser_hostile_names(browser, hostile_report):  # noqa: F811 - the imported fixture
    from selenium.common.exceptions import NoAlertPresentException

    d = browser
    d.get(hostile_report.resolve().as_uri())
    _wait(d, lambda: d.execute_script("return document.body.dataset.ready === '1'"), "the page to start")  # init() ran
    assert not _severe(d.get_log("browser"))
    assert d.execute_script("return document.scripts.length") == 3  # plotly, the data, the app: nothing injected
    assert not d.execute_script("return document.querySelectorAll('img[src=\"x\"], [onerror]').length")
    for sel in ("#aggregate .main-svg", "#reduction .main-svg", "#individual .main-svg", "#epochs .main-svg",
                "#outputs table", "table.summary tbody tr"):
        _wait(d, lambda sel=sel: _texts(d, sel), f"{sel} to render")
    assert d.title == TITLE and _texts(d, "header h1") == [TITLE]

    # the names are shown as text: in the controls, the plots' legends, the tables and the run list
    assert _texts(d, "#sel-entry option") == ENTRIES
    assert set(_texts(d, "#sel-class option")) == {"all samples", *CLASSES}
    assert _texts(d, "#aggregate .legendtext") == ENTRIES
    assert [t for t in _texts(d, "#individual .legendtext") if t] in (MODELS, ENTRIES)
    assert _texts(d, "#outputs tbody tr td:first-child") == ENTRIES
    assert _texts(d, "table.summary tbody td:first-child") == [RUN_NAME] * len(MODELS) + [RUN2]
    assert _texts(d, "table.summary tbody td:nth-child(2)") == ENTRIES
    assert _texts(d, "#epochs .legendtext") == ["ep# <!--<script> \u00b7 rotation"]
    runs = _texts(d, "#runs-section li")
    assert runs[0].startswith(RUN_NAME + ": classification") and "data <!--<script> & 'q'.npz" in runs[0]
    assert all(m in runs[0] for m in MODELS) and runs[1].startswith(f"{RUN2}: classification") and MODEL2 in runs[1]

    # hover labels: plotly markup and template fields in a name are shown, not interpreted
    for i, m in enumerate(ENTRIES):
        _wait(d, lambda i=i, m=m: any(t.startswith(m[:15]) for t in _hover(d, "aggregate", i, "polar")), f"the label of {m[:40]!r}")

    # every class subset redraws, and the sample panel and the reduction's hover label name its class
    for c in CLASSES:
        _choose(d, "sel-class", c)
        _wait(d, lambda c=c: d.find_element("id", "sample-class").get_attribute("textContent").endswith("class " + c),
              f"a sample of class {c[:40]!r}")
        assert _texts(d, "#aggregate .legendtext") == (ENTRIES if c in CLASSES[:2] else MODELS)  # the 2nd run: 2 classes
        assert len(_texts(d, "#reduction .scatterlayer .trace:first-child .point")) == 2
        _wait(d, lambda c=c: any(("class " + c) in t for t in _hover(d, "reduction", 0)), f"the label of {c[:40]!r}")
    _choose(d, "sel-entry", str(len(ENTRIES) - 1))
    _wait(d, lambda: MODEL2 in d.find_element("id", "red-note").get_attribute("textContent"), "the last model's view")
    with pytest.raises(NoAlertPresentException):
        d.switch_to.alert.text  # noqa: B018 - no alert() ran
    assert not _severe(d.get_log("browser"))


# ------------------------------------------------------------------------------------------- lie, layers and search runs

#: Model names of the lie, layers and search runs: markup, a script close, attribute breakers, plotly fields.
ANALYSIS_NAMES = ["<!--<script>", "\"'><img src=x onerror=alert(1)> %{x}"]


@pytest.fixture(scope="module")
def hostile_analysis(tmp_path_factory) -> Path:
    """A report of tiny lie, layers and search runs whose models have hostile names, in hostile folders."""
    root = tmp_path_factory.mktemp("hostile-analysis")
    names = [a for n in ANALYSIS_NAMES for a in ("--name", n)]
    models = ["sample:mnist-cnn", "sample:mnist-cnn-aug"]
    data = ["--data", "sample:mnist500"]
    commands = {
        "lie <!--": ["lie", *models, *names, *data, "--sample", "10", "-g", "rotation", "-q"],
        "search <b>&amp;": ["search", *models, *names, *data, "--sample", "10", "-g", "rotation:step=90", "--refine", "2", "-q"],
        "layers '\"": ["layers", models[0], "--name", ANALYSIS_NAMES[1], *data, "--limit", "2", "-g", "shift:extent=1,step=1"],
    }
    for folder, args in commands.items():
        r = CliRunner().invoke(app, [*args, "--out", str(root / folder)])
        assert r.exit_code == 0, r.stderr
    out = root / "report"
    r = CliRunner().invoke(app, ["report", *(str(root / f) for f in commands), "--out", str(out), "-q"])
    assert r.exit_code == 0, r.stderr
    return out / "report.html"


@pytest.mark.slow
def test_browser_hostile_names_in_analysis_views(browser, hostile_analysis):  # noqa: F811 - the imported fixture
    from selenium.common.exceptions import NoAlertPresentException

    text = hostile_analysis.read_text(encoding="utf-8")
    assert len(re.findall(r"<script\b", text, re.I)) == 3 and "<!--" not in text
    assert len(re.findall(r"<img\b", text)) == 3  # the runs' own plots: lie.png and two worst-example plots
    d = browser
    d.get(hostile_analysis.resolve().as_uri())
    _wait(d, lambda: d.execute_script("return document.body.dataset.ready === '1'"), "the page to start")
    assert not _severe(d.get_log("browser"))
    assert d.execute_script("return document.scripts.length") == 3
    assert not d.execute_script("return document.querySelectorAll('img[src=\"x\"], [onerror]').length")
    for div in ("an-a0-dist", "an-a1-surv0", "an-a2-bars"):
        _wait(d, lambda div=div: _texts(d, f"#{div} .legendtext"), f"the legend of {div}")
    assert _texts(d, "#an-a0-dist .legendtext") == ANALYSIS_NAMES
    assert _texts(d, "#an-a1-surv0 .legendtext") == ANALYSIS_NAMES
    assert _texts(d, "#an-a2-bars .legendtext") == ANALYSIS_NAMES[1:]
    assert _texts(d, "#an-a0 tbody td:first-child") == ANALYSIS_NAMES
    assert _texts(d, "#an-a1 tbody td:first-child") == ANALYSIS_NAMES
    assert set(_texts(d, "#an-a2 tbody td:first-child")) == set(ANALYSIS_NAMES[1:])
    headings = _texts(d, "section.analysis h2")
    assert headings == ["Lie derivative: lie <!--", "Breaking transformations: search <b>&amp;",
                        "Error by layer: layers '\""]
    with pytest.raises(NoAlertPresentException):
        d.switch_to.alert.text  # noqa: B018 - no alert() ran
    assert not _severe(d.get_log("browser"))
