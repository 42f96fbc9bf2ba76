"""The ``nero doctor`` command: parses the options and forwards them to :func:`nero_cli.doctor.doctor`.

Light at import time (no torch): :mod:`nero_cli.doctor` is imported when the command runs.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import typer

from .lazy import gc_paused_imports


def add_command(app: Any, guard: Callable[[Callable[[], Any]], Any]) -> None:
    """Register ``nero doctor`` on the typer ``app``; ``guard(fn)`` turns NeroError into one line + exit code."""

    @app.command("doctor")
    def doctor_command(
        model: str = typer.Argument(..., metavar="MODEL", help="A checkpoint (.pt TorchScript, .pt2 torch.export, pickled "
                                    "module with --trust-checkpoint), file.py:callable or package.module:callable "
                                    "(with --weights), or sample:NAME."),
        task: Optional[str] = typer.Option(None, "--task", help="A task of 'nero list tasks' "
                                           "(default: from the sidecar JSON, else classification)."),
        weights: Optional[str] = typer.Option(None, "--weights", help="State dict for a factory model."),
        meta: Optional[str] = typer.Option(None, "--meta", help="Sidecar JSON (default MODEL.json beside the checkpoint)."),
        trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help="Allow unpickling a whole pickled module "
                                              "(this runs code from the file)."),
        input_shape: Optional[str] = typer.Option(None, "--input-shape", help="Per-input shape C,H,W (P,3 for point "
                                                  "clouds; default: the sidecar's input_shape, else probed)."),
        device: str = typer.Option("cpu", "--device", help="cpu, cuda[:N] or auto."),
        as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON instead of a table."),
    ) -> None:
        """Check a model before a long sweep: format and checksum, training mode, determinism, input and output
        shapes, NaN outputs, exact identity and 90° rotations, strides, speed per batch size. Exit 1 if a check fails."""

        def work() -> None:
            with gc_paused_imports():  # torch (nero_cli.lazy)
                from .doctor import doctor, exit_code, print_report, to_json

            findings = doctor(model, task=task, weights=weights, meta=meta, trust_checkpoint=trust_checkpoint,
                              input_shape=input_shape, device=device)
            if as_json:
                typer.echo(to_json(model, findings))
            else:
                print_report(model, findings)
            code = exit_code(findings)
            if code:
                raise typer.Exit(code)

        guard(work)


__all__ = ["add_command"]
