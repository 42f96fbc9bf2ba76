"""``nero evaluate`` and ``nero merge`` as importable functions: load, evaluate, write a run folder.

The run folder is built under a temporary sibling name and renamed into place only when
every file is written (see :mod:`nero_cli.runrecord`), so a failed or interrupted run never
leaves a folder that looks complete. The sweep streams its rows into that folder chunk by chunk
(:mod:`nero_cli.stream`); summaries come from running sums, and no table of every row is held.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import shutil
import tempfile
from contextlib import nullcontext
from importlib import metadata
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, Union

import numpy as np
import torch

from . import __version__
from . import runrecord as rr
from .advice import advice
from .cache import Cache, make_key
from .core import Evaluation, element_weights, evaluate, sweep_layout
from .errors import NeroError, OptionError
from .merge import data_path, merged_run, merged_warnings, recorded_data, shard_infos
from .outdir import check_target, claim, commit, discard, listing
from .plot_samples import DEFAULT as DEFAULT_PLOT_SAMPLES, parse_plot_samples
from .prepare import Prepared, estimate_seconds, parse_normalize, prepare, resolve_batch_size
from .resampling import coverage_warnings
from .runner import LONG_RUN_SECONDS
from .shard import chunk_samples, distributed, finish_distributed, parse_shard, receive_rows, send_rows, shard_positions
from .spill import SpillReader
from .dataset import Dataset
from .stream import RunStream, Totals
from .summary import aggregate, summarise

if TYPE_CHECKING:
    import pandas as pd
else:
    from nero_cli.lazy import pandas as pd


#: The aggregate curves: summary.csv's columns (a run, from the running sums) or a table (the Python API).
Aggregate = Union[Mapping[str, np.ndarray], "pd.DataFrame"]

#: Version of summary.json's layout and key names (2: worst_element_*, robust_*, no mean_confidence).
SCHEMA_VERSION = 2
#: In a partial run folder: the streamed rows (CSV parts and spill). In a shard's run folder: its spill.
STREAM, SHARD = "stream", "shard"


@dataclass
class RunResult:
    out: Path
    #: summary.csv's columns (the aggregate curves; :attr:`aggregate` is their table)
    curves: Mapping[str, np.ndarray]
    summary: dict[str, Any]
    plots: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Names of the models evaluated with random weights (``--random-init``).
    random_init: list[str] = field(default_factory=list)
    #: run.json's ``cache`` record (hits and misses of the result cache; None without it).
    cache: dict[str, int] | None = None

    @property
    def aggregate(self) -> pd.DataFrame:
        """summary.csv's table (the aggregate curves), built when asked for."""
        return pd.DataFrame(dict(self.curves))

    @property
    def table(self) -> pd.DataFrame:
        """``results.csv`` of the run, read when asked for (the sweep itself never holds every row)."""
        return rr.open_run(self.out).results()


def check_out_dir(out: Path, overwrite: bool, kind: str = "run") -> None:
    """Refuse a target nero must not write (see :func:`nero_cli.outdir.check_target`)."""
    check_target(Path(out), kind, overwrite)


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 60:.0f} minutes"


def _versions() -> dict[str, str]:
    # pandas' installed version, read without importing it (a run writes its tables without pandas)
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "pandas": metadata.version("pandas"), "nero": __version__}


def compute(p: Prepared, *, reference: str = "auto", batch_size: int | str = 256, seed: int = 0,
            score_threshold: float = 0.5, cache: Any = None, chunks: Any = None, chunk_samples: int | None = None,
            progress_factory: Callable[[int], Any] | None = None, floor: bool = True,
            stream: RunStream | None = None,
            gather: Callable[[], None] | None = None) -> tuple[Evaluation, Aggregate, dict[str, Any]]:
    """Run the sweep; return the evaluation, the aggregate curves and the summary (``floor=False``:
    skip the round trips of the resampling floor; its columns are then empty). With ``stream``
    the rows go to disk as they are evaluated (``Evaluation.table`` is None) and ``gather`` (torchrun)
    adds the other ranks' rows before the sums are closed; a ``spill_only`` stream gets no summary."""
    batch_size = resolve_batch_size(p, batch_size)
    data_key = hashlib.sha256((p.dataset.sha256 + ":" + ",".join(map(str, p.dataset.index.tolist()))).encode()).hexdigest()
    bar = progress_factory(p.n_inputs()) if progress_factory else None
    r0 = p.runners[0] if p.runners else None
    options = {"score_threshold": score_threshold, "amp": bool(r0 and r0.amp),
               "channels_last": bool(r0 and r0.channels_last), **({} if floor else {"floor": False})}
    try:
        ev = evaluate(p.runners, p.dataset, p.specs, p.task, reference=reference, batch_size=batch_size, seed=seed,
                      options=options, progress=bar.advance if bar else None, cache=cache, data_key=data_key,
                      chunks=chunks, chunk_samples=chunk_samples, sink=stream)
    finally:
        if bar:
            bar.close()
    if gather is not None:
        gather()
    if stream is not None and stream.spill_only:
        return ev, {}, {}
    agg, summary = tabulate(p, ev, stream.finish() if stream is not None else None)
    p.warnings += summary_warnings(p, summary)
    return ev, agg, summary


