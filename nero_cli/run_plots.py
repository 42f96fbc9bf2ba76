"""The plots of a run folder, drawn from its record and tables (and, for per-pixel maps, its models).

:func:`write_plots` is what ``nero evaluate`` and ``nero merge`` draw into ``RUN/plots``;
:func:`replot_run` is ``nero plot RUN``: the same plots again from the finished run folder alone
(read through :func:`nero_cli.runrecord.open_run`, the data loaded only for thumbnails, no model),
written into a folder of their own. File names are :mod:`nero_cli.plot_files`'s; which samples get
individual plots, :mod:`nero_cli.plot_samples`'.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from orbits import parse_spec

from .errors import OptionError, OutputError
from .merge import DataNotFound, recorded_data
from .outdir import building, claim, listing
from .plot_files import aggregate_stem, error_maps_stem, group_slugs, sample_stem
from .plot_rows import run_table
from .plot_samples import DEFAULT, Pick, parse_plot_samples, pick_samples
from .plots import PlotSpec, metrics_with_floor, plot_aggregate, plot_error_maps, plot_individual, safe_stem
from .runner import ModelRunner
from .runrecord import RunRecord, json_text, open_run, write_atomic
from .tasks import TaskRecord, get_task
from .tasks.base import Chunk

#: The manifest of a ``nero plot`` folder.
PLOTS_JSON = "plots.json"


def safe_name(label: str) -> str:
    return safe_stem(label)


def pixel_maps(task: TaskRecord, runners: Sequence[ModelRunner], dataset: Any, pos: int, spec_text: str,
               reference: str) -> dict[str, np.ndarray]:
    """The task's per-pixel error maps of one sample over the orbit, per model (recomputed for the
    plotted samples only, through the same runner as the table, so the sweep never holds them)."""
    spec = parse_spec(spec_text, image_size=dataset.size)
    group = spec.group.with_identity()
    spec = type(spec)(text=spec.text, group=group, action=spec.action, action_defaults=spec.action_defaults)
    action, output = task.make_action(spec, dataset), task.make_output(spec, dataset)
    x = dataset.inputs[pos : pos + 1]
    g = len(group)
    chunk = Chunk(identity=group.identity_index, reference=reference,
                  labels=dataset.labels[pos : pos + 1] if dataset.labels is not None else None,
                  targets={k: v[pos : pos + 1] for k, v in dataset.targets.items()}, output=output, spec=spec)
    out = {}
    for r in runners:
        y = r.orbit(x.to(r.device), action, g, g, task.prepare)
        out[r.name] = task.pixel_map(output.pull_back(y, range(g)), chunk)[:, 0].cpu().numpy()  # type: ignore[misc]
    return out


def _position(dataset: Any, sid: int) -> int | None:
    hits = np.nonzero(np.asarray(dataset.index) == sid)[0] if dataset is not None else []
    return int(hits[0]) if len(hits) else None


def as_stored(df: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """``df`` with its float columns (or ``columns``) as ``results.csv`` and ``summary.csv`` store them
    (9 significant digits, :func:`nero_cli.runrecord.write_table`): plots drawn while a run is written
    and drawn again from the folder by ``nero plot`` are then the same to the byte."""
    out = df.copy()
    for c in columns if columns is not None else [c for c in df.columns if df[c].dtype == np.float64]:
        out[c] = np.array([float(f"{v:.9g}") for v in out[c].to_numpy(dtype=np.float64)], dtype=np.float64)
    return out


def write_plots(plot_dir: Path, table: pd.DataFrame, agg: pd.DataFrame, record: dict[str, Any], dataset: Any,
                runners: Sequence[ModelRunner] | None, metric: str | Sequence[str], wanted: list[Pick], *,
                own_scale: bool = False, option: str = "--plot-samples") -> list[Path]:
    """Aggregate and individual NERO plots of every group for each metric in ``metric``, and the task's
    per-pixel maps when the models are at hand; returns the files written. A group with a non-zero
    resampling floor also gets its aggregate ``equivariance_error`` plot, the floor shaded under it.
    Without ``dataset`` (or for a sample it lacks) individual plots have no thumbnail."""
    task = get_task(record["task"])
    metrics = [metric] if isinstance(metric, str) else list(metric)
    models = list(dict.fromkeys(table["model"].astype(str)))
    class_names = record.get("class_names")
    plot_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    prim = task.metric(task.primary)
    keys = table[["model", "sample", "group", "element", prim.column]]
    stored = as_stored(keys, [prim.column]) if keys[prim.column].dtype == np.float64 else keys
    sample_ids = pick_samples(stored, prim.column, prim.higher_is_better, wanted, option)
    table = as_stored(table[table["sample"].isin(sample_ids)])
    agg = as_stored(agg)
    for label, slug in group_slugs(record["plots"]).items():
        info = record["plots"][label]
        spec = PlotSpec(group=label, kind=info["kind"], params=tuple(info["params"]), spec=info.get("spec", ""),
                        title=f"{label} ({info['n_elements']} elements)")
        group_agg = agg[agg["group"] == label]
        for m in dict.fromkeys(x for mm in metrics for x in metrics_with_floor(group_agg, mm)):
            paths += plot_aggregate(group_agg, spec, m, models, plot_dir, stem=aggregate_stem(slug, m),
                                    task=task.name, own_scale=own_scale)
        rows = table[table["group"] == label]
        for sid in sample_ids:
            pos = _position(dataset, sid)
            thumb = task.thumbnail(dataset.inputs[pos].numpy()) if pos is not None else None
            if task.pixel_map is not None and runners and pos is not None:
                with torch.inference_mode():
                    maps = pixel_maps(task, runners, dataset, pos, info["spec"], record["reference"])
                paths += plot_error_maps(maps, _element_labels(info["spec"], dataset), models, sid, thumb, plot_dir,
                                         stem=error_maps_stem(slug, sid), title=spec.title,
                                         label=task.pixel_map_label,
                                         description=f"group: {label}; spec: {spec.spec}; sample: {sid}")
            for m in metrics:
                paths += plot_individual(rows, spec, m, models, sid, thumb, plot_dir, stem=sample_stem(slug, m, sid),
                                         task=task.name, class_names=class_names, own_scale=own_scale)
    return paths


def _element_labels(spec_text: str, dataset: Any) -> list[str]:
    return parse_spec(spec_text, image_size=dataset.size).group.with_identity().labels()


# ----------------------------------------------------------------------------------------
# nero plot RUN


def default_out(run_dir: Path | str) -> Path:
    """Where ``nero plot RUN`` writes by default: ``RUN-plots`` beside the run folder."""
    run_dir = Path(run_dir)
    return run_dir.parent / f"{run_dir.name}-plots"


def _metrics(run: RunRecord, metrics: Sequence[str] | None) -> list[str]:
    """The metrics to plot: those asked for, else the run's ``--plot-metric`` (its task's primary metric)."""
    task = run.task
    chosen = list(dict.fromkeys(metrics or [run.info.get("options", {}).get("plot_metric") or task.primary]))
    bad = [m for m in chosen if m not in task.plot_metrics]
    if bad:
        raise OptionError(f"--metric for {task.name} must be among {', '.join(task.plot_metrics)}; got "
                          f"{', '.join(bad)} (see 'nero list metrics {task.name}')")
    return chosen


def _thumbnail_data(run: RunRecord, ids: Sequence[int], warn: Callable[[str], None], given: Path | str | None) -> Any:
    """The run's data, for thumbnails, read as the run read it and checked against its sha256
    (:func:`nero_cli.merge.recorded_data`): at ``given`` (``--data``; else a DataError, exit 4), or
    where run.json records it (else None, with a warning: the plots have no thumbnail)."""
    source = (run.info.get("data") or {}).get("source")
    if not ids or (not source and given is None):
        return None
    try:
        return recorded_data([run.info], given, "pass --data PATH where that data is now, or --no-thumbnails")
    except DataNotFound as exc:
        if given is not None:
            raise
        warn(f"cannot load the data {source} for thumbnails ({exc.found}); individual plots have none "
             "(--data PATH: where that data is now)")
        return None


def replot_run(run_dir: Path | str, out: Path | str | None = None, *, metrics: Sequence[str] | None = None,
               samples: str | None = None, overwrite: bool = False, own_scale: bool = False,
               thumbnails: bool = True, warn: Callable[[str], None] = lambda s: None,
               data: Path | str | None = None) -> tuple[Path, list[Path]]:
    """``nero plot``: every plot of a finished run drawn again into ``out`` (default ``RUN-plots``).

    ``metrics`` default to the run's ``--plot-metric`` and ``samples`` (the ``--plot-samples``
    syntax) to the run's own, so that by default the files are those ``nero evaluate`` wrote into
    ``RUN/plots``, byte for byte, less the per-pixel error maps (they need the models). ``out`` is
    written like every nero folder (locked, built aside, swapped in whole; an existing one replaced
    only with ``overwrite`` and only when its manifest, ``plots.json``, lists every file in it), and
    never inside the run folder. Returns the folder and the plot files in it."""
    run = open_run(run_dir, "RUN")
    out = Path(out) if out is not None else default_out(run.path)
    if out.resolve() == run.path.resolve() or run.path.resolve() in out.resolve().parents:
        raise OutputError(f"--out {out}: is inside the run folder {run.path}; nero never adds files to a finished "
                          f"run; choose a folder outside it (default {default_out(run.path)})")
    chosen = _metrics(run, metrics)
    text = samples if samples is not None else run.info.get("options", {}).get("plot_samples") or DEFAULT
    picks = parse_plot_samples(text, "--samples")
    prim = run.task.metric(run.task.primary)
    table = run_table(run, picks, prim.column, prim.higher_is_better)
    ids = pick_samples(table, prim.column, prim.higher_is_better, picks, "--samples")
    data = _thumbnail_data(run, ids, warn, data) if thumbnails else None
    with claim(out, "plots", overwrite, protect=[run.path]):
        with building(out, "plots") as tmp:
            files = write_plots(tmp, table, run.aggregate(), run.record, data, None, chosen, picks,
                                own_scale=own_scale, option="--samples")
            manifest = {"written_by": "nero", "kind": "plots", "run": str(run.path), "metrics": chosen,
                        "samples": ids, "own_scale": own_scale,
                        "groups": {slug: {"label": label, **{k: run.plots[label][k] for k in ("spec", "kind")}}
                                   for label, slug in group_slugs(run.plots).items()},
                        "files": sorted({*listing(tmp), PLOTS_JSON})}
            write_atomic(tmp / PLOTS_JSON, json_text(manifest), "file")
    return out, [out / f.relative_to(tmp) for f in files]


__all__ = ["write_plots", "replot_run", "default_out", "pixel_maps", "parse_plot_samples", "safe_name", "PLOTS_JSON"]
