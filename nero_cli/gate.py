"""``nero gate``: pass/fail checks on a finished run directory, for CI.

Two kinds of check, reported together:

- **thresholds** on the numbers in ``summary.json``: ``KEY = VALUE`` where KEY is
  ``[GROUP.][MODEL:]min-METRIC`` or ``[GROUP.][MODEL:]max-METRIC`` (dashes or underscores
  in METRIC), e.g. ``max-equivariance-error``, ``rotation.min-orbit-accuracy``,
  ``rotation.mnist-cnn:max-orbit-spread``. Thresholds come from a config file
  (``nero.toml`` ``[gate]`` or ``pyproject.toml`` ``[tool.nero.gate]``) and the command
  line; for each model, group, metric and bound the most specific key applies
  (``GROUP.MODEL:`` > ``MODEL:`` > ``GROUP.`` > unscoped; the command line beats the file
  at equal specificity).
- **regressions** against a baseline run: every metric is recomputed from ``results.csv``
  for ``--bootstrap`` resamples of the samples (paired when both runs scored the same
  samples of the same data), and a check fails only when the whole confidence interval of
  the worsening lies above ``--max-regression``.

Everything here is importable (:func:`gate_run`, :class:`GateResult`,
:func:`gate_after_evaluate`); :func:`add_command` registers the typer command. pandas and
numpy are imported inside the functions so that ``nero --help`` stays instant.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, List, Mapping, Optional, Sequence

import typer

from .errors import OptionError, OutputError

#: The primary metric of each task: the one ``orbit_spread`` is computed from.
PRIMARY = {"classification": "confidence", "pointcloud": "confidence", "flow": "aee", "detection": "iou"}

#: Settings a config table may hold besides threshold keys (dashes or underscores).
SETTINGS = ("baseline", "max-regression", "regression-metrics", "bootstrap", "confidence", "seed")

_KEY_RE = re.compile(r"^(?P<prefix>.*[.:])?(?P<bound>min|max)[-_](?P<metric>[A-Za-z0-9_-]+)$")


# ---------------------------------------------------------------------------------------
# thresholds and configuration
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    """One threshold key. ``prefix`` is the raw ``GROUP.`` / ``MODEL:`` / ``GROUP.MODEL:`` part
    (resolved against the run's names later); ``group`` and ``model`` come from config tables."""

    key: str
    bound: str  # "min" or "max"
    metric: str  # underscore form, as in summary.json
    value: float
    source: str  # where it came from, for messages: "--check", "nero.toml", ...
    prefix: str = ""
    group: Optional[str] = None
    model: Optional[str] = None
    order: int = 0  # later wins at equal specificity


def metric_key(metric: str) -> str:
    """A summary.json metric name as written in keys: underscores become dashes."""
    return metric.replace("_", "-")


def parse_threshold(key: str, value: Any, source: str, *, group: str | None = None, model: str | None = None,
                    order: int = 0) -> Threshold:
    """Parse ``[GROUP.][MODEL:](min|max)-METRIC`` and its numeric value (scope resolved later)."""
    key = str(key).strip()
    m = _KEY_RE.match(key)
    if not m:
        raise OptionError(f"{source}: '{key}' is not a threshold key; expected [GROUP.][MODEL:]min-METRIC or "
                          f"[GROUP.][MODEL:]max-METRIC, e.g. max-equivariance-error or rotation.min-orbit-accuracy")
    if isinstance(value, bool):
        raise OptionError(f"{source}: {key} needs a number, got {str(value).lower()}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise OptionError(f"{source}: {key} needs a number, got '{value}'") from None
    if not math.isfinite(number):
        raise OptionError(f"{source}: {key} needs a finite number, got {value}")
    return Threshold(key=key, bound=m.group("bound"), metric=m.group("metric").lower().replace("-", "_"),
                     value=number, source=source, prefix=m.group("prefix") or "", group=group, model=model,
                     order=order)


def parse_check(text: str, source: str = "--check", order: int = 0) -> Threshold:
    """``KEY=VALUE`` from ``--check`` (split at the last ``=``: group labels may contain ``=``)."""
    key, sep, value = str(text).rpartition("=")
    if not sep or not key.strip():
        raise OptionError(f"{source} expects KEY=VALUE, e.g. rotation.max-equivariance-error=0.1; got '{text}'")
    return parse_threshold(key, value.strip(), source, order=order)


@dataclass
class GateConfig:
    """Thresholds and settings read from a config file (or nothing)."""

    path: Optional[Path] = None
    table: str = ""  # "gate" or "tool.nero.gate"
    thresholds: list[Threshold] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.path.name} table {self.table}" if self.path else "no config"


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise OptionError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise OptionError(f"--config {path}: is a directory; pass a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise OptionError(f"{path}: not valid TOML ({exc}); fix the file or pass --config") from None
    except OSError as exc:
        raise OptionError(f"{path}: cannot read ({exc.strerror})") from None


def _gate_table(doc: dict[str, Any]) -> tuple[str, Any] | None:
    if "gate" in doc:
        return "gate", doc["gate"]
    tool = doc.get("tool", {})
    nero = tool.get("nero", {}) if isinstance(tool, dict) else {}
    if isinstance(nero, dict) and "gate" in nero:
        return "tool.nero.gate", nero["gate"]
    return None


def _config_from_table(path: Path, name: str, table: Any) -> GateConfig:
    if not isinstance(table, dict):
        raise OptionError(f"{path}: '{name}' must be a table of threshold keys, e.g. max-equivariance-error = 0.05")
    cfg = GateConfig(path=path, table=name)
    src = f"{path.name} table {name}"
    order = 0

    def add(key: str, value: Any, group: str | None, model: str | None, *tables: str) -> None:
        nonlocal order
        where = ".".join([name, *tables])
        if isinstance(value, dict):
            raise OptionError(f"{path.name}: table {where}.{key} is nested too deep; use GROUP and GROUP.MODEL "
                              f"tables under '{name}' (or \"MODEL:KEY\" keys)")
        cfg.thresholds.append(parse_threshold(key, value, f"{path.name} table {where}", group=group, model=model,
                                              order=order))
        order += 1

    for key, value in table.items():
        norm = key.replace("_", "-")
        if norm in SETTINGS:
            cfg.settings[norm] = value
        elif isinstance(value, dict):  # [gate.GROUP]
            for k2, v2 in value.items():
                if isinstance(v2, dict):  # [gate.GROUP.MODEL]
                    for k3, v3 in v2.items():
                        add(k3, v3, key, k2, key, k2)
                else:
                    add(k2, v2, key, None, key)
        elif _KEY_RE.match(key):
            add(key, value, None, None)
        else:
            close = difflib.get_close_matches(norm, list(SETTINGS), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise OptionError(f"{src}: unknown key '{key}'; {hint}expected threshold keys like max-equivariance-error "
                              f"or settings {', '.join(SETTINGS)}")
    if "baseline" in cfg.settings:  # relative to the config file
        base = Path(str(cfg.settings["baseline"]))
        cfg.settings["baseline"] = base if base.is_absolute() else path.parent / base
    return cfg


def load_config(path: Path | str | None = None, cwd: Path | str | None = None) -> GateConfig:
    """The gate config: ``path`` if given (its ``[gate]`` or ``[tool.nero.gate]`` table), else
    ``./nero.toml`` ``[gate]``, else ``./pyproject.toml`` ``[tool.nero.gate]``, else empty."""
    if path is not None:
        path = Path(path)
        doc = _read_toml(path)
        found = _gate_table(doc)
        if found is None:
            raise OptionError(f"--config {path}: no 'gate' (or 'tool.nero.gate') table; add one with threshold keys, "
                              f"e.g. max-equivariance-error = 0.05")
        return _config_from_table(path, *found)
    here = Path(cwd) if cwd is not None else Path.cwd()
    nero_toml = here / "nero.toml"
    if nero_toml.is_file():
        doc = _read_toml(nero_toml)
        if isinstance(doc.get("gate"), dict):
            return _config_from_table(nero_toml, "gate", doc["gate"])
    pyproject = here / "pyproject.toml"
    if pyproject.is_file():
        doc = _read_toml(pyproject)
        tool = doc.get("tool", {})
        nero = tool.get("nero", {}) if isinstance(tool, dict) else {}
        if isinstance(nero, dict) and "gate" in nero:
            return _config_from_table(pyproject, "tool.nero.gate", nero["gate"])
    return GateConfig()


# ---------------------------------------------------------------------------------------
# run directories
# ---------------------------------------------------------------------------------------


@dataclass
class Run:
    """A finished run directory: its summary.json and run.json."""

    path: Path
    summary: dict[str, Any]
    info: dict[str, Any]

    @property
    def task(self) -> str:
        return str(self.summary.get("task", ""))

    @property
    def models(self) -> list[str]:
        return [str(m) for m in self.summary.get("models") or self.summary["metrics"].keys()]

    @property
    def groups(self) -> list[str]:
        return [str(g) for g in (self.summary.get("groups") or {})] or sorted(
            {g for per in self.summary["metrics"].values() for g in per})

    @property
    def higher_is_better(self) -> dict[str, bool]:
        return {str(k): bool(v) for k, v in self.summary["higher_is_better"].items()}

    @property
    def data_sha256(self) -> str | None:
        data = self.info.get("data")
        return data.get("sha256") if isinstance(data, dict) else None


def _read_json(path: Path, what: str, run_dir: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise OutputError(f"{run_dir}: no {what}; not a finished nero run directory (rerun 'nero evaluate ... --out {run_dir}')") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise OutputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); the run directory is damaged, rerun 'nero evaluate'") from None
    if not isinstance(obj, dict):
        raise OutputError(f"{path}: expected a JSON object; the run directory is damaged, rerun 'nero evaluate'")
    return obj


def load_run(run_dir: Path | str, what: str = "RUN_DIR") -> Run:
    """Read a run directory. A path that is not a directory is a usage error (exit 2); a run
    without run.json, whose status is not ``complete``, or damaged is refused with
    :class:`~nero_cli.errors.OutputError` (exit 5)."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        partial = run_dir.parent / f".{run_dir.name}.partial"
        if partial.is_dir():
            status = _read_json_quiet(partial / "run.json").get("status", "unknown")
            raise OutputError(f"{what} {run_dir}: the run is not finished (its partial directory {partial.name} says "
                              f"'{status}'); complete it with 'nero evaluate ... --out {run_dir} --resume'")
        raise OptionError(f"{what} {run_dir}: no such directory; pass the --out directory of 'nero evaluate'")
    if not run_dir.is_dir():
        raise OptionError(f"{what} {run_dir}: not a directory; pass the --out directory of 'nero evaluate'")
    info = _read_json(run_dir / "run.json", "run.json", run_dir)
    status = info.get("status")
    if status != "complete":
        raise OutputError(f"{run_dir}: run.json status is '{status}', not 'complete'; the run did not finish, "
                          f"rerun 'nero evaluate' (or add --resume)")
    summary = _read_json(run_dir / "summary.json", "summary.json", run_dir)
    for k in ("metrics", "higher_is_better"):
        if not isinstance(summary.get(k), dict):
            raise OutputError(f"{run_dir / 'summary.json'}: no '{k}' table; written by an older nero? rerun 'nero evaluate'")
    return Run(run_dir, summary, info)


def _read_json_quiet(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _load_results(run: Run) -> Any:
    import pandas as pd

    path = run.path / "results.csv"
    try:
        table = pd.read_csv(path, dtype={"model": str, "group": str})
    except FileNotFoundError:
        raise OutputError(f"{run.path}: no results.csv; the baseline comparison needs it (rerun 'nero evaluate')") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise OutputError(f"{path}: cannot read ({str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__})") from None
    missing = [c for c in ("model", "sample", "group", "element", "identity") if c not in table]
    if missing:
        raise OutputError(f"{path}: missing column(s) {', '.join(missing)}; the run directory is damaged, rerun 'nero evaluate'")
    if table["identity"].dtype != bool:
        table["identity"] = table["identity"].astype(str).str.lower().isin(["true", "1"])
    if "correct" in table:
        if table["correct"].dtype != bool:
            table["correct"] = table["correct"].astype(str).str.lower().isin(["true", "1", "1.0"])
        table["accuracy"] = table["correct"].astype("float64")
    return table


# ---------------------------------------------------------------------------------------
# the result
# ---------------------------------------------------------------------------------------


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        return "nan"
    if isinstance(x, (int, float)):
        return f"{x + 0.0:.4g}"  # + 0.0: no "-0"
    return str(x)


def _distinct(a: float, b: float) -> tuple[str, str]:
    """``a`` and ``b`` with enough digits to tell them apart (0.1 vs 0.10004, not 0.1 vs 0.1)."""
    for digits in (4, 6, 9, 12, 17):
        sa, sb = f"{a + 0.0:.{digits}g}", f"{b + 0.0:.{digits}g}"
        if sa != sb or a == b:
            return sa, sb
    return sa, sb


def _clean(obj: Any) -> Any:
    """NaN/inf -> None, for strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


@dataclass
class GateResult:
    """Every check of one ``nero gate``: ``rows`` are dicts with ``kind`` (threshold or
    regression), ``model``, ``group``, ``metric``, ``higher_is_better``, ``value``, the
    threshold or baseline fields, ``interval`` (regressions), ``status`` (pass/fail) and a
    one-line ``message``."""

    run_dir: Path
    rows: list[dict[str, Any]]
    baseline_dir: Optional[Path] = None
    notes: list[str] = field(default_factory=list)
    config: str = ""
    method: str = ""  # how the baseline comparison was judged, one line

    @property
    def n_checks(self) -> int:
        return len(self.rows)

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] != "pass"]

    @property
    def n_failed(self) -> int:
        return len(self.failures)

    @property
    def passed(self) -> bool:
        return self.n_failed == 0

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def summary_line(self) -> str:
        return f"{self.n_checks} checks, {self.n_failed} failed"

    # -- serialisations ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return _clean({"passed": self.passed, "n_checks": self.n_checks, "n_failed": self.n_failed,
                       "run": str(self.run_dir), "baseline": str(self.baseline_dir) if self.baseline_dir else None,
                       "config": self.config or None, "method": self.method or None, "checks": self.rows,
                       "notes": self.notes})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @staticmethod
    def limit_text(row: dict[str, Any]) -> str:
        if row["kind"] == "threshold":
            return f"{row['bound']} {_fmt(row['threshold'])}"
        vs = f" ({row['baseline_model']})" if row.get("baseline_model") not in (None, row["model"]) else ""
        return f"baseline {_fmt(row['baseline_value'])}{vs}, worse by <= {_fmt(row['max_regression'])}"

    @staticmethod
    def case_name(row: dict[str, Any]) -> str:
        if row["kind"] == "threshold":
            return f"{row['group']}.{row['model']}:{row['bound']}-{metric_key(row['metric'])} {_fmt(row['threshold'])}"
        return f"{row['group']}.{row['model']}:{metric_key(row['metric'])} regression <= {_fmt(row['max_regression'])}"

    def to_junit(self) -> str:
        """JUnit XML: one testsuite, one testcase per check, ``<failure>`` for failures."""
        import xml.etree.ElementTree as ET

        root = ET.Element("testsuites", name="nero gate", tests=str(self.n_checks), failures=str(self.n_failed),
                          errors="0")
        suite = ET.SubElement(root, "testsuite", name=f"nero gate {self.run_dir}", tests=str(self.n_checks),
                              failures=str(self.n_failed), errors="0", skipped="0", time="0")
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="run", value=str(self.run_dir))
        if self.baseline_dir:
            ET.SubElement(props, "property", name="baseline", value=str(self.baseline_dir))
        for row in self.rows:
            case = ET.SubElement(suite, "testcase", classname=f"nero.gate.{row['model']}.{row['group']}",
                                 name=self.case_name(row), time="0")
            text = (f"{row['model']} / {row['group']} / {row['metric']} "
                    f"({'higher' if row['higher_is_better'] else 'lower'} is better): {row['message']}")
            if row["status"] != "pass":
                fail = ET.SubElement(case, "failure", message=row["message"], type=row["kind"])
                fail.text = text
            else:
                ET.SubElement(case, "system-out").text = text
        if self.notes:
            ET.SubElement(suite, "system-err").text = "\n".join(self.notes)
        ET.indent(root)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

    def to_markdown(self) -> str:
        """A Markdown report (heading, table, failures), e.g. for ``$GITHUB_STEP_SUMMARY``."""

        def cell(x: Any) -> str:
            return str(x).replace("|", "\\|").replace("\n", " ")

        verdict = "passed" if self.passed else "FAILED"
        lines = [f"### NERO gate {verdict}: {self.summary_line()}", "",
                 f"Run `{cell(self.run_dir)}`" + (f", baseline `{cell(self.baseline_dir)}`" if self.baseline_dir else "")
                 + (f", config {cell(self.config)}" if self.config else "") + ".", ""]
        if self.method:
            lines += [cell(self.method[0].upper() + self.method[1:]) + ".", ""]
        lines += ["| | model | group | metric | value | threshold / baseline | result |",
                  "|---|---|---|---|---:|---|---|"]
        for r in self.rows:
            icon = "✅" if r["status"] == "pass" else "❌"
            lines.append(f"| {icon} | {cell(r['model'])} | {cell(r['group'])} | {cell(metric_key(r['metric']))} | "
                         f"{_fmt(r['value'])} | {cell(self.limit_text(r))} | {cell(r['message'])} |")
        if self.notes:
            lines += ["", *[f"- {cell(n)}" for n in self.notes]]
        return "\n".join(lines) + "\n"

    def print(self, console: Any = None) -> None:
        """The rich table of every check, the failures one per line, and 'N checks, K failed'."""
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        if console is None:
            console = Console()
            if not console.is_terminal:  # CI logs: wide enough for the intervals
                console.width = max(console.width, 140)
        title = f"nero gate: {self.run_dir}" + (f" vs baseline {self.baseline_dir}" if self.baseline_dir else "")
        t = Table(title=escape(title), title_justify="left")
        for c, j in (("model", "left"), ("group", "left"), ("metric", "left"), ("value", "right"),
                     ("threshold / baseline", "left"), ("result", "left")):
            t.add_column(c, justify=j)  # type: ignore[arg-type]
        for r in self.rows:
            verdict = "[green]pass[/green]" if r["status"] == "pass" else "[bold red]FAIL[/bold red]"
            t.add_row(escape(r["model"]), escape(r["group"]), metric_key(r["metric"]), _fmt(r["value"]),
                      escape(self.limit_text(r)), f"{verdict} {escape(r['message'])}")
        console.print(t)
        if self.method:
            console.print(self.method, highlight=False, soft_wrap=True, markup=False)
        for r in self.failures:
            console.print(f"[bold red]FAIL[/bold red] {escape(r['model'])} / {escape(r['group'])} / "
                          f"{metric_key(r['metric'])}: {escape(r['message'])}", highlight=False, soft_wrap=True)
        style = "green" if self.passed else "bold red"
        console.print(f"[{style}]{self.summary_line()}[/{style}]", highlight=False)


