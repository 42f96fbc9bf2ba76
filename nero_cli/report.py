"""nero report (being written)."""

from __future__ import annotations


def add_command(app, guard) -> None:  # noqa: ANN001
    """Register the 'report' command on the typer app."""
