"""One adjustment to typer's help output: flags show no ``<bool>`` type.

typer 0.29 prints the value type of every option in its rich help, flags included (``--quiet
<bool>``), although a flag takes no value. This module makes the type column of a flag empty;
every other option is shown as typer shows it. Earlier typers (the pinned 0.28 among them) show
no type for a flag and have no ``display_type_rich``: nothing to change there. Imported once by
:mod:`nero_cli.cli`.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperOption

_display_type_rich = getattr(TyperOption, "display_type_rich", None)


def _flag_has_no_type(self: TyperOption, ctx: Any) -> str | None:
    return None if getattr(self, "is_flag", False) and not getattr(self, "count", False) else _display_type_rich(self, ctx)


if _display_type_rich is not None and getattr(_display_type_rich, "__name__", "") != "_flag_has_no_type":
    TyperOption.display_type_rich = _flag_has_no_type  # type: ignore[method-assign]
