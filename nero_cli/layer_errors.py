"""``nero layers``: which layer breaks the symmetry? Layer-wise attribution of the equivariance error.

Forward hooks on an ``nn.Module`` (factory, sample or pickled model) record, in execution order,
every leaf module that maps a spatial feature map ``(N, C, h, w)`` to another one. For each such
layer ``l`` with input ``z`` (recorded on the untransformed input, so upstream errors are left
out) and each group element ``g``:

- ``own_error`` = ``‖f_l(g·z) − g·f_l(z)‖ / ‖f_l(z)‖`` (Frobenius norms pooled over the samples),
  compared on the valid interior only: output pixels ``p`` with ``p`` and ``g⁻¹p`` at least a
  margin from the border, the margin being the layer's reach (half its kernel extent over its
  stride, rounded up; 0 for layers without a ``kernel_size``) plus ``margin`` pixels (default 1,
  which also keeps out the pixels whose interpolation reads the zero padding). A map too small to have
  such an interior scores NaN.
- ``contribution`` = the change of the model's output when the transformation is moved across
  layer ``l`` alone: the output with ``g`` applied to the layer's input (the network runs on ``x``
  up to ``l``, the map is transformed, the rest runs) against the output with ``g`` applied to the
  layer's output instead. For classification the change is the total-variation distance between
  the softmax outputs, averaged over samples. In a chain of layers the contributions telescope:
  inserting ``g`` before the first layer gives the output at ``g·x``, and the last row, ``(head)``,
  compares ``g`` applied after the last spatial layer with the output at the identity (the
  readout's own invariance), so the contributions bound the end-to-end error from above. In a
  network with skip connections an insertion transforms only the path through the layer.

**The scalar-field assumption.** Intermediate maps are assumed to transform as scalar fields:
``g`` acts on every channel alike, moving pixels only, with the group's action rescaled to the
map's resolution (a one-pixel shift of a 28-px image is a half-pixel shift of a 14-px map,
resampled bilinearly; a 1x1 map, a global pooling's output, is left unmoved). Each map's pixel grid is placed on the image through the strides, kernels
and paddings of the layers that made it (``x_map = a·x_image + b``), else through the size
ratio. This is the assumption of the layer-wise analysis of Gruver et al. (2022). For steerable
or group-convolution networks whose channels permute (or mix) under rotation the assumption is
wrong: their per-layer error is overstated, although the network may be exactly equivariant.

Formats: TorchScript compiles the calls between its submodules, so hooks never run: a scripted
``nn.Sequential`` (nested ones too) is unfolded into a Python ``Sequential`` of its scripted layers,
and any other TorchScript module is refused in one line. A torch.export program is unflattened into
its module hierarchy (:mod:`nero_cli.layer_graph`), whose submodules take hooks; ONNX graphs are
refused (no modules to hook).
"""

from __future__ import annotations

import datetime as _dt
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pandas as pd
import torch

from orbits import ImageAction, planar_matrices

from .api import as_data, one_group
from .errors import ModelError, OptionError, identity_only
from .outdir import claim
from .layer_graph import UNINSPECTABLE, check_format
from .layers_output import ASSUMPTION, summarise, write_layers_run
from .prepare import Prepared, prepare
from .runner import ModelRunner

#: Columns of layers.csv.
COLUMNS = ("model", "layer", "kind", "depth", "element", "own_error", "contribution")
HEAD = "(head)"
#: Keyword options of :func:`layers_run`.
OPTIONS = ("task", "weights", "meta", "names", "trust_checkpoint", "normalize", "random_init", "device", "seed",
           "limit", "batch_size", "margin", "plots", "overwrite", "command", "labels")


@dataclass(frozen=True)
class Frame:
    """Where a map's pixel grid lies on the image: ``x_map = ax·x_image + bx`` (same for y)."""

    ax: float = 1.0
    bx: float = 0.0
    ay: float = 1.0
    by: float = 0.0

    def matrix(self) -> torch.Tensor:
        return torch.tensor([[self.ax, 0.0, self.bx], [0.0, self.ay, self.by], [0.0, 0.0, 1.0]], dtype=torch.float64)

    def on_map(self, m: torch.Tensor) -> torch.Tensor:
        """The image-space matrix ``m`` as a matrix of this map's pixel coordinates."""
        s = self.matrix()
        return s @ m @ torch.linalg.inv(s)