def summary_warnings(p: Prepared, summary: dict[str, Any]) -> list[str]:
    """The warnings drawn from a sweep's summary: content leaving the frame, unconfident models."""
    return coverage_warnings(summary) + advice(summary, p.task, n_classes=len(p.class_names) if p.class_names else None)


def tabulate(p: Prepared, ev: Evaluation, totals: Totals | None = None) -> tuple[Aggregate, dict[str, Any]]:
    """The aggregate curves and the summary: from a streamed run's running sums (``totals``: the
    curves as columns), or from the evaluation's table (the curves as a table)."""
    if totals is None:
        agg = aggregate(ev.table, ev.param_columns, p.task, p.class_names)
        n_samples = int(ev.table["sample"].nunique())
        metrics = summarise(ev.table, p.task, {pl.label: element_weights(pl) for pl in ev.plans})
    else:
        agg, n_samples, metrics = totals.aggregate, totals.n_samples, totals.metrics
    summary = {
        "schema_version": SCHEMA_VERSION,
        "task": p.task.name,
        "reference": ev.reference,
        "n_samples": n_samples,
        "models": [m.name for m in p.models],
        "groups": {pl.label: {"spec": pl.spec.canonical, "n_elements": len(pl.group), "plot": pl.group.plot_kind}
                   for pl in ev.plans},
        "higher_is_better": {k: sk.higher_is_better for k, sk in p.task.summary_keys.items()},
        "metrics": metrics,
    }
    return agg, summary


@dataclass
class _Stage:
    """The partial folder of a run being written, and its chunk store."""

    tmp: Path
    config: str
    chunks: Cache | None
    started: _dt.datetime


def _open_stage(out: Path, config: str, resume: bool, started: _dt.datetime) -> _Stage:
    tmp = rr.partial_dir(out)
    if tmp.exists():
        old = rr.read_status(tmp)
        if resume and old.get("config") != config:
            raise OptionError(f"--resume: the interrupted run in {tmp} used other models, data or options; "
                              "rerun without --resume to start over")
        # a resumed run keeps only its finished chunks: what an earlier attempt began writing
        # (results, vectors, a Parquet twin, plots) is written again from them
        discard(tmp, "run", keep=("chunks", rr.RUN_JSON) if resume else ())
    elif resume:
        raise OptionError(f"--resume: no interrupted run to continue for {out} (no {tmp.name})")
    tmp.mkdir(parents=True, exist_ok=True)
    rr.write_json(tmp / rr.RUN_JSON, {"written_by": "nero", "files": [], "status": "running", "config": config,
                                      "pid": os.getpid(), "started": started.isoformat(timespec="seconds")})
    return _Stage(tmp, config, Cache(tmp / "chunks"), started)


def _fail_stage(stage: _Stage, exc: BaseException) -> None:
    """Keep finished chunks (status interrupted or failed) or remove the partial folder; re-raise."""
    tmp = stage.tmp
    kept = any((tmp / "chunks").rglob("*.npz")) if (tmp / "chunks").exists() else False
    interrupted = isinstance(exc, KeyboardInterrupt)
    if not kept:
        shutil.rmtree(tmp, ignore_errors=True)
        if interrupted:
            raise NeroError("interrupted before the first chunk finished; nothing was kept", exit_code=130) from None
        raise exc
    rr.write_json(tmp / rr.RUN_JSON, {"written_by": "nero", "files": [],
                                      "status": "interrupted" if interrupted else "failed", "config": stage.config,
                                      "error": str(exc)[:300], "started": stage.started.isoformat(timespec="seconds")})
    if interrupted:
        raise NeroError(f"interrupted; finished chunks are kept in {tmp}: rerun the same command with --resume "
                        "to continue", exit_code=130) from None
    raise exc


