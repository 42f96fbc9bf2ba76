"""``nero report``: one self-contained, interactive HTML page over one or more run directories.

The page (``report.html``, no network needed: plotly.js, CSS and data are inline) shows

- a summary table of every model and group of every run, one column per quantity;
- the aggregate NERO plot of each group with the models overlaid (runs of the same group on
  different grids too, each model at its own elements), for a chosen metric and class subset;
- a dimension-reduction view: each sample is a point whose vector is its NERO curve (the
  metric at every orbit element, for one model and group), reduced to 2-D with PCA,
  FastICA, Isomap, t-SNE (and UMAP when ``umap`` is importable), coloured by the mean or
  the variance of the curve. Clicking a point, or stepping through the samples ranked by
  mean or variance, shows that sample's thumbnail and its individual NERO plot for every
  model; choosing an orbit element shows the transformed input and every model's outputs
  there (the rows of ``results.csv``);
- a table of the selected samples (searched by id, filtered by class) with every model's mean
  and variance of its curve, exported as CSV with one button;
- the views of ``nero lie``, ``nero layers`` and ``nero search`` runs given beside the evaluate
  runs (:mod:`nero_cli.report_analysis`);
- when model names carry an epoch or step number (``ckpt_e5``, ``step-1000``), every
  summary metric drawn against it.

This module renders the page and writes the output folder; :mod:`nero_cli.report_data` builds
the page data from the run records, :mod:`nero_cli.report_media` the thumbnails and reductions.
Static copies of the aggregate plots go to ``figures/`` beside the page.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
from matplotlib.figure import Figure

from . import __version__
from .errors import NeroError, OptionError, OutputError, first_line
from .plots import PlotSpec, metrics_with_floor, plot_aggregate, save_figure
from .analysis_runs import run_kind
from .report_analysis import AnalysisEntry, analysis_run_html, analysis_views, load_analysis
from .report_data import DEFAULT_MAX_SAMPLES, ReportRun, build_report_data, display_names, load_run, name_runs
from .report_escape import html_text, script_json
from .report_media import REDUCTIONS, parse_reductions
from .report_summary import summary_table_html
from .outdir import IO_ERRORS, claim, commit, io_error, listing
from .runrecord import write_json

try:  # plotly is an optional dependency (nero[report])
    from plotly.offline import get_plotlyjs
except ImportError:  # pragma: no cover - depends on the installation
    get_plotlyjs = None

TEMPLATE = "report_template.html"
Warn = Callable[[str], None]


# ------------------------------------------------------------------------------------------
# The page


def _run_list_html(runs: list[ReportRun], analyses: Sequence[AnalysisEntry] = ()) -> str:
    items = []
    for r in runs:
        finished = r.rec.info.get("finished")
        items.append(
            f"<li><b>{html_text(r.name)}</b>: {html_text(r.task.name)}, {html_text(r.rec.summary.get('n_samples', '?'))} "
            f"samples of <code>{html_text(r.data.get('source', '?'))}</code>, models "
            f"{html_text(', '.join(r.display[m] for m in r.models))}; groups "
            f"{html_text(', '.join(str(p['spec']) for p in r.rec.plots.values()))}"
            f"{' (finished ' + html_text(finished) + ')' if finished else ''}</li>")
    return "".join(items) + "".join(analysis_run_html(a) for a in analyses)


def render_html(data: dict[str, Any], runs: list[ReportRun], title: str, analyses: Sequence[AnalysisEntry] = (),
                analysis_html: str = "") -> str:
    """The page: the template with plotly.js, the data and the static parts filled in (``analysis_html``:
    the sections of the lie, layers and search runs, escaped where they were built)."""
    if get_plotlyjs is None:
        raise OptionError("nero report needs plotly: pip install 'nero[report]' (or pip install plotly)")
    template = resources.files("nero_cli").joinpath(TEMPLATE).read_text(encoding="utf-8")
    plotly_js = get_plotlyjs().replace("</script", "<\\/script")
    payload = script_json(data)
    generated = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    parts = {
        "TITLE": html_text(title),
        "GENERATED": html_text(f"nero {__version__}, {generated}"),
        "RUNS": _run_list_html(runs, analyses),
        "SUMMARY_TABLE": summary_table_html(runs) if runs else "",
        "ANALYSIS": analysis_html,
    }

    def fill(text: str) -> str:  # one pass: nothing substituted is scanned again
        return re.sub(r"\{\{([A-Z_]+)\}\}", lambda m: parts.get(m.group(1), m.group(0)), text)

    head, _, rest = template.partition("/*{{PLOTLY_JS}}*/")
    middle, _, tail = rest.partition("{{DATA_JSON}}")
    return fill(head) + plotly_js + fill(middle) + payload + fill(tail)


# ------------------------------------------------------------------------------------------
# Static figures


def _view_aggregate(runs: list[ReportRun], view: dict[str, Any]) -> pd.DataFrame | None:
    """summary.csv rows of every run's group drawn in ``view``, models under their page names."""
    frames = []
    members = {(m["run"], m["group"]) for m in view["members"]}
    for r in runs:
        for label in r.rec.plots:
            if (r.name, label) in members:
                a = r.agg[r.agg["group"] == label].copy()
                a["model"] = a["model"].map(lambda m, r=r: r.display.get(m, m))
                a["group"] = view["label"]
                frames.append(a)
    return pd.concat(frames, ignore_index=True) if frames else None


