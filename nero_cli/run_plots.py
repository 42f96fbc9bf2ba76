"""The plots of a run folder, drawn from its record and tables (and, for per-pixel maps, its models)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from orbits import parse_spec

from .errors import OptionError
from .plots import PlotSpec, metrics_with_floor, plot_aggregate, plot_error_maps, plot_individual
from .runner import ModelRunner
from .summary import rank_samples
from .tasks import TaskRecord, get_task
from .tasks.base import Chunk


def parse_plot_samples(text: str) -> tuple[str, int] | list[int]:
    """``worst:5``, ``best:2`` or a list ``3,17``; ``none`` for no individual plots."""
    text = text.strip()
    if text in ("", "none"):
        return []
    if ":" in text:
        how, _, k = text.partition(":")
        if how not in ("worst", "best") or not k.isdigit():
            raise OptionError(f"--plot-samples expects worst:K, best:K or ids like 3,17; got '{text}'")
        return how, int(k)
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise OptionError(f"--plot-samples expects worst:K, best:K or ids like 3,17; got '{text}'") from None


def safe_name(label: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)


def pick_samples(table: pd.DataFrame, task: TaskRecord, wanted: Any) -> list[int]:
    """Sample ids for individual plots: ranked by the primary metric, or the ids asked for."""
    if isinstance(wanted, tuple):
        how, k = wanted
        prim = task.metric(task.primary)
        return rank_samples(table, how=how, k=k, by=prim.column, higher_is_better=prim.higher_is_better)
    known = set(int(s) for s in table["sample"].unique())
    missing = [s for s in wanted if s not in known]
    if missing:
        raise OptionError(f"--plot-samples: sample id(s) {missing} are not in the evaluated data (ids 0..{max(known)})")
    return list(wanted)


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


def write_plots(plot_dir: Path, table: pd.DataFrame, agg: pd.DataFrame, record: dict[str, Any], dataset: Any,
                runners: Sequence[ModelRunner] | None, metric: str, wanted: Any) -> list[Path]:
    """Aggregate and individual NERO plots of every group, and the task's per-pixel maps when the
    models are at hand; returns the files written. A group with a non-zero resampling floor also
    gets its aggregate ``equivariance_error`` plot, the floor shaded under it, whatever ``metric`` is."""
    task = get_task(record["task"])
    models = list(dict.fromkeys(table["model"].astype(str)))
    plot_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    sample_ids = pick_samples(table, task, wanted)
    for label, info in record["plots"].items():
        title = f"{label} ({info['n_elements']} elements)"
        spec = PlotSpec(group=label, kind=info["kind"], params=tuple(info["params"]), title=title)
        group_agg = agg[agg["group"] == label]
        for m in metrics_with_floor(group_agg, metric):
            paths += plot_aggregate(group_agg, spec, m, models, plot_dir,
                                    stem=f"aggregate_{safe_name(label)}_{m}", task=task.name)
        rows = table[table["group"] == label]
        for sid in sample_ids:
            pos = int(np.nonzero(dataset.index == sid)[0][0])
            thumb = task.thumbnail(dataset.inputs[pos].numpy())
            if task.pixel_map is not None and runners:
                with torch.inference_mode():
                    maps = pixel_maps(task, runners, dataset, pos, info["spec"], record["reference"])
                paths += plot_error_maps(maps, _element_labels(info["spec"], dataset), models, sid, thumb, plot_dir,
                                         stem=f"sample_{sid}_{safe_name(label)}_error_maps", title=title,
                                         label=task.pixel_map_label)
            paths += plot_individual(rows, spec, metric, models, sid, thumb, plot_dir,
                                     stem=f"sample_{sid}_{safe_name(label)}_{metric}", task=task.name)
    return paths


def _element_labels(spec_text: str, dataset: Any) -> list[str]:
    return parse_spec(spec_text, image_size=dataset.size).group.with_identity().labels()
