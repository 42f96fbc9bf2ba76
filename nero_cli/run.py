"""``nero evaluate`` as an importable function: load, evaluate, write a run directory.

The run directory is built under a temporary sibling name and renamed into place only
when every file is written, so a failed or interrupted run never leaves a directory
that looks complete.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from .errors import NeroError, OptionError, OutputError



@dataclass
class RunResult:
    out: Path
    table: pd.DataFrame
    aggregate: pd.DataFrame
    summary: dict[str, Any]
    plots: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


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


def parse_normalize(text: str | None) -> tuple[list[float], list[float]] | None:
    """``MEAN,STD`` (one channel or broadcast) or ``m1,m2,m3,s1,s2,s3``."""
    if not text:
        return None
    try:
        vals = [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise OptionError(f"--normalize expects MEAN,STD numbers (one pair, or means then stds per channel); got '{text}'") from None
    if len(vals) < 2 or len(vals) % 2:
        raise OptionError(f"--normalize expects MEAN,STD (one pair, or means then stds per channel); got {len(vals)} number(s)")
    half = len(vals) // 2
    if any(s <= 0 for s in vals[half:]):
        raise OptionError(f"--normalize: std must be positive, got {vals[half:]}")
    return vals[:half], vals[half:]


def check_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: exists and is not a directory; choose another path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        what = "already holds a run" if (out / "run.json").exists() else "already holds files"
        raise OutputError(f"--out {out}: {what}; add --overwrite to replace it, or choose another directory")
    parent = out.resolve().parent
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"--out {out}: cannot create its parent directory ({exc.strerror})") from None
    if not os.access(parent, os.W_OK) or (out.is_dir() and not os.access(out, os.W_OK)):
        raise OutputError(f"--out {out}: the directory {parent} is not writable; choose another --out")


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 60:.0f} minutes"


def _read_status(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {}


def _versions() -> dict[str, str]:
    import torch

    from . import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "pandas": pd.__version__, "nero": __version__}


def _json_dump(obj: Any, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


@dataclass
class Prepared:
    """Everything loaded and checked before the sweep starts."""

    models: list
    task: Any
    dataset: Any
    specs: list
    class_names: list[str] | None
    plot_metric: str
    device: Any
    normalize: tuple[list[float], list[float]] | None
    warnings: list[str] = field(default_factory=list)


def _load_models(models: Sequence[Any], weights: Sequence[str], meta: Sequence[str], names: Sequence[str],
                 trust_checkpoint: bool, dev: Any) -> list:
    import torch

    from .checkpoints import expand_models
    from .models import LoadedModel, ModelMeta, load_model

    if not models:
        raise OptionError("no MODEL given; pass a checkpoint, file.py:callable or sample:NAME (see 'nero list samples')")
    models = [m for a in models for m in (expand_models([a]) if isinstance(a, str) else [a])]
    if len(names) > len(models) or len(meta) > len(models):
        raise OptionError(f"{len(names)} --name and {len(meta)} --meta for {len(models)} model(s); give at most one per model, in order")
    factory_models = [m for m in models if isinstance(m, str) and ":" in m and not m.startswith("sample:") and not Path(m).exists()]
    if len(weights) > len(factory_models):
        raise OptionError(f"{len(weights)} --weights for {len(factory_models)} factory model(s) (file.py:callable); give one per factory model, in order")
    w_iter = iter(weights)
    loaded = []
    for i, arg in enumerate(models):
        name = names[i] if i < len(names) else None
        if isinstance(arg, torch.nn.Module):  # Python API: a module in memory
            arg.eval()
            loaded.append(LoadedModel(name=name or type(arg).__name__, module=arg.to(dev), source="<python object>",
                                      format="module", sha256={}, meta=ModelMeta()))
            continue
        w = next(w_iter, None) if arg in factory_models else None
        loaded.append(load_model(arg, weights=w, meta=meta[i] if i < len(meta) else None, name=name,
                                 trust_checkpoint=trust_checkpoint, device=dev))
    seen: dict[str, int] = {}
    for m in loaded:  # keep display names unique
        if m.name in seen:
            seen[m.name] += 1
            m.name = f"{m.name}-{seen[m.name]}"
        else:
            seen[m.name] = 1
    return loaded


def prepare(models: Sequence[Any], data: Any, groups: Sequence[str], *, task: str | None = None,
            weights: Sequence[str] = (), meta: Sequence[str] = (), names: Sequence[str] = (),
            trust_checkpoint: bool = False, normalize: str | None = None, limit: int | None = None,
            classes: Sequence[str] = (), device: str = "auto", plot_metric: str | None = None,
            compile: bool = False, channels_last: bool = False) -> Prepared:
    """Load and check models, data and group specs (everything that can fail before the sweep)."""
    import torch

    from .core import resolve_device
    from .data import Dataset, select
    from .tasks import get_task
    from orbits import SpecError, parse_spec

    if not groups:
        raise OptionError("no --group given; e.g. --group rotation (see 'nero list groups')")
    norm = parse_normalize(normalize)
    dev = resolve_device(device)
    loaded = _load_models(models, weights, meta, names, trust_checkpoint, dev)
    for m in loaded:
        if channels_last:
            try:
                m.module = m.module.to(memory_format=torch.channels_last)
            except Exception:  # noqa: BLE001 - TorchScript/export modules keep their layout
                pass
        if compile:
            m.module = torch.compile(m.module)
    task_names = {m.meta.task for m in loaded if m.meta.task}
    if task is None:
        if len(task_names) > 1:
            raise OptionError(f"the models declare different tasks ({', '.join(sorted(task_names))}); evaluate them separately or pass --task")
        task = task_names.pop() if task_names else "classification"
    task_obj = get_task(task)
    if plot_metric is None:
        plot_metric = task_obj.plot_metrics[0]
    if plot_metric not in task_obj.plot_metrics:
        raise OptionError(f"--plot-metric for {task_obj.name} must be one of {', '.join(task_obj.plot_metrics)}; got '{plot_metric}'")

    shapes = {tuple(m.meta.input_shape) for m in loaded if m.meta.input_shape}
    channels = next(iter(shapes))[0] if len(shapes) == 1 else None
    dataset = data if isinstance(data, Dataset) else task_obj.load_data(data, channels)
    dataset = select(dataset, classes=list(classes) or None, limit=limit)
    for m in loaded:
        if task_obj.name != "pointcloud" and m.meta.input_shape and tuple(m.meta.input_shape[-2:]) != dataset.size:
            raise NeroError(f"model {m.name} expects {m.meta.input_shape[-2]}x{m.meta.input_shape[-1]} images, "
                            f"the data has {dataset.size[0]}x{dataset.size[1]}; resize the data")
    class_names = dataset.class_names or next((m.meta.class_names for m in loaded if m.meta.class_names), None)
    specs = []
    for text in groups:
        try:
            specs.append(parse_spec(text, image_size=dataset.size if dataset.inputs.ndim == 4 else None,
                                    allowed=set(task_obj.groups)))
        except SpecError as exc:
            raise OptionError(f"--group {text}: {exc}") from None
    p = Prepared(loaded, task_obj, dataset, specs, class_names, plot_metric, dev, norm)
    p.warnings += check_repeatable(p)
    return p


def check_repeatable(p: Prepared) -> list[str]:
    """Warn about models whose outputs differ between two identical calls (dropout left active,
    random ops): their NERO plots mix the symmetry with noise."""
    import torch

    out = []
    x = p.dataset.inputs[: min(8, len(p.dataset))].to(p.device)
    for m in p.models:
        try:
            with torch.inference_mode():
                a, b = m.module(x), m.module(x)
        except Exception:  # noqa: BLE001 - the sweep reports a failing model with its own message
            continue
        a, b = (v if isinstance(v, torch.Tensor) else None for v in (a, b))
        if a is not None and b is not None and a.shape == b.shape and not torch.equal(a, b):
            diff = float((a.float() - b.float()).abs().max())
            out.append(f"model {m.name}: outputs differ between two identical calls (max difference {diff:.3g}); "
                       "dropout or another random layer is active, so results are not reproducible")
    return out


LONG_RUN_SECONDS = 3600.0
AUTO_BATCH_SIZES = (32, 64, 128, 256, 512, 1024)


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)) or "out of memory" in str(exc).lower()


def resolve_batch_size(p: Prepared, batch_size: int | str, amp: bool = False) -> int:
    """``--batch-size N``, or ``auto``: time one forward pass of every model at each size of
    :data:`AUTO_BATCH_SIZES` and keep the fastest per input; a size that runs out of memory
    ends the search (the previous size is kept)."""
    import time

    import torch

    if isinstance(batch_size, int) or str(batch_size).isdigit():
        size = int(batch_size)
        if size <= 0:
            raise OptionError(f"--batch-size must be positive, got {size}")
        return size
    if batch_size != "auto":
        raise OptionError(f"--batch-size must be a positive number or auto, got '{batch_size}'")
    best, best_rate = AUTO_BATCH_SIZES[0], 0.0
    one = p.dataset.inputs[:1].to(p.device)
    for size in AUTO_BATCH_SIZES:
        x = one.expand(size, *one.shape[1:]).contiguous()
        try:
            with torch.inference_mode(), torch.autocast("cuda", enabled=amp and x.is_cuda):
                for m in p.models:
                    m.module(x)  # warm-up
                t = time.perf_counter()
                for m in p.models:
                    m.module(x)
                if x.is_cuda:
                    torch.cuda.synchronize()
                rate = size / max(time.perf_counter() - t, 1e-9)
        except Exception as exc:  # noqa: BLE001
            if _is_oom(exc):
                if x.is_cuda:
                    torch.cuda.empty_cache()
                break  # back off: keep the largest size that fitted
            raise
        if rate > best_rate * 1.05:  # a larger batch must be clearly faster to win
            best, best_rate = size, rate
    return best


def estimate_seconds(p: Prepared, batch_size: int) -> tuple[int, float]:
    """Inputs the sweep will run and a rough time: one timed forward pass per model."""
    import time

    import torch

    from .core import plan_orbits

    n_el = sum(len(pl.group) for pl in plan_orbits(p.specs))
    total = len(p.dataset) * n_el
    seconds = 0.0
    b = max(1, min(batch_size, 64, total))
    x = p.dataset.inputs[:1].expand(b, *p.dataset.inputs.shape[1:]).contiguous().to(p.device)
    for m in p.models:
        with torch.inference_mode():
            try:
                m.module(x)  # warm-up
                t = time.perf_counter()
                m.module(x)
                per_input = (time.perf_counter() - t) / b
            except Exception:  # noqa: BLE001 - the sweep itself reports a failing model properly
                per_input = 0.0
        seconds += per_input * total
    return len(p.models) * total, seconds


def compute(p: Prepared, *, reference: str = "auto", batch_size: int = 256, seed: int = 0,
            score_threshold: float = 0.5, cache: Any = None, chunks: Any = None, chunk_samples: int | None = None,
            amp: bool = False, channels_last: bool = False,
            progress_factory: Callable[[int], Any] | None = None) -> tuple[Any, pd.DataFrame, dict[str, Any]]:
    """Run the sweep; return the evaluation, the aggregate table and the summary."""
    import hashlib

    from .core import evaluate, plan_orbits

    batch_size = resolve_batch_size(p, batch_size)
    total = len(p.models) * len(p.dataset) * sum(len(pl.group) for pl in plan_orbits(p.specs))
    data_key = hashlib.sha256((p.dataset.sha256 + ":" + ",".join(map(str, p.dataset.index.tolist()))).encode()).hexdigest()
    bar = progress_factory(total) if progress_factory else None
    try:
        ev = evaluate(p.models, p.dataset, p.specs, p.task, reference=reference, batch_size=batch_size, device=p.device,
                      normalize=p.normalize, seed=seed,
                      options={"score_threshold": score_threshold, "amp": amp, "channels_last": channels_last},
                      progress=bar.advance if bar else None, cache=cache, data_key=data_key, chunks=chunks,
                      chunk_samples=chunk_samples)
    finally:
        if bar:
            bar.close()
    agg, summary = tabulate(p, ev)
    return ev, agg, summary


def tabulate(p: Prepared, ev: Any) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The aggregate curves and the summary of an evaluation's table."""
    from .summary import aggregate, summarise, summary_directions

    agg = aggregate(ev.table, ev.param_columns, p.task.metrics, p.class_names)
    summary = {
        "task": p.task.name,
        "reference": ev.reference,
        "n_samples": int(ev.table["sample"].nunique()),
        "models": [m.name for m in p.models],
        "groups": {pl.label: {"spec": pl.spec.canonical, "n_elements": len(pl.group), "plot": pl.group.plot_kind}
                   for pl in ev.plans},
        "higher_is_better": summary_directions(p.task.metrics, p.task.plot_metrics[0]),
        "metrics": summarise(ev.table, p.task.metrics, p.task.plot_metrics[0]),
    }
    return agg, summary


