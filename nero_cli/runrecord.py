"""The one run record: reading and writing a run folder.

A run folder holds ``run.json`` (status, provenance and the *record*: task, reference,
parameter columns, primary metric, plot parameters, group specs, class names),
``results.csv`` (the tidy table), ``summary.csv`` (aggregate curves), ``summary.json``,
``vectors/`` (the per-sample NERO vectors ``nero report`` reads, :mod:`nero_cli.vectors`) and
``plots/``. It is written under a temporary sibling name and renamed into place only when
complete. Gate, report, merge and plot read runs only through :func:`open_run`; none of
them reloads a model or guesses a column.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from . import csv_rows
from .core import element_weights
from .errors import NeroError, OptionError, OutputError
from .model_formats import sha256_file
from .outdir import IO_ERRORS, io_error
from .tasks import TaskRecord, get_task
from .vectors import Vectors, open_vectors

if TYPE_CHECKING:
    import pandas as pd
else:
    from nero_cli.lazy import pandas as pd

RUN_JSON, RESULTS, AGGREGATE, SUMMARY = "run.json", "results.csv", "summary.csv", "summary.json"
#: Columns every results table starts with, before the parameter columns.
KEYS = ("model", "sample", "label", "group", "element", "identity")
#: Keys of the record inside run.json.
RECORD_KEYS = ("task", "reference", "param_columns", "primary_metric", "plots", "class_names")
#: run.json ``kind`` of the run folders of ``nero lie``, ``nero layers`` and ``nero search``
#: (read by :mod:`nero_cli.analysis_runs`); an evaluate run has no ``kind``.
ANALYSIS_KINDS = ("lie", "layers", "search")


def write_atomic(path: Path | str, text: str, what: str = "file") -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory, fsync and a rename."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{what} {path}: the directory {parent} does not exist; create it or choose another path")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise OutputError(f"{what} {path}: cannot write in {parent} ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in IO_ERRORS:  # a full disk's error names no file
            raise io_error(exc, path) from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def json_text(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n"


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json_text(obj), "file")


def write_table(path: Path, table: pd.DataFrame) -> None:
    """A results or aggregate table as CSV, floats to 9 significant digits (the run format)."""
    table.to_csv(path, index=False, float_format="%.9g")


def write_columns(path: Path, columns: Mapping[str, np.ndarray]) -> None:
    """A table given as its columns, as :func:`write_table` writes it (without pandas: see
    :mod:`nero_cli.csv_rows`)."""
    cells = [csv_rows.cells(np.asarray(v)) for v in columns.values()]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        fh.write(csv_rows.header(list(columns)))
        fh.writelines(",".join(row) + "\n" for row in zip(*cells))


def read_json(path: Path, run_dir: Path, quiet: bool = False) -> dict[str, Any]:
    """A JSON object from a run folder; a damaged file is one OutputError line (``{}`` if ``quiet``)."""
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        if quiet:
            return {}
        raise OutputError(f"{run_dir}: no {path.name}; not a finished nero run directory "
                          f"(rerun 'nero evaluate ... --out {run_dir}')") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        if quiet:
            return {}
        why = f"{exc.msg} at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise OutputError(f"{path}: not valid JSON ({why}); the run directory is damaged, rerun 'nero evaluate'") from None
    if not isinstance(obj, dict):
        if quiet:
            return {}
        raise OutputError(f"{path}: expected a JSON object; the run directory is damaged, rerun 'nero evaluate'")
    return obj


def read_status(run_dir: Path) -> dict[str, Any]:
    """run.json of a (possibly partial) run folder, or ``{}``."""
    return read_json(run_dir / RUN_JSON, run_dir, quiet=True)


def partial_dir(out: Path) -> Path:
    """Where a run for ``out`` is written before it is complete."""
    return out.parent / f".{out.name}.partial"


@dataclass
class RunRecord:
    """A complete run folder, as written by ``nero evaluate`` or ``nero merge``."""

    path: Path
    info: dict[str, Any]
    summary: dict[str, Any]
    _results: pd.DataFrame | None = field(default=None, repr=False)
    _aggregate: pd.DataFrame | None = field(default=None, repr=False)
    _vectors: Vectors | None = field(default=None, repr=False)

    # -- the record ----------------------------------------------------------------
    @property
    def record(self) -> dict[str, Any]:
        return self.info["record"]

    @property
    def task(self) -> TaskRecord:
        return get_task(self.record["task"])

    @property
    def reference(self) -> str:
        return str(self.record["reference"])

    @property
    def param_columns(self) -> list[str]:
        return list(self.record["param_columns"])

    @property
    def primary_metric(self) -> str:
        return str(self.record["primary_metric"])

    @property
    def plots(self) -> dict[str, dict[str, Any]]:
        """Per group label: ``spec``, ``kind`` (polar, heatmap ...), ``params`` and ``n_elements``."""
        return dict(self.record["plots"])

    @property
    def class_names(self) -> list[str] | None:
        return self.record.get("class_names")

    @property
    def models(self) -> list[str]:
        return [str(m) for m in self.summary["models"]]

    @property
    def groups(self) -> list[str]:
        return list(self.plots)

    @property
    def higher_is_better(self) -> dict[str, bool]:
        return {k: sk.higher_is_better for k, sk in self.task.summary_keys.items()}

    @property
    def data_sha256(self) -> str | None:
        data = self.info.get("data")
        return data.get("sha256") if isinstance(data, dict) else None

    @property
    def n_rows(self) -> int | None:
        return self.info.get("n_rows")

    # -- tables ----------------------------------------------------------------------
    def results(self) -> pd.DataFrame:
        """results.csv with typed key columns (``identity`` and ``correct`` as bool), read whole."""
        if self._results is None:
            table = _read_results(self.path / RESULTS)
            if len(table) != self.n_rows:
                raise OutputError(f"{self.path / RESULTS}: {len(table)} rows, run.json says {self.n_rows}; the run "
                                  "directory is damaged, rerun 'nero evaluate'")
            self._results = table
        return self._results

    def vectors(self) -> Vectors | None:
        """The per-sample NERO vectors, checked against run.json (None for a run written without them)."""
        if "vectors" not in self.info:
            return None
        if self._vectors is None:
            self._vectors = open_vectors(self.path, self.info["vectors"])
        return self._vectors

    def aggregate(self) -> pd.DataFrame:
        """summary.csv, the aggregate curves."""
        if self._aggregate is None:
            agg = _read_csv(self.path / AGGREGATE)
            for c in ("model", "group", "class"):
                agg[c] = agg[c].astype(str)
            self._aggregate = agg
        return self._aggregate


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        # names stay as written ("NA", "nan", "01" are model or class names); empty cells are missing numbers
        return pd.read_csv(path, low_memory=False, dtype={"model": str, "group": str, "class": str},
                           keep_default_na=False, na_values=[""])
    except FileNotFoundError:
        raise OutputError(f"{path.parent}: no {path.name}; not a complete nero run directory "
                          f"(rerun 'nero evaluate ... --out {path.parent}')") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise OutputError(f"{path}: cannot read ({why}); the run directory is damaged, rerun 'nero evaluate'") from None


def _as_bool(s: pd.Series) -> pd.Series:
    return s if s.dtype == bool else s.astype(str).str.lower().isin(("true", "1", "1.0"))


def _read_results(path: Path) -> pd.DataFrame:
    table = _read_csv(path)
    missing = [c for c in KEYS if c not in table.columns]
    if missing:
        raise OutputError(f"{path}: missing column(s) {', '.join(missing)}; the run directory is damaged, "
                          "rerun 'nero evaluate'")
    if table.empty:
        raise OutputError(f"{path}: no rows; the run directory is damaged, rerun 'nero evaluate'")
    table["model"] = table["model"].astype(str)
    table["group"] = table["group"].astype(str)
    table["identity"] = _as_bool(table["identity"])
    return table


def complete_info(run_dir: Path, what: str = "RUN_DIR") -> dict[str, Any]:
    """run.json of a complete run folder of any kind. A missing path is a usage error (exit 2);
    an unfinished or damaged folder one OutputError line (exit 5)."""
    if not run_dir.exists():
        partial = partial_dir(run_dir)
        if partial.is_dir():
            status = read_status(partial).get("status", "unknown")
            raise OutputError(f"{what} {run_dir}: the run is not finished (its partial directory {partial.name} says "
                              f"'{status}'); complete it with 'nero evaluate ... --out {run_dir} --resume'")
        raise OptionError(f"{what} {run_dir}: no such directory; pass the --out directory of 'nero evaluate'")
    if not run_dir.is_dir():
        raise OptionError(f"{what} {run_dir}: not a directory; pass the --out directory of 'nero evaluate'")
    info = read_json(run_dir / RUN_JSON, run_dir)
    status = info.get("status")
    if status != "complete":
        raise OutputError(f"{run_dir}: run.json status is '{status}', not 'complete'; the run did not finish, "
                          "rerun 'nero evaluate' (or add --resume)")
    return info


def open_run(run_dir: Path | str, what: str = "RUN_DIR") -> RunRecord:
    """A complete run folder of ``nero evaluate`` (or ``nero merge``). A missing path is a usage
    error (exit 2); an unfinished, damaged or foreign folder is refused with one OutputError line (exit 5)."""
    run_dir = Path(run_dir)
    info = complete_info(run_dir, what)
    kind = info.get("kind")
    if kind in ANALYSIS_KINDS:
        raise OutputError(f"{run_dir}: holds a 'nero {kind}' run, not a 'nero evaluate' run; "
                          f"pass the --out directory of 'nero evaluate' here")
    record = info.get("record")
    if not isinstance(record, dict) or any(k not in record for k in RECORD_KEYS):
        raise OutputError(f"{run_dir / RUN_JSON}: no run record; written by an older nero? rerun 'nero evaluate'")
    try:
        get_task(str(record["task"]))
    except NeroError:
        raise OutputError(f"{run_dir / RUN_JSON}: unknown task '{record['task']}'; written by a newer nero?") from None
    summary = read_json(run_dir / SUMMARY, run_dir)
    if not isinstance(summary.get("metrics"), dict) or not isinstance(summary.get("models"), list):
        raise OutputError(f"{run_dir / SUMMARY}: no 'metrics' table; written by an older nero? rerun 'nero evaluate'")
    _check_sealed(run_dir / SUMMARY, info.get("summary_sha256"))
    _check_agree(run_dir, info, record, summary)
    run = RunRecord(run_dir, info, summary)
    _validate(run)
    return run


def _check_sealed(path: Path, want: Any) -> None:
    """Refuse a file whose sha256 differs from the one run.json records (runs written before the
    checksum was recorded carry none and are checked by :func:`_check_agree` alone)."""
    if want is None:
        return
    try:
        got = sha256_file(path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot read ({exc.strerror}); the run directory is damaged, rerun 'nero evaluate'") from None
    if got != want:
        raise OutputError(f"{path}: does not match the checksum in run.json (the file was changed or cut short); "
                          "the run is damaged, rerun 'nero evaluate'")


def _check_agree(run_dir: Path, info: dict[str, Any], record: dict[str, Any], summary: dict[str, Any]) -> None:
    """Refuse a run whose run.json and summary.json disagree on the task, the models, the groups or
    their sizes: an edited run.json would otherwise leave gate and report nothing to check."""
    plots, metrics = record.get("plots"), summary["metrics"]
    groups = list(plots) if isinstance(plots, dict) else None
    models = [m.get("name") if isinstance(m, dict) else None for m in info.get("models") or []]
    size = {g: p.get("n_elements") if isinstance(p, dict) else None for g, p in (plots or {}).items()}
    agree = (bool(groups) and groups == list(info.get("groups") or {}) == list(summary.get("groups") or [])
             and bool(models) and models == summary["models"] == list(metrics)
             and record.get("task") == summary.get("task")
             and all(isinstance(metrics[m], dict) and list(metrics[m]) == groups
                     and all(isinstance(metrics[m][g], dict) and metrics[m][g].get("n_elements") == size[g]
                             for g in groups) for m in models))
    if not agree:
        raise OutputError(f"{run_dir}: run.json and summary.json disagree on the task, models or groups (a file was "
                          "edited or mixed from two runs); the run is damaged, rerun 'nero evaluate'")


def _validate(run: RunRecord) -> None:
    """Refuse a run whose results.csv is not the one nero wrote: checksum and columns (its header;
    the row count when the table is read, :meth:`RunRecord.results`). Nothing is held in memory."""
    path = run.path / RESULTS
    want = run.info.get("results_sha256")
    if not want or not isinstance(run.info.get("n_rows"), int):
        raise OutputError(f"{run.path / RUN_JSON}: no checksum of results.csv; written by an older nero? "
                          "rerun 'nero evaluate'")
    _check_sealed(path, want)
    with open(path, newline="", encoding="utf-8") as fh:
        columns = next(csv.reader(fh), [])
    expected = [*KEYS, *run.param_columns, *(c.name for c in run.task.columns)]
    missing = [c for c in expected if c not in columns]
    if missing:
        raise OutputError(f"{path}: missing column(s) {', '.join(missing)}; the run directory is damaged, "
                          "rerun 'nero evaluate'")


def make_record(task: TaskRecord, reference: str, param_columns: Sequence[str], plans: Sequence[Any],
                class_names: Sequence[str] | None) -> dict[str, Any]:
    """The record stored in run.json: everything a reader needs without the models."""
    return {
        "task": task.name,
        "reference": reference,
        "param_columns": list(param_columns),
        "primary_metric": task.primary,
        "plots": {p.label: {"spec": p.spec.canonical, "kind": p.group.plot_kind, "params": list(p.group.plot_columns),
                            "n_elements": len(p.group), "identity": p.group.identity_index,
                            "element_weights": element_weights(p)}
                  for p in plans},
        "class_names": list(class_names) if class_names else None,
    }


__all__ = ["RunRecord", "open_run", "complete_info", "ANALYSIS_KINDS", "make_record", "write_atomic", "write_json", "write_table", "read_json",
           "read_status", "partial_dir", "json_text", "KEYS", "RUN_JSON", "RESULTS", "AGGREGATE",
           "SUMMARY"]