def _staged(stage: _Stage | None, work: Callable[[], Any]) -> Any:
    """``work()``; on failure or interruption the stage keeps its finished chunks (see :func:`_fail_stage`)."""
    try:
        return work()
    except BaseException as exc:
        if stage is None:
            raise
        _fail_stage(stage, exc)


def _split_mode(shard: str | None) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """``--shard i/n`` and torchrun's ``(rank, world)``; at most one of them."""
    part = parse_shard(shard) if shard else None
    ranks = distributed()
    if ranks and part:
        raise OptionError("--shard and torchrun split the work two ways; use one of them")
    return part, ranks


def _checked_batch_size(p: Prepared, batch_size: int | str, amp: bool, yes: bool,
                        ranks: tuple[int, int] | None, floor: bool = True) -> int:
    """The batch size, after refusing a sweep estimated over an hour (unless ``yes``)."""
    size = resolve_batch_size(p, batch_size)
    if amp and p.device.type != "cuda":
        p.warnings.append("--amp has no effect on the CPU (autocast is used on CUDA only)")
    if not yes:
        limit = LONG_RUN_SECONDS * (ranks[1] if ranks else 1)
        n_inputs, seconds = estimate_seconds(p, size, limit, floor)
        if seconds > limit:
            raise OptionError(f"this sweep runs at least {n_inputs:,} inputs, about {_duration(seconds)} or more "
                              "here; add --yes to "
                              "run it, or use a coarser grid (a larger step) or --limit")
    return size


def _sweep_key(p: Prepared, reference: str, batch_size: int, seed: int, score_threshold: float, amp: bool,
               channels_last: bool, floor: bool = True) -> dict[str, Any]:
    return {"models": [(m.name, m.source, m.sha256, m.code_sha256) for m in p.models], "data": p.dataset.sha256,
            "index": p.dataset.index.tolist(), "groups": [s.canonical for s in p.specs], "task": p.task.name,
            "reference": reference, "batch_size": batch_size, "normalize": p.normalize, "seed": seed,
            "score_threshold": score_threshold, "device": str(p.device), "amp": amp, "channels_last": channels_last,
            "random_init": p.random_init, "class_names": p.class_names, "class_map": p.dataset.class_map,
            **({} if floor else {"floor": False})}


def _split_samples(p: Prepared, batch_size: int, split: tuple[int, int] | None) -> int | None:
    """Keep shard ``i`` of ``n`` of the samples in ``p`` (whole chunks of the whole run); its chunk size."""
    if not split:
        return None
    whole, (i, n) = p.dataset, split
    p.dataset = whole.subset(shard_positions(len(whole), batch_size, i, n, p.task.max_chunk_samples))
    return chunk_samples(len(whole), batch_size, p.task.max_chunk_samples)


def _exchange(stream: RunStream, ranks: tuple[int, int]) -> None:
    """torchrun: the other ranks send their rows to rank 0, whose stream adds them in rank order."""
    rank, world = ranks
    try:
        if rank == 0:
            receive_rows(stream, world)
        else:
            stream.spill.close()
            send_rows(SpillReader(stream.spill_dir))
    finally:
        finish_distributed()


def _provenance(p: Prepared, ev: Evaluation, groups: list[str], settings: dict[str, Any], store: Cache | None,
                stage: _Stage | None, ranks: tuple[int, int] | None) -> dict[str, Any]:
    """The options (as given, for ``nero merge`` and reruns), cache and process counts of run.json."""
    options = {"models": [m.source for m in p.models], "data": p.dataset.source, "groups": groups,
               "task": p.task.name, "normalize": p.normalize, "reference": ev.reference, "device": str(p.device),
               "plot_metric": p.plot_metric, **settings, **p.given}
    return {"options": options, "cache": {"hits": store.hits, "misses": store.misses} if store else None,
            "resumed_chunks": stage.chunks.hits if stage and stage.chunks else 0,
            "processes": ranks[1] if ranks else 1}