# ---------------------------------------------------------------------------------------
# threshold checks
# ---------------------------------------------------------------------------------------


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    options = list(options)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'? " if close else ""


def _resolve_scope(th: Threshold, groups: Sequence[str], models: Sequence[str]) -> tuple[str | None, str | None]:
    """(group, model) of a threshold: its config tables, then its key prefix, matched against
    the run's names (group labels may contain ':' and '.', model names '.')."""
    group, model = th.group, th.model
    p = th.prefix
    if p:
        g2 = m2 = None
        if p.endswith("."):
            g2 = p[:-1]
        else:  # "MODEL:" or "GROUP.MODEL:"
            body = p[:-1]
            if body in models:
                m2 = body
            else:
                for g in sorted(groups, key=len, reverse=True):
                    if body.startswith(g + ".") and body[len(g) + 1:] in models:
                        g2, m2 = g, body[len(g) + 1:]
                        break
                else:
                    g2, _, m2 = body.rpartition(".") if "." in body else (None, "", body)
                    g2 = g2 or None
        if g2 is not None:
            if group is not None and g2 != group:
                raise OptionError(f"{th.source}: '{th.key}' names group '{g2}' inside the table of group '{group}'")
            group = g2
        if m2 is not None:
            if model is not None and m2 != model:
                raise OptionError(f"{th.source}: '{th.key}' names model '{m2}' inside the table of model '{model}'")
            model = m2
    return group, model


