"""``nero doctor``: check a model before a long sweep.

Loads MODEL the way ``nero evaluate`` does and reports, with advice:

- ``format``: how the checkpoint was loaded and the sha256 of its file(s);
- ``training mode``: whether the module was in training mode as loaded (nero evaluates in
  eval mode) and which mode-dependent layers (Dropout, BatchNorm) it holds;
- ``input shape`` / ``output``: the input the model accepts (``--input-shape``, the sidecar's
  ``input_shape``, or probed) and whether its output fits the task's contract;
- ``finite outputs``: NaN or inf on a random and on an all-zero input;
- ``determinism``: two identical calls in eval mode under ``torch.inference_mode`` agree bit
  for bit; ``dropout``: whether train mode is stochastic (information only);
- ``identity``: the identity element of each orbit reproduces the plain forward pass;
- ``90° rotations``: for which input sizes quarter turns are exact (index gathering);
- ``strides``: strided or pooling layers whose total stride does not divide H and W;
- ``speed``: inputs per second for batch sizes 1, 16, 64, 256 and the best ``--batch-size``.

:func:`doctor` returns the findings; :func:`add_command` registers the ``doctor`` command.
Statuses: ``ok``, ``info``, ``warn``, ``fail``; only ``fail`` makes the command exit 1.
Heavy imports (torch) live inside the functions.
"""

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Sequence

from .errors import ModelError, OptionError, first_line

STATUSES = ("ok", "info", "warn", "fail")
#: Time budget of the speed check, in seconds.
SPEED_BUDGET_S = 2.0
SPEED_BATCHES = (1, 16, 64, 256)
#: Input shapes tried, in order, when neither --input-shape nor the metadata gives one.
PROBE_SHAPES: dict[str, tuple[tuple[int, ...], ...]] = {
    "classification": ((1, 28, 28), (3, 32, 32), (3, 224, 224)),
    "detection": ((1, 64, 64), (3, 64, 64), (1, 28, 28), (3, 224, 224)),
    "flow": ((2, 32, 32), (6, 32, 32), (2, 64, 64), (6, 224, 224)),
    "pointcloud": ((256, 3), (1024, 3), (2048, 3)),
}
#: Layers that behave differently in train and eval mode (by class name, so TorchScript modules match too).
MODE_LAYERS = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
               "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LazyBatchNorm1d",
               "LazyBatchNorm2d", "LazyBatchNorm3d")
STRIDED_LAYERS = ("Conv2d", "MaxPool2d", "AvgPool2d", "LPPool2d", "LazyConv2d")
N_PROBE = 4  # inputs in the probe batch


@dataclass
class Finding:
    """One line of the doctor's report."""

    check: str
    status: str  # ok | info | warn | fail
    message: str
    advice: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- helpers --------------------------------------------------------------------------------


def parse_input_shape(text: Any, task: str) -> tuple[int, ...]:
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
    return _check_shape(shape, task, "--input-shape")


def _check_shape(shape: tuple[int, ...], task: str, source: str) -> tuple[int, ...]:
    if any(v <= 0 for v in shape):
        raise OptionError(f"{source}: sizes must be positive, got {','.join(map(str, shape))}")
    if task == "pointcloud":
        if len(shape) != 2 or shape[1] != 3:
            raise OptionError(f"{source}: point clouds take P,3 (points, xyz), got {','.join(map(str, shape))}")
    elif len(shape) != 3:
        raise OptionError(f"{source}: {task} takes C,H,W (3 numbers), got {','.join(map(str, shape))}")
    elif task == "flow" and shape[0] % 2:
        raise OptionError(f"{source}: flow takes frame pairs 2C,H,W (an even channel count), got {shape[0]} channels")
    return shape


def _fmt_shape(shape: Sequence[int]) -> str:
    return "×".join(map(str, shape))


def _resolve_device(device: str) -> Any:
    from .core import resolve_device

    return resolve_device(device)