def evaluate_run(models: Sequence[Any], data: Any, groups: Sequence[str], out: Path, *,
                 task: str | None = None, weights: Sequence[str] = (), meta: Sequence[str] = (),
                 names: Sequence[str] = (), trust_checkpoint: bool = False, normalize: str | None = None,
                 reference: str = "auto", limit: int | None = None, classes: Sequence[str] = (),
                 batch_size: int | str = 256, device: str = "auto", seed: int = 0, plot_metric: str | None = None,
                 score_threshold: float = 0.5, plot_samples: str = "worst:3", plots: bool = True,
                 overwrite: bool = False, cache: bool = False, cache_dir: Path | None = None,
                 resume: bool = False, yes: bool = False, shard: str | None = None,
                 amp: bool = False, compile: bool = False, channels_last: bool = False,
                 command: Sequence[str] | None = None,
                 progress_factory: Callable[[int], Any] | None = None) -> RunResult:
    """Evaluate ``models`` on ``data`` over ``groups`` and write the run directory ``out``.

    ``weights``, ``meta`` and ``names`` are matched to the models in order: ``weights``
    to the factory models (``file.py:callable``), ``meta`` and ``names`` to all models.
    MODEL arguments may be globs; their matches are ordered by the epoch or step number
    in their names. With ``cache=True`` unchanged (checkpoint, data, spec) pieces are reused.

    The run is built in ``.<out>.partial`` beside ``out`` (its ``run.json`` says
    ``status: running``), finished chunks of samples are kept there as they complete, and the
    directory is renamed to ``out`` only when every file is written (``status: complete``).
    After an interruption it stays, marked ``interrupted``; ``resume=True`` continues it, and
    the results equal those of an uninterrupted run.
    """
    from .cache import Cache, make_key, save_frame
    from .shard import (canonical_order, chunk_samples, distributed, finish_distributed, gather_tables,
                        parse_shard, shard_positions)

    started = _dt.datetime.now(_dt.timezone.utc)
    out = Path(out)
    wanted = parse_plot_samples(plot_samples)
    part = parse_shard(shard) if shard else None
    ranks = distributed()
    if ranks and part:
        raise OptionError("--shard and torchrun split the work two ways; use one of them")
    lead = ranks is None or ranks[0] == 0
    if lead:
        check_out_dir(out, overwrite)
    p = prepare(models, data, groups, task=task, weights=weights, meta=meta, names=names,
                trust_checkpoint=trust_checkpoint, normalize=normalize, limit=limit, classes=classes,
                device=device, plot_metric=plot_metric, compile=compile, channels_last=channels_last)
    batch_size = resolve_batch_size(p, batch_size, amp=amp)
    if amp and p.device.type != "cuda":
        p.warnings.append("--amp has no effect on the CPU (autocast is used on CUDA only)")
    if not yes:
        n_inputs, seconds = estimate_seconds(p, batch_size)
        if seconds > LONG_RUN_SECONDS * (ranks[1] if ranks else 1):
            raise OptionError(f"this sweep runs {n_inputs:,} inputs, about {_duration(seconds)} here; add --yes to run it, "
                              "or use a coarser grid (a larger step) or --limit")
    key_parts = {"models": [(m.name, m.source, m.sha256) for m in p.models], "data": p.dataset.sha256,
                 "index": p.dataset.index.tolist(), "groups": [s.canonical for s in p.specs], "task": p.task.name,
                 "reference": reference, "batch_size": batch_size, "normalize": p.normalize, "seed": seed,
                 "score_threshold": score_threshold, "device": str(p.device), "amp": amp, "channels_last": channels_last}
    sweep = make_key(key_parts)  # the whole run, before any sharding
    whole = p.dataset
    per_chunk = None
    if part or ranks:
        i, n = part or ranks  # type: ignore[misc]
        per_chunk = chunk_samples(len(whole), batch_size)
        p.dataset = whole.subset(shard_positions(len(whole), batch_size, i, n))
    config = make_key({**key_parts, "index": p.dataset.index.tolist()})
    store = Cache(cache_dir) if cache else None
    tmp = out.parent / f".{out.name}.partial"
    chunk_store = None
    if lead:
        if tmp.exists():
            old = _read_status(tmp)
            if resume and old.get("config") != config:
                raise OptionError(f"--resume: the interrupted run in {tmp} used other models, data or options; "
                                  "rerun without --resume to start over")
            if not resume:
                shutil.rmtree(tmp)
        elif resume:
            raise OptionError(f"--resume: no interrupted run to continue for {out} (no {tmp.name})")
        tmp.mkdir(parents=True, exist_ok=True)
        _json_dump({"status": "running", "config": config, "pid": os.getpid(),
                    "started": started.isoformat(timespec="seconds")}, tmp / "run.json")
        chunk_store = Cache(tmp / "chunks")
    try:
        ev, agg, summary = compute(p, reference=reference, batch_size=batch_size, seed=seed,
                                   score_threshold=score_threshold, cache=store, chunks=chunk_store,
                                   chunk_samples=per_chunk, amp=amp, channels_last=channels_last,
                                   progress_factory=progress_factory if lead else None)
    except BaseException as exc:
        if not lead:
            raise
        kept = any((tmp / "chunks").rglob("*.npz")) if (tmp / "chunks").exists() else False
        if not kept:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, KeyboardInterrupt):
                raise NeroError("interrupted before the first chunk finished; nothing was kept", exit_code=130) from None
            raise
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        _json_dump({"status": status, "config": config, "error": str(exc)[:300],
                    "started": started.isoformat(timespec="seconds")}, tmp / "run.json")
        if isinstance(exc, KeyboardInterrupt):
            raise NeroError(f"interrupted; finished chunks are kept in {tmp}: rerun the same command with --resume "
                            "to continue", exit_code=130) from None
        raise
    if ranks:  # torchrun: rank 0 gathers every rank's rows and writes the run
        pieces = gather_tables(ev.table, *ranks)
        if not lead:
            finish_distributed()
            return RunResult(out=out, table=ev.table, aggregate=agg, summary=summary, warnings=p.warnings)
        p.dataset = whole
        ev.table = canonical_order(pd.concat(pieces, ignore_index=True), [m.name for m in p.models],
                                   [pl.label for pl in ev.plans])
        agg, summary = tabulate(p, ev)
        finish_distributed()
    extra = {"options": {"models": [m.source for m in p.models], "data": p.dataset.source, "groups": list(groups),
                         "task": p.task.name, "weights": list(weights), "meta": list(meta), "names": list(names),
                         "trust_checkpoint": trust_checkpoint, "normalize": p.normalize, "reference": ev.reference,
                         "limit": limit, "classes": list(classes), "batch_size": batch_size, "device": str(p.device),
                         "seed": seed, "plot_metric": p.plot_metric, "plot_samples": plot_samples,
                         "score_threshold": score_threshold, "cache": cache, "shard": shard, "amp": amp,
                         "compile": compile, "channels_last": channels_last},
             "cache": {"hits": store.hits, "misses": store.misses} if store else None,
             "resumed_chunks": chunk_store.hits if chunk_store else 0,
             "processes": ranks[1] if ranks else 1}
    if part:
        extra["shard"] = {"index": part[0], "count": part[1], "sweep": sweep, "class_names": p.class_names}
        save_frame(tmp / "shard.npz", ev.table)
        plots = False  # 'nero merge' draws the plots of the whole run
    return write_run(tmp, out, p, ev, agg, summary, extra, command=command, plots=plots, wanted=wanted,
                     started=started)