def write_figures(runs: list[ReportRun], data: dict[str, Any], fig_dir: Path, warn: Warn) -> list[Path]:
    """Static aggregate plots (default metric, every sample, models overlaid each at its own elements; and
    the equivariance error with its resampling floor shaded, where the floor is not 0) and the epoch curves."""
    paths: list[Path] = []
    for v in data["views"]:
        agg = _view_aggregate(runs, v)
        if agg is None:
            continue
        label = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in v["label"])
        try:
            spec = PlotSpec(group=v["label"], kind=v["kind"], params=tuple(v["plotParams"]),
                            title=f"{v['label']} ({' + '.join(str(s['n']) for s in v['specs'])} elements)")
            for metric in [m for m in metrics_with_floor(agg, v["metrics"][0]) if m in v["metrics"]]:
                paths += plot_aggregate(agg, spec, metric, [e["name"] for e in v["entries"]], fig_dir,
                                        stem=f"aggregate_{label}_{metric}", task=v["task"])
        except Exception as exc:  # noqa: BLE001 - the static figure is a convenience
            warn(f"figure for {v['label']} not written ({first_line(exc)})")
    if data["epochs"]:
        paths += epoch_figure(data, fig_dir)
    return paths


def epoch_figure(data: dict[str, Any], fig_dir: Path) -> list[Path]:
    """The page's epoch metric of every checkpoint series and group, against the epoch."""
    rows, higher, metric = data["summary"]["rows"], data["summary"]["higher"], data["epochMetric"]
    if metric is None or not any(metric in r["values"] for r in rows):
        return []
    groups = list(dict.fromkeys(r["group"] for r in rows))
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for s in data["epochs"]:
        for g in groups:
            pts = [(p["epoch"], next((r["values"].get(metric) for r in rows if r["entry"] == p["entry"] and r["group"] == g),
                                     None)) for p in s["points"]]
            pts = [(x, y) for x, y in pts if y is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=f"{s['name']} · {g}")
    ax.set_xlabel("epoch / step")
    ax.set_ylabel(f"{metric.replace('_', ' ')} ({'higher' if higher.get(metric, True) else 'lower'} is better)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return save_figure(fig, fig_dir, f"epochs_{metric}")


# ------------------------------------------------------------------------------------------
# The report folder


def _open_runs(paths: list[Path], out: Path) -> tuple[list[ReportRun], list[AnalysisEntry]]:
    """Every run directory, each given once, none inside ``out``; refused with one error line. The runs
    of ``nero lie``, ``nero layers`` and ``nero search`` (told apart by run.json's kind) are read by
    their own reader, the rest as ``nero evaluate`` runs."""
    seen: set[Path] = set()
    runs, analyses = [], []
    for p in paths:
        rp = p.resolve()
        if rp in seen:
            raise OptionError(f"{p}: given twice; pass each run directory once")
        seen.add(rp)
        if run_kind(p) is not None:
            analyses.append(load_analysis(p))
        else:
            runs.append(load_run(p))
        ro = out.resolve()
        if ro == rp or rp.is_relative_to(ro):
            raise OutputError(f"--out {out}: would replace the run directory {p}; choose another --out")
    return runs, analyses


def _write_folder(out: Path, page: str, figures: Callable[[Path], Any] | None) -> None:
    """``report.html`` (and ``figures/``) written under a unique temporary sibling name, the manifest
    ``report.json`` (listing every file, so a later ``--overwrite`` can prove the folder is nero's)
    last, then swapped into place (:func:`nero_cli.outdir.commit`). The caller holds ``out``'s claim."""
    tmp = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the report is an ordinary directory
        (tmp / "report.html").write_text(page, encoding="utf-8")
        if figures is not None:
            figures(tmp / "figures")
        write_json(tmp / "report.json", {"written_by": "nero", "version": __version__,
                                         "files": sorted({*listing(tmp), "report.json"})})
        commit(tmp, out, "report")
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in IO_ERRORS:
            raise io_error(exc, tmp or out.parent) from None
        raise


def _print_warning(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


def report_run(run_dirs: Sequence[Path | str], out: Path | str, overwrite: bool = False, *,
               max_samples: int = DEFAULT_MAX_SAMPLES, metrics: Sequence[str] | None = None,
               reductions: str | Sequence[str] | None = None, thumbnails: bool = True, figures: bool = True,
               title: str | None = None, seed: int = 0, warn: Warn | None = None,
               progress: Callable[[str], None] | None = None) -> Path:
    """Build the report of ``run_dirs`` (folders of ``nero evaluate``, ``nero lie``, ``nero layers`` or
    ``nero search``) in the directory ``out``; return the path of ``report.html``.

    ``out`` is held exclusively for the whole command, written under a temporary sibling name and
    swapped into place when complete; an existing non-empty ``out`` is replaced only with
    ``overwrite``, and only when it is a report nero wrote (:mod:`nero_cli.outdir`). ``max_samples`` caps
    the samples per data set in the reduction view (evenly spaced by id), ``metrics`` limits
    the metrics offered (default: every plot metric of each task), ``reductions`` is a list or
    comma list of :data:`~nero_cli.report_media.REDUCTIONS` (default: every available one;
    ``none`` for none).
    """
    if not run_dirs:
        raise OptionError("no RUN_DIR given; pass one or more --out directories of 'nero evaluate', 'nero lie', "
                          "'nero layers' or 'nero search'")
    if max_samples < 1:
        raise OptionError(f"--max-samples must be at least 1, got {max_samples}")
    warn = warn or _print_warning
    out = Path(out)
    runs, analyses = _open_runs([Path(p) for p in run_dirs], out)
    methods = parse_reductions(reductions)
    with claim(out, "report", overwrite, protect=[r.path for r in (*runs, *analyses)]):
        name_runs([*runs, *analyses])
        for subset in (runs, *([a for a in analyses if a.kind == k] for k in ("lie", "layers", "search"))):
            display_names(subset)  # run/model only where a name repeats among the views that show it together
        data = build_report_data(runs, max_samples=max_samples, metrics=list(metrics) if metrics else None,
                                 reductions=methods, thumbnails=thumbnails, seed=seed, warn=warn, progress=progress)
        data["analysis"], analysis_html = analysis_views(analyses)
        if not data["views"] and not data["analysis"]:
            raise NeroError("these runs hold no group with rows in results.csv; nothing to report")
        names = ", ".join(r.name for r in (*runs, *analyses))
        page = render_html(data, runs, title if title is not None else "NERO report: " + names, analyses, analysis_html)
        _write_folder(out, page, (lambda d: write_figures(runs, data, d, warn)) if figures else None)
    return out / "report.html"


__all__ = ["report_run", "render_html", "summary_table_html", "write_figures", "html_text", "script_json", "REDUCTIONS"]
