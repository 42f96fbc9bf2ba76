"""The data of a ``nero report`` page, built from run records.

Runs are read only through :func:`nero_cli.runrecord.open_run`: the parameter columns, the plot
kind and parameters of each group, its identity, the class names and the task (with its metric
registry) come from the run record; the aggregate curves are ``summary.csv``; the per-sample
columns are the run's vectors (memory-mapped, only the shown samples' rows read), or ``results.csv``
for a run written without them (:mod:`nero_cli.report_rows`). :func:`build_report_data` returns the JSON the page reads:
views (one per task and group spec, models of every run that evaluated it overlaid), data sets
(the samples shown, their classes and thumbnails), per-sample columns and reductions, the
summary rows, checkpoint series and the list of runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from .checkpoints import epoch_of
from .data import load_selected
from .errors import first_line
from .plot_floor import FLOOR_COLUMN, FLOORED_METRICS
from .plots import model_colors
from .report_rows import TableRows, VectorRows
from .report_media import REDUCTION_NAMES, camera_matrix, rounded, rounded_list, sample_media
from .report_summary import row_values, summary_columns
from .report_views import View, build_views, entry_json, natural_key
from .runrecord import RunRecord, open_run
from .selection import Selection
from .shaping import parse_resize
from .tasks import TaskRecord

DEFAULT_MAX_SAMPLES = 2000
Warn = Callable[[str], None]


@dataclass
class ReportRun:
    """A run record with its tables and the names the page shows."""

    rec: RunRecord
    rows: TableRows | VectorRows  # the per-sample rows: the vectors, or results.csv
    agg: pd.DataFrame  # summary.csv
    name: str = ""
    display: dict[str, str] = field(default_factory=dict)  # model -> name on the page

    @property
    def path(self) -> Path:
        return self.rec.path

    @property
    def task(self) -> TaskRecord:
        return self.rec.task

    @property
    def models(self) -> list[str]:
        return self.rec.models

    @property
    def data(self) -> dict[str, Any]:
        return self.rec.info.get("data") or {}

    @property
    def data_key(self) -> str:
        """Runs with the same key evaluated the same samples of the same data."""
        return f"{self.task.name}:{self.rec.data_sha256 or self.data.get('source') or self.path.resolve()}"


def load_run(run_dir: Path | str) -> ReportRun:
    """A complete run folder and its tables (one error line when it is missing, unfinished or damaged):
    its vectors when it has them (results.csv is then never loaded), else results.csv."""
    rec = open_run(run_dir)
    vectors = rec.vectors()
    rows = VectorRows(vectors, rec.task) if vectors is not None else TableRows(rec.results(), rec.task)
    return ReportRun(rec, rows, rec.aggregate())


def name_runs(runs: Sequence[Any]) -> None:
    """Unique run names (directory names; the parent is added, then a counter, when they collide)
    and model display names (:func:`display_names`). ``runs``: anything with ``path`` and ``models``."""
    names = [r.path.name or str(r.path) for r in runs]
    if len(set(names)) != len(names):
        names = [f"{r.path.resolve().parent.name}/{r.path.name}" for r in runs]
    seen: dict[str, int] = {}
    for r, n in zip(runs, names):
        seen[n] = seen.get(n, 0) + 1
        r.name = n if seen[n] == 1 else f"{n}-{seen[n]}"
    display_names(runs)


def display_names(runs: Sequence[Any]) -> None:
    """Model display names: ``run/model`` when a model name occurs in more than one of ``runs``."""
    count: dict[str, int] = {}
    for r in runs:
        for m in r.models:
            count[m] = count.get(m, 0) + 1
    for r in runs:
        r.display = {m: (m if count[m] == 1 else f"{r.name}/{m}") for m in r.models}


# ------------------------------------------------------------------------------------------
# Data sets: the samples shown, their classes and thumbnails


@dataclass
class SampleSet:
    """The samples of one data set that the page shows (evenly spaced when there are too many)."""

    key: str
    runs: list[ReportRun]
    ids: np.ndarray  # sorted sample ids
    total: int
    inputs: Any = None  # the loaded Dataset, for thumbnails
    json: dict[str, Any] = field(default_factory=dict)

    @property
    def input_kind(self) -> str:
        return self.runs[0].task.input_kind


def _load_dataset(run: ReportRun, warn: Warn) -> Any:
    # where run.json records the data (an absolute path, so from any folder), else --data as given
    recorded = run.data.get("path")
    source = recorded if recorded and Path(recorded).exists() else run.data.get("source")
    if not source:
        warn(f"{run.path}: run.json names no data source; no thumbnails")
        return None
    options = run.rec.info.get("options") or {}
    try:
        shaping = parse_resize(options.get("resize"), bool(options.get("center_crop")))
        ds = (load_selected(run.task, str(source), None, Selection((), None, None, 0), shaping=shaping)[0]
              if shaping else run.task.load_data(str(source), None))  # resized as the run was (--resize)
    except Exception as exc:  # noqa: BLE001 - a missing data file only costs the thumbnails
        warn(f"{run.path}: cannot load the data {source} for thumbnails ({first_line(exc)}); the page shows none")
        return None
    sha = run.rec.data_sha256
    if sha and getattr(ds, "sha256", None) and ds.sha256 != sha:
        warn(f"{run.path}: the data {source} changed since the run (sha256 differs); no thumbnails")
        return None
    return ds


def sample_sets(runs: list[ReportRun], max_samples: int, thumbnails: bool, warn: Warn) -> dict[str, SampleSet]:
    """One sample set per data key, in run order."""
    groups: dict[str, list[ReportRun]] = {}
    for r in runs:
        groups.setdefault(r.data_key, []).append(r)
    out = {}
    for key, members in groups.items():
        ids = np.unique(np.concatenate([r.rows.sample_ids() for r in members]))
        total = len(ids)
        if total > max_samples:
            ids = ids[np.unique(np.linspace(0, total - 1, max_samples).round().astype(int))]
        loaded = None
        for r in members if thumbnails else []:
            loaded = _load_dataset(r, warn)
            if loaded is not None:
                break
        out[key] = SampleSet(key, members, ids, total, loaded)
    return out


def _media(s: SampleSet) -> dict[str, Any]:
    """Thumbnails (and clouds of point clouds) of the shown samples, and the thumbnail scale."""
    pos_of = {int(v): i for i, v in enumerate(np.asarray(s.inputs.index))}
    thumbs: list[Any] = []
    clouds: list[Any] = []
    scale = 1.0
    for sid in s.ids:
        pos = pos_of.get(int(sid))
        if pos is None:
            thumbs.append(None)
            clouds.append(None)
            continue
        uris, cloud, sc = sample_media(s.inputs.inputs[pos].numpy(), s.input_kind)
        thumbs.append(uris)
        clouds.append(cloud)
        scale = scale if sc is None else sc
    return {"thumbs": thumbs, "clouds": clouds if s.input_kind == "points" else None, "thumbScale": scale}


def dataset_json(index: int, s: SampleSet) -> dict[str, Any]:
    """A data set of the page: the shown sample ids, their classes (as summary.csv counts them, named
    by the run record's class names), labels and thumbnails."""
    r0 = s.runs[0]
    class_names = r0.rec.class_names
    classes: dict[int, tuple[int, str]] = {}
    for r in s.runs:
        for sid, c in r.rows.classes(class_names).items():
            classes.setdefault(sid, c)
    labels = r0.rows.labels()
    first_id = {}
    for cid, cname in classes.values():
        first_id[cname] = min(first_id.get(cname, cid), cid)
    names = sorted(first_id, key=natural_key)
    out: dict[str, Any] = {
        "id": f"d{index}", "task": r0.task.name, "input": s.input_kind, "source": r0.data.get("source", ""),
        "samples": [int(sid) for sid in s.ids], "total": int(s.total),
        "classes": [names.index(classes[int(sid)][1]) if int(sid) in classes else -1 for sid in s.ids],
        "classNames": names, "labels": [labels.get(int(sid), -1) for sid in s.ids],
        "labelNames": class_names or [], "thumbs": None, "clouds": None, "thumbScale": 1.0,
    }
    if s.inputs is not None:
        out.update(_media(s))
    return out


# ------------------------------------------------------------------------------------------
# Summary, checkpoints, runs


def summary_rows(runs: list[ReportRun]) -> list[dict[str, Any]]:
    """One row per run, model and group: summary.json's numbers, one per quantity (the columns of
    :func:`nero_cli.report_summary.summary_columns`, by label)."""
    columns = summary_columns(runs)
    rows = []
    for r in runs:
        for model, groups in r.rec.summary["metrics"].items():
            for group, vals in groups.items():
                values = {k: rounded(x) for k, x in row_values(r.task.name, vals, columns).items()}
                rows.append({"entry": r.display.get(str(model), str(model)), "run": r.name, "group": str(group),
                             "spec": r.rec.plots[group]["spec"], "values": values})
    return rows


def higher_is_better(runs: list[ReportRun]) -> dict[str, bool]:
    """The direction of every summary quantity of the runs (by column label), in the tasks' order."""
    return {c.label: bool(c.higher) for c in summary_columns(runs)}


def epoch_metric(runs: list[ReportRun]) -> str | None:
    """The summary key drawn against epochs: the first orbit mean in the first task's closing table."""
    for r in runs:
        keys = r.task.summary_keys
        for k in r.task.table_columns:
            if k in keys and keys[k].reduction == "orbit":
                return k
    return None


def _series_stem(model: str, epoch: int) -> str:
    """The model name with its epoch number replaced by '#'."""
    digits = [m for m in re.finditer(r"\d+", model) if int(m.group()) == epoch]
    if not digits:
        return model
    m = digits[-1]
    return model[: m.start()] + "#" + model[m.end():]


def epoch_series(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Models whose names carry an epoch/step number, grouped into series (name with the number
    replaced by '#'); only series with at least two distinct epochs are kept."""
    series: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        ep = epoch_of(e["model"])
        if ep is not None:
            series.setdefault(_series_stem(e["model"], ep), []).append({**e, "epoch": ep})
    out = []
    for stem, items in series.items():
        epochs = [i["epoch"] for i in items]
        if len(set(epochs)) < 2:
            continue
        if len(set(epochs)) == len(epochs):
            out.append((stem, items))
            continue
        by_run: dict[str, list] = {}  # the same epoch twice: one series per run
        for i in items:
            by_run.setdefault(i["run"], []).append(i)
        out += [(f"{run}/{stem}", its) for run, its in by_run.items() if len({i["epoch"] for i in its}) >= 2]
    return [{"name": name, "points": [{"epoch": p["epoch"], "entry": p["display"]}
                                      for p in sorted(items, key=lambda i: i["epoch"])]} for name, items in out]


def runs_json(runs: list[ReportRun]) -> list[dict[str, Any]]:
    return [{"name": r.name, "dir": str(r.path), "task": r.task.name, "reference": r.rec.reference,
             "n_samples": r.rec.summary.get("n_samples"), "models": [r.display[m] for m in r.models],
             "data": r.data.get("source"), "command": r.rec.info.get("command"),
             "finished": r.rec.info.get("finished")} for r in runs]


def metric_info(views: list[View]) -> dict[str, dict[str, Any]]:
    """Label, unit, range, direction and results column of every metric shown, from the task's registry."""
    info: dict[str, dict[str, Any]] = {}
    for v in views:
        for name in v.json["metrics"]:
            m = v.run.task.metric(name)
            info.setdefault(name, {"label": m.label, "unit": m.unit, "range": list(m.range) if m.range else None,
                                   "higher": bool(m.higher_is_better), "column": m.column})
    return dict(sorted(info.items()))


# ------------------------------------------------------------------------------------------
# The page data


@dataclass
class Reducer:
    """Reduction settings and the progress count shared by every entry of the page."""

    methods: Sequence[str]
    seed: int
    warn: Warn
    progress: Callable[[str], None] | None
    total: int = 0
    done: int = 0

    def step(self, what: str, method: str) -> None:
        self.done += 1
        if self.progress:
            self.progress(f"{REDUCTION_NAMES[method]} {what} ({self.done}/{self.total})")


def build_report_data(runs: list[ReportRun], *, max_samples: int = DEFAULT_MAX_SAMPLES,
                      metrics: Sequence[str] | None = None, reductions: Sequence[str] = ("pca", "ica", "isomap", "tsne"),
                      thumbnails: bool = True, seed: int = 0, warn: Warn = lambda s: None,
                      progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The JSON the page reads: views (one per task x group spec), per-sample data, reductions, and
    which column holds the resampling floor and under which metrics the page draws it."""
    entries = [{"display": r.display[m], "run": r.name, "model": m} for r in runs for m in r.models]
    colors = model_colors([e["display"] for e in entries])
    sets = sample_sets(runs, max_samples, thumbnails, warn)
    for i, s in enumerate(sets.values()):
        s.json = dataset_json(i, s)
    views = build_views(runs, {k: s.json for k, s in sets.items()}, metrics)
    reducer = Reducer(list(reductions), seed, warn, progress)
    reducer.total = sum(len(v.json["metrics"]) * len(mb.run.models) for v in views for mb in v.members) * len(reductions)
    for v in views:
        ids = sets[v.run.data_key].ids
        for mb in v.members:
            for m in mb.run.models:
                e = entry_json(v, mb, m, ids, colors[mb.run.display[m]], reducer)
                if e is not None:
                    v.json["entries"].append(e)
    return {
        "views": [v.json for v in views],
        "datasets": {s.json["id"]: s.json for s in sets.values()},
        "metricInfo": metric_info(views),
        "reductions": [{"id": m, "name": REDUCTION_NAMES[m]} for m in reductions],
        "summary": {"rows": summary_rows(runs), "higher": higher_is_better(runs)},
        "epochs": epoch_series(entries),
        "epochMetric": epoch_metric(runs),
        "boolColumns": sorted({c for r in runs for c in r.rows.bool_columns()}),
        "runs": runs_json(runs),
        "maxSamples": max_samples,
        "floor": {"column": FLOOR_COLUMN, "metrics": list(FLOORED_METRICS), "label": "resampling floor"},
        "camera": rounded_list(camera_matrix().reshape(-1), 9),
    }


__all__ = ["ReportRun", "load_run", "name_runs", "build_report_data", "DEFAULT_MAX_SAMPLES"]
