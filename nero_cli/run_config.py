"""Runs as configuration: the options of ``nero evaluate`` from a TOML file.

``nero evaluate --config run.toml`` reads the file's ``[evaluate]`` table (or ``[tool.nero.evaluate]``,
or, in a file with neither, its top level); without ``--config`` it reads ``./nero.toml``
``[evaluate]``, else ``./pyproject.toml`` ``[tool.nero.evaluate]`` (``--no-config``: neither).
Keys are the command's option names without the dashes (``batch-size`` or ``batch_size``), plus
``models`` and ``data``/``groups``; a repeatable option takes a list or a single value, a flag a
boolean, an integer option an integer, a float option a number, a path a string, another option a
string or an integer; anything else, or one option under two spellings, is refused. The command line overrides the file, option by option; relative paths in the file are
relative to the file's folder. The merged options are recorded in run.json (``configuration``).

The module is pure (no click objects): :func:`merge` takes the command's parameters as
:class:`Param` descriptions and a ``convert`` function for the values.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .errors import OptionError
from .gate_config import did_you_mean

#: Options whose values are file paths (made relative to the config file's folder).
PATH_OPTIONS = ("models", "data", "weights", "meta", "out")
#: Options a config file may not set (they act on the command itself).
REFUSED = ("config", "no-config", "help")


@dataclass(frozen=True)
class Param:
    """One option of the command: its name in Python, its key in the file, whether it repeats or is a flag."""

    name: str
    key: str
    multiple: bool = False
    flag: bool = False


@dataclass
class ConfigFile:
    """The table read from a config file (empty when there is none)."""

    path: Path | None = None
    table: str = ""
    values: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return f"{self.path} [{self.table}]" if self.path and self.table else str(self.path)


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OptionError(f"--config {path}: no such file; pass a TOML file with an [evaluate] table") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OptionError(f"--config {path}: cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise OptionError(f"{path}: not valid TOML ({exc}); fix the file or pass --no-config") from None


def _table(doc: dict[str, Any], top_level: bool) -> tuple[str, Any] | None:
    if "evaluate" in doc:
        return "evaluate", doc["evaluate"]
    tool = doc.get("tool", {}).get("nero", {}) if isinstance(doc.get("tool"), dict) else {}
    if isinstance(tool, dict) and "evaluate" in tool:
        return "tool.nero.evaluate", tool["evaluate"]
    if top_level and doc and not any(isinstance(v, dict) for v in doc.values()):
        return "", doc
    return None


def find_config(path: Path | str | None, cwd: Path | str | None = None) -> ConfigFile:
    """The evaluate table of ``path``, else of ./nero.toml, else of ./pyproject.toml, else nothing."""
    if path is not None:
        path = Path(path)
        found = _table(_read(path), top_level=True)
        if found is None:
            raise OptionError(f"--config {path}: no [evaluate] (or [tool.nero.evaluate]) table; add one, e.g. "
                              f"[evaluate] models = [\"model.pt\"]")
        return _checked(path, *found)
    here = Path(cwd) if cwd is not None else Path.cwd()
    for name in ("nero.toml", "pyproject.toml"):
        if (here / name).is_file():
            found = _table(_read(here / name), top_level=False)
            if found is not None:
                return _checked(here / name, *found)
    return ConfigFile()


def _checked(path: Path, table: str, values: Any) -> ConfigFile:
    if not isinstance(values, dict):
        raise OptionError(f"{path}: [{table}] must be a table of options, e.g. data = \"images.npz\"")
    return ConfigFile(path, table, dict(values))


def _relative(value: str, base: Path) -> str:
    """``value`` made relative to ``base`` when it names a relative file (sample:NAME stays)."""
    head, sep, tail = value.partition(":")
    if sep and not head.endswith(".py"):  # sample:NAME, package.module:callable
        return value
    return (str(base / head) + sep + tail) if not Path(head).is_absolute() else value


def _value(param: Param, value: Any, where: str, base: Path) -> Any:
    if param.flag:
        if not isinstance(value, bool):
            raise OptionError(f"{where}: '{param.key}' is a flag; expected true or false, got {_toml(value)}")
        return value
    items = value if isinstance(value, list) else [value]
    if not param.multiple and isinstance(value, list):
        raise OptionError(f"{where}: '{param.key}' takes one value, got a list of {len(value)}")
    if any(isinstance(v, (dict, list)) for v in items):
        raise OptionError(f"{where}: '{param.key}' takes {'values' if param.multiple else 'a value'}, not a table")
    if param.name in PATH_OPTIONS or param.key in PATH_OPTIONS:
        items = [_relative(str(v), base) for v in items]
    return items if param.multiple else items[0]


def _toml(value: Any) -> str:
    """``value`` as it reads in the TOML file (``true``, ``"5"``, ``3.7``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def _expected(param: Param, converted: Any) -> tuple[str, Callable[[Any], bool]]:
    """What the option takes in a file, by the type its value converts to, and a test of a TOML value:
    integers for integer options, numbers (not bools) for float options, strings for paths, strings or
    integers (``batch-size = 64``, ``classes = [3, 5]``) for the other string options."""
    if isinstance(converted, int) and not isinstance(converted, bool):
        return "an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)
    if isinstance(converted, float):
        return "a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    if param.name in PATH_OPTIONS or param.key in PATH_OPTIONS:
        return "a string", lambda v: isinstance(v, str)
    return "a string", lambda v: isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))