def _threshold_rows(run: Run, thresholds: Sequence[Threshold], notes: list[str]) -> list[dict[str, Any]]:
    hib = run.higher_is_better
    groups, models = run.groups, run.models
    valid = [metric_key(m) for m in hib]
    resolved: list[tuple[Threshold, str | None, str | None]] = []
    for th in thresholds:
        if th.metric not in hib:
            raise OptionError(f"{th.source}: unknown metric '{metric_key(th.metric)}' in '{th.key}' for this "
                              f"{run.task} run; {_did_you_mean(metric_key(th.metric), valid)}"
                              f"valid metrics: {', '.join(valid)}")
        group, model = _resolve_scope(th, groups, models)
        from_cli = th.source.startswith("--")
        for kind, name, known in (("group", group, groups), ("model", model, models)):
            if name is not None and name not in known:
                msg = (f"{th.source}: {kind} '{name}' in '{th.key}' is not in this run; "
                       f"{_did_you_mean(name, known)}{kind}s: {', '.join(known)}")
                if from_cli:
                    raise OptionError(msg)
                notes.append(msg + " (skipped)")
                break
        else:
            resolved.append((th, group, model))

    rows = []
    metrics = run.summary["metrics"]
    for model in models:
        for group in groups:
            if group not in metrics.get(model, {}):
                continue
            chosen: dict[tuple[str, str], tuple[tuple[int, int, int], Threshold]] = {}
            for th, g, m in resolved:
                if (g is not None and g != group) or (m is not None and m != model):
                    continue
                rank = ((g is not None) + 2 * (m is not None), 1 if th.source.startswith("--") else 0, th.order)
                k = (th.metric, th.bound)
                if k not in chosen or rank >= chosen[k][0]:
                    chosen[k] = (rank, th)
            ordered = sorted(chosen.values(), key=lambda rt: (list(hib).index(rt[1].metric), rt[1].bound))
            for _, th in ordered:
                rows.append(_threshold_row(model, group, th, metrics[model][group].get(th.metric), hib[th.metric]))
    return rows