def evaluate_run(models: Sequence[Any], data: Any, groups: str | Sequence[str], out: Path, *,
                 task: str | None = None, weights: Sequence[str] = (), meta: Sequence[str] = (),
                 names: Sequence[str] = (), trust_checkpoint: bool = False, normalize: str | None = None,
                 reference: str = "auto", limit: int | None = None, classes: Sequence[str] = (),
                 sample: int | None = None, class_names: Sequence[str] = (), random_init: bool = False,
                 batch_size: int | str = 256, device: str = "auto", seed: int = 0, plot_metric: str | None = None,
                 score_threshold: float = 0.5, plot_samples: str = "worst:1,spread:2", plots: bool = True, floor: bool = True,
                 overwrite: bool = False, cache: bool = False, cache_dir: Path | None = None,
                 resume: bool = False, yes: bool = False, shard: str | None = None,
                 amp: bool = False, compile: bool = False, channels_last: bool = False,
                 command: Sequence[str] | None = None,
                 progress_factory: Callable[[int], Any] | None = None,
                 configuration: dict[str, Any] | None = None, resize: str | None = None,
                 center_crop: bool = False, parquet: bool = False) -> RunResult:
    """Evaluate ``models`` on ``data`` over ``groups`` and write the run directory ``out``.

    ``weights``, ``meta`` and ``names`` are matched to the models in order: ``weights``
    to the factory models (``file.py:callable``), ``meta`` and ``names`` to all models.
    MODEL arguments may be globs; their matches are ordered by the epoch or step number
    in their names. A factory model without weights has random weights: refused unless
    ``random_init`` (then built with the generator seeded by ``seed``, and marked in run.json).
    ``classes``, then ``limit`` (the first N) or ``sample`` (N drawn stratified by class for
    ``seed``) choose the samples; ``class_names`` name the model's classes, which an image
    folder's class folders are matched to by name. With ``cache=True`` unchanged (checkpoint,
    data, spec) pieces are reused.

    The run is built in ``.<out>.partial`` beside ``out`` (its ``run.json`` says
    ``status: running``), finished chunks of samples are kept there as they complete, and the
    directory is renamed to ``out`` only when every file is written (``status: complete``).
    After an interruption it stays, marked ``interrupted``; ``resume=True`` continues it, and
    the results equal those of an uninterrupted run. ``parquet``: also write ``results.parquet``
    (needs pyarrow, ``pip install 'nero[parquet]'``; checked before any work).
    """
    if parquet:
        from .parquet_out import require

        require()
    groups = [groups] if isinstance(groups, str) else list(groups)  # one spec string is one group
    if not isinstance(data, (str, Path, Dataset)):  # arrays, tensors, a torch Dataset: as nero_cli.evaluate takes them
        from .api import as_data  # imports pandas: only for in-memory data

        data = as_data(data, task)
    o = SimpleNamespace(**locals())
    o.out, o.started = Path(out), _dt.datetime.now(_dt.timezone.utc)
    o.part, o.ranks = _split_mode(shard)
    lead = o.ranks is None or o.ranks[0] == 0
    protect = [a for a in [*models, data, *weights, *meta] if isinstance(a, (str, Path)) and Path(a).exists()]
    with claim(o.out, "run", overwrite, protect) if lead else nullcontext():
        return _evaluate(o, lead)


