"""The ``nero`` command line: a thin typer shell over importable functions.

Each command only parses its options and forwards to a domain function; the domain
module is imported inside the command (the only imports inside functions in nero), so
that ``nero --help`` is instant. User mistakes print one line on stderr and exit 2;
``NERO_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from . import typer_compat  # noqa: F401  (flags show no <bool> in --help)

HELP = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(
    name="nero",
    help="NERO evaluation: how far is a trained model from respecting a symmetry?",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings=HELP,
)
list_app = typer.Typer(help="List the bundled sample models and data, the groups, tasks or metrics.",
                       invoke_without_command=True, context_settings=HELP)
app.add_typer(list_app, name="list")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"nero {version('nero')}")
        except PackageNotFoundError:
            typer.echo("nero (not installed as a package)")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                       help="Print nero's version and exit.")) -> None:
    """NERO evaluation: how far is a trained model from respecting a symmetry?"""


@list_app.callback()
def _list_root(ctx: typer.Context) -> None:
    """List the bundled sample models and data, the groups, tasks or metrics (nero list NAME)."""
    if ctx.invoked_subcommand is None:
        for name, cmd in sorted(ctx.command.commands.items()):  # type: ignore[attr-defined]
            typer.echo(f"nero list {name:<8}  {(cmd.help or '').splitlines()[0]}")


def _stderr_console():  # noqa: ANN202
    from rich.console import Console

    return Console(stderr=True)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _guard(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; turn user errors into one line and an exit code. SIGTERM and SIGHUP are handled
    like SIGINT (Ctrl-C): a run in progress is marked interrupted and keeps its finished chunks."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    from . import heap

    heap.allow()  # the command's process: its model runners may keep freed memory (nero_cli.heap)
    try:
        return fn()
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        if os.environ.get("NERO_DEBUG"):
            raise
        _stderr_console().print("[red]nero: interrupted[/red]; no complete run was written")
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("NERO_DEBUG"):
            raise
        raise typer.Exit(_report_error(exc)) from None


def _report_error(exc: Exception) -> int:
    """Print one line for ``exc``; return the exit code (see the README's table)."""
    from rich.markup import escape

    from .errors import NeroError
    from .outdir import IO_ERRORS, io_error

    if isinstance(exc, OSError) and exc.errno in IO_ERRORS:
        exc = io_error(exc)
    if isinstance(exc, NeroError):
        _stderr_console().print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return exc.exit_code
    if isinstance(exc, MemoryError):
        _stderr_console().print("[bold red]error:[/bold red] out of memory; lower --batch-size or --limit", highlight=False)
        return 3
    _stderr_console().print(f"[bold red]internal error:[/bold red] {exc.__class__.__name__}: {escape(str(exc))} "
                            "(this is a bug in nero; rerun with NERO_DEBUG=1 for the traceback)",
                            highlight=False, soft_wrap=True)
    return 70


def _split(values: Optional[List[str]]) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out += [p.strip() for p in v.split(",") if p.strip()]
    return out


@app.command()
def evaluate(
    ctx: typer.Context,
    models: Optional[List[str]] = typer.Argument(None, metavar="MODEL...", help="Checkpoints or globs of them (checkpoints/*.pt, ordered by the epoch or step in their names) (.pt TorchScript, .pt2 torch.export, pickled module with --trust-checkpoint), file.py:callable or package.module:callable (with --weights, or --random-init), or sample:NAME. Several are compared in one run."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help=".npz (images, labels), .npy (images), an ImageFolder directory (class folders matched to the model's classes by name), a folder of images (unlabelled), WebDataset .tar shards ('data-{000000..000009}.tar'; KEY.png + KEY.cls), or sample:mnist500."),
    group: Optional[List[str]] = typer.Option(None, "--group", "-g", help="Orbit spec NAME[:key=value,...], e.g. rotation:step=15; repeatable. See 'nero list groups'."),
    out: Path = typer.Option(Path("nero-run"), "--out", "-o", help="Run directory to write."),
    task: Optional[str] = typer.Option(None, "--task", help="A task from 'nero list tasks' (default: from the model's sidecar JSON, else classification)."),
    weights: Optional[List[str]] = typer.Option(None, "--weights", help="State dict (.pt/.pth weights_only, or .safetensors) for each factory model, in order."),
    random_init: bool = typer.Option(False, "--random-init", help="Evaluate factory models without --weights on purpose: their random weights (seeded by --seed), marked in run.json and the summary. Without it they are refused."),
    class_names: Optional[str] = typer.Option(None, "--class-names", help="The model's class names in order, comma-separated (overrides its sidecar's); image folders are matched to them by name."),
    meta: Optional[List[str]] = typer.Option(None, "--meta", help="Sidecar JSON for each model, in order (default MODEL.json beside the checkpoint)."),
    name: Optional[List[str]] = typer.Option(None, "--name", help="Display name for each model, in order (default: file stem)."),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help="Allow unpickling whole pickled modules (this runs code from the file)."),
    normalize: Optional[str] = typer.Option(None, "--normalize", help="Per-channel MEAN,STD applied after the orbit transform (e.g. 0.1307,0.3081)."),
    reference: str = typer.Option("auto", "--reference", help="labels (default when labels exist) or consensus."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Evaluate only the first N samples (warns when they miss classes; see --sample)."),
    sample: Optional[int] = typer.Option(None, "--sample", help="Evaluate a random N samples, stratified by class (every class at least once when N allows; the same for a --seed)."),
    classes: Optional[List[str]] = typer.Option(None, "--classes", help="Only these classes (ids or names), e.g. 3,5."),
    resize: Optional[str] = typer.Option(None, "--resize", metavar="H,W", help="Resize every image to H x W before the orbit (bilinear, antialiased when shrinking), e.g. for image folders of mixed sizes."),
    center_crop: bool = typer.Option(False, "--center-crop", help="With --resize: keep the aspect ratio (scale the shorter side to fit, then keep the centre H x W)."),
    batch_size: str = typer.Option("256", "--batch-size", "-b", help="Inputs per forward pass, or auto (time a few sizes, keep the fastest; backs off on out-of-memory)."),
    amp: bool = typer.Option(False, "--amp", help="CUDA only: run the model under bfloat16 autocast (faster on GPUs, results change slightly)."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the models (compiles on the first batch: pays off on long sweeps)."),
    channels_last: bool = typer.Option(False, "--channels-last", help="Channels-last memory format for image models (often faster on GPUs and recent CPUs)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    seed: int = typer.Option(0, "--seed", help="Random seed of --sample, --random-init and the sweep (recorded in run.json)."),
    plot_metric: Optional[str] = typer.Option(None, "--plot-metric", help="A metric of the task to plot (default: its primary metric; see 'nero list metrics')."),
    score_threshold: float = typer.Option(0.5, "--score-threshold", help="detection: predictions counted for precision/recall/F1."),
    plot_samples: str = typer.Option("worst:1,spread:2", "--plot-samples", help="Individual plots: a comma list of worst:K, best:K (by the primary metric), spread:K (where the models differ most) and sample ids, or none."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Write tables only (CSV, JSON), no plots."),
    parquet: bool = typer.Option(False, "--parquet", help="Also write results.parquet, the same table (needs pyarrow: pip install 'nero[parquet]')."),
    no_floor: bool = typer.Option(False, "--no-floor", help="Skip the resampling floor (one more forward pass per non-exact element); its columns are left empty."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Evaluate everything again instead of reusing cached (checkpoint, data, group) results ($NERO_CACHE_DIR or ~/.cache/nero)."),
    gate: bool = typer.Option(False, "--gate", help="Run 'nero gate' on the fresh run with the thresholds of nero.toml / pyproject.toml; exit 1 if a check fails."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run directory."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Run even when the estimate says the sweep takes over an hour."),
    shard: Optional[str] = typer.Option(None, "--shard", help="Evaluate only shard i of n (i/n, from 0) of the samples; combine the shards with 'nero merge'."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run of the same command from its finished chunks."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary table."),
    as_json: bool = typer.Option(False, "--json", help="Print summary.json on stdout (for scripts) instead of the table; progress and warnings go to stderr."),
    config: Optional[Path] = typer.Option(None, "--config", metavar="FILE", help="TOML file whose \\[evaluate] table gives models, data, groups and options (default: ./nero.toml \\[evaluate], else ./pyproject.toml \\[tool.nero.evaluate]); the command line overrides it."),
    no_config: bool = typer.Option(False, "--no-config", help="Ignore nero.toml / pyproject.toml."),
) -> None:
    """Evaluate models over transformation orbits; write NERO plots, CSV and JSON to a run directory."""
    _guard(lambda: _run_evaluate(_configured(ctx, config, no_config)))


def _configured(ctx: Any, config: Optional[Path], no_config: bool) -> dict[str, Any]:
    """The command's parameters after the config file (``--config``, nero.toml, pyproject.toml):
    the command line wins option by option; ``configuration`` is run.json's record of the merge."""
    from .errors import OptionError
    from .run_config import Param, find_config, merge, record

    if no_config and config is not None:
        raise OptionError("--config and --no-config contradict each other; pass one")
    cfg = None if no_config else find_config(config)
    params = [Param(p.name, (p.opts[0].lstrip("-") if p.opts[0].startswith("-") else p.name),
                    bool(getattr(p, "multiple", False) or p.nargs == -1), bool(getattr(p, "is_flag", False)))
              for p in ctx.command.params if p.name not in ("config", "no_config", "as_json")]
    by_name = {p.name: p for p in ctx.command.params}
    given = {n for n in ctx.params if ctx.get_parameter_source(n).name in ("COMMANDLINE", "ENVIRONMENT")}
    merged, from_file = (merge(params, ctx.params, given, cfg, lambda n, v: by_name[n].process_value(ctx, v))
                         if cfg is not None else (dict(ctx.params), {}))
    for key, flag in (("models", "MODEL arguments"), ("data", "--data"), ("group", "--group")):
        if not merged.get(key):
            raise OptionError(f"no {flag} given: pass {flag} on the command line or set '{key}' in "
                              f"{cfg.label if cfg is not None and cfg.path else 'a config file (--config run.toml)'}")
    merged["configuration"] = record(merged, cfg, from_file) if cfg is not None and cfg.path else None
    return merged


def _run_evaluate(o: dict[str, Any]) -> None:
    """``nero evaluate`` with its merged options ``o``."""
    from .lazy import gc_paused_imports

    with gc_paused_imports():
        from . import console
        from .run import evaluate_run
    result = evaluate_run(
        o["models"], o["data"], o["group"], o["out"], task=o["task"], weights=o["weights"] or [],
        meta=o["meta"] or [], names=o["name"] or [], trust_checkpoint=o["trust_checkpoint"],
        normalize=o["normalize"], reference=o["reference"], limit=o["limit"], classes=_split(o["classes"]),
        sample=o["sample"], class_names=o["class_names"].split(",") if o["class_names"] else [],
        random_init=o["random_init"], batch_size=o["batch_size"], device=o["device"], seed=o["seed"],
        plot_metric=o["plot_metric"], score_threshold=o["score_threshold"], plot_samples=o["plot_samples"],
        plots=not o["no_plots"], overwrite=o["overwrite"], cache=not o["no_cache"], floor=not o["no_floor"],
        resume=o["resume"], yes=o["yes"], shard=o["shard"], amp=o["amp"], compile=o["compile_"],
        channels_last=o["channels_last"], command=["nero", *sys.argv[1:]],
        progress_factory=None if o["quiet"] else console.Bar, configuration=o["configuration"],
        resize=o["resize"], center_crop=o["center_crop"], parquet=o["parquet"])
    if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 reports
        return
    for w in result.warnings:
        console.warn(w)
    if o["as_json"]:
        console.print_json_summary(result)
    elif not o["quiet"]:
        console.print_summary(result)
    if o["gate"]:
        from .gate import gate_after_evaluate

        code = gate_after_evaluate(result.out)
        if code:
            raise typer.Exit(code)


@app.command()
def merge(
    run_dirs: List[Path] = typer.Argument(..., metavar="RUN_DIR...", help="The run directories of --shard 0/n ... n-1/n."),
    out: Path = typer.Option(Path("nero-run"), "--out", "-o", help="Run directory to write."),
    plot_samples: Optional[str] = typer.Option(None, "--plot-samples", help="Individual plots, as for evaluate (default: the shards' --plot-samples)."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Write tables only (the data is then never read)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Where the shards' data is now, for the plots' thumbnails (default: where run.json records it; checked against its sha256)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary table."),
) -> None:
    """Merge the shards of one sweep (nero evaluate --shard i/n) into one complete run."""

    def work() -> None:
        from .console import print_summary
        from .run import merge_runs

        result = merge_runs(run_dirs, out, overwrite=overwrite, plots=not no_plots, plot_samples=plot_samples,
                            command=["nero", *sys.argv[1:]], data=data)
        if not quiet:
            print_summary(result)

    _guard(work)


def _list(printer: str, *args: Any) -> None:
    def work() -> None:
        from . import console

        getattr(console, printer)(*args)

    _guard(work)


@list_app.command("samples")
def list_samples() -> None:
    """The bundled sample models and data sets (use as sample:NAME)."""
    _list("print_samples")


@list_app.command("groups")
def list_groups() -> None:
    """Every transformation group: the plot it gets, its spec keys and defaults (or its fixed elements)."""

    def work() -> None:
        from .group_list import print_groups

        print_groups()

    _guard(work)


@list_app.command("tasks")
def list_tasks() -> None:
    """Every task: its input contract, output type, groups and metrics."""
    _list("print_tasks")


@list_app.command("metrics")
def list_metrics(task: Optional[str] = typer.Argument(None, help="Only this task.")) -> None:
    """Every results column and summary.json key, with its unit, direction and formula."""
    _list("print_metrics", task)


from .gate_cli import add_command as _add_gate  # noqa: E402  (light modules: heavy imports live in the commands)
from .report_cli import add_command as _add_report  # noqa: E402

from .doctor_cli import add_command as _add_doctor  # noqa: E402
from .layers_cli import add_command as _add_layers  # noqa: E402
from .search_cli import add_command as _add_search  # noqa: E402
from .lie_cli import add_command as _add_lie  # noqa: E402
from .plot_cli import add_command as _add_plot  # noqa: E402
from .cache_cli import add_command as _add_cache  # noqa: E402

_add_gate(app, _guard)
_add_report(app, _guard)
_add_doctor(app, _guard)
_add_layers(app, _guard)
_add_search(app, _guard)
_add_lie(app, _guard)
_add_plot(app, _guard)
_add_cache(app, _guard)


def main() -> None:
    try:
        app()
    finally:
        # the command is over: every object alive now lives until exit. Frozen (gc.freeze), they
        # are not walked again by the collections of the interpreter's shutdown, which took 0.4 to
        # 0.5 s of every command that had imported torch (see nero_cli.lazy.gc_paused_imports)
        gc.freeze()


if __name__ == "__main__":
    main()