def _threshold_row(model: str, group: str, th: Threshold, value: Any, higher: bool) -> dict[str, Any]:
    v = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")
    if not math.isfinite(v):
        ok, msg = False, "no value in summary.json" if value is None else f"value is {value}"
    elif th.bound == "min":
        ok = v >= th.value
        sv, st = _distinct(v, th.value)
        msg = f"{sv} >= min {st}" if ok else f"too low: {sv} < min {st}"
    else:
        ok = v <= th.value
        sv, st = _distinct(v, th.value)
        msg = f"{sv} <= max {st}" if ok else f"too high: {sv} > max {st}"
    if not ok and math.isfinite(v):
        msg += f" ({'higher' if higher else 'lower'} is better)"
    return {"kind": "threshold", "model": model, "group": group, "metric": th.metric, "higher_is_better": higher,
            "value": v, "bound": th.bound, "threshold": th.value, "key": th.key, "source": th.source,
            "baseline_model": None, "baseline_value": None, "max_regression": None, "worsening": None,
            "interval": None, "pairing": None, "status": "pass" if ok else "fail", "message": msg}


# ---------------------------------------------------------------------------------------
# regressions against a baseline: bootstrap over samples
# ---------------------------------------------------------------------------------------


@dataclass
class _Block:
    """One model × group of results.csv as samples × elements matrices."""

    samples: Any  # (n,) sorted sample ids
    identity: int  # column of the identity element
    mats: dict[str, Any]  # column -> (n, G) float, NaN where missing