def _layer_kind(m: Any) -> str:
    """Class name of a submodule; TorchScript modules keep theirs in ``original_name``."""
    return str(getattr(m, "original_name", None) or type(m).__name__)


def _mode_layers(module: Any) -> list[tuple[str, str]]:
    try:
        return [(name, _layer_kind(m)) for name, m in module.named_modules() if _layer_kind(m) in MODE_LAYERS]
    except Exception:  # noqa: BLE001 - exotic modules
        return []


def _training_state(module: Any) -> dict[str, Any]:
    try:
        sub = [name or "<root>" for name, m in module.named_modules() if getattr(m, "training", False)]
    except Exception:  # noqa: BLE001
        sub = []
    return {"training": bool(getattr(module, "training", False)) or bool(sub), "training_modules": sub}


def _load(model: Any, weights: Optional[str], meta: Optional[str], trust: bool, dev: Any) -> tuple[Any, dict]:
    """Load like ``nero evaluate`` and record the training flags before nero's ``eval()``."""
    import torch

    from . import models as M

    if isinstance(model, torch.nn.Module):
        state = _training_state(model)
        model = model.to(dev)
        M._set_eval(model)
        return M.LoadedModel(name=type(model).__name__, module=model, source="<python object>", format="module",
                             sha256={}, meta=M._read_meta(_path(meta)) if meta else M.ModelMeta()), state
    if not isinstance(model, str):
        raise OptionError(f"MODEL must be a path, file.py:callable, sample:NAME or a torch.nn.Module, got {type(model).__name__}")
    state: dict[str, Any] = {}
    original = M._set_eval

    def recording_set_eval(module: Any) -> None:
        state.update(_training_state(module))
        original(module)

    M._set_eval = recording_set_eval
    try:
        loaded = M.load_model(model, weights=weights, meta=meta, trust_checkpoint=trust, device=dev)
    finally:
        M._set_eval = original
    return loaded, state


def _path(p: str) -> Any:
    from pathlib import Path

    return Path(p)


def _tensors(out: Any) -> list[Any]:
    """Every tensor in a model output (tensor, tuple/list, dict, object with ``.logits``), in order."""
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for k in out for t in _tensors(out[k])]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _tensors(v)]
    if hasattr(out, "logits"):
        return _tensors(out.logits)
    return []


