"""The ``nero cache info|clear`` typer commands: parse and forward to :mod:`nero_cli.cache`.

Light on purpose (no torch, pandas, numpy or matplotlib here): the domain module is imported
inside the commands so that ``nero --help`` stays instant.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

import typer


def _where() -> str:
    """Which setting chose the cache folder."""
    if os.environ.get("NERO_CACHE_DIR"):
        return "$NERO_CACHE_DIR"
    return "$XDG_CACHE_HOME/nero" if os.environ.get("XDG_CACHE_HOME") else "default"


def _info() -> None:
    from rich.console import Console
    from rich.markup import escape

    from .cache import MAX_ENV, Cache, human_size

    info = Cache.results().info()
    cap = info.max_size or 0
    cap_text = "0 (nothing is stored)" if cap == 0 else f"{human_size(cap)} ({cap} bytes)"
    rows = [("folder", f"{escape(str(info.root))} ({_where()})" + ("" if info.root.is_dir() else "; not created yet")),
            ("entries", f"{info.entries} (model, group) pieces"),
            ("size", f"{human_size(info.size)} ({info.size} bytes)"
                     + ("; over the cap, trimmed at the next store" if info.size > cap else "")),
            ("cap", f"{cap_text} (${MAX_ENV}{'' if os.environ.get(MAX_ENV, '').strip() else ', default 2G'}); "
                    "the least recently used entries are removed beyond it")]
    out = Console()
    for name, text in rows:
        out.print(f"{name:<8} {text}", highlight=False, soft_wrap=True)


def _clear(yes: bool) -> None:
    from rich.console import Console
    from rich.markup import escape

    from .cache import Cache, human_size
    from .errors import OptionError

    cache = Cache()  # no cap needed (nor a valid $NERO_CACHE_MAX) to clear
    info = cache.info()
    out = Console()
    if info.entries == 0:
        out.print(f"nothing to clear: no nero entries in {escape(str(info.root))}", highlight=False, soft_wrap=True)
        return
    what = f"{info.entries} entries ({human_size(info.size)}) from {info.root}"
    if not yes:
        if not sys.stdin.isatty():
            raise OptionError(f"nero cache clear would remove {what}; pass --yes to confirm without a prompt")
        if not typer.confirm(f"Remove {what}?", default=False):
            out.print("nothing removed", highlight=False)
            return
    n, size = cache.clear()
    out.print(f"removed {n} entries ({human_size(size)}) from {escape(str(info.root))}; other files there are kept",
              highlight=False, soft_wrap=True)


def add_command(app: Any, guard: Callable[[Callable[[], Any]], Any]) -> None:
    """Register ``nero cache info`` and ``nero cache clear`` on the typer app."""
    cache_app = typer.Typer(help="The result cache ($NERO_CACHE_DIR or ~/.cache/nero, capped by $NERO_CACHE_MAX).",
                            no_args_is_help=True)
    app.add_typer(cache_app, name="cache")

    @cache_app.command("info")
    def info() -> None:
        """The cache folder, its number of entries, their total size and the cap."""
        guard(_info)

    @cache_app.command("clear")
    def clear(yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")) -> None:
        """Remove every entry nero wrote in the cache folder (other files there are kept)."""
        guard(lambda: _clear(yes))


__all__ = ["add_command"]