def _check_type(param: Param, raw: str, value: Any, converted: Any, where: str) -> None:
    """Refuse a file value of the wrong TOML type that the option's conversion would have coerced
    (``limit = 3.7`` to 3, ``limit = true`` to 1, ``score-threshold = true`` to 1.0, ``device = true`` to "True")."""
    if param.flag:
        return
    items = value if isinstance(value, list) else [value]
    outs = list(converted) if param.multiple and isinstance(converted, (list, tuple)) else [converted]
    for item, out in zip(items, outs):
        expected, ok = _expected(param, out)
        if not ok(item):
            what = f"{expected} or a list of {expected.split(' ', 1)[1]}s" if param.multiple else expected
            raise OptionError(f"{where}: '{raw}' must be {what}, got {_toml(item)}"
                              f"{' in the list' if isinstance(value, list) else ''}")


def _key(raw: str, aliases: Mapping[str, str]) -> str:
    """The option a file key names: dashes for underscores, then ``aliases`` (``model`` is ``models``)."""
    key = raw.replace("_", "-")
    return aliases.get(key, key)


def _one_spelling(values: Mapping[str, Any], aliases: Mapping[str, str], where: str) -> None:
    """Refuse one option given twice in the table under two spellings (``no-plots`` and ``no_plots``,
    ``models`` and ``model``): which one wins would be the file's key order."""
    seen: dict[str, str] = {}
    for raw in values:
        key = _key(raw, aliases)
        if key in seen:
            raise OptionError(f"{where}: '{seen[key]}' and '{raw}' are the same option; keep one of them")
        seen[key] = raw


def merge(params: Sequence[Param], given: Mapping[str, Any], on_command_line: set[str], cfg: ConfigFile,
          convert: Callable[[str, Any], Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The options after the config: every value from the command line where given there, else from
    the file (through ``convert(name, value)``), else the default. Returns (options, what the file set)."""
    merged = dict(given)
    from_file: dict[str, Any] = {}
    if not cfg.values:
        return merged, from_file
    by_key = {p.key: p for p in params}
    aliases = {"model": "models", "group": "group", "groups": "group"}
    where = cfg.label
    base = cfg.path.parent if cfg.path else Path(".")
    _one_spelling(cfg.values, aliases, where)
    for raw, value in cfg.values.items():
        key = _key(raw, aliases)
        param = by_key.get(key)
        if param is None or key in REFUSED:
            raise OptionError(f"{where}: unknown option '{raw}'; {did_you_mean(key, list(by_key))}"
                              f"keys are the options of 'nero evaluate' without dashes, e.g. data, group, batch-size")
        if param.name in on_command_line:
            continue
        try:
            converted = convert(param.name, _value(param, value, where, base))
        except OptionError:
            raise
        except Exception as exc:  # noqa: BLE001  (a value the option's type rejects)
            raise OptionError(f"{where}: '{raw}' = {_toml(value)}: {exc}") from None
        _check_type(param, raw, value, converted, where)
        merged[param.name] = converted
        from_file[param.key] = value
    return merged, from_file


def record(options: Mapping[str, Any], cfg: ConfigFile, from_file: Mapping[str, Any]) -> dict[str, Any]:
    """run.json's ``configuration``: the file, what it set, and every merged option (JSON-safe)."""
    def safe(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [safe(x) for x in v]
        return v if v is None or isinstance(v, (bool, int, float, str)) else str(v)

    return {"file": str(cfg.path) if cfg.path else None, "table": cfg.table or None,
            "from_file": {k: safe(v) for k, v in from_file.items()},
            "options": {k: safe(v) for k, v in options.items()}}


__all__ = ["Param", "ConfigFile", "find_config", "merge", "record", "PATH_OPTIONS"]
