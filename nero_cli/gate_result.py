"""The result of ``nero gate``: one row per check, and its JUnit, Markdown, JSON and console forms."""

from __future__ import annotations

import json
import math
import os
import socket
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import EXIT_CHECK_FAILED, EXIT_OK, OutputError
from .gate_config import metric_key

#: The fields of a check row, in order (``status`` and ``message`` follow).
ROW_KEYS = ("kind", "model", "group", "metric", "higher_is_better", "value", "bound", "threshold", "key", "source",
            "baseline_model", "baseline_value", "max_regression", "worsening", "interval", "pairing")


def check_row(ok: bool, message: str, **fields: Any) -> dict[str, Any]:
    """One check: every field of :data:`ROW_KEYS` (``None`` where not given), ``status``, ``message``."""
    unknown = set(fields) - set(ROW_KEYS)
    if unknown:
        raise TypeError(f"unknown check field(s): {', '.join(sorted(unknown))}")
    return {**{k: fields.get(k) for k in ROW_KEYS}, "status": "pass" if ok else "fail", "message": message}


def fmt(x: Any) -> str:
    """A number in 4 significant digits (``-`` for None, ``nan`` for non-finite)."""
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        return "nan"
    if isinstance(x, (int, float)):
        return f"{x + 0.0:.4g}"  # + 0.0: no "-0"
    return str(x)


def distinct(a: float, b: float) -> tuple[str, str]:
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


def _md_cell(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _timestamp(when: datetime | None) -> str:
    """ISO 8601 in UTC without a zone suffix, as JUnit writers do (``2024-05-01T12:00:00``):
    ``when``, else ``$SOURCE_DATE_EPOCH`` (for reproducible reports), else now."""
    if when is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
        when = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch.isdigit() else datetime.now(timezone.utc)
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc)
    return when.replace(tzinfo=None).isoformat(timespec="seconds")