def write_run(tmp: Path, out: Path, p: Prepared, ev: Any, agg: pd.DataFrame, summary: dict[str, Any],
              extra: dict[str, Any], *, command: Sequence[str] | None, plots: bool, wanted: Any,
              started: Any) -> RunResult:
    """Write tables, plots and ``run.json`` into ``tmp`` and rename it to ``out``."""
    table, dataset = ev.table, p.dataset
    try:
        table.to_csv(tmp / "results.csv", index=False, float_format="%.9g")
        agg.to_csv(tmp / "summary.csv", index=False, float_format="%.9g")
        _json_dump(summary, tmp / "summary.json")
        plot_files = (_write_plots(tmp / "plots", table, agg, ev, p.models, p.plot_metric, wanted, dataset, p.task,
                                   p.device) if plots else [])
        finished = _dt.datetime.now(_dt.timezone.utc)
        run_info = {
            "status": "complete",
            "command": list(command) if command is not None else None,
            "groups": {pl.label: pl.spec.canonical for pl in ev.plans},
            "models": [{"name": m.name, "source": m.source, "format": m.format, "sha256": m.sha256} for m in p.models],
            "data": {"source": dataset.source, "sha256": dataset.sha256, "n_samples": int(table["sample"].nunique()),
                     "image_size": list(dataset.size) if dataset.inputs.ndim == 4 else None},
            "warnings": p.warnings,
            **extra,
            "versions": _versions(),
            "started": started.isoformat(timespec="seconds"),
            "finished": finished.isoformat(timespec="seconds"),
            "seconds": round((finished - started).total_seconds(), 3),
        }
        run_info["seed"] = run_info.get("options", {}).get("seed")
        shutil.rmtree(tmp / "chunks", ignore_errors=True)
        _json_dump(run_info, tmp / "run.json")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    plot_files = [out / f.relative_to(tmp) for f in plot_files]
    return RunResult(out=out, table=table, aggregate=agg, summary=summary, plots=plot_files, warnings=p.warnings)


