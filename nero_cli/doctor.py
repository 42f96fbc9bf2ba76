"""``nero doctor``: check a model before a long sweep.

Loads MODEL the way ``nero evaluate`` does and reports, with advice:

- ``format``: how the checkpoint was loaded and the sha256 of its file(s);
- ``training mode``: whether the module was in training mode as loaded (nero evaluates in
  eval mode) and which mode-dependent layers (Dropout, BatchNorm) it holds;
- ``input shape`` / ``output``: the input the model accepts (``--input-shape``, the sidecar's
  ``input_shape``, or probed from the task's ``probe_shapes``) and whether its output passes the
  task's output check;
- ``finite outputs``: NaN or inf on a random and on an all-zero input;
- ``determinism``: two identical calls in eval mode under ``torch.inference_mode`` agree bit
  for bit; ``dropout``: whether train mode is stochastic (information only);
- ``identity``: the identity element of each of the task's groups reproduces the plain forward pass;
- ``90° rotations``: for which input sizes quarter turns are exact (index gathering);
- ``strides``: strided or pooling layers whose total stride does not divide H and W;
- ``speed``: inputs per second for batch sizes 1, 16, 64, 256 and the best ``--batch-size``.

:func:`doctor` returns the findings (the checks live in :mod:`nero_cli.doctor_checks` and
:mod:`nero_cli.doctor_probes`; every call to the model goes through a
:class:`~nero_cli.runner.ModelRunner`). The ``doctor`` command is in :mod:`nero_cli.doctor_cli`.
Statuses: ``ok``, ``info``, ``warn``, ``fail``; only ``fail`` makes the command exit 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from rich.console import Console
from rich.table import Table

from . import models as M
from .doctor_checks import Finding, format_finding, rotation_finding, stride_finding, training_finding, training_state
from .doctor_probes import (determinism_finding, find_shape, finite_finding, identity_finding, output_finding,
                            probe_inputs, speed_finding, train_probe)
from .errors import ModelError, OptionError
from .prepare import random_weights
from .runner import ModelRunner, resolve_device
from .tasks import TaskRecord, get_task

STATUSES = ("ok", "info", "warn", "fail")
#: Time budget of the speed check, in seconds.
SPEED_BUDGET_S = 2.0


def parse_input_shape(text: Any, task: TaskRecord) -> tuple[int, ...]:
    """``"1,28,28"`` / ``"1x28x28"`` / a sequence -> a per-example shape checked against the task."""
    if isinstance(text, str):
        parts = [p for p in text.replace("x", ",").replace("X", ",").replace(" ", ",").split(",") if p]
        try:
            shape = tuple(int(p) for p in parts)
        except ValueError:
            raise OptionError(f"--input-shape expects integers like 1,28,28 (C,H,W), got '{text}'") from None
    else:
        try:
            shape = tuple(int(v) for v in text)
        except (TypeError, ValueError):
            raise OptionError(f"input shape must be a list of integers, got {text!r}") from None
    return check_shape(shape, task, "--input-shape")


def check_shape(shape: tuple[int, ...], task: TaskRecord, source: str) -> tuple[int, ...]:
    """``shape`` if it fits the task's input kind (``P,3`` points, ``C,H,W`` images, ``2C,H,W`` frame pairs)."""
    text = ",".join(map(str, shape))
    if any(v <= 0 for v in shape):
        raise OptionError(f"{source}: sizes must be positive, got {text}")
    if task.input_kind == "points":
        if len(shape) != 2 or shape[1] != 3:
            raise OptionError(f"{source}: point clouds take P,3 (points, xyz), got {text}")
    elif len(shape) != 3:
        raise OptionError(f"{source}: {task.name} takes C,H,W (3 numbers), got {text}")
    elif task.input_kind == "frames" and shape[0] % 2:
        raise OptionError(f"{source}: {task.name} takes frame pairs 2C,H,W (an even channel count), got {shape[0]} channels")
    return shape


def _load(model: Any, weights: Optional[str], meta: Optional[str], trust: bool,
          dev: torch.device) -> tuple[M.LoadedModel, dict]:
    """Load like ``nero evaluate`` and record the training flags before nero's ``eval()``."""
    if isinstance(model, torch.nn.Module):
        state = training_state(model)
        model = model.to(dev)
        M.set_eval(model)
        return M.LoadedModel(name=type(model).__name__, module=model, source="<python object>", format="module",
                             sha256={}, meta=M.read_meta(Path(meta)) if meta else M.ModelMeta()), state
    if not isinstance(model, str):
        raise OptionError(f"MODEL must be a path, file.py:callable, sample:NAME or a torch.nn.Module, got {type(model).__name__}")
    state: dict[str, Any] = {}
    loaded = M.load_model(model, weights=weights, meta=meta, trust_checkpoint=trust, device=dev,
                          before_eval=lambda module: state.update(training_state(module)))
    return loaded, state


