"""The findings of ``nero doctor`` that call the model, always through a :class:`~nero_cli.runner.ModelRunner`.

What a task takes and returns comes from its :class:`~nero_cli.tasks.TaskRecord`: the probed
input shapes, the input kind, the output type, the contract line and the output check
(``prepare``), so a newly registered task needs no edit here.
"""

from __future__ import annotations

import dataclasses
import time
from types import SimpleNamespace
from typing import Any, Optional, Sequence

import torch

from orbits import parse_spec
from orbits.outputs import OUTPUT_TYPES, Field

from . import models as M
from .doctor_checks import Finding, fmt_shape, mode_layers
from .errors import first_line
from .runner import ModelRunner
from .tasks import TaskRecord

SPEED_BATCHES = (1, 16, 64, 256)
N_PROBE = 4  # inputs in the probe batch
#: Small grids for the identity check (only their identity element is used; large grids are slow to build).
#: A group not listed here is parsed with its default grid.
IDENTITY_GRIDS = {"rotation": "rotation:step=90", "shift": "shift:extent=1", "scale": "scale:start=0.9,stop=1.1,step=0.1",
                  "viewpoint": "viewpoint:axis_step=90,rot_step=90"}


# -- calling the model and reading its outputs ----------------------------------------------------


def forward(runner: ModelRunner, x: torch.Tensor) -> Any:
    """The model's output on ``x`` as nero computes it (eval mode, ``torch.inference_mode``), exceptions untouched."""
    with torch.inference_mode():
        return runner.raw(runner.prepare(x))


def probe_inputs(runner: ModelRunner, task: TaskRecord, shape: Sequence[int], n: int = N_PROBE,
                 seed: int = 0) -> torch.Tensor:
    """``n`` random inputs of ``shape`` on the runner's device: pixels in [0, 1], points in
    [-0.5, 0.5]^3 (inside the unit ball)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g)
    if task.input_kind == "points":
        x = (x * 2 - 1) * 0.5
    return x.to(runner.device)


def tensors(out: Any) -> list[torch.Tensor]:
    """Every tensor in a model output (tensor, tuple/list, dict, object with ``.logits``), in order."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for k in out for t in tensors(out[k])]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in tensors(v)]
    if hasattr(out, "logits"):
        return tensors(out.logits)
    return []