def merge_runs(run_dirs: Sequence[Path], out: Path, *, overwrite: bool = False, plots: bool = True,
               plot_samples: str = "worst:3", command: Sequence[str] | None = None) -> RunResult:
    """Merge the run directories of ``--shard 0/n`` ... ``--shard n-1/n`` into one complete run,
    identical to the run a single process would have written."""
    from .cache import load_frame
    from .core import Evaluation, plan_orbits
    from .shard import canonical_order

    started = _dt.datetime.now(_dt.timezone.utc)
    out = Path(out)
    wanted = parse_plot_samples(plot_samples)
    if not run_dirs:
        raise OptionError("no RUN_DIR given; pass the run directories of every --shard i/n")
    infos = []
    for d in map(Path, run_dirs):
        info = _read_status(d)
        if info.get("status") != "complete":
            raise OutputError(f"{d}: not a complete run (run.json status {info.get('status', 'missing')!r}); "
                              "finish that shard first")
        if not info.get("shard") or not (d / "shard.npz").is_file():
            raise OutputError(f"{d}: not a shard (run it with --shard i/n); nothing to merge")
        infos.append((d, info))
    n = infos[0][1]["shard"]["count"]
    sweeps = {i["shard"]["sweep"] for _, i in infos}
    if len(sweeps) > 1:
        raise OutputError("the shards come from different sweeps (models, data, groups or options differ); "
                          "merge the shards of one command")
    got = sorted(i["shard"]["index"] for _, i in infos)
    if got != list(range(n)):
        missing = sorted(set(range(n)) - set(got))
        raise OutputError(f"expected shards 0..{n - 1} once each; " +
                          (f"missing {missing}" if missing else f"got {got}"))
    check_out_dir(out, overwrite)
    infos.sort(key=lambda t: t[1]["shard"]["index"])
    o = infos[0][1]["options"]
    norm = o.get("normalize")
    p = prepare(o["models"], o["data"], o["groups"], task=o["task"], weights=o["weights"], meta=o["meta"],
                names=o["names"], trust_checkpoint=o["trust_checkpoint"],
                normalize=",".join(map(str, norm[0] + norm[1])) if norm else None, limit=o["limit"],
                classes=o["classes"], device=o["device"], plot_metric=o["plot_metric"])
    p.class_names = infos[0][1]["shard"]["class_names"]
    plans = plan_orbits(p.specs)
    table = pd.concat([load_frame(d / "shard.npz") for d, _ in infos], ignore_index=True)
    table = canonical_order(table, [m.name for m in p.models], [pl.label for pl in plans])
    param_cols: list[str] = []
    for pl in plans:
        param_cols += [c for c in pl.group.columns() if c not in param_cols]
    ev = Evaluation(table=table, plans=plans, reference=o["reference"], param_columns=param_cols, task=p.task.name)
    agg, summary = tabulate(p, ev)
    tmp = out.parent / f".{out.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    extra = {"options": {**o, "shard": None}, "merged_from": [str(d) for d, _ in infos], "cache": None,
             "resumed_chunks": 0, "processes": n}
    return write_run(tmp, out, p, ev, agg, summary, extra, command=command, plots=plots, wanted=wanted,
                     started=started)