def _given_shape(input_shape: Any, loaded: M.LoadedModel, task: TaskRecord) -> tuple[Optional[tuple[int, ...]], str]:
    """The input shape to check and where it came from: ``--input-shape``, the metadata, or none (probe)."""
    if input_shape is not None:
        return parse_input_shape(input_shape, task), "--input-shape"
    if not loaded.meta.input_shape:
        return None, "probing"
    try:
        return check_shape(tuple(int(v) for v in loaded.meta.input_shape), task, "metadata input_shape"), "metadata"
    except (TypeError, ValueError):
        raise ModelError(f"metadata input_shape must be a list of integers, got {loaded.meta.input_shape!r}") from None
    except OptionError as exc:  # the model's metadata, not an option: a model error
        raise ModelError(f"{exc}; fix the sidecar JSON or override it with --input-shape") from None


def _model_findings(runner: ModelRunner, task: TaskRecord, state: dict, shape: tuple[int, ...], out: Any,
                    shape_finding: Finding) -> list[Finding]:
    """Every finding after ``format``, for a model that accepts inputs of ``shape`` (``out``: its output)."""
    loaded = runner.model
    x = probe_inputs(runner, task, shape)
    probe_finding, probe = train_probe(runner, x, out)
    findings = [training_finding(loaded, state, probe), shape_finding, output_finding(task, loaded, out, shape),
                finite_finding(runner, out, shape)]
    det, deterministic = determinism_finding(runner, x, out)
    findings += [det, probe_finding, identity_finding(runner, task, x, out, shape, deterministic)]
    if task.input_kind != "points":
        findings += [rotation_finding(shape), stride_finding(loaded.module, shape, loaded.format)]
    findings.append(speed_finding(runner, task, shape, SPEED_BUDGET_S))
    return findings


def doctor(model: Any, *, task: Optional[str] = None, weights: Optional[str] = None, meta: Optional[str] = None,
           trust_checkpoint: bool = False, input_shape: Any = None, device: str = "cpu") -> list[Finding]:
    """Check ``model`` (a MODEL argument as for ``nero evaluate``, or an ``nn.Module``) before a sweep.

    Returns the findings in report order. Mistakes in the arguments or a model that cannot be
    loaded raise :class:`~nero_cli.errors.NeroError` (on the command line: one line, exit 2 for a
    bad option, 3 for a model that cannot be loaded).
    """
    dev = resolve_device(device)
    loaded, state = _load(model, weights, meta, trust_checkpoint, dev)
    task_rec = get_task(task or loaded.meta.task or "classification")
    given, source = _given_shape(input_shape, loaded, task_rec)
    runner = ModelRunner(loaded, dev)
    shape, out, shape_finding = find_shape(runner, task_rec, given, source)
    random = (random_weights(loaded, model, meta, trust_checkpoint)
              if isinstance(model, str) and loaded.format == "factory" and not weights else None)
    findings = [format_finding(loaded, weights, random)]
    if shape is None:
        return findings + [training_finding(loaded, state, {}), shape_finding,
                           Finding("other checks", "info", "skipped: they need an input the model accepts", "")]
    return findings + _model_findings(runner, task_rec, state, shape, out, shape_finding)


def exit_code(findings: Sequence[Finding]) -> int:
    """1 when a check failed, else 0 (warnings allowed)."""
    return 1 if any(f.status == "fail" for f in findings) else 0


def _counts(findings: Sequence[Finding]) -> dict[str, int]:
    return {s: sum(f.status == s for f in findings) for s in STATUSES}


def to_json(model: str, findings: Sequence[Finding]) -> str:
    return json.dumps({"model": model, "exit_code": exit_code(findings), "counts": _counts(findings),
                       "findings": [f.to_dict() for f in findings]}, indent=2, default=str)


def print_report(model: str, findings: Sequence[Finding], console: Any = None) -> None:
    console = console or Console()
    style = {"ok": "green", "info": "cyan", "warn": "yellow", "fail": "bold red"}
    t = Table(title=f"nero doctor: {model}", title_justify="left", show_lines=True)
    t.add_column("check", no_wrap=True)
    t.add_column("status", no_wrap=True)
    t.add_column("finding", overflow="fold")
    t.add_column("advice", overflow="fold")
    for f in findings:
        t.add_row(f.check, f"[{style.get(f.status, '')}]{f.status}[/]", f.message, f.advice)
    console.print(t)
    counts = _counts(findings)
    needs = sorted({n for f in findings for n in f.details.get("needs", ())})
    verdict = "failed" if counts["fail"] else "ready for a sweep" + (f" with {' '.join(needs)}" if needs else "")
    console.print(f"{counts['ok']} ok, {counts['info']} info, {counts['warn']} warn, {counts['fail']} fail: {verdict}",
                  highlight=False)


__all__ = ["Finding", "STATUSES", "SPEED_BUDGET_S", "doctor", "exit_code", "to_json", "print_report",
           "parse_input_shape", "check_shape"]
