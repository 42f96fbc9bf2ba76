"""``nero gate`` thresholds and their config files.

A threshold key is ``[GROUP.][MODEL:]min-METRIC`` or ``[GROUP.][MODEL:]max-METRIC`` (dashes or
underscores in METRIC), e.g. ``max-equivariance-error``, ``rotation.min-orbit-accuracy``,
``rotation.mnist-cnn:max-orbit-spread``. Thresholds come from a config file (``nero.toml``
``[gate]`` or ``pyproject.toml`` ``[tool.nero.gate]``) and the command line; the scope of a key
is resolved against the run's names later (:mod:`nero_cli.gate_checks`).
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from .errors import OptionError

#: Settings a config table may hold besides threshold keys (dashes or underscores).
SETTINGS = ("baseline", "max-regression", "regression-metrics", "bootstrap", "confidence", "seed",
            "breaking-percentile")

_KEY_RE = re.compile(r"^(?P<prefix>.*[.:])?(?P<bound>min|max)[-_](?P<metric>[A-Za-z0-9_-]+)$")


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


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """``"did you mean 'x'? "`` for the closest of ``options``, or ``""``."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'? " if close else ""


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


def as_thresholds(checks: Any, source: str = "--check") -> list[Threshold]:
    """Thresholds from a mapping ``{key: value}``, ``KEY=VALUE`` strings, ``(key, value)`` pairs or
    :class:`Threshold` objects (command-line precedence)."""
    if checks is None:
        return []
    items: Iterable[Any] = checks.items() if isinstance(checks, Mapping) else checks
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


def cli_thresholds(fixed: Mapping[str, float | None], checks: Iterable[str]) -> list[Threshold]:
    """Thresholds of the command line: the fixed options (``--max-equivariance-error X`` ...),
    then every ``--check KEY=VALUE`` (later wins at equal specificity)."""
    out: list[Threshold] = []
    for i, (opt, value) in enumerate(fixed.items()):
        if value is not None:
            out.append(parse_threshold(opt[2:], value, opt, order=1000 + i))
    for i, text in enumerate(checks):
        out.append(parse_check(text, "--check", order=2000 + i))
    return out


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


def _tool_gate(doc: dict[str, Any]) -> tuple[str, Any] | None:
    """``tool.nero.gate`` of a document, if it has one."""
    tool = doc.get("tool", {})
    nero = tool.get("nero", {}) if isinstance(tool, dict) else {}
    if isinstance(nero, dict) and "gate" in nero:
        return "tool.nero.gate", nero["gate"]
    return None


def _gate_table(doc: dict[str, Any]) -> tuple[str, Any] | None:
    if "gate" in doc:
        return "gate", doc["gate"]
    return _tool_gate(doc)


class _TableReader:
    """Collects the thresholds and settings of one ``[gate]`` table into a :class:`GateConfig`."""

    def __init__(self, path: Path, name: str) -> None:
        self.path, self.name = path, name
        self.cfg = GateConfig(path=path, table=name)

    def add(self, key: str, value: Any, group: str | None, model: str | None, *tables: str) -> None:
        where = ".".join([self.name, *tables])
        if isinstance(value, dict):
            raise OptionError(f"{self.path.name}: table {where}.{key} is nested too deep; use GROUP and GROUP.MODEL "
                              f"tables under '{self.name}' (or \"MODEL:KEY\" keys)")
        order = len(self.cfg.thresholds)
        self.cfg.thresholds.append(parse_threshold(key, value, f"{self.path.name} table {where}", group=group,
                                                   model=model, order=order))

    def entry(self, key: str, value: Any) -> None:
        norm = key.replace("_", "-")
        if norm in SETTINGS:
            self.cfg.settings[norm] = value
        elif isinstance(value, dict):  # [gate.GROUP]
            for k2, v2 in value.items():
                if isinstance(v2, dict):  # [gate.GROUP.MODEL]
                    for k3, v3 in v2.items():
                        self.add(k3, v3, key, k2, key, k2)
                else:
                    self.add(k2, v2, key, None, key)
        elif _KEY_RE.match(key):
            self.add(key, value, None, None)
        else:
            raise OptionError(f"{self.path.name} table {self.name}: unknown key '{key}'; "
                              f"{did_you_mean(norm, SETTINGS)}expected threshold keys like max-equivariance-error "
                              f"or settings {', '.join(SETTINGS)}")


def _config_from_table(path: Path, name: str, table: Any) -> GateConfig:
    if not isinstance(table, dict):
        raise OptionError(f"{path}: '{name}' must be a table of threshold keys, e.g. max-equivariance-error = 0.05")
    reader = _TableReader(path, name)
    for key, value in table.items():
        reader.entry(key, value)
    cfg = reader.cfg
    if "baseline" in cfg.settings:  # relative to the config file
        base = Path(str(cfg.settings["baseline"]))
        cfg.settings["baseline"] = base if base.is_absolute() else path.parent / base
    return cfg


def load_config(path: Path | str | None = None, cwd: Path | str | None = None) -> GateConfig:
    """The gate config: ``path`` if given (its ``[gate]`` or ``[tool.nero.gate]`` table), else
    ``./nero.toml`` ``[gate]``, else ``./pyproject.toml`` ``[tool.nero.gate]``, else empty."""
    if path is not None:
        path = Path(path)
        found = _gate_table(_read_toml(path))
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
        found = _tool_gate(_read_toml(pyproject))
        if found is not None:
            return _config_from_table(pyproject, *found)
    return GateConfig()


__all__ = ["SETTINGS", "Threshold", "GateConfig", "metric_key", "did_you_mean", "parse_threshold", "parse_check",
           "as_thresholds", "cli_thresholds", "load_config"]