def _pair(v: Any) -> tuple[Any, Any]:
    return (v, v) if not isinstance(v, (tuple, list)) else (v[0], v[-1])


def _kernel(module: torch.nn.Module) -> tuple[tuple[float, float, float], tuple[float, float, float]] | None:
    """Per axis (y, x): the kernel extent, stride and padding of a conv or pool layer, else None."""
    if not hasattr(module, "kernel_size") or not hasattr(module, "stride") or isinstance(
            module, torch.nn.modules.conv._ConvTransposeNd):
        return None
    ks, st = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
    dil, pad = _pair(getattr(module, "dilation", 1)), getattr(module, "padding", 0)
    ext = [d * (k - 1) + 1 for k, d in zip(ks, dil)]
    pads = [(e - 1) / 2 for e in ext] if pad == "same" else [0, 0] if pad == "valid" else _pair(pad)
    return tuple((float(e), float(s), float(p)) for e, s, p in zip(ext, st, pads))  # type: ignore[return-value]


def next_frame(frame: Frame, module: torch.nn.Module, in_size: Sequence[int], out_size: Sequence[int]) -> Frame:
    """The frame of ``module``'s output, from its input's frame: through its stride, kernel and padding
    (conv, pool), unchanged for a map of the same size, else through the size ratio (pixel-centre)."""
    kern = _kernel(module)
    (ay, by), (ax, bx) = (frame.ay, frame.by), (frame.ax, frame.bx)
    out = []
    for a, b, n_in, n_out, k in zip((ay, ax), (by, bx), in_size, out_size, kern or (None, None)):
        if k is not None:
            ext, s, p = k
            out.append((a / s, (b + p - (ext - 1) / 2) / s))
        elif n_in == n_out:
            out.append((a, b))
        else:
            r = n_out / n_in
            out.append((a * r, (b + 0.5) * r - 0.5))
    (ay, by), (ax, bx) = out
    return Frame(ax, bx, ay, by)


def reach(module: torch.nn.Module) -> int:
    """Output pixels near the border that a layer's kernel makes differ (half its extent over its
    stride, rounded up); layers without a ``kernel_size`` count as pointwise (0)."""
    kern = _kernel(module)
    return 0 if kern is None else int(max(math.ceil((ext - 1) / 2 / s) for ext, s, _ in kern))


class _OneElement:
    """One planar matrix as a group of one element, for :class:`orbits.ImageAction` on a map."""

    param_names = ("m",)

    def __init__(self, matrix: torch.Tensor):
        self.elements = torch.zeros(1, 1, dtype=torch.float64)
        self._m = matrix

    def planar(self, elements: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self._m[None]


@dataclass
class Call:
    """One recorded call of a layer: its input on the identity element and the frames of its maps."""

    name: str
    module: torch.nn.Module
    occurrence: int
    z: torch.Tensor
    in_frame: Frame
    out_frame: Frame
    out_size: tuple[int, int]

    @property
    def kind(self) -> str:
        return str(getattr(self.module, "layer_kind", type(self.module).__name__))


class Mover:
    """The action of one group element on maps of any frame and size (cached), with the options
    (interpolation, padding) of the spec's image action."""

    def __init__(self, matrix: torch.Tensor, interp: str, padding: str):
        self.matrix, self.interp, self.padding = matrix, interp, padding
        self._cache: dict[tuple, ImageAction] = {}

    def map_matrix(self, frame: Frame) -> torch.Tensor:
        return frame.on_map(self.matrix)

    def __call__(self, t: torch.Tensor, frame: Frame) -> torch.Tensor:
        size = (int(t.shape[-2]), int(t.shape[-1]))
        if size == (1, 1):
            return t  # a single pixel (a global pooling's output) summarises the whole image: left unmoved
        key = (frame, size)
        if key not in self._cache:
            self._cache[key] = ImageAction(_OneElement(self.map_matrix(frame)), size, interp=self.interp,
                                           padding=self.padding)
        return self._cache[key](t, [0])[0]


def interior(size: tuple[int, int], matrix: torch.Tensor, margin: int) -> torch.Tensor:
    """``(h, w)`` mask of the pixels ``p`` with ``p`` and ``matrix⁻¹ p`` at least ``margin`` from the border."""
    h, w = size
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    inv = torch.linalg.inv(matrix)
    den = inv[2, 0] * xs + inv[2, 1] * ys + inv[2, 2]
    sx = (inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]) / den
    sy = (inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]) / den

    def inside(a: torch.Tensor, n: int) -> torch.Tensor:
        return (a >= margin - 1e-9) & (a <= n - 1 - margin + 1e-9)

    return inside(xs, w) & inside(ys, h) & inside(sx, w) & inside(sy, h)