def _evaluate(o: SimpleNamespace, lead: bool) -> RunResult:
    """:func:`evaluate_run` once the output folder is held (``o``: its arguments)."""
    wanted = parse_plot_samples(o.plot_samples)
    p = prepare(o.models, o.data, o.groups, task=o.task, weights=o.weights, meta=o.meta, names=o.names,
                trust_checkpoint=o.trust_checkpoint, normalize=o.normalize, limit=o.limit, classes=o.classes,
                sample=o.sample, seed=o.seed, class_names=o.class_names, random_init=o.random_init,
                device=o.device, plot_metric=o.plot_metric, compile=o.compile, channels_last=o.channels_last,
                amp=o.amp, resize=o.resize, center_crop=o.center_crop)
    batch_size = _checked_batch_size(p, o.batch_size, o.amp, o.yes, o.ranks, o.floor)
    key_parts = _sweep_key(p, o.reference, batch_size, o.seed, o.score_threshold, o.amp, o.channels_last, o.floor)
    whole = p.dataset
    per_chunk = _split_samples(p, batch_size, o.part or o.ranks)
    config = make_key({**key_parts, "index": p.dataset.index.tolist()})
    store = Cache.results(o.cache_dir) if o.cache else None
    stage = _open_stage(o.out, config, o.resume, o.started) if lead else None
    spill = bool(o.plots or o.parquet or o.part or o.ranks)  # else nothing reads the rows' binary spill back
    stream = (RunStream(stage.tmp / STREAM, p.class_names, write_spill=spill) if stage is not None else
              RunStream(Path(tempfile.mkdtemp(prefix="nero-rank-")), spill_only=True))  # torchrun's other ranks
    gather = (lambda: _exchange(stream, o.ranks)) if o.ranks else None
    before = len(p.warnings)
    try:
        ev, agg, summary = _staged(stage, lambda: compute(
            p, reference=o.reference, batch_size=batch_size, seed=o.seed, score_threshold=o.score_threshold,
            cache=store, chunks=stage.chunks if stage else None, chunk_samples=per_chunk,
            progress_factory=o.progress_factory if lead else None, floor=o.floor, stream=stream, gather=gather))
    finally:
        if not lead:
            shutil.rmtree(stream.folder, ignore_errors=True)
    from_summary = [before, len(p.warnings)]  # a shard's, drawn from its own summary: merge draws them again
    if store is not None and store.warning:
        p.warnings.append(store.warning)
    if not lead:  # torchrun: rank 0 writes the run
        return RunResult(out=o.out, curves=agg, summary=summary, warnings=p.warnings)
    if o.ranks:
        p.dataset = whole
    settings = {k: getattr(o, k) for k in ("trust_checkpoint", "limit", "seed", "plot_samples", "score_threshold",
                                           "cache", "shard", "amp", "compile", "channels_last", "floor", "parquet")}
    settings.update(weights=list(o.weights), meta=list(o.meta), names=list(o.names), classes=list(o.classes),
                    batch_size=batch_size)
    extra = _provenance(p, ev, list(o.groups), settings, store, stage, o.ranks)
    if o.configuration:  # nero evaluate --config / [tool.nero.evaluate]: the merged options
        extra["configuration"] = o.configuration
    plots = o.plots
    if o.part:
        extra["shard"] = {"index": o.part[0], "count": o.part[1], "sweep": make_key(key_parts),
                          "summary_warnings": from_summary}
        plots = False  # 'nero merge' draws the plots of the whole run
    return write_run(stage.tmp, o.out, p, ev, agg, summary, extra, command=o.command,  # type: ignore[union-attr]
                     plots=plots, wanted=wanted, started=o.started, stream=stream, keep_spill=bool(o.part),
                     parquet=o.parquet)


def write_run(tmp: Path, out: Path, p: Prepared, ev: Evaluation, agg: Mapping[str, np.ndarray], summary: dict[str, Any],
              extra: dict[str, Any], *, command: Sequence[str] | None, plots: bool, wanted: Any,
              started: Any, stream: RunStream, keep_spill: bool = False, parquet: bool = False,
              data: dict[str, Any] | None = None) -> RunResult:
    """Write tables, plots and ``run.json`` into ``tmp`` and rename it to ``out`` (``stream``: the
    run's finished stream, in ``tmp``; ``keep_spill``: a shard keeps its rows' spill for ``nero merge``;
    ``parquet``: results.parquet too; ``data``: run.json's ``data`` as recorded, for ``nero merge``,
    its ``n_samples`` the stream's)."""
    dataset, totals = p.dataset, stream.totals
    record = rr.make_record(p.task, ev.reference, ev.param_columns, ev.plans, p.class_names)
    try:
        stream.write_results(tmp / rr.RESULTS)
        vectors = stream.write_vectors(tmp)
        if parquet:
            stream.write_parquet(tmp / "results.parquet")
        rr.write_columns(tmp / rr.AGGREGATE, agg)
        rr.write_json(tmp / rr.SUMMARY, summary)
        plot_files = _plots(tmp / "plots", stream, agg, record, p, wanted) if plots else []
        finished = _dt.datetime.now(_dt.timezone.utc)
        run_info = {
            "status": "complete",
            "command": list(command) if command is not None else None,
            "record": record,
            "groups": {pl.label: pl.spec.canonical for pl in ev.plans},
            "models": [{"name": m.name, "source": m.source, "format": m.format, "sha256": m.sha256,
                        "code_sha256": m.code_sha256, "random_init": m.name in p.random_init} for m in p.models],
            "data": ({**data, "n_samples": totals.n_samples} if data is not None else
                     {"source": dataset.source, "sha256": dataset.sha256, **data_path(dataset.source),
                      "n_samples": totals.n_samples, **p.data_record,
                      "image_size": list(dataset.size) if p.task.input_kind != "points" else None,
                      "input_shape": list(dataset.inputs.shape[1:])}),
            "n_rows": totals.n_rows,
            **({"vectors": vectors} if vectors else {}),
            "warnings": p.warnings, **extra,
            "versions": _versions(),
            "started": started.isoformat(timespec="seconds"),
            "finished": finished.isoformat(timespec="seconds"),
            "seconds": round((finished - started).total_seconds(), 3),
        }
        run_info["seed"] = run_info.get("options", {}).get("seed")
        shutil.rmtree(tmp / "chunks", ignore_errors=True)
        if keep_spill:
            os.replace(stream.spill_dir, tmp / SHARD)
        shutil.rmtree(stream.folder, ignore_errors=True)
        run_info.update(written_by="nero", files=sorted({*listing(tmp), rr.RUN_JSON}),
                        results_sha256=rr.sha256_file(tmp / rr.RESULTS), summary_sha256=rr.sha256_file(tmp / rr.SUMMARY))
        rr.write_json(tmp / rr.RUN_JSON, run_info)
        commit(tmp, out, "run")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    plot_files = [out / f.relative_to(tmp) for f in plot_files]
    return RunResult(out=out, curves=agg, summary=summary, plots=plot_files, warnings=p.warnings,
                     random_init=list(p.random_init), cache=extra.get("cache"))