def print_notes(notes: Sequence[str]) -> None:
    """Each note as one ``note:`` line on stderr."""
    err = Console(stderr=True)
    for n in notes:
        err.print(f"[yellow]note:[/yellow] {escape(n)}", highlight=False, soft_wrap=True)


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
        return EXIT_OK if self.passed else EXIT_CHECK_FAILED

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
            return f"{row['bound']} {fmt(row['threshold'])}"
        vs = f" ({row['baseline_model']})" if row.get("baseline_model") not in (None, row["model"]) else ""
        return f"baseline {fmt(row['baseline_value'])}{vs}, worse by <= {fmt(row['max_regression'])}"

    @staticmethod
    def case_name(row: dict[str, Any]) -> str:
        """The JUnit test name of a check: which check, never its threshold or allowed regression,
        so that a changed threshold keeps the test's history in CI."""
        if row["kind"] == "threshold":
            return f"{row['group']}.{row['model']}:{row['bound']}-{metric_key(row['metric'])}"
        return f"{row['group']}.{row['model']}:{metric_key(row['metric'])} regression"

    @staticmethod
    def detail(row: dict[str, Any]) -> str:
        """One check in words: which, its value, its threshold (or baseline), the verdict's message."""
        return (f"{row['model']} / {row['group']} / {metric_key(row['metric'])}: value {fmt(row['value'])}, "
                f"{GateResult.limit_text(row)}: {row['message']}")

    def to_junit(self, timestamp: datetime | None = None, hostname: str | None = None) -> str:
        """JUnit XML (valid under Jenkins' ``junit-10.xsd``): one testsuite, one testcase per check
        named by :meth:`case_name`, ``<failure>`` for failures; the value and the threshold are in
        the failure message and the text. ``timestamp`` (UTC; default now, or
        ``$SOURCE_DATE_EPOCH``) and ``hostname`` (default this machine's) are the suite's."""
        root = ET.Element("testsuites", name="nero gate", tests=str(self.n_checks), failures=str(self.n_failed),
                          errors="0")
        suite = ET.SubElement(root, "testsuite", name="nero gate", tests=str(self.n_checks),
                              failures=str(self.n_failed), errors="0", skipped="0", time="0",
                              timestamp=_timestamp(timestamp), hostname=hostname or socket.gethostname())
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="run", value=str(self.run_dir))
        if self.baseline_dir:
            ET.SubElement(props, "property", name="baseline", value=str(self.baseline_dir))
        if self.config:
            ET.SubElement(props, "property", name="config", value=self.config)
        for row in self.rows:
            case = ET.SubElement(suite, "testcase", classname=f"nero.gate.{row['model']}.{row['group']}",
                                 name=self.case_name(row), time="0")
            if row["status"] != "pass":
                ET.SubElement(case, "failure", message=self.detail(row), type=row["kind"]).text = self.detail(row)
            else:
                ET.SubElement(case, "system-out").text = self.detail(row)
        if self.notes or self.method:
            ET.SubElement(suite, "system-err").text = "\n".join([*self.notes, *([self.method] if self.method else [])])
        ET.indent(root)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

    def to_markdown(self) -> str:
        """A Markdown report (heading, table with the failed checks first, notes), e.g. for
        ``$GITHUB_STEP_SUMMARY``."""
        cell = _md_cell
        verdict = "passed" if self.passed else "FAILED"
        lines = [f"### NERO gate {verdict}: {self.summary_line()}", "",
                 f"Run `{cell(self.run_dir)}`" + (f", baseline `{cell(self.baseline_dir)}`" if self.baseline_dir else "")
                 + (f", config {cell(self.config)}" if self.config else "") + ".", ""]
        if self.method:
            lines += [cell(self.method[0].upper() + self.method[1:]) + ".", ""]
        lines += ["| | model | group | metric | value | threshold / baseline | result |",
                  "|---|---|---|---|---:|---|---|"]
        for r in [*self.failures, *(r for r in self.rows if r["status"] == "pass")]:
            icon = "✅" if r["status"] == "pass" else "❌"
            lines.append(f"| {icon} | {cell(r['model'])} | {cell(r['group'])} | {cell(metric_key(r['metric']))} | "
                         f"{fmt(r['value'])} | {cell(self.limit_text(r))} | {cell(r['message'])} |")
        if self.notes:
            lines += ["", *[f"- {cell(n)}" for n in self.notes]]
        return "\n".join(lines) + "\n"

    def append_markdown(self, path: Path | str, what: str = "--markdown") -> None:
        """Append :meth:`to_markdown` to ``path`` (created if missing), after a blank line when the
        file already has text: ``$GITHUB_STEP_SUMMARY`` collects every step's report this way."""
        path = Path(path)
        try:
            with open(path, "a+", encoding="utf-8") as fh:
                fh.seek(0, os.SEEK_END)
                sep = ""
                if fh.tell() > 0:
                    fh.seek(fh.tell() - 1)
                    sep = "\n" if fh.read(1) == "\n" else "\n\n"
                fh.write(sep + self.to_markdown())
        except OSError as exc:
            raise OutputError(f"{what} {path}: cannot append ({exc.strerror or exc}); choose another file") from None

    def table(self) -> Table:
        """The rich table of every check."""
        title = f"nero gate: {self.run_dir}" + (f" vs baseline {self.baseline_dir}" if self.baseline_dir else "")
        t = Table(title=escape(title), title_justify="left")
        for c, j in (("model", "left"), ("group", "left"), ("metric", "left"), ("value", "right"),
                     ("threshold / baseline", "left"), ("result", "left")):
            t.add_column(c, justify=j)  # type: ignore[arg-type]
        for r in self.rows:
            verdict = "[green]pass[/green]" if r["status"] == "pass" else "[bold red]FAIL[/bold red]"
            t.add_row(escape(r["model"]), escape(r["group"]), metric_key(r["metric"]), fmt(r["value"]),
                      escape(self.limit_text(r)), f"{verdict} {escape(r['message'])}")
        return t

    def print(self, console: Any = None) -> None:
        """The rich table of every check, the failures one per line, and 'N checks, K failed'."""
        if console is None:
            console = Console()
            if not console.is_terminal:  # CI logs: wide enough for the intervals
                console.width = max(console.width, 140)
        console.print(self.table())
        if self.method:
            console.print(self.method, highlight=False, soft_wrap=True, markup=False)
        for r in self.failures:
            console.print(f"[bold red]FAIL[/bold red] {escape(r['model'])} / {escape(r['group'])} / "
                          f"{metric_key(r['metric'])}: {escape(r['message'])}", highlight=False, soft_wrap=True)
        style = "green" if self.passed else "bold red"
        console.print(f"[{style}]{self.summary_line()}[/{style}]", highlight=False)


__all__ = ["GateResult", "ROW_KEYS", "check_row", "fmt", "distinct", "print_notes"]