def sanitize(out: Any) -> Any:
    """The output with NaN/inf replaced by 0, so a shape check is not confused by them."""
    if isinstance(out, torch.Tensor):
        return torch.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0) if out.is_floating_point() else out
    if isinstance(out, dict):
        return {k: sanitize(v) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return type(out)(sanitize(v) for v in out) if isinstance(out, list) else tuple(sanitize(v) for v in out)
    return out


def describe(out: Any) -> str:
    if isinstance(out, torch.Tensor):
        return f"tensor {tuple(out.shape)}"
    if isinstance(out, (list, tuple)) and out and isinstance(out[0], dict):
        return f"list of {len(out)} dicts ({', '.join(map(str, out[0]))})"
    ts = tensors(out)
    return f"{type(out).__name__} of {len(ts)} tensor(s) {', '.join(str(tuple(t.shape)) for t in ts[:3])}"


def compare(a: Any, b: Any) -> tuple[bool, float]:
    """Bit-identical?, and the largest absolute difference (inf when the structures differ)."""
    ta, tb = tensors(a), tensors(b)
    if len(ta) != len(tb) or any(x.shape != y.shape or x.dtype != y.dtype for x, y in zip(ta, tb)):
        return False, float("inf")
    same, diff = True, 0.0
    for x, y in zip(ta, tb):
        if x.is_floating_point() or x.is_complex():
            nx, ny = torch.isnan(x), torch.isnan(y)
            eq = bool(torch.equal(nx, ny)) and bool(torch.equal(torch.where(nx, 0, x), torch.where(ny, 0, y)))
            if not eq:
                same = False
                d = (torch.nan_to_num(x.double()) - torch.nan_to_num(y.double())).abs()
                diff = max(diff, float(d.max()) if d.numel() else 0.0)
        elif not torch.equal(x, y):
            same = False
            diff = max(diff, float((x.double() - y.double()).abs().max()))
    return same, diff


def nonfinite(out: Any) -> tuple[int, int]:
    """NaN/inf values and all values of the floating-point tensors in ``out``."""
    bad = total = 0
    for t in tensors(out):
        if t.is_floating_point():
            bad += int((~torch.isfinite(t)).sum())
            total += t.numel()
    return bad, total


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


# -- the checks ---------------------------------------------------------------------------------


def find_shape(runner: ModelRunner, task: TaskRecord, given: Optional[tuple[int, ...]],
               source: str) -> tuple[Optional[tuple[int, ...]], Any, Finding]:
    """The input shape to use (``given``, else the first of the task's probe shapes the model
    accepts), the model output on the probe batch, and the finding."""
    candidates = [given] if given is not None else list(task.probe_shapes)
    errors = []
    for shape in candidates:
        try:
            out = forward(runner, probe_inputs(runner, task, shape))
        except Exception as exc:  # noqa: BLE001 - the user's model rejected this input
            errors.append(f"{fmt_shape(shape)}: {exc.__class__.__name__}: {first_line(exc, 160)}")
            continue
        what = "P,3" if task.input_kind == "points" else "C,H,W"
        hint = "" if given is not None else f"; pass --input-shape {','.join(map(str, shape))} or set input_shape in the sidecar JSON"
        return shape, out, Finding("input shape", "ok" if given is not None else "info",
                                   f"{fmt_shape(shape)} ({what}, from {source}) → {describe(out)}",
                                   f"probed{hint}" if given is None else "", {"input_shape": list(shape), "source": source})
    if given is not None:
        return None, None, Finding("input shape", "fail", f"forward failed on input {(N_PROBE, *given)} (from {source}): "
                                   f"{errors[0].split(': ', 1)[1]}",
                                   f"check {source}; {task.name} inputs are {task.contract}", {"errors": errors})
    tried = ", ".join(fmt_shape(s) for s in candidates)
    return None, None, Finding("input shape", "fail", f"forward failed on every probed shape ({tried}); first error: {errors[0]}",
                               "give the shape with --input-shape C,H,W (or input_shape in the sidecar JSON)",
                               {"errors": errors})


def output_finding(task: TaskRecord, loaded: M.LoadedModel, out: Any, shape: tuple[int, ...]) -> Finding:
    """Whether the output passes the task's output check, and fits the input (classes, field size)."""
    try:
        prepared = task.prepare(sanitize(out), N_PROBE, loaded.name)
    except Exception as exc:  # noqa: BLE001 - ModelError, or a malformed structure (e.g. dicts without boxes)
        return Finding("output", "fail", f"{describe(out)} does not fit {task.name}: {first_line(exc)}",
                       f"{task.name} expects {task.contract}; use --task for another task", {"task": task.name})
    details: dict[str, Any] = {"task": task.name, "output_shape": list(prepared.shape[1:])}
    if task.output == "invariant":
        k = int(prepared.shape[1])
        names = loaded.meta.class_names
        if names is not None and len(names) != k:
            return Finding("output", "warn", f"logits (N, {k}) but the metadata names {len(names)} classes",
                           "fix class_names in the sidecar JSON (or --meta)", details)
        if k < 2:
            return Finding("output", "warn", f"logits (N, {k}): a single class, softmax confidence is always 1",
                           "return one logit per class", details)
        return Finding("output", "ok", f"logits (N, {k}) fit {task.name}", "", details)
    if issubclass(OUTPUT_TYPES[task.output], Field) and tuple(prepared.shape[-2:]) != tuple(shape[-2:]):
        return Finding("output", "fail", f"{task.name} {tuple(prepared.shape)} is {fmt_shape(prepared.shape[-2:])} for "
                       f"{fmt_shape(shape[-2:])} inputs", f"return one value per pixel at the input size: {task.contract}",
                       details)
    return Finding("output", "ok", f"{describe(out)} fits {task.name}", "", details)


def finite_finding(runner: ModelRunner, out: Any, shape: tuple[int, ...]) -> Finding:
    """NaN or inf outputs on the random probe batch (``out``) and on an all-zero input."""
    bad, total = nonfinite(out)
    try:
        zbad, ztotal = nonfinite(forward(runner, torch.zeros(N_PROBE, *shape, device=runner.device)))
    except Exception as exc:  # noqa: BLE001
        return Finding("finite outputs", "warn", f"forward failed on an all-zero input ({first_line(exc, 160)})",
                       "blank inputs occur in orbits (padding); make the model accept them")
    details = {"random_nonfinite": bad, "zero_nonfinite": zbad}
    if bad:
        where = f"{bad} of {total} values on a random input" + (f", {zbad} of {ztotal} on an all-zero input" if zbad else "")
        return Finding("finite outputs", "fail", f"NaN or inf outputs: {where}",
                       "nero refuses NaN/inf outputs; check the model and the input normalisation (pixels in [0, 1]; "
                       "normalize in the sidecar JSON or --meta)", details)
    if zbad:
        return Finding("finite outputs", "warn", f"NaN or inf outputs on an all-zero input ({zbad} of {ztotal} values); "
                       "finite on a random input",
                       "blank or heavily padded orbit elements may stop the run; guard divisions (e.g. by the input's std) "
                       "with an epsilon", details)
    return Finding("finite outputs", "ok", "finite on a random and on an all-zero input", "", details)


def determinism_finding(runner: ModelRunner, x: torch.Tensor, out: Any) -> tuple[Finding, bool]:
    """Whether a second identical call reproduces ``out`` bit for bit."""
    same, diff = compare(out, forward(runner, x))
    if same:
        return Finding("determinism", "ok", "two identical calls in eval mode give bit-identical outputs", ""), True
    return Finding("determinism", "warn", f"outputs differ between two identical calls (max diff {diff:.3g}): "
                   "dropout active or non-deterministic ops",
                   "orbit differences then mix model randomness with non-equivariance: disable dropout in eval mode "
                   "(nn.Dropout, not F.dropout(training=True)) and use deterministic ops "
                   "(torch.use_deterministic_algorithms(True))", {"max_diff": diff}), False


def _train_mode_outputs(runner: ModelRunner, x: torch.Tensor) -> tuple[Any, Any]:
    """Two forward passes in train mode; eval mode and the buffers (BatchNorm statistics) are restored afterwards."""
    module = runner.model.module
    try:
        buffers = {name: b.detach().clone() for name, b in module.named_buffers()}
    except Exception:  # noqa: BLE001
        buffers = {}
    try:
        module.train()
        with torch.no_grad():
            xp = runner.prepare(x)
            return runner.raw(xp), runner.raw(xp)
    finally:
        M.set_eval(module)
        if buffers:
            with torch.no_grad():
                for name, buf in module.named_buffers():
                    if name in buffers:
                        buf.copy_(buffers[name])


def train_probe(runner: ModelRunner, x: torch.Tensor, eval_out: Any) -> tuple[Finding, dict]:
    """Two forward passes in train mode: is dropout present, does train mode change the outputs?"""
    if runner.model.format == "torch.export":
        return Finding("dropout", "info", "not probed: a torch.export program cannot switch to train mode", ""), {}
    try:
        a, b = _train_mode_outputs(runner, x)
    except Exception as exc:  # noqa: BLE001 - e.g. BatchNorm with a single value per channel
        return Finding("dropout", "info", f"train-mode forward failed ({exc.__class__.__name__}: {first_line(exc, 120)}); "
                       "not probed", ""), {}
    same, diff = compare(a, b)
    stochastic = not same
    vs_eval = not compare(a, eval_out)[0]
    drop = [f"{k} at {n or '<root>'}" for n, k in mode_layers(runner.model.module) if "Dropout" in k]
    info = {"train_stochastic": stochastic, "train_vs_eval": vs_eval, "dropout_layers": drop}
    if stochastic:
        names = f" ({', '.join(drop[:4])})" if drop else ""
        return Finding("dropout", "info", f"dropout present{names}: two train-mode calls differ (max diff {diff:.3g}); "
                       "it is off in eval mode, which nero uses", "", info), info
    if vs_eval:
        return Finding("dropout", "info", "no dropout; train-mode outputs differ from eval mode (BatchNorm batch "
                       "statistics); nero uses eval mode", "", info), info
    return Finding("dropout", "info", "no dropout: train-mode calls are identical to each other and to eval mode", "", info), info


def _identity_input(task: TaskRecord, group_name: str, x: torch.Tensor, shape: tuple[int, ...]) -> tuple[str, torch.Tensor]:
    """The group's name and ``x`` moved by its identity element, with the task's input action."""
    size = tuple(shape[-2:]) if task.input_kind != "points" else None
    spec = parse_spec(IDENTITY_GRIDS.get(group_name, group_name), image_size=size)
    spec = dataclasses.replace(spec, group=spec.group.with_identity())
    act = task.make_action(spec, SimpleNamespace(size=size))
    return spec.name, act(x, [spec.group.identity_index])[0]


def identity_finding(runner: ModelRunner, task: TaskRecord, x: torch.Tensor, out: Any, shape: tuple[int, ...],
                     deterministic: bool) -> Finding:
    """The identity element of each of the task's groups leaves the input and the output unchanged."""
    bad_input, bad_output, checked = [], [], []
    for group_name in task.groups:
        name, xi = _identity_input(task, group_name, x, shape)
        checked.append(name)
        if not torch.equal(xi, x):
            bad_input.append(name)
        elif not compare(forward(runner, xi), out)[0]:
            bad_output.append(name)
    details = {"groups": checked}
    if bad_input:
        return Finding("identity", "fail", f"the identity element of {', '.join(bad_input)} changes the input",
                       "this is a bug in nero's group action; report it with the input shape", details)
    if bad_output:
        if not deterministic:
            return Finding("identity", "warn", f"the identity element of {', '.join(bad_output)} gives a different output, "
                           "because the model is not deterministic (see determinism)",
                           "make the forward pass deterministic; then the identity reproduces it exactly", details)
        return Finding("identity", "fail", f"the identity element of {', '.join(bad_output)} does not reproduce the plain "
                       "forward pass", "the model depends on more than the values of its input (memory layout or "
                       "strides?); make the forward pass a pure function of the input", details)
    return Finding("identity", "ok", f"the identity element of {', '.join(checked)} reproduces the plain forward pass "
                   "bit for bit", "", details)


def _seconds_per_call(runner: ModelRunner, x: torch.Tensor) -> float:
    """The fastest of 2-3 calls (least disturbed by other processes; the 1st call at a new size may compile)."""
    calls: list[float] = []
    while len(calls) < 2 or (len(calls) < 3 and sum(calls) < 0.05):
        t = time.perf_counter()
        forward(runner, x)
        _sync(runner.device)
        calls.append(time.perf_counter() - t)
    return min(calls)


def _speed_report(rates: dict[int, float], skipped: list[int], note: str, budget: float, start: float) -> Finding:
    best = max(rates, key=lambda b: rates[b])
    table = ", ".join(f"{b}: {r:,.0f}/s" for b, r in rates.items())
    if skipped:
        note += f"; batch {', '.join(map(str, skipped))} not timed (over the {budget:g} s budget)"
    details = {"inputs_per_second": {str(b): r for b, r in rates.items()}, "best_batch_size": best,
               "not_timed": skipped, "seconds": time.perf_counter() - start}
    advice = f"use --batch-size {best}" + (" (the default)" if best == 256 else "")
    return Finding("speed", "ok", f"inputs/second by batch size {table}; best {best}{note}", advice, details)


def speed_finding(runner: ModelRunner, task: TaskRecord, shape: tuple[int, ...], budget: float) -> Finding:
    """Inputs/second per batch size within ``budget`` seconds.

    A larger batch is timed (two calls, the faster counts) only when two calls at half the linear
    extrapolation of the last one fit in what is left of the budget (batching usually gains more
    than 2x per step on these sizes).
    """
    rates: dict[int, float] = {}
    skipped: list[int] = []
    note = ""
    start = time.perf_counter()
    last: tuple[int, float] | None = None  # (batch size, seconds per call)
    try:
        forward(runner, probe_inputs(runner, task, shape, n=1, seed=1))  # warm-up (TorchScript profiles its first calls)
        _sync(runner.device)
    except Exception as exc:  # noqa: BLE001
        return Finding("speed", "warn", f"not measured: forward failed ({exc.__class__.__name__})", "")
    for bs in SPEED_BATCHES:
        spent = time.perf_counter() - start
        if last is not None and (spent + last[1] * bs / last[0] > budget or spent > budget):  # 2 calls at half the linear extrapolation
            skipped.append(bs)
            continue
        try:
            seconds = _seconds_per_call(runner, probe_inputs(runner, task, shape, n=bs, seed=1))
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory
            note = f"; batch {bs} failed ({exc.__class__.__name__}: {first_line(exc, 80)})"
            break
        last = (bs, seconds)
        rates[bs] = bs / max(seconds, 1e-9)
    if not rates:
        return Finding("speed", "warn", "not measured" + note, "")
    return _speed_report(rates, skipped, note, budget, start)


__all__ = ["N_PROBE", "SPEED_BATCHES", "IDENTITY_GRIDS", "forward", "probe_inputs", "tensors", "sanitize", "describe",
           "compare", "nonfinite", "find_shape", "output_finding", "finite_finding", "determinism_finding",
           "train_probe", "identity_finding", "speed_finding"]