def _leaves(module: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    return [(n or type(module).__name__, m) for n, m in module.named_modules() if not any(True for _ in m.children())]


def _is_map(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.ndim == 4 and t.is_floating_point()


def record(runner: ModelRunner, x: torch.Tensor) -> list[Call]:
    """Every call of a leaf module from a map to a map during ``runner(x)``, in execution order."""
    calls: list[Call] = []
    frames: dict[int, tuple[torch.Tensor, Frame]] = {}
    counts: dict[int, int] = {}
    pending: dict[int, list[torch.Tensor]] = {}

    def frame_of(t: torch.Tensor) -> Frame:
        if id(t) in frames:
            return frames[id(t)][1]
        same = [f for u, f in frames.values() if u.shape[-2:] == t.shape[-2:]]
        return same[-1] if same else next_frame(Frame(), torch.nn.Identity(), x.shape[-2:], t.shape[-2:])

    def pre(mod: torch.nn.Module, args: tuple) -> None:
        if args and _is_map(args[0]):
            pending.setdefault(id(mod), []).append(args[0].detach().clone())
            frames.setdefault(id(args[0]), (args[0], frame_of(args[0])))

    def post(name: str) -> Callable[..., None]:
        def hook(mod: torch.nn.Module, args: tuple, out: Any) -> None:
            k = counts[id(mod)] = counts.get(id(mod), 0) + 1
            z = pending.get(id(mod), [None]).pop() if pending.get(id(mod)) else None
            if z is None or not _is_map(out):
                return
            fin = frame_of(args[0])
            fout = next_frame(fin, mod, z.shape[-2:], out.shape[-2:])
            frames[id(out)] = (out, fout)
            calls.append(Call(name if k == 1 else f"{name}#{k}", mod, k, z, fin, fout, tuple(out.shape[-2:])))
        return hook

    with _hooked(runner, pre, post), torch.no_grad():
        runner(x)
    return calls


@contextmanager
def _hooked(runner: ModelRunner, pre: Callable, post: Callable[[str], Callable]) -> Iterator[None]:
    """Pre- and post-hooks on every leaf module of the runner's model, removed on exit."""
    handles = [h for name, mod in _leaves(runner.model.module)
               for h in (mod.register_forward_pre_hook(pre), mod.register_forward_hook(post(name)))]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _probs(runner: ModelRunner, task: Any, x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(task.prepare(runner(x), x.shape[0], runner.name).double(), dim=-1)


def _tv(p: torch.Tensor, q: torch.Tensor) -> float:
    """Sum over samples of the total-variation distance between softmax rows."""
    return float(0.5 * (p - q).abs().sum(-1).sum())


def inserted(runner: ModelRunner, task: Any, x: torch.Tensor, call: Call, move: Mover, after: bool) -> torch.Tensor:
    """The softmax output with ``move`` applied to ``call``'s input (``after=False``) or output."""
    seen = [0]

    def pre(mod: torch.nn.Module, args: tuple) -> tuple | None:
        seen[0] += 1
        if seen[0] != call.occurrence:
            return None
        return (move(args[0], call.in_frame), *args[1:])

    def post(mod: torch.nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor | None:
        seen[0] += 1
        return move(out, call.out_frame) if seen[0] == call.occurrence else None

    handle = call.module.register_forward_hook(post) if after else call.module.register_forward_pre_hook(pre)
    try:
        with torch.no_grad():
            return _probs(runner, task, x)
    finally:
        handle.remove()


def own_error(runner: ModelRunner, call: Call, move: Mover, margin: int) -> tuple[float, float]:
    """``(Σ‖f(g·z) − g·f(z)‖², Σ‖f(z)‖²)`` over the valid interior of ``call``'s output."""
    try:
        with torch.no_grad():
            ref = call.module(call.z.clone())
            got = call.module(move(call.z, call.in_frame))
    except Exception as exc:  # noqa: BLE001 - the user's layer failed on a transformed map
        raise ModelError(f"model {runner.name}: layer {call.name} failed on a transformed map: {exc}") from None
    if got.shape != ref.shape:
        return math.nan, math.nan
    want = move(ref, call.out_frame)
    m = reach(call.module) + margin
    mask = interior(call.out_size, move.map_matrix(call.out_frame), m).to(ref.device, ref.dtype)
    if not bool(mask.any()):
        return math.nan, math.nan
    return float((((got - want) ** 2) * mask).sum()), float(((ref ** 2) * mask).sum())


@dataclass
class _Sums:
    """Running sums of one model, per (layer index, element)."""

    own: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    contrib: dict[tuple[int, int], float] = field(default_factory=dict)
    output: dict[int, float] = field(default_factory=dict)
    names: list[tuple[str, str]] = field(default_factory=list)

    def add_own(self, key: tuple[int, int], num: float, den: float) -> None:
        acc = self.own.setdefault(key, [0.0, 0.0])
        acc[0], acc[1] = acc[0] + num, acc[1] + den

    def add(self, table: dict, key: Any, value: float) -> None:
        table[key] = table.get(key, 0.0) + value


def _batch(runner: ModelRunner, task: Any, x: torch.Tensor, movers: dict[int, Mover], image_moves: Any,
           margin: int, sums: _Sums) -> None:
    """Add one batch of samples to ``sums``: every layer under every element."""
    calls = record(runner, x)
    if not calls:
        raise ModelError(f"model {runner.name}: no module maps a feature map (N, C, h, w) to another; nero layers "
                         "has no layer to measure (functional calls in forward are not modules)")
    names = [(c.name, c.kind) for c in calls]
    if sums.names and sums.names != names:
        raise ModelError(f"model {runner.name}: its layers ran differently on two batches; nero layers needs a "
                         "model whose forward pass calls the same layers for every input")
    sums.names = names
    with torch.no_grad():
        ref = _probs(runner, task, x)
    for e, move in movers.items():
        with torch.no_grad():
            sums.add(sums.output, e, _tv(_probs(runner, task, image_moves(x, [e])[0]), ref))
        for i, call in enumerate(calls):
            sums.add_own((i, e), *own_error(runner, call, move, margin))
            before, after = (inserted(runner, task, x, call, move, a) for a in (False, True))
            sums.add(sums.contrib, (i, e), _tv(before, after))
        sums.add(sums.contrib, (len(calls), e), _tv(inserted(runner, task, x, calls[-1], move, True), ref))


def _rows(name: str, sums: _Sums, labels: dict[int, str], n: int) -> list[dict[str, Any]]:
    rows = []
    for i, (layer, kind) in enumerate([*sums.names, (HEAD, "head")]):
        for e, label in labels.items():
            num, den = sums.own.get((i, e), [math.nan, math.nan])
            own = math.sqrt(num / den) if den and den > 0 and not math.isnan(den) else math.nan
            rows.append({"model": name, "layer": layer, "kind": kind, "depth": i + 1, "element": label,
                         "own_error": own, "contribution": sums.contrib.get((i, e), math.nan) / n})
    return rows


def _movers(p: Prepared) -> tuple[dict[int, Mover], dict[int, str], Any]:
    spec = p.specs[0]
    group, size = spec.group, p.dataset.size
    mats = planar_matrices(group, size)
    labels = group.labels()
    ident = torch.eye(3, dtype=torch.float64)
    interp, padding = spec.action.get("interp", "bilinear"), spec.action.get("padding", "zeros")
    movers = {e: Mover(mats[e], interp, padding) for e in range(len(group)) if not torch.allclose(mats[e], ident)}
    if not movers:
        raise identity_only(spec.text)
    return movers, {e: labels[e] for e in movers}, spec.input_action("image", size)


def check_task(task: Any) -> None:
    """Refuse a task nero layers cannot measure (image classifiers only, for now)."""
    if task.input_kind != "image" or task.output != "invariant":
        raise OptionError(f"nero layers measures image classifiers for now; the task {task.name} is not supported yet")


def layer_table(p: Prepared, batch_size: int = 64, margin: int = 1) -> tuple[pd.DataFrame, dict[str, float]]:
    """layers.csv's rows for every model of ``p`` on every sample, and each model's end-to-end error
    (mean TV between the softmax at ``g·x`` and at ``x``, over samples and elements)."""
    check_task(p.task)
    if len(p.specs) != 1 or not p.specs[0].group.is_planar:
        raise OptionError("nero layers takes one planar --group (rotation, shift, scale, perspective)")
    movers, labels, image_moves = _movers(p)
    rows, output = [], {}
    n = len(p.dataset)
    for runner in p.runners:
        check_format(runner)
        sums = _Sums()
        for s in range(0, n, batch_size):
            _batch(runner, p.task, p.dataset.inputs[s:s + batch_size].to(p.device), movers, image_moves, margin, sums)
        rows += _rows(runner.name, sums, labels, n)
        output[runner.name] = sum(sums.output.values()) / (n * len(movers))
    return pd.DataFrame(rows, columns=list(COLUMNS)), output


@dataclass
class LayersResult:
    out: Path | None
    table: pd.DataFrame
    summary: dict[str, Any]
    plots: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def layers(models: Any, data: Any, group: str | Sequence[str], out: Path | None = None,
           **options: Any) -> pd.DataFrame:
    """layers.csv as a DataFrame (see the module docstring and :func:`layers_run` for the options).
    ``models`` is one model (an ``nn.Module``, a path, ``sample:NAME``) or a list of them."""
    models = list(models) if isinstance(models, (list, tuple)) else [models]
    return layers_run(models, data, group, out, **options).table


def layers_run(models: Sequence[Any], data: Any, group: str | Sequence[str], out: Path | None = None,
               **kw: Any) -> LayersResult:
    """Measure every layer of ``models`` on ``data`` under ``group``; write the run folder ``out`` if given.

    ``data``: a ``--data`` string or path, a Dataset, an array of images, a dict of arrays
    (``images``, optional ``labels``), a ``TensorDataset`` or a torch ``Dataset``, as for
    :func:`nero_cli.evaluate`. ``group``: one planar spec (a list of one is taken; several are
    refused, as the run folder records one group: measure once per group).
    Options (``kw``): ``task``, ``weights``, ``meta``, ``names``, ``trust_checkpoint``, ``normalize``,
    ``random_init``, ``device``, ``seed`` as for ``evaluate_run``; ``limit`` (first N samples, default
    64), ``batch_size`` (64), ``margin`` (pixels beyond each layer's reach kept off the border, 1),
    ``plots`` (True), ``overwrite`` (False), ``command`` (recorded in run.json), ``labels`` (of
    in-memory images)."""
    started = _dt.datetime.now(_dt.timezone.utc)
    unknown = sorted(set(kw) - set(OPTIONS))
    if unknown:
        raise TypeError(f"layers_run() got unknown option(s) {', '.join(unknown)}; valid: {', '.join(OPTIONS)}")
    if kw.get("batch_size", 64) <= 0 or kw.get("margin", 1) < 0:
        raise OptionError("--batch-size must be positive and --margin not negative")
    group = one_group(group, "nero layers")
    data = as_data(data, kw.get("task"), kw.pop("labels", None))
    if out is None:
        return _measure(models, data, group, kw)[0]
    out = Path(out)
    protect = [a for a in [*models, data, *kw.get("weights", ()), *kw.get("meta", ())]
               if isinstance(a, (str, Path)) and Path(a).exists()]
    with claim(out, "run", kw.get("overwrite", False), protect):
        res, p = _measure(models, data, group, kw)
        options = {"models": [m.source for m in p.models], "data": p.dataset.source, "group": group,
                   **{k: v for k, v in kw.items() if k not in ("command",)}}
        options.update(weights=list(kw.get("weights", ())), meta=list(kw.get("meta", ())),
                       names=list(kw.get("names", ())))
        res.plots = write_layers_run(out, p, res.table, res.summary, options, plots=kw.get("plots", True),
                                     command=kw.get("command"), started=started)
        res.out = out
        return res


def _measure(models: Sequence[Any], data: Any, group: str, kw: dict[str, Any]) -> tuple[LayersResult, Prepared]:
    load = {k: kw[k] for k in OPTIONS[:9] if k in kw}
    p = prepare(models, data, [group], limit=kw.get("limit", 64), can_sample=False, check_task=check_task, **load)
    table, output = layer_table(p, batch_size=kw.get("batch_size", 64), margin=kw.get("margin", 1))
    summary = summarise(table, output, p.specs[0], len(p.dataset))
    return LayersResult(None, table, summary, warnings=p.warnings), p


__all__ = ["layers", "layers_run", "layer_table", "LayersResult", "record", "next_frame", "Frame", "interior",
           "COLUMNS", "ASSUMPTION", "UNINSPECTABLE"]