def _blocks(table: Any, columns: Sequence[str], path: Path) -> dict[tuple[str, str], _Block]:
    import numpy as np

    out = {}
    for (model, group), t in table.groupby(["model", "group"], sort=False):
        samples, si = np.unique(t["sample"].to_numpy(), return_inverse=True)
        elements, ei = np.unique(t["element"].to_numpy(), return_inverse=True)
        ident = np.unique(ei[t["identity"].to_numpy(dtype=bool)])
        if len(ident) != 1:
            raise OutputError(f"{path / 'results.csv'}: {model} / {group} has {len(ident)} identity elements, expected 1; "
                            f"the run directory is damaged, rerun 'nero evaluate'")
        mats = {}
        for c in columns:
            if c in t:
                m = np.full((len(samples), len(elements)), np.nan)
                m[si, ei] = t[c].to_numpy(dtype=np.float64)
                mats[c] = m
        out[(str(model), str(group))] = _Block(samples, int(ident[0]), mats)
    return out


def _plan_metric(name: str, hib: Mapping[str, bool], columns: Iterable[str], primary: str | None) -> tuple | None:
    """How to recompute one summary.json metric from the matrices, or None if we cannot."""
    cols = set(columns)
    if name == "worst_case_accuracy":
        return ("all_correct", "accuracy") if "accuracy" in cols else None
    if name == "mean_confidence":
        return ("orbit", "confidence") if "confidence" in cols else None
    if name == "equivariance_error":
        return ("orbit", "equivariance_error") if "equivariance_error" in cols else None
    if name == "max_equivariance_error":
        return ("max", "equivariance_error") if "equivariance_error" in cols else None
    if name == "orbit_spread":
        return ("spread", primary) if primary in cols else None
    if name.startswith("orbit_") and name[6:] in cols:
        return ("orbit", name[6:])
    if name.startswith("worst_") and name[6:] in cols:
        base = name[6:]
        return ("worst", base, bool(hib.get(base, hib[name])))
    if name in cols:
        return ("identity", name)
    return None


def _statistics(block: _Block, plans: Mapping[str, tuple], weights: Any) -> dict[str, Any]:
    """Every planned metric for each row of ``weights`` (B × n resampling counts): (B,) arrays."""
    import numpy as np

    w = weights
    cache: dict[str, tuple[Any, Any]] = {}

    def sums(col: str) -> tuple[Any, Any]:
        if col not in cache:
            x = block.mats[col]
            ok = ~np.isnan(x)
            cache[col] = (w @ np.where(ok, x, 0.0), w @ ok.astype(np.float64))
        return cache[col]

    out = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for name, plan in plans.items():
            kind, col = plan[0], plan[1]
            if kind == "identity":
                s, c = sums(col)
                out[name] = s[:, block.identity] / c[:, block.identity]
            elif kind == "orbit":
                s, c = sums(col)
                out[name] = s.sum(axis=1) / c.sum(axis=1)
            elif kind in ("worst", "spread"):
                s, c = sums(col)
                curve = s / c
                curve = np.where(np.isnan(curve), np.nan, curve)
                if kind == "spread":
                    out[name] = np.nanmax(curve, axis=1) - np.nanmin(curve, axis=1)
                else:
                    out[name] = np.nanmin(curve, axis=1) if plan[2] else np.nanmax(curve, axis=1)
            elif kind == "all_correct":
                x = block.mats[col]
                every = np.where(np.isnan(x), 1.0, x).min(axis=1) >= 1.0
                out[name] = (w @ every.astype(np.float64)) / w.sum(axis=1)
            elif kind == "max":
                per_sample = np.nanmax(np.where(np.isnan(block.mats[col]), -np.inf, block.mats[col]), axis=1)
                out[name] = np.where(w > 0, per_sample[None, :], -np.inf).max(axis=1)
    return out


def _resample(rng: Any, n: int, size: int) -> Any:
    import numpy as np

    return rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(np.float64)


def _primary(run: Run, table: Any, blocks: Mapping[tuple[str, str], _Block]) -> str | None:
    """The metric orbit_spread is computed from: known per task, else inferred from summary.json."""
    import numpy as np

    if run.task in PRIMARY:
        return PRIMARY[run.task]
    for (model, group), block in blocks.items():
        target = run.summary["metrics"].get(model, {}).get(group, {}).get("orbit_spread")
        if target is None:
            continue
        for col, m in block.mats.items():
            curve = np.nanmean(m, axis=0)
            if abs((np.nanmax(curve) - np.nanmin(curve)) - target) < 1e-6:
                return col
        break
    return None


def parse_max_regression(value: Any) -> tuple[float, bool]:
    """``0.01`` (absolute, in the metric's units) or ``"5%"`` (relative to the baseline value)."""
    text = str(value).strip()
    relative = text.endswith("%")
    try:
        number = float(text[:-1] if relative else text)
    except ValueError:
        raise OptionError(f"--max-regression expects a number (absolute, e.g. 0.01) or a percentage of the "
                          f"baseline value (e.g. 5%); got '{value}'") from None
    if not math.isfinite(number) or number < 0:
        raise OptionError(f"--max-regression must be a non-negative number, got '{value}'")
    return (number / 100.0 if relative else number), relative