def _write_plots(plot_dir: Path, table: pd.DataFrame, agg: pd.DataFrame, ev: Any, loaded: list, metric: str,
                 wanted: Any, dataset: Any, task: Any, device: Any) -> list[Path]:
    from .plots import PlotSpec, plot_aggregate, plot_individual, plot_error_maps
    from .summary import rank_samples

    models = [m.name for m in loaded]
    plot_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    primary = task.plot_metrics[0]
    if isinstance(wanted, tuple):
        how, k = wanted
        sample_ids = rank_samples(table, how=how, k=k, by=primary, higher_is_better=task.metrics[primary])
    else:
        known = set(int(s) for s in table["sample"].unique())
        missing = [s for s in wanted if s not in known]
        if missing:
            raise OptionError(f"--plot-samples: sample id(s) {missing} are not in the evaluated data (ids 0..{max(known)})")
        sample_ids = list(wanted)
    for plan in ev.plans:
        g = plan.group
        title = f"{plan.label} ({len(g)} elements)"
        spec = PlotSpec(group=plan.label, kind=g.plot_kind, params=g.plot_columns, title=title)
        paths += plot_aggregate(agg[agg["group"] == plan.label], spec, metric, models, plot_dir,
                                stem=f"aggregate_{_safe(plan.label)}_{metric}")
        rows = table[table["group"] == plan.label]
        for sid in sample_ids:
            pos = int(np.nonzero(dataset.index == sid)[0][0])
            thumb = dataset.inputs[pos].numpy()
            if task.name == "flow":
                thumb = thumb[: thumb.shape[0] // 2]  # frame 1
                maps = _flow_error_maps(loaded, dataset, pos, plan, task, ev.reference, device)
                paths += plot_error_maps(maps, g.labels(), models, sid, thumb, plot_dir,
                                         stem=f"sample_{sid}_{_safe(plan.label)}_error_maps", title=title)
            paths += plot_individual(rows, spec, metric, models, sid, thumb, plot_dir,
                                     stem=f"sample_{sid}_{_safe(plan.label)}_{metric}")
    return paths


def _flow_error_maps(loaded: list, dataset: Any, pos: int, plan: Any, task: Any, reference: str, device: Any) -> dict:
    """Per-pixel endpoint-error maps of one sample over the orbit, per model (recomputed for the
    plotted samples only, so the sweep never holds per-pixel maps)."""
    import torch

    from .tasks import Chunk

    x = dataset.inputs[pos : pos + 1].to(device)
    action = task.make_action(plan.spec, dataset)
    g = len(plan.group)
    out = {}
    with torch.inference_mode():
        for m in loaded:
            xb = action(x, range(g))
            y = task.prepare_outputs(m.module(xb.reshape(g, *xb.shape[2:])), g, m.name).reshape(g, 1, 2, *x.shape[-2:])
            chunk = Chunk(identity=plan.group.identity_index, reference=reference, labels=None,
                          targets={k: v[pos : pos + 1] for k, v in dataset.targets.items()}, action=action, spec=plan.spec)
            out[m.name] = task.error_maps(y, chunk)[:, 0].cpu().numpy()
    return out


def _safe(label: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)


__all__ = ["evaluate_run", "RunResult", "parse_plot_samples", "parse_normalize", "check_out_dir"]