def _plots(plot_dir: Path, stream: RunStream, agg: Mapping[str, np.ndarray], record: dict[str, Any], p: Prepared,
           wanted: Any) -> list[Path]:
    """The run's plots, from the aggregate curves and the rows of the samples they may show."""
    from .plot_rows import plot_table
    from .run_plots import write_plots  # matplotlib is imported only to plot

    prim = p.task.metric(p.task.primary)
    table = plot_table(SpillReader(stream.spill_dir), stream.layout, wanted, prim.column, prim.higher_is_better)
    return write_plots(plot_dir, table, pd.DataFrame(dict(agg)), record, p.dataset, p.runners if p.can_run else None, p.plot_metric,
                       wanted)


def merge_runs(run_dirs: Sequence[Path], out: Path, *, overwrite: bool = False, plots: bool = True,
               plot_samples: str | None = None, command: Sequence[str] | None = None,
               data: str | Path | None = None) -> RunResult:
    """Merge the run directories of ``--shard 0/n`` ... ``--shard n-1/n`` into one complete run,
    identical to the run a single process would have written. The shards' run records say
    everything needed: no model is loaded, and the data only for the plots' thumbnails (found
    where run.json records it, or at ``data``, and checked against its recorded sha256).
    ``plot_samples`` defaults to the shards' ``--plot-samples``."""
    started = _dt.datetime.now(_dt.timezone.utc)
    out = Path(out)
    infos = shard_infos(run_dirs, SHARD)
    o = infos[0][1]["options"]
    if plot_samples is None:
        plot_samples = o.get("plot_samples") or DEFAULT_PLOT_SAMPLES
    wanted = parse_plot_samples(plot_samples)
    dataset = (recorded_data([i for _, i in infos], data, "pass --data PATH where that data is now, or --no-plots")
               if plots and wanted else None)
    with claim(out, "run", overwrite, protect=[d for d, _ in infos]):
        p, ev = merged_run(infos)
        p.dataset = dataset  # type: ignore[assignment]
        p.random_init = [m["name"] for m in infos[0][1]["models"] if m.get("random_init")]
        tmp = rr.partial_dir(out)
        discard(tmp, "run")
        tmp.mkdir(parents=True)
        stream = RunStream(tmp / STREAM, p.class_names)
        try:  # every shard's rows, shard by shard, into one stream: the single-process order
            stream.begin(sweep_layout([r.name for r in p.runners], ev.plans, p.task))
            for d, _ in infos:
                stream.replay(SpillReader(d / SHARD))
            agg, summary = tabulate(p, ev, stream.finish())
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        p.warnings = merged_warnings(infos, summary_warnings(p, summary))
        extra = {"options": {**o, "shard": None, "plot_samples": plot_samples}, "merged_from": [str(d) for d, _ in infos], "cache": None,
                 "resumed_chunks": 0, "processes": len(infos)}
        return write_run(tmp, out, p, ev, agg, summary, extra, command=command, plots=plots, wanted=wanted,
                         started=started, stream=stream, parquet=bool(o.get("parquet")), data=infos[0][1]["data"])


__all__ = ["evaluate_run", "merge_runs", "RunResult", "parse_plot_samples", "parse_normalize", "check_out_dir",
           "compute", "tabulate"]