def _regression_rows(run: Run, base: Run, *, max_regression: Any, metrics: Sequence[str] | None, n_boot: int,
                     confidence: float, seed: int, notes: list[str]) -> list[dict[str, Any]]:
    import numpy as np

    if base.task != run.task:
        raise OptionError(f"--baseline {base.path} is a {base.task} run and {run.path} a {run.task} run; "
                        f"compare runs of the same task")
    limit, relative = parse_max_regression(max_regression)
    # -- pair models --------------------------------------------------------------------
    common = [m for m in run.models if m in base.models]
    if common:
        pairs = [(m, m) for m in common]
    elif len(run.models) == 1 and len(base.models) == 1:
        pairs = [(run.models[0], base.models[0])]
        notes.append(f"comparing model '{run.models[0]}' with baseline model '{base.models[0]}' (the only model of each run)")
    else:
        raise OptionError(f"--baseline {base.path}: no model in common (run: {', '.join(run.models)}; baseline: "
                        f"{', '.join(base.models)}); give them the same --name in 'nero evaluate'")
    only = [m for m in run.models if m not in {p[0] for p in pairs}] + [m for m in base.models if m not in {p[1] for p in pairs}]
    if only:
        notes.append(f"not in both runs, not compared with the baseline: {', '.join(only)}")
    groups = [g for g in run.groups if g in base.groups]
    if not groups:
        raise OptionError(f"--baseline {base.path}: no group in common (run: {', '.join(run.groups)}; baseline: "
                        f"{', '.join(base.groups)}); evaluate the baseline on the same --group")
    for g in groups:
        s1 = (run.summary.get("groups") or {}).get(g, {}).get("spec")
        s2 = (base.summary.get("groups") or {}).get(g, {}).get("spec")
        if s1 and s2 and s1 != s2:
            notes.append(f"group '{g}' has different grids: {s1} (run) vs {s2} (baseline); worst-element metrics may differ for that reason")
    # -- which metrics ------------------------------------------------------------------
    hib = run.higher_is_better
    base_hib = base.higher_is_better
    table, btable = _load_results(run), _load_results(base)
    columns = [c for c in table.columns if c in hib or c == "equivariance_error"]
    bcolumns = [c for c in btable.columns if c in base_hib or c == "equivariance_error"]
    blocks = _blocks(table, columns, run.path)
    bblocks = _blocks(btable, bcolumns, base.path)
    primary = _primary(run, table, blocks)
    shared_cols = [c for c in columns if c in bcolumns]
    plans_all = {m: _plan_metric(m, hib, shared_cols, primary) for m in hib if m in base_hib}
    if metrics:
        valid = [metric_key(m) for m in hib]
        chosen = []
        for name in metrics:
            m = name.strip().lower().replace("-", "_")
            if m not in hib:
                raise OptionError(f"--regression-metrics: unknown metric '{metric_key(m)}' for this {run.task} run; "
                                  f"{_did_you_mean(metric_key(m), valid)}valid metrics: {', '.join(valid)}")
            if plans_all.get(m) is None:
                raise OptionError(f"--regression-metrics: '{metric_key(m)}' cannot be recomputed from both runs' "
                                  f"results.csv; choose from {', '.join(metric_key(k) for k, v in plans_all.items() if v)}")
            chosen.append(m)
        plans = {m: plans_all[m] for m in dict.fromkeys(chosen)}
    else:
        # the bootstrap of a sample maximum is inconsistent (a resample never exceeds the sample's
        # maximum): max_* metrics are compared only when named in --regression-metrics
        plans = {m: p for m, p in plans_all.items() if p is not None and p[0] != "max"}
        skipped = [m for m, p in plans_all.items() if p is None]
        if skipped:
            notes.append(f"not recomputable from results.csv, no regression check: {', '.join(map(metric_key, skipped))}")
    if not plans:
        raise OptionError("--baseline: no metric can be compared; check --regression-metrics")
    # -- bootstrap ----------------------------------------------------------------------
    rng = np.random.default_rng(seed)
    alpha = (1.0 - confidence) / 2.0
    same_data = run.data_sha256 is None or base.data_sha256 is None or run.data_sha256 == base.data_sha256
    rows = []
    for model, bmodel in pairs:
        for group in groups:
            cur, ref = blocks.get((model, group)), bblocks.get((bmodel, group))
            if cur is None or ref is None:
                notes.append(f"{model} / {group}: no rows in results.csv of {'the run' if cur is None else 'the baseline'}; not compared")
                continue
            paired = same_data and len(cur.samples) == len(ref.samples) and bool(np.array_equal(cur.samples, ref.samples))
            point = _statistics(cur, plans, np.ones((1, len(cur.samples))))
            bpoint = _statistics(ref, plans, np.ones((1, len(ref.samples))))
            chunk = max(1, min(n_boot, 4_000_000 // max(len(cur.samples), len(ref.samples), 1)))
            d_all: dict[str, list] = {m: [] for m in plans}
            done = 0
            while done < n_boot:
                b = min(chunk, n_boot - done)
                w = _resample(rng, len(cur.samples), b)
                wb = w if paired else _resample(rng, len(ref.samples), b)
                s_cur, s_ref = _statistics(cur, plans, w), _statistics(ref, plans, wb)
                for m in plans:
                    diff = s_ref[m] - s_cur[m] if hib[m] else s_cur[m] - s_ref[m]
                    d_all[m].append(diff)
                done += b
            for m in plans:
                d = np.concatenate(d_all[m])
                d = d[np.isfinite(d)]
                v, bv = float(point[m][0]), float(bpoint[m][0])
                worse = (bv - v) if hib[m] else (v - bv)
                lo, hi = (float(np.quantile(d, alpha)), float(np.quantile(d, 1 - alpha))) if len(d) else (math.nan, math.nan)
                allowed = limit * abs(bv) if relative else limit
                rows.append(_regression_row(model, bmodel, group, m, hib[m], v, bv, worse, lo, hi, allowed,
                                            f"{_fmt(limit * 100)}% of {_fmt(abs(bv))}" if relative else None,
                                            "paired" if paired else "independent"))
    return rows


def _regression_row(model: str, bmodel: str, group: str, metric: str, higher: bool, v: float, bv: float,
                    worse: float, lo: float, hi: float, allowed: float, allowed_text: str | None,
                    pairing: str) -> dict[str, Any]:
    limit_s = _fmt(allowed) + (f" ({allowed_text})" if allowed_text else "")
    if not (math.isfinite(worse) and math.isfinite(lo) and math.isfinite(hi)):
        ok, msg = False, f"cannot compare: value {_fmt(v)}, baseline {_fmt(bv)}"
    elif lo > allowed:
        slo, slim = _distinct(lo, allowed)
        limit_s = slim + (f" ({allowed_text})" if allowed_text else "")
        ok, msg = False, f"worse by {_fmt(worse)} [{slo}, {_fmt(hi)}] > {limit_s}"
    elif worse > 0:
        ok, msg = True, f"worse by {_fmt(worse)} [{_fmt(lo)}, {_fmt(hi)}], not all > {limit_s}"
    elif worse == 0 and lo == 0 and hi == 0:
        ok, msg = True, "unchanged [0, 0]"
    else:
        ok, msg = True, f"better by {_fmt(-worse)} [{_fmt(-hi)}, {_fmt(-lo)}]"
    return {"kind": "regression", "model": model, "group": group, "metric": metric, "higher_is_better": higher,
            "value": v, "bound": None, "threshold": None, "key": None, "source": "--baseline",
            "baseline_model": bmodel, "baseline_value": bv, "max_regression": allowed, "worsening": worse,
            "interval": [lo, hi], "pairing": pairing, "status": "pass" if ok else "fail", "message": msg}


# ---------------------------------------------------------------------------------------
# the entry points
# ---------------------------------------------------------------------------------------


def _as_thresholds(checks: Any, source: str = "--check") -> list[Threshold]:
    if checks is None:
        return []
    if isinstance(checks, Mapping):
        items: Iterable[Any] = checks.items()
    else:
        items = checks
    out = []
    for i, item in enumerate(items):
        if isinstance(item, Threshold):
            out.append(item)
        elif isinstance(item, str):
            out.append(parse_check(item, source, order=1000 + i))
        else:
            key, value = item
            out.append(parse_threshold(key, value, source, order=1000 + i))
    return out


def gate_run(run_dir: Path | str, checks: Any = None, *, baseline: Path | str | None = None,
             max_regression: Any = None, regression_metrics: Sequence[str] | None = None,
             bootstrap: int | None = None, confidence: float | None = None, seed: int | None = None,
             config: GateConfig | None = None) -> GateResult:
    """Check a run directory.

    ``checks``: threshold keys and values, as a mapping ``{"rotation.max-equivariance-error": 0.1}``,
    ``KEY=VALUE`` strings, ``(key, value)`` pairs or :class:`Threshold` objects (command-line
    precedence). ``config``: a :class:`GateConfig` (from :func:`load_config`) whose thresholds
    and settings apply under ``checks`` and the keyword arguments. ``baseline``: a run to
    compare with; fails a metric when the whole ``confidence`` bootstrap interval of its
    worsening exceeds ``max_regression`` (absolute, or ``"5%"`` of the baseline value; default 0).
    ``bootstrap`` (default 1000 resamples), ``confidence`` (0.95) and ``seed`` (0) default to
    the config's settings, then to those values.
    """
    cfg = config or GateConfig()
    settings = dict(cfg.settings)
    run = load_run(run_dir)
    thresholds = [*cfg.thresholds, *_as_thresholds(checks)]
    baseline = baseline if baseline is not None else settings.get("baseline")
    max_regression = max_regression if max_regression is not None else settings.get("max-regression")
    if regression_metrics is None and settings.get("regression-metrics") is not None:
        rm = settings["regression-metrics"]
        regression_metrics = [s for s in (rm.split(",") if isinstance(rm, str) else rm) if str(s).strip()]
    if bootstrap is None:
        bootstrap = settings.get("bootstrap", 1000)
    if confidence is None:
        confidence = settings.get("confidence", 0.95)
    if seed is None:
        seed = settings.get("seed", 0)
    if max_regression is not None and baseline is None:
        raise OptionError("--max-regression needs --baseline RUN_DIR to compare with")
    if regression_metrics and baseline is None:
        raise OptionError("--regression-metrics needs --baseline RUN_DIR to compare with")
    try:
        bootstrap, seed, confidence = int(bootstrap), int(seed), float(confidence)
    except (TypeError, ValueError):
        raise OptionError(f"bootstrap and seed must be integers and confidence a number; got {bootstrap}, {seed}, {confidence}") from None
    if bootstrap < 1:
        raise OptionError(f"--bootstrap must be at least 1 (e.g. 1000), got {bootstrap}")
    if not 0 < confidence < 1:
        raise OptionError(f"--confidence must be between 0 and 1 (e.g. 0.95), got {confidence}")
    if not thresholds and baseline is None:
        raise OptionError("no checks: pass thresholds (e.g. --max-equivariance-error 0.1 or --check "
                          "rotation.min-orbit-accuracy=0.9), --baseline RUN_DIR, or a config file "
                          "(a 'gate' table in nero.toml or 'tool.nero.gate' in pyproject.toml)")
    notes: list[str] = []
    rows = _threshold_rows(run, thresholds, notes)
    base_run = None
    method = ""
    if baseline is not None:
        base_run = load_run(baseline, what="--baseline")
        reg = _regression_rows(run, base_run, max_regression=0.0 if max_regression is None else max_regression,
                                 metrics=regression_metrics, n_boot=bootstrap, confidence=confidence, seed=seed,
                                 notes=notes)
        rows += reg
        pairing = sorted({r["pairing"] for r in reg})
        how = {"paired": "paired (both runs scored the same samples)",
               "independent": "independent resampling of each run's samples"}
        method = (f"baseline comparison: {bootstrap} bootstrap resamples over samples, {confidence * 100:.4g}% intervals, "
                  f"{' / '.join(how[p] for p in pairing)}; a check fails when the whole interval of the worsening "
                  f"lies above the allowed regression")
    return GateResult(run_dir=run.path, rows=rows, baseline_dir=base_run.path if base_run else None, notes=notes,
                      config=str(cfg.path) if cfg.path else "", method=method)


def write_atomic(path: Path | str, text: str, what: str = "file") -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OptionError(f"{what} {path}: the directory {parent} does not exist; create it or choose another path")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise OptionError(f"{what} {path}: cannot write in {parent} ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            try:
                os.chmod(tmp, path.stat().st_mode & 0o777)
            except OSError:
                pass
        else:
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _print_notes(notes: Sequence[str]) -> None:
    from rich.console import Console
    from rich.markup import escape

    err = Console(stderr=True)
    for n in notes:
        err.print(f"[yellow]note:[/yellow] {escape(n)}", highlight=False, soft_wrap=True)


def gate_after_evaluate(run_dir: Path, config: Path | str | None = None, console: Any = None) -> int:
    """For ``nero evaluate --gate``: gate ``run_dir`` with the discovered config (``nero.toml``
    ``[gate]``, else ``pyproject.toml`` ``[tool.nero.gate]``, or ``config``); print the table;
    return 0 when every check passes, 1 otherwise, and 0 (saying so) when nothing is configured.
    Raises :class:`~nero_cli.errors.NeroError` for a bad config (exit 2 under the CLI guard)."""
    from rich.console import Console

    cfg = load_config(config)
    out = console or Console()
    if not cfg.thresholds and cfg.settings.get("baseline") is None:
        out.print("nero gate: no thresholds configured (nero.toml [gate] or pyproject.toml [tool.nero.gate]); "
                  "nothing to check", highlight=False, soft_wrap=True, markup=False)
        return 0
    result = gate_run(run_dir, config=cfg)
    _print_notes(result.notes)
    result.print(console)
    return result.exit_code


def _gate_cli(run_dir: Path, *, checks: Sequence[str], fixed: Mapping[str, float | None], config: Path | None,
              no_config: bool, baseline: Path | None, max_regression: str | None, regression_metrics: Sequence[str],
              bootstrap: int | None, confidence: float | None, seed: int | None, junit: Path | None,
              markdown: Path | None, as_json: bool) -> int:
    if no_config and config is not None:
        raise OptionError("--config and --no-config contradict each other; pass one")
    for opt, target in (("--junit", junit), ("--markdown", markdown)):
        if target is not None and not Path(target).parent.is_dir():
            raise OptionError(f"{opt} {target}: the directory {Path(target).parent} does not exist; create it or "
                              f"choose another path")
    cfg = GateConfig() if no_config else load_config(config)
    cli: list[Threshold] = []
    for i, (opt, value) in enumerate(fixed.items()):
        if value is not None:
            cli.append(parse_threshold(opt[2:], value, opt, order=1000 + i))
    for i, text in enumerate(checks):
        cli.append(parse_check(text, "--check", order=2000 + i))
    metrics = [m for v in regression_metrics for m in v.split(",") if m.strip()] or None
    result = gate_run(run_dir, cli, baseline=baseline, max_regression=max_regression, regression_metrics=metrics,
                      bootstrap=bootstrap, confidence=confidence, seed=seed, config=cfg)
    if junit is not None:
        write_atomic(junit, result.to_junit(), "--junit")
    if markdown is not None:
        write_atomic(markdown, result.to_markdown(), "--markdown")
    _print_notes(result.notes)
    if as_json:
        sys.stdout.write(result.to_json())
        sys.stdout.flush()
    else:
        result.print()
    return result.exit_code


def add_command(app: Any, guard: Callable[[Callable[[], Any]], Any]) -> None:
    """Register the ``gate`` command on the typer app."""

    @app.command("gate")
    def gate(
        run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A finished run directory (the --out of 'nero evaluate')."),
        max_equivariance_error: Optional[float] = typer.Option(None, "--max-equivariance-error", help="Fail if the mean equivariance error of any model/group exceeds X."),
        min_orbit_accuracy: Optional[float] = typer.Option(None, "--min-orbit-accuracy", help="Fail if the accuracy over the orbit is below X."),
        min_worst_case_accuracy: Optional[float] = typer.Option(None, "--min-worst-case-accuracy", help="Fail if the share of samples correct at every element is below X."),
        max_orbit_spread: Optional[float] = typer.Option(None, "--max-orbit-spread", help="Fail if max - min of the primary metric's aggregate curve exceeds X."),
        check: Optional[List[str]] = typer.Option(None, "--check", "-c", metavar="KEY=VALUE", help="KEY=VALUE, KEY = [GROUP.][MODEL:]min-METRIC or max-METRIC, e.g. rotation.max-equivariance-error=0.1; repeatable."),
        config: Optional[Path] = typer.Option(None, "--config", metavar="FILE", help="TOML file with a \\[gate] (or \\[tool.nero.gate]) table (default: ./nero.toml \\[gate], else ./pyproject.toml \\[tool.nero.gate])."),
        no_config: bool = typer.Option(False, "--no-config", help="Ignore nero.toml / pyproject.toml."),
        baseline: Optional[Path] = typer.Option(None, "--baseline", metavar="RUN_DIR", help="Run directory to compare with: fail on metrics significantly worse than there."),
        max_regression: Optional[str] = typer.Option(None, "--max-regression", metavar="M", help="Allowed worsening vs --baseline: absolute (0.01) or relative to the baseline value (5%). Default 0."),
        regression_metrics: Optional[List[str]] = typer.Option(None, "--regression-metrics", metavar="A,B", help="Compare only these metrics with the baseline, e.g. orbit-accuracy,equivariance-error (default: all)."),
        bootstrap: Optional[int] = typer.Option(None, "--bootstrap", help="Bootstrap resamples over samples for the baseline comparison (default 1000)."),
        confidence: Optional[float] = typer.Option(None, "--confidence", help="Confidence level of the bootstrap interval (default 0.95)."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the bootstrap (default 0)."),
        junit: Optional[Path] = typer.Option(None, "--junit", metavar="FILE", help="Write JUnit XML (one testcase per check) to FILE."),
        markdown: Optional[Path] = typer.Option(None, "--markdown", metavar="FILE", help="Write a Markdown report to FILE, e.g. $GITHUB_STEP_SUMMARY."),
        as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON instead of the table."),
    ) -> None:
        """Pass/fail checks on a run directory for CI: thresholds on summary.json and regressions
        against a baseline run. Exit 0 all pass, 1 a check failed, 2 bad usage, 5 run not complete."""
        fixed = {"--max-equivariance-error": max_equivariance_error, "--min-orbit-accuracy": min_orbit_accuracy,
                 "--min-worst-case-accuracy": min_worst_case_accuracy, "--max-orbit-spread": max_orbit_spread}
        code = guard(lambda: _gate_cli(
            run_dir, checks=check or [], fixed=fixed, config=config, no_config=no_config, baseline=baseline,
            max_regression=max_regression, regression_metrics=regression_metrics or [], bootstrap=bootstrap,
            confidence=confidence, seed=seed, junit=junit, markdown=markdown, as_json=as_json))
        if code:
            raise typer.Exit(code)


__all__ = ["GateConfig", "GateResult", "Threshold", "add_command", "gate_after_evaluate", "gate_run", "load_config",
           "load_run", "parse_check", "parse_max_regression", "parse_threshold", "write_atomic"]