def _sanitize(out: Any) -> Any:
    """The output with NaN/inf replaced by 0, so a shape check is not confused by them."""
    import torch

    if isinstance(out, torch.Tensor):
        return torch.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0) if out.is_floating_point() else out
    if isinstance(out, dict):
        return {k: _sanitize(v) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return type(out)(_sanitize(v) for v in out) if isinstance(out, list) else tuple(_sanitize(v) for v in out)
    return out


def _describe(out: Any) -> str:
    import torch

    if isinstance(out, torch.Tensor):
        return f"tensor {tuple(out.shape)}"
    if isinstance(out, (list, tuple)) and out and isinstance(out[0], dict):
        return f"list of {len(out)} dicts ({', '.join(map(str, out[0]))})"
    ts = _tensors(out)
    return f"{type(out).__name__} of {len(ts)} tensor(s) {', '.join(str(tuple(t.shape)) for t in ts[:3])}"


def _compare(a: Any, b: Any) -> tuple[bool, float]:
    """Bit-identical?, and the largest absolute difference (inf when the structures differ)."""
    import torch

    ta, tb = _tensors(a), _tensors(b)
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


def _nonfinite(out: Any) -> tuple[int, int]:
    import torch

    bad = total = 0
    for t in _tensors(out):
        if t.is_floating_point():
            bad += int((~torch.isfinite(t)).sum())
            total += t.numel()
    return bad, total


class _Runner:
    """Calls the model as nero does: eval mode, ``torch.inference_mode``, sidecar normalisation."""

    def __init__(self, loaded: Any, task: str, dev: Any):
        import torch

        self.module, self.task, self.dev = loaded.module, task, dev
        norm = loaded.meta.normalize
        self.norm = None
        if norm is not None and task != "pointcloud":
            self.norm = (torch.tensor(norm[0], dtype=torch.float32, device=dev).view(1, -1, 1, 1),
                         torch.tensor(norm[1], dtype=torch.float32, device=dev).view(1, -1, 1, 1))

    def prepare(self, x: Any) -> Any:
        if self.norm is None:
            return x
        mean, std = self.norm
        if mean.shape[1] not in (1, x.shape[1]):
            raise ValueError(f"the metadata's normalisation has {mean.shape[1]} channel(s), the input {x.shape[1]}")
        return (x - mean) / std

    def __call__(self, x: Any) -> Any:
        import torch

        with torch.inference_mode():
            return self.module(self.prepare(x))

    def inputs(self, shape: Sequence[int], n: int = N_PROBE, seed: int = 0) -> Any:
        import torch

        g = torch.Generator().manual_seed(seed)
        x = torch.rand(n, *shape, generator=g)
        if self.task == "pointcloud":
            x = (x * 2 - 1) * 0.5  # points in [-0.5, 0.5]^3, inside the unit ball
        return x.to(self.dev)


# -- the checks -------------------------------------------------------------------------------


def _format_finding(loaded: Any, weights: Optional[str]) -> Finding:
    sha = dict(loaded.sha256)
    files = "; ".join(f"{name} sha256 {digest}" for name, digest in sha.items()) or "no file (nothing to hash)"
    details = {"format": loaded.format, "sha256": sha, "source": loaded.source}
    msg = f"{loaded.format}: {files}"
    if loaded.format == "pickle":
        return Finding("format", "warn", msg + " (a pickled whole module, loaded with --trust-checkpoint)",
                       "unpickling runs code from the file: convert it once with torch.jit.save(torch.jit.script(model)) "
                       "or torch.export, or save a state dict and load it with file.py:callable --weights", details)
    if loaded.format == "factory" and not weights:
        return Finding("format", "info", msg + " (factory called without --weights)",
                       "the factory's own weights are evaluated; pass --weights FILE for trained weights "
                       "unless the factory loads them itself", details)
    if loaded.format == "module":
        return Finding("format", "info", "a torch.nn.Module in memory (no file to hash)",
                       "save it (torch.jit.save, torch.export or a state dict) so runs record a checksum", details)
    return Finding("format", "ok", msg, "the sha256 is recorded in run.json of every run", details)


def _training_finding(loaded: Any, state: dict, probe: dict) -> Finding:
    layers = _mode_layers(loaded.module)
    kinds: dict[str, int] = {}
    for _, k in layers:
        kinds[k] = kinds.get(k, 0) + 1
    layer_text = ", ".join(f"{k}×{v}" for k, v in kinds.items())
    details = {"was_training": state.get("training"), "mode_layers": [n for n, _ in layers],
               "train_differs_from_eval": probe.get("train_vs_eval")}
    if loaded.format == "torch.export":
        return Finding("training mode", "info", "a torch.export program: train/eval behaviour was fixed when it was exported",
                       "export the model after model.eval(); the determinism check below shows whether dropout stayed in",
                       details)
    if not state:
        return Finding("training mode", "info", "training flag not recorded", "", details)
    if not state.get("training"):
        extra = f" ({layer_text} run in eval mode)" if layers else ""
        return Finding("training mode", "ok", f"was in eval mode as loaded{extra}", "", details)
    mode_matters = bool(layers) or bool(probe.get("train_vs_eval"))
    if mode_matters:
        what = layer_text or "layers whose output depends on the mode"
        return Finding("training mode", "warn", f"was in training mode; nero evaluates in eval mode "
                       f"(mode-dependent layers: {what})",
                       "eval mode is what nero measures (Dropout off, BatchNorm running statistics); call model.eval() "
                       "in the factory or before saving to make this explicit", details)
    return Finding("training mode", "info", "was in training mode; nero evaluates in eval mode "
                   "(no Dropout/BatchNorm layers: the mode does not change the outputs)",
                   "call model.eval() in the factory or before saving to silence this", details)


def _find_shape(run: _Runner, task: str, given: Optional[tuple[int, ...]], source: str) -> tuple[Optional[tuple], Any, Finding]:
    """The input shape to use, the model output on the probe batch, and the finding."""
    candidates = [given] if given is not None else list(PROBE_SHAPES[task])
    errors = []
    for shape in candidates:
        try:
            out = run(run.inputs(shape))
        except Exception as exc:  # noqa: BLE001 - the user's model rejected this input
            errors.append(f"{_fmt_shape(shape)}: {exc.__class__.__name__}: {first_line(exc, 160)}")
            continue
        what = "C,H,W" if task != "pointcloud" else "P,3"
        hint = "" if given is not None else f"; pass --input-shape {','.join(map(str, shape))} or set input_shape in the sidecar JSON"
        return shape, out, Finding("input shape", "ok" if given is not None else "info",
                                   f"{_fmt_shape(shape)} ({what}, from {source}) → {_describe(out)}",
                                   f"probed{hint}" if given is None else "", {"input_shape": list(shape), "source": source})
    if given is not None:
        return None, None, Finding("input shape", "fail", f"forward failed on input {(N_PROBE, *given)} (from {source}): "
                                   f"{errors[0].split(': ', 1)[1]}",
                                   f"check {source}; {task} inputs are {_contract(task)}", {"errors": errors})
    tried = ", ".join(_fmt_shape(s) for s in candidates)
    return None, None, Finding("input shape", "fail", f"forward failed on every probed shape ({tried}); first error: {errors[0]}",
                               "give the shape with --input-shape C,H,W (or input_shape in the sidecar JSON)",
                               {"errors": errors})


def _contract(task: str) -> str:
    return {"classification": "(N, C, H, W) in [0, 1] → logits (N, K)",
            "detection": "(N, C, H, W) in [0, 1] → boxes (N, D, 6) or a list of dicts with boxes, scores, labels",
            "flow": "frame pairs (N, 2C, H, W) → flow (N, 2, H, W)",
            "pointcloud": "points (N, P, 3) → logits (N, K)"}.get(task, task)


def _output_finding(task_obj: Any, loaded: Any, out: Any, shape: tuple[int, ...]) -> Finding:
    task = task_obj.name
    try:
        prepared = task_obj.prepare_outputs(_sanitize(out), N_PROBE, loaded.name)
    except Exception as exc:  # noqa: BLE001 - ModelError, or a malformed structure (e.g. dicts without boxes)
        return Finding("output", "fail", f"{_describe(out)} does not fit {task}: {first_line(exc)}",
                       f"{task} expects {_contract(task)}; use --task for another task", {"task": task})
    details: dict[str, Any] = {"task": task, "output_shape": list(prepared.shape[1:])}
    if task in ("classification", "pointcloud"):
        k = int(prepared.shape[1])
        names = loaded.meta.class_names
        if names is not None and len(names) != k:
            return Finding("output", "warn", f"logits (N, {k}) but the metadata names {len(names)} classes",
                           "fix class_names in the sidecar JSON (or --meta)", details)
        if k < 2:
            return Finding("output", "warn", f"logits (N, {k}): a single class, softmax confidence is always 1",
                           "return one logit per class", details)
        return Finding("output", "ok", f"logits (N, {k}) fit {task}", "", details)
    if task == "flow" and tuple(prepared.shape[-2:]) != tuple(shape[-2:]):
        return Finding("output", "fail", f"flow {tuple(prepared.shape)} is {_fmt_shape(prepared.shape[-2:])} for "
                       f"{_fmt_shape(shape[-2:])} frames", "return one flow vector per pixel: (N, 2, H, W) at the input size",
                       details)
    return Finding("output", "ok", f"{_describe(out)} fits {task}", "", details)


def _finite_findings(run: _Runner, out: Any, shape: tuple[int, ...]) -> Finding:
    import torch

    bad, total = _nonfinite(out)
    try:
        zero_out = run(torch.zeros(N_PROBE, *shape, device=run.dev))
        zbad, ztotal = _nonfinite(zero_out)
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


def _determinism_finding(run: _Runner, x: Any, out: Any) -> tuple[Finding, bool]:
    again = run(x)
    same, diff = _compare(out, again)
    if same:
        return Finding("determinism", "ok", "two identical calls in eval mode give bit-identical outputs", ""), True
    return Finding("determinism", "warn", f"outputs differ between two identical calls (max diff {diff:.3g}): "
                   "dropout active or non-deterministic ops",
                   "orbit differences then mix model randomness with non-equivariance: disable dropout in eval mode "
                   "(nn.Dropout, not F.dropout(training=True)) and use deterministic ops "
                   "(torch.use_deterministic_algorithms(True))", {"max_diff": diff}), False


def _train_probe(loaded: Any, run: _Runner, x: Any, eval_out: Any) -> tuple[Finding, dict]:
    """Two forward passes in train mode (buffers restored afterwards): is dropout present?"""
    import torch

    from .models import _set_eval

    module = loaded.module
    if loaded.format == "torch.export":
        return Finding("dropout", "info", "not probed: a torch.export program cannot switch to train mode", ""), {}
    try:
        buffers = {name: b.detach().clone() for name, b in module.named_buffers()}
    except Exception:  # noqa: BLE001
        buffers = {}
    try:
        module.train()
        with torch.no_grad():
            xp = run.prepare(x)
            a = module(xp)
            b = module(xp)
    except Exception as exc:  # noqa: BLE001 - e.g. BatchNorm with a single value per channel
        return Finding("dropout", "info", f"train-mode forward failed ({exc.__class__.__name__}: {first_line(exc, 120)}); "
                       "not probed", ""), {}
    finally:
        _set_eval(module)
        if buffers:
            with torch.no_grad():
                for name, buf in module.named_buffers():
                    if name in buffers:
                        buf.copy_(buffers[name])
    stochastic, diff = _compare(a, b)
    stochastic = not stochastic
    vs_eval = not _compare(a, eval_out)[0]
    drop = [f"{k} at {n or '<root>'}" for n, k in _mode_layers(module) if "Dropout" in k]
    info = {"train_stochastic": stochastic, "train_vs_eval": vs_eval, "dropout_layers": drop}
    if stochastic:
        names = f" ({', '.join(drop[:4])})" if drop else ""
        return Finding("dropout", "info", f"dropout present{names}: two train-mode calls differ (max diff {diff:.3g}); "
                       "it is off in eval mode, which nero uses", "", info), info
    if vs_eval:
        return Finding("dropout", "info", "no dropout; train-mode outputs differ from eval mode (BatchNorm batch "
                       "statistics); nero uses eval mode", "", info), info
    return Finding("dropout", "info", "no dropout: train-mode calls are identical to each other and to eval mode", "", info), info


def _identity_finding(run: _Runner, task: str, x: Any, out: Any, shape: tuple[int, ...], deterministic: bool) -> Finding:
    import torch

    import orbits

    specs = {"classification": ("rotation:step=90", "shift:extent=1", "scale:start=0.9,stop=1.1,step=0.1"),
             "detection": ("rotation:step=90", "shift:extent=1", "scale:start=0.9,stop=1.1,step=0.1"),
             "flow": ("d4t", "rotation:step=90"),
             "pointcloud": ("viewpoint:axis_step=90,rot_step=90",)}[task]
    bad_input, bad_output, checked = [], [], []
    for text in specs:
        spec = orbits.parse_spec(text, image_size=tuple(shape[-2:]) if task != "pointcloud" else None)
        group = spec.group.with_identity()
        if task == "pointcloud":
            from orbits.points import PointAction

            act: Any = PointAction(group)
        elif task == "flow":
            from orbits.fields import FrameAction

            act = FrameAction(group, tuple(shape[-2:]), **spec.action)
        else:
            act = orbits.ImageAction(group, tuple(shape[-2:]), **spec.action)
        xi = act(x, [group.identity_index])[0]
        checked.append(spec.name)
        if not torch.equal(xi, x):
            bad_input.append(spec.name)
            continue
        if not _compare(run(xi), out)[0]:
            bad_output.append(spec.name)
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


def _rotation_finding(shape: tuple[int, ...]) -> Finding:
    import orbits

    h, w = int(shape[-2]), int(shape[-1])
    group = orbits.parse_spec("rotation:step=90").group
    act = orbits.ImageAction(group, (h, w))
    angles = [int(round(float(a))) for a in group.elements[:, 0]]
    exact = dict(zip(angles, act.exact))
    details = {"size": [h, w], "exact": {str(a): e for a, e in exact.items()}}
    size = f"{h}×{w}"
    if all(exact.values()) and h == w:
        return Finding("90° rotations", "ok", f"{size} is square: every multiple of 90° is exact (index gathering, "
                       "no interpolation)", "", details)
    if all(exact.values()):
        return Finding("90° rotations", "warn", f"{size} is not square (same parity): 180° is exact; 90° and 270° are "
                       f"exact but cropped to {size} (the corners leave the frame, zeros enter)",
                       f"pad the inputs to a square ({max(h, w)}×{max(h, w)}) for lossless quarter turns", details)
    inexact = [f"{a}°" for a, e in exact.items() if not e]
    ok = [f"{a}°" for a, e in exact.items() if e and a != 0]
    return Finding("90° rotations", "warn", f"{size}: H and W differ in parity, so {', '.join(inexact)} are interpolated "
                   f"(pixel centres do not land on pixel centres)" + (f"; {', '.join(ok)} exact" if ok else ""),
                   f"pad or crop to a square (e.g. {max(h, w)}×{max(h, w)}) for exact quarter turns, or expect "
                   "interpolation error in rotation orbits", details)


def _stride_finding(module: Any, shape: tuple[int, ...], fmt: str) -> Finding:
    h, w = int(shape[-2]), int(shape[-1])
    layers: list[tuple[str, str, tuple[int, int]]] = []
    hidden = 0  # strided-layer kinds whose stride cannot be read (traced TorchScript)
    try:
        mods = list(module.named_modules())
    except Exception:  # noqa: BLE001
        mods = []
    for name, m in mods:
        kind = _layer_kind(m)
        if kind not in STRIDED_LAYERS:
            continue
        try:
            s = getattr(m, "stride")
        except Exception:  # noqa: BLE001 - traced modules hide their attributes
            hidden += 1
            continue
        if s is None:
            s = getattr(m, "kernel_size", 1)
        sy, sx = (int(s), int(s)) if isinstance(s, int) else (int(s[0]), int(s[-1]))
        if (sy, sx) != (1, 1):
            layers.append((name, kind, (sy, sx)))
    caveat = "shifts and rotations can be exactly equivariant layer by layer only for sizes divisible by the total stride"
    if fmt == "torch.export" or not mods:
        return Finding("strides", "info", "layer strides not inspected (a torch.export program has no layer modules)",
                       caveat, {})
    if hidden:
        return Finding("strides", "info", f"layer strides not inspected ({hidden} Conv/pooling layer(s) of a traced "
                       "TorchScript module hide them)", caveat, {})
    ty = tx = 1
    for _, _, (sy, sx) in layers:
        ty, tx = ty * sy, tx * sx
    details = {"total_stride": [ty, tx], "layers": [{"name": n, "kind": k, "stride": list(s)} for n, k, s in layers]}
    if not layers:
        return Finding("strides", "ok", "no strided Conv2d or pooling modules (functional calls are not seen)", "", details)
    listed = ", ".join(f"{n or '<root>'} {k} {s[0] if s[0] == s[1] else s}" for n, k, s in layers[:4])
    listed += ", …" if len(layers) > 4 else ""
    total = f"{ty}" if ty == tx else f"{ty}×{tx}"
    if h % ty == 0 and w % tx == 0:
        return Finding("strides", "ok", f"total stride {total} ({listed}) divides {h}×{w}", "", details)
    why = []
    if h % ty:
        why.append(f"H={h}")
    if w % tx:
        why.append(f"W={w}")
    side = max(ty, tx)
    nxt = -(-max(h, w) // side) * side
    return Finding("strides", "info", f"caveat: total stride {total} ({listed}) does not divide {' and '.join(why)}: "
                   "feature maps are cropped unevenly, so the layers cannot be exactly equivariant to shifts or 90° "
                   "rotations (models that average over input rotations are unaffected)",
                   f"usual for pooling CNNs; for exact equivariance use sizes divisible by {side} "
                   f"(e.g. {nxt}×{nxt}, padding the inputs)", details)


def _speed_finding(run: _Runner, shape: tuple[int, ...]) -> Finding:
    """Inputs/second per batch size within ``SPEED_BUDGET_S``.

    A larger batch is timed (two calls, the faster counts) only when two calls at half the linear
    extrapolation of the last one fit in what is left of the budget (batching usually gains more
    than 2x per step on these sizes).
    """
    budget = SPEED_BUDGET_S
    rates: dict[int, float] = {}
    skipped: list[int] = []
    note = ""
    start = time.perf_counter()
    last: tuple[int, float] | None = None  # (batch size, seconds per call)
    try:
        run(run.inputs(shape, n=1, seed=1))  # warm-up (TorchScript profiles its first calls)
        _sync(run.dev)
    except Exception as exc:  # noqa: BLE001
        return Finding("speed", "warn", f"not measured: forward failed ({exc.__class__.__name__})", "")
    for bs in SPEED_BATCHES:
        spent = time.perf_counter() - start
        if last is not None and (spent + last[1] * bs / last[0] > budget or spent > budget):  # 2 calls at half the linear extrapolation
            skipped.append(bs)
            continue
        try:
            x = run.inputs(shape, n=bs, seed=1)
            calls: list[float] = []  # the fastest of 2-3 calls: least disturbed by other processes
            while len(calls) < 2 or (len(calls) < 3 and sum(calls) < 0.05):  # the 1st call at a new size may compile
                t = time.perf_counter()
                run(x)
                _sync(run.dev)
                calls.append(time.perf_counter() - t)
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory
            note = f"; batch {bs} failed ({exc.__class__.__name__}: {first_line(exc, 80)})"
            break
        last = (bs, min(calls))
        rates[bs] = bs / max(min(calls), 1e-9)
    if not rates:
        return Finding("speed", "warn", "not measured" + note, "")
    best = max(rates, key=lambda b: rates[b])
    table = ", ".join(f"{b}: {r:,.0f}/s" for b, r in rates.items())
    if skipped:
        note += f"; batch {', '.join(map(str, skipped))} not timed (over the {budget:g} s budget)"
    details = {"inputs_per_second": {str(b): r for b, r in rates.items()}, "best_batch_size": best,
               "not_timed": skipped, "seconds": time.perf_counter() - start}
    advice = f"use --batch-size {best}" + (" (the default)" if best == 256 else "")
    return Finding("speed", "ok", f"inputs/second by batch size {table}; best {best}{note}", advice, details)


def _sync(dev: Any) -> None:
    import torch

    if getattr(dev, "type", "cpu") == "cuda":
        torch.cuda.synchronize(dev)


# -- the entry points -------------------------------------------------------------------------


def doctor(model: Any, *, task: Optional[str] = None, weights: Optional[str] = None, meta: Optional[str] = None,
           trust_checkpoint: bool = False, input_shape: Any = None, device: str = "cpu") -> list[Finding]:
    """Check ``model`` (a MODEL argument as for ``nero evaluate``, or an ``nn.Module``) before a sweep.

    Returns the findings in report order. Mistakes in the arguments or a model that cannot be
    loaded raise :class:`~nero_cli.errors.NeroError` (on the command line: one line, exit 2 for a
    bad option, 3 for a model that cannot be loaded).
    """
    from .tasks import get_task

    dev = _resolve_device(device)
    loaded, state = _load(model, weights, meta, trust_checkpoint, dev)
    task_name = task or loaded.meta.task or "classification"
    task_obj = get_task(task_name)
    if input_shape is not None:
        given, source = parse_input_shape(input_shape, task_name), "--input-shape"
    elif loaded.meta.input_shape:
        try:
            given = _check_shape(tuple(int(v) for v in loaded.meta.input_shape), task_name, "metadata input_shape")
        except (TypeError, ValueError):
            raise ModelError(f"metadata input_shape must be a list of integers, got {loaded.meta.input_shape!r}") from None
        except OptionError as exc:  # the model's metadata, not an option: a model error
            raise ModelError(f"{exc}; fix the sidecar JSON or override it with --input-shape") from None
        source = "metadata"
    else:
        given, source = None, "probing"

    findings = [_format_finding(loaded, weights)]
    run = _Runner(loaded, task_name, dev)
    shape, out, shape_finding = _find_shape(run, task_name, given, source)
    if shape is None:
        findings += [_training_finding(loaded, state, {}), shape_finding,
                     Finding("other checks", "info", "skipped: they need an input the model accepts", "")]
        return findings
    x = run.inputs(shape)
    probe_finding, probe = _train_probe(loaded, run, x, out)
    findings += [_training_finding(loaded, state, probe), shape_finding, _output_finding(task_obj, loaded, out, shape),
                 _finite_findings(run, out, shape)]
    det, deterministic = _determinism_finding(run, x, out)
    findings += [det, probe_finding, _identity_finding(run, task_name, x, out, shape, deterministic)]
    if task_name != "pointcloud":
        findings += [_rotation_finding(shape), _stride_finding(loaded.module, shape, loaded.format)]
    findings.append(_speed_finding(run, shape))
    return findings


def exit_code(findings: Sequence[Finding]) -> int:
    """1 when a check failed, else 0 (warnings allowed)."""
    return 1 if any(f.status == "fail" for f in findings) else 0


def to_json(model: str, findings: Sequence[Finding]) -> str:
    counts = {s: sum(f.status == s for f in findings) for s in STATUSES}
    return json.dumps({"model": model, "exit_code": exit_code(findings), "counts": counts,
                       "findings": [f.to_dict() for f in findings]}, indent=2, default=str)


def print_report(model: str, findings: Sequence[Finding], console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

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
    counts = {s: sum(f.status == s for f in findings) for s in STATUSES}
    verdict = "failed" if counts["fail"] else "ready for a sweep"
    console.print(f"{counts['ok']} ok, {counts['info']} info, {counts['warn']} warn, {counts['fail']} fail: {verdict}",
                  highlight=False)


def add_command(app: Any, guard: Callable[[Callable[[], Any]], Any]) -> None:
    """Register ``nero doctor`` on the typer ``app``; ``guard(fn)`` turns NeroError into one line + exit code."""
    import typer

    @app.command("doctor")
    def doctor_command(
        model: str = typer.Argument(..., metavar="MODEL", help="A checkpoint (.pt TorchScript, .pt2 torch.export, pickled "
                                    "module with --trust-checkpoint), file.py:callable or package.module:callable "
                                    "(with --weights), or sample:NAME."),
        task: Optional[str] = typer.Option(None, "--task", help="classification, detection, flow or pointcloud "
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


__all__ = ["Finding", "doctor", "add_command", "exit_code", "to_json", "print_report", "parse_input_shape"]
