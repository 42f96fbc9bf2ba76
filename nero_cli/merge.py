"""Rebuilding one sweep from its shards' run records (``nero merge``), without loading any model.

The rows themselves are each shard's spill (``SHARD/shard/``, see :mod:`nero_cli.spill`),
replayed shard by shard into the merged run's stream by :func:`nero_cli.run.merge_runs`. The
data is not read to merge: only the plots' thumbnails need it, and :func:`recorded_data` then
finds it where run.json records it and checks that it is the data the run saw (its sha256).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from orbits import parse_spec

from .core import Evaluation, param_columns, plan_orbits
from .data import load_recorded
from .dataset import Dataset
from . import runrecord as rr
from .errors import DataError, OptionError, OutputError, first_line
from .models import LoadedModel, ModelMeta
from .prepare import Prepared
from .runner import ModelRunner, resolve_device
from .spill import SpillReader
from .tar_shards import is_shards
from .tasks import get_task


def _recorded_models(info: dict[str, Any]) -> list[ModelRunner]:
    """Runners over the models named in a run.json; they carry names and provenance and never run."""
    dev = resolve_device("cpu")
    return [ModelRunner(LoadedModel(name=m["name"], module=None, source=m["source"], format=m["format"],  # type: ignore[arg-type]
                                    sha256=m["sha256"], meta=ModelMeta(), code_sha256=m.get("code_sha256") or {}), dev)
            for m in info["models"]]


def shard_infos(run_dirs: Sequence[Path], spill: str) -> list[tuple[Path, dict[str, Any]]]:
    """The shards' run.json, checked to be complete shards of one sweep (each with its rows in
    the folder ``spill``), in shard order."""
    if not run_dirs:
        raise OptionError("no RUN_DIR given; pass the run directories of every --shard i/n")
    infos = []
    for d in map(Path, run_dirs):
        info = rr.complete_info(d)  # as gate, report and plot: a missing RUN_DIR exits 2, an unfinished one 5
        if info.get("shard") and (d / "shard.npz").is_file():
            raise OutputError(f"{d}: a shard written by an older nero (shard.npz); rerun that shard, then merge")
        if not info.get("shard") or not SpillReader.exists(d / spill):
            raise OutputError(f"{d}: not a shard (run it with --shard i/n); nothing to merge")
        infos.append((d, info))
    n = infos[0][1]["shard"]["count"]
    if len({i["shard"]["sweep"] for _, i in infos}) > 1:
        raise OutputError("the shards come from different sweeps (models, data, groups or options differ); "
                          "merge the shards of one command")
    if len({i["shard"]["count"] for _, i in infos}) > 1:
        given = ", ".join(f"{d} is {i['shard']['index']}/{i['shard']['count']}" for d, i in infos)
        raise OutputError(f"the shards come from different splits (i/n with different n: {given}); "
                          "merge the shards 0/n .. n-1/n of one --shard split")
    got = sorted(i["shard"]["index"] for _, i in infos)
    if got != list(range(n)):
        missing = sorted(set(range(n)) - set(got))
        raise OutputError(f"expected shards 0..{n - 1} once each; " + (f"missing {missing}" if missing else f"got {got}"))
    return sorted(infos, key=lambda t: t[1]["shard"]["index"])


def merged_warnings(infos: Sequence[tuple[Path, dict[str, Any]]], fresh: Sequence[str]) -> list[str]:
    """The warnings one process would have recorded: the shards' (in order, once each), with those
    each shard drew from its own summary replaced by ``fresh``, drawn from the whole run's."""
    before: list[str] = []
    after: list[str] = []
    for _, info in infos:
        found = list(info.get("warnings") or [])
        start, stop = info["shard"].get("summary_warnings") or (len(found), len(found))
        before += found[:start]
        after += found[stop:]
    return list(dict.fromkeys([*before, *fresh, *after]))


def merged_run(infos: Sequence[tuple[Path, dict[str, Any]]]) -> tuple[Prepared, Evaluation]:
    """The prepared state and evaluation (without rows) of the whole sweep, from its shards' records.
    Its ``dataset`` is None: nothing but the plots' thumbnails reads the data (:func:`recorded_data`)."""
    info = infos[0][1]
    record, options = info["record"], info["options"]
    task = get_task(record["task"])
    size = (info.get("data") or {}).get("image_size")
    size = tuple(size) if size and task.input_kind != "points" else None
    specs = [parse_spec(p["spec"], image_size=size) for p in record["plots"].values()]
    plans = plan_orbits(specs)
    runners = _recorded_models(info)
    p = Prepared(runners, task, None, specs, record["class_names"], options["plot_metric"],  # type: ignore[arg-type]
                 resolve_device("cpu"), options["normalize"], can_run=False)
    ev = Evaluation(table=None, plans=plans, reference=record["reference"], param_columns=param_columns(plans),
                    task=task.name)
    return p, ev


def data_path(source: str) -> dict[str, str]:
    """run.json's ``data.path``: the absolute path of ``--data`` as the run resolved it (none for
    ``sample:NAME`` and in-memory data), so that merge and plot find it from any folder."""
    if not source or source.startswith(("sample:", "<")):
        return {}
    return {"path": os.path.abspath(source)}


class DataNotFound(DataError):
    """The recorded data is nowhere it was looked for; ``found``: what was found where."""

    def __init__(self, message: str, found: str) -> None:
        super().__init__(message)
        self.found = found


def _present(spec: str) -> bool:
    return spec.startswith("sample:") or is_shards(spec) or Path(spec).exists()


def recorded_data(infos: Sequence[dict[str, Any]], given: str | Path | None, hint: str) -> Dataset:
    """The samples of a recorded run (``infos``: its run.json, or its shards'), read again as run.json
    records them and checked to be the same data (its ``sha256``). Looked for at ``given`` (``--data``)
    alone, else at the absolute path run.json records (``data.path``), then at ``--data`` as it was
    given (relative to the working directory). None there holding the recorded data is a DataError
    (:class:`DataNotFound`, exit 4) in one line, saying what was found where and ending with ``hint``
    (what to do)."""
    info = infos[0]
    record, options, data_info = info["record"], info.get("options") or {}, info.get("data") or {}
    task = get_task(record["task"])
    source = str(data_info.get("source") or options.get("data") or "")
    want = data_info.get("sha256")
    paths = [str((i.get("data") or {}).get("path") or "") for i in infos]
    candidates = [str(given)] if given is not None else list(dict.fromkeys(c for c in [*paths, source] if c))
    shape = data_info.get("input_shape")
    channels = shape[0] if shape and task.input_kind != "points" else None
    found = []
    for spec in candidates:
        if not _present(spec):
            found.append(f"{spec}: not found")
            continue
        try:
            data = load_recorded(task, {**options, "data": spec}, data_info, channels, record.get("class_names"))
        except DataError as exc:
            found.append(first_line(exc))
            continue
        if want and data.sha256 != want:
            found.append(f"{spec}: other data (sha256 {data.sha256[:12]}...)")
            continue
        return data
    found_text = "; ".join(found) or "no path recorded"
    raise DataNotFound(f"the thumbnails need the run's data {source}" + (f" (sha256 {want[:12]}...)" if want else "")
                       + f", found nowhere ({found_text}); {hint}", found_text)
