"""Reading the run folders of ``nero lie``, ``nero layers`` and ``nero search``.

Each such folder holds one table (``lie.csv``, ``layers.csv`` or ``search.csv``), ``summary.json``,
``plots/`` and ``run.json``, whose ``kind`` names the command and which records the table's
sha256 (``<kind>_sha256``) and row count. :func:`open_analysis` is the one reader, used by
``nero gate`` and ``nero report``; it refuses a damaged folder as :func:`nero_cli.runrecord.open_run`
does. :func:`run_kind` tells the kinds apart without reading the tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import OutputError
from .model_formats import sha256_file
from .runrecord import ANALYSIS_KINDS, RUN_JSON, SUMMARY, complete_info, read_json

#: The table of each kind and the columns it must have.
TABLES = {
    "lie": ("lie.csv", ("model", "sample", "generator", "value", "unit", "method")),
    "layers": ("layers.csv", ("model", "layer", "kind", "depth", "element", "own_error", "contribution")),
    "search": ("search.csv", ("model", "sample", "group", "axis", "worst_value", "breaking", "correct_at_identity")),
}
#: Where each kind's summary.json keeps its per-model numbers.
MODEL_KEYS = {"lie": "metrics", "layers": "per_model", "search": "models"}

#: The metrics ``nero gate`` checks on each kind (name -> higher is better; see :mod:`nero_cli.gate_analysis`).
GATE_METRICS = {
    "lie": {"lie_derivative": False, "lie_derivative_orbit": False},
    "layers": {"layer_error": False},
    "search": {f"breaking_{g}": True for g in ("rotation", "shift", "scale", "perspective")},
}
#: Every metric some analysis kind offers (an evaluate run's come from its task).
ALL_ANALYSIS_METRICS = frozenset(m for ms in GATE_METRICS.values() for m in ms)


@dataclass
class AnalysisRun:
    """A complete run folder of ``nero lie``, ``nero layers`` or ``nero search``."""

    path: Path
    kind: str
    info: dict[str, Any]
    summary: dict[str, Any]
    _table: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def table_name(self) -> str:
        return TABLES[self.kind][0]

    @property
    def models(self) -> list[str]:
        """Model names, in the run's order."""
        return [str(m) for m in self.per_model]

    @property
    def per_model(self) -> dict[str, Any]:
        """summary.json's per-model numbers (``metrics``, ``per_model`` or ``models``)."""
        return dict(self.summary[MODEL_KEYS[self.kind]])

    @property
    def group(self) -> str:
        """The group spec (lie, layers) or the groups searched (search), as text."""
        if self.kind == "search":
            return ", ".join(sorted({k.split("/")[0] for m in self.per_model.values() for k in m}))
        return str(self.summary.get("group", ""))

    def table(self) -> pd.DataFrame:
        """The run's table, names kept as written (``NA`` stays a name), empty cells missing."""
        if self._table is None:
            path = self.path / self.table_name
            try:
                t = pd.read_csv(path, low_memory=False, keep_default_na=False, na_values=[""],
                                dtype={c: str for c in ("model", "layer", "kind", "generator", "group", "axis",
                                                        "element", "unit", "method")})
            except (OSError, ValueError, pd.errors.ParserError) as exc:
                why = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
                raise OutputError(f"{path}: cannot read ({why}); the run directory is damaged, rerun "
                                  f"'nero {self.kind}'") from None
            self._table = t
        return self._table


def run_kind(run_dir: Path | str) -> str | None:
    """``lie``, ``layers`` or ``search`` for their run folders, None for anything else (an
    evaluate run, or a folder that is not a run: :func:`open_run` says what is wrong with it)."""
    info = read_json(Path(run_dir) / RUN_JSON, Path(run_dir), quiet=True)
    kind = info.get("kind")
    return kind if kind in ANALYSIS_KINDS else None


def open_analysis(run_dir: Path | str, what: str = "RUN_DIR") -> AnalysisRun:
    """A complete lie, layers or search run folder, its table checked against run.json's sha256,
    row count and columns; anything else is one OutputError line (exit 5)."""
    run_dir = Path(run_dir)
    info = complete_info(run_dir, what)
    kind = info.get("kind")
    if kind not in ANALYSIS_KINDS:
        raise OutputError(f"{what} {run_dir}: not a run of 'nero lie', 'nero layers' or 'nero search' "
                          f"(run.json kind is {kind!r})")
    summary = read_json(run_dir / SUMMARY, run_dir)
    if not isinstance(summary.get(MODEL_KEYS[kind]), dict):
        raise OutputError(f"{run_dir / SUMMARY}: no '{MODEL_KEYS[kind]}' table; written by an older nero? "
                          f"rerun 'nero {kind}'")
    run = AnalysisRun(run_dir, kind, info, summary)
    _validate(run)
    return run


def _validate(run: AnalysisRun) -> None:
    path = run.path / run.table_name
    want, n_rows = run.info.get(f"{run.kind}_sha256"), run.info.get("n_rows")
    if not want or not isinstance(n_rows, int):
        raise OutputError(f"{run.path / RUN_JSON}: no checksum of {run.table_name}; rerun 'nero {run.kind}'")
    try:
        got = sha256_file(path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot read ({exc.strerror}); the run directory is damaged, "
                          f"rerun 'nero {run.kind}'") from None
    if got != want:
        raise OutputError(f"{path}: does not match the checksum in run.json (the file was changed or cut short); "
                          f"the run is damaged, rerun 'nero {run.kind}'")
    table = run.table()
    missing = [c for c in TABLES[run.kind][1] if c not in table.columns]
    if missing or len(table) != n_rows:
        what = f"missing column(s) {', '.join(missing)}" if missing else f"{len(table)} rows, run.json says {n_rows}"
        raise OutputError(f"{path}: {what}; the run directory is damaged, rerun 'nero {run.kind}'")


__all__ = ["AnalysisRun", "GATE_METRICS", "ALL_ANALYSIS_METRICS", "TABLES", "MODEL_KEYS", "open_analysis", "run_kind"]
