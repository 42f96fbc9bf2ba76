"""The views of ``nero lie``, ``nero layers`` and ``nero search`` runs on a ``nero report`` page.

Each run folder is read through :func:`nero_cli.analysis_runs.open_analysis` (checksum, rows and
columns checked); every number shown comes from its table and ``summary.json``, never from the
models. Per run, the page gets an HTML section (tables, the run's own plots as inline PNG) and
the data its script draws:

- **lie**: per model and generator the mean, median and 90th percentile of the Lie derivative
  with its unit and method (summary.json), and the per-sample distribution (lie.csv) as box plots;
- **layers**: the bar chart of own error and contribution by layer and depth, and the per-layer
  table (mean over the orbit elements of layers.csv), under the scalar-field assumption the run states;
- **search**: per group axis the survival curve (share of samples correct at the identity whose
  prediction holds for every |parameter| up to r, from search.csv), the breaking-parameter table
  (median, 10th percentile, share never broken: summary.json) and the worst examples (the run's plots).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .analysis_runs import AnalysisRun, open_analysis
from .plots import model_colors
from .report_escape import html_text
from .report_media import rounded, rounded_list
from .search_plots import survival

TITLES = {"lie": "Lie derivative", "layers": "Error by layer", "search": "Breaking transformations"}
METHODS = {"jvp": "forward-mode derivative (torch.func.jvp) through the differentiable warp",
           "fd": "central finite differences"}


@dataclass
class AnalysisEntry:
    """A lie, layers or search run on the page, with the names the page shows."""

    run: AnalysisRun
    name: str = ""
    display: dict[str, str] = field(default_factory=dict)  # model -> name on the page

    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def models(self) -> list[str]:
        return self.run.models

    @property
    def kind(self) -> str:
        return self.run.kind


def load_analysis(run_dir: Path | str) -> AnalysisEntry:
    return AnalysisEntry(open_analysis(run_dir))


# ------------------------------------------------------------------------------------------
# HTML pieces


def num(v: Any) -> str:
    """A number as the tables show it: 4 significant digits; a dash when missing."""
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
        return "&ndash;"
    return f"{v:.4g}"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], cls: str) -> str:
    """A table; ``head`` is escaped here, ``rows`` hold cells already escaped (``<td>...</td>``)."""
    th = "".join(f"<th>{html_text(h)}</th>" for h in head)
    body = "".join(f"<tr>{''.join(r)}</tr>" for r in rows)
    return f'<div class="table-wrap"><table class="analysis-table {cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>'


def _td(text: Any) -> str:
    return f"<td>{html_text(text)}</td>"


def _td_num(v: Any, key: str, title: str = "") -> str:
    t = f' title="{html_text(title)}"' if title else ""
    return f'<td class="num" data-key="{html_text(key)}"{t}>{num(v)}</td>'


def run_pngs(a: AnalysisEntry, word: str = "") -> list[tuple[str, str]]:
    """The run's own plots (PNG files run.json lists under plots/ whose name holds ``word``) as
    (file name, data URI)."""
    out = []
    for f in sorted(str(p) for p in a.run.info.get("files", [])):
        path = a.path / f
        if f.startswith("plots/") and f.endswith(".png") and word in Path(f).name and path.is_file():
            out.append((f, "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")))
    return out


def _figures(a: AnalysisEntry, word: str, what: str) -> str:
    figs = "".join(f'<figure><img class="run-plot" src="{html_text(uri)}" alt="{html_text(f)}">'
                   f"<figcaption>{html_text(what)}: {html_text(f)} of {html_text(a.name)}</figcaption></figure>"
                   for f, uri in run_pngs(a, word))
    return f'<div class="run-plots">{figs}</div>' if figs else ""


def _section(a: AnalysisEntry, vid: str, intro: str, body: str) -> str:
    return (f'<section class="analysis" id="an-{vid}" data-kind="{a.kind}"><h2>{html_text(TITLES[a.kind])}: '
            f"{html_text(a.name)}</h2><p class=\"hint\">{intro}</p><div class=\"card\">{body}</div></section>")


# ------------------------------------------------------------------------------------------
# lie


LIE_KEYS = ("lie_derivative_mean", "lie_derivative_median", "lie_derivative_p90")
#: With ``nero lie --along``: the orbit's numbers, as (key, column head).
LIE_ORBIT_KEYS = (("lie_derivative_orbit_mean", "orbit mean"), ("lie_derivative_orbit_max", "orbit max"))


def lie_view(a: AnalysisEntry, vid: str, colors: dict[str, str]) -> tuple[dict[str, Any], str]:
    s, table = a.run.summary, a.run.table()
    orbit = s.get("orbit") if isinstance(s.get("orbit"), dict) else None
    if orbit is not None and "element" in table:  # --along: the distribution at the identity, as the summary's
        table = table[table["element"].astype(str) == str(orbit.get("identity"))]
    rows, series = [], []
    for model, gens in s["metrics"].items():
        name = a.display.get(str(model), str(model))
        for gen, m in gens.items():
            along = [_td_num(m.get(k), k) for k, _ in LIE_ORBIT_KEYS] + [_td(m.get("lie_derivative_orbit_argmax", ""))]
            rows.append([_td(name), _td(gen), _td(m.get("n_samples", "")), *(_td_num(m.get(k), k) for k in LIE_KEYS),
                         *(along if orbit is not None else []), _td(m.get("unit", "")), _td(m.get("method", ""))])
            t = table[(table["model"] == str(model)) & (table["generator"] == str(gen))]
            series.append({"model": name, "generator": str(gen), "unit": str(m.get("unit", "")), "color": colors[name],
                           "values": rounded_list(t["value"].to_numpy(dtype=float))})
    doc = (s.get("keys", {}).get("lie_derivative_mean") or {}).get("doc", "")
    doc = doc[len("mean over samples of "):] if doc.startswith("mean over samples of ") else doc
    used = sorted({str(m.get("method")) for gens in s["metrics"].values() for m in gens.values()})
    step = (a.run.info.get("options") or {}).get("step")
    how = "; ".join(f"{html_text(u)}: {html_text(METHODS.get(u, u))}" + (f" (step h = {html_text(step)})" if u == "fd" and step else "")
                    for u in used)
    intro = (f"The derivative at the identity of each model's output along each generator of "
             f"<code>{html_text(s.get('group', ''))}</code>, per sample: {html_text(doc)}. 0 means locally invariant. "
             f"Method {how}. The table is the run's summary.json; the box plot is the distribution over the samples of "
             f"lie.csv.")
    head = ["model", "generator", "samples", "mean", "median", "90th percentile"]
    if orbit is not None:
        intro += (f" Orbit: the mean over samples of the derivative at g&middot;x for every element g of "
                  f"<code>{html_text(orbit.get('spec', ''))}</code>, averaged over the elements (orbit mean) and at its "
                  f"largest (orbit max, at the element named).")
        head += [h for _, h in LIE_ORBIT_KEYS] + ["at"]
    head += ["unit", "method"]
    body = _table(head, rows, "lie") + f'<div id="an-{vid}-dist" class="plot"></div>' + _figures(a, "", "the run's plot")
    return {"id": vid, "kind": "lie", "run": a.name, "series": series}, _section(a, vid, intro, body)


# ------------------------------------------------------------------------------------------
# layers


def layer_means(table: pd.DataFrame) -> pd.DataFrame:
    """Per model and layer (execution order): own error and contribution, each the mean over the elements."""
    return (table.groupby(["model", "depth", "layer", "kind"], sort=False)[["own_error", "contribution"]]
            .mean().reset_index().sort_values(["depth"], kind="stable"))


def layers_view(a: AnalysisEntry, vid: str, colors: dict[str, str]) -> tuple[dict[str, Any], str]:
    s = a.run.summary
    means = layer_means(a.run.table())
    rows, bars = [], []
    for model in a.models:
        name = a.display.get(model, model)
        mm = means[means["model"] == model]
        for _, r in mm.iterrows():
            rows.append([_td(name), _td(int(r["depth"])), _td(r["layer"]), _td(r["kind"]),
                         _td_num(r["own_error"], "own_error", "" if np.isfinite(r["own_error"]) else
                                 "not measured: no spatial feature map, or no valid interior"),
                         _td_num(r["contribution"], "contribution")])
        pm = s["per_model"].get(model, {})
        rows.append([_td(name), _td(""), _td("(output)"), _td(""), _td_num(pm.get("output_error"), "output_error"), _td("")])
        bars.append({"model": name, "color": colors[name],
                     "x": [f"{int(d)} {lay}" + ("" if f"({k})" == lay else f" ({k})")
                           for d, lay, k in zip(mm["depth"], mm["layer"], mm["kind"])],
                     "own": rounded_list(mm["own_error"].to_numpy(dtype=float)),
                     "contribution": rounded_list(mm["contribution"].to_numpy(dtype=float))})
    n = s.get("n_samples")
    intro = (f"Per layer of each model under <code>{html_text(s.get('group', ''))}</code>, on {html_text(n)} samples: its own "
             f"equivariance error &#8214;f(g&middot;z) &minus; g&middot;f(z)&#8214; / &#8214;f(z)&#8214; (in the valid interior) and "
             f"its contribution (the change at the output, as total variation, when the transformation is inserted "
             f"before the layer), each the mean over the orbit elements of layers.csv; (output): the end-to-end error. "
             f"Assumption: {html_text(s.get('assumption', ''))}.")
    head = ["model", "depth", "layer", "kind", "own error", "contribution"]
    body = f'<div id="an-{vid}-bars" class="plot"></div>' + _table(head, rows, "layers")
    return {"id": vid, "kind": "layers", "run": a.name, "bars": bars}, _section(a, vid, intro, body)


# ------------------------------------------------------------------------------------------
# search


def survival_curve(t: pd.DataFrame, radius: float) -> tuple[list[float], list[float]]:
    """The survival curve of one model and axis as a step function: its value from each x on
    (0, every breaking |parameter| inside the range, and the range's end)."""
    b = t["breaking"].to_numpy(dtype=float)
    xs = np.unique(np.concatenate([[0.0, radius], b[np.isfinite(b) & (b < radius)]]))
    return xs.tolist(), survival(t, xs).tolist()


def search_view(a: AnalysisEntry, vid: str, colors: dict[str, str]) -> tuple[dict[str, Any], str]:
    s, table = a.run.summary, a.run.table()
    axes = (a.run.info.get("record") or {}).get("axes") or {}
    keys = list(dict.fromkeys(k for m in s["models"].values() for k in m))
    rows, plots = [], []
    for i, key in enumerate(keys):
        ax = axes.get(key, {})
        group, axis = (key.split("/", 1) + [""])[:2]
        radius = max(abs(float(x)) for x in ax.get("range", [0.0, 1.0]))
        curves = []
        for model in a.models:
            name, m = a.display.get(model, model), s["models"][model].get(key)
            if m is None:
                continue
            t = table[(table["model"] == model) & (table["group"] == group) & (table["axis"] == axis)]
            x, y = survival_curve(t, radius)
            curves.append({"model": name, "color": colors[name], "x": x, "y": y})  # exact: the steps sit on breaking values
            beyond = f"beyond the searched range (|{axis}| up to {radius:g})"
            rows.append([_td(name), _td(key), _td(m.get("n_samples", "")),
                         _td_num(m.get("median_breaking"), "median_breaking", "" if m.get("median_breaking") is not None else beyond),
                         _td_num(m.get("p10_breaking"), "p10_breaking", "" if m.get("p10_breaking") is not None else beyond),
                         _td_num(m.get("share_never_broken"), "share_never_broken"),
                         _td_num(m.get("median_breaking_of_broken"), "median_breaking_of_broken"),
                         _td_num(m.get("share_correct_at_identity"), "share_correct_at_identity"), _td(ax.get("unit", ""))])
        plots.append({"div": f"an-{vid}-surv{i}", "key": key, "axis": axis, "unit": str(ax.get("unit", "")),
                      "radius": rounded(radius), "curves": curves})
    intro = ("Per sample, the smallest |parameter| from the identity at which the prediction changes (searched outward, "
             "then bisected; never broken within the searched range: counted as beyond it). Survival: the share of "
             "samples correct at the identity whose prediction holds for every |parameter| up to r (search.csv). "
             "The table is the run's summary.json; a dash means the quantile lies beyond the searched range. "
             "Worst examples: each model's samples with the lowest confidence at their worst element, as the run drew them.")
    head = ["model", "group/axis", "samples", "median breaking", "10th percentile", "share never broken",
            "median of broken", "share correct at identity", "unit"]
    divs = "".join(f'<div id="{p["div"]}" class="plot"></div>' for p in plots)
    body = divs + _table(head, rows, "search") + _figures(a, "worst", "worst examples")
    return {"id": vid, "kind": "search", "run": a.name, "survival": plots}, _section(a, vid, intro, body)


# ------------------------------------------------------------------------------------------
# The page's part


VIEWS = {"lie": lie_view, "layers": layers_view, "search": search_view}


def analysis_views(entries: Sequence[AnalysisEntry]) -> tuple[list[dict[str, Any]], str]:
    """The data the page draws (one item per run) and the HTML of the runs' sections."""
    data, parts = [], []
    for i, a in enumerate(entries):
        colors = model_colors([a.display.get(m, m) for m in a.models])
        d, h = VIEWS[a.kind](a, f"a{i}", colors)
        data.append(d)
        parts.append(h)
    return data, "".join(parts)


def analysis_run_html(a: AnalysisEntry) -> str:
    """The run's line in the list of runs."""
    data = a.run.info.get("data") or {}
    return (f"<li><b>{html_text(a.name)}</b>: nero {html_text(a.kind)}, {html_text(data.get('n_samples', '?'))} samples of "
            f"<code>{html_text(data.get('source', '?'))}</code>, models {html_text(', '.join(a.display.get(m, m) for m in a.models))}; "
            f"{html_text(a.run.group)}"
            f"{' (finished ' + html_text(a.run.info['finished']) + ')' if a.run.info.get('finished') else ''}</li>")


__all__ = ["AnalysisEntry", "load_analysis", "analysis_views", "analysis_run_html", "layer_means", "survival_curve",
           "run_pngs", "num"]
