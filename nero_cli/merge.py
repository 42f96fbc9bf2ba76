"""Rebuilding one sweep from its shards' run records (``nero merge``), without loading any model.

The rows themselves are each shard's spill (``SHARD/shard/``, see :mod:`nero_cli.spill`),
replayed shard by shard into the merged run's stream by :func:`nero_cli.run.merge_runs`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from orbits import parse_spec

from .core import Evaluation, param_columns, plan_orbits
from .data import load_recorded
from .models import LoadedModel, ModelMeta
from .prepare import Prepared
from .runner import ModelRunner, resolve_device
from .tasks import get_task


def _recorded_models(info: dict[str, Any]) -> list[ModelRunner]:
    """Runners over the models named in a run.json; they carry names and provenance and never run."""
    dev = resolve_device("cpu")
    return [ModelRunner(LoadedModel(name=m["name"], module=None, source=m["source"], format=m["format"],  # type: ignore[arg-type]
                                    sha256=m["sha256"], meta=ModelMeta()), dev) for m in info["models"]]


def merged_run(infos: Sequence[tuple[Path, dict[str, Any]]]) -> tuple[Prepared, Evaluation]:
    """The prepared state and evaluation (without rows) of the whole sweep, from its shards' records."""
    info = infos[0][1]
    record, options = info["record"], info["options"]
    task = get_task(record["task"])
    shape = (info.get("data") or {}).get("input_shape")
    channels = shape[0] if shape and task.input_kind != "points" else None
    dataset = load_recorded(task, options, info.get("data") or {}, channels, record["class_names"])
    size = dataset.size if task.input_kind != "points" else None
    specs = [parse_spec(p["spec"], image_size=size) for p in record["plots"].values()]
    plans = plan_orbits(specs)
    runners = _recorded_models(info)
    p = Prepared(runners, task, dataset, specs, record["class_names"], options["plot_metric"], resolve_device("cpu"),
                 options["normalize"], can_run=False)
    ev = Evaluation(table=None, plans=plans, reference=record["reference"], param_columns=param_columns(plans),
                    task=task.name)
    return p, ev
