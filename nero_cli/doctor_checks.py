"""The findings of ``nero doctor`` that read the model without calling it.

:class:`Finding` is one line of the report. The checks here look at how the model was loaded
(``format``, ``training mode``) and at its layers and input size (``90° rotations``,
``strides``); the checks that call the model live in :mod:`nero_cli.doctor_probes`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from orbits import parse_spec

from .models import LoadedModel

#: Layers that behave differently in train and eval mode (by class name, so TorchScript modules match too).
MODE_LAYERS = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
               "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LazyBatchNorm1d",
               "LazyBatchNorm2d", "LazyBatchNorm3d")
STRIDED_LAYERS = ("Conv2d", "MaxPool2d", "AvgPool2d", "LPPool2d", "LazyConv2d")
STRIDE_CAVEAT = "shifts and rotations can be exactly equivariant layer by layer only for sizes divisible by the total stride"


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


def fmt_shape(shape: Any) -> str:
    return "×".join(map(str, shape))


def layer_kind(m: Any) -> str:
    """Class name of a submodule; TorchScript modules keep theirs in ``original_name``."""
    return str(getattr(m, "original_name", None) or type(m).__name__)


def _named_modules(module: Any) -> list[tuple[str, Any]]:
    try:
        return list(module.named_modules())
    except Exception:  # noqa: BLE001 - exotic modules
        return []


def mode_layers(module: Any) -> list[tuple[str, str]]:
    """``(name, kind)`` of the submodules whose output depends on train/eval mode."""
    return [(name, layer_kind(m)) for name, m in _named_modules(module) if layer_kind(m) in MODE_LAYERS]


def training_state(module: Any) -> dict[str, Any]:
    """Whether ``module`` (or any submodule) is in training mode, and which submodules are."""
    sub = [name or "<root>" for name, m in _named_modules(module) if getattr(m, "training", False)]
    return {"training": bool(getattr(module, "training", False)) or bool(sub), "training_modules": sub}


#: What a sweep of a factory model with random weights needs (``nero evaluate`` refuses it otherwise).
RANDOM_INIT = "--random-init"


def format_finding(loaded: LoadedModel, weights: Optional[str], random: Optional[bool] = None) -> Finding:
    """How the model was loaded; ``random``: whether a factory without ``--weights`` has random weights."""
    sha = dict(loaded.sha256)
    files = "; ".join(f"{name} sha256 {digest}" for name, digest in sha.items()) or "no file (nothing to hash)"
    details = {"format": loaded.format, "sha256": sha, "source": loaded.source}
    msg = f"{loaded.format}: {files}"
    if loaded.format == "pickle":
        return Finding("format", "warn", msg + " (a pickled whole module, loaded with --trust-checkpoint)",
                       "unpickling runs code from the file: convert it once with torch.jit.save(torch.jit.script(model)) "
                       "or torch.export, or save a state dict and load it with file.py:callable --weights", details)
    if loaded.format == "factory" and not weights:
        details["random_weights"] = random
        if random:
            return Finding("format", "warn", msg + " (factory called without --weights: its weights change with the "
                           f"random seed, so nero evaluate, lie, layers and search refuse it without {RANDOM_INIT})",
                           f"pass --weights FILE for trained weights, or add {RANDOM_INIT} to measure it untrained",
                           {**details, "needs": [RANDOM_INIT]})
        return Finding("format", "info", msg + " (factory called without --weights)",
                       "the factory's own weights are evaluated; pass --weights FILE for trained weights "
                       "unless the factory loads them itself", details)
    if loaded.format == "module":
        return Finding("format", "info", "a torch.nn.Module in memory (no file to hash)",
                       "save it (torch.jit.save, torch.export or a state dict) so runs record a checksum", details)
    return Finding("format", "ok", msg, "the sha256 is recorded in run.json of every run", details)


def training_finding(loaded: LoadedModel, state: dict, probe: dict) -> Finding:
    """``state``: :func:`training_state` as loaded; ``probe``: what the train-mode probe saw."""
    layers = mode_layers(loaded.module)
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


def rotation_finding(shape: tuple[int, ...]) -> Finding:
    """For which multiples of 90° images of ``shape`` (``..., H, W``) turn exactly (index gathering)."""
    h, w = int(shape[-2]), int(shape[-1])
    spec = parse_spec("rotation:step=90")
    act = spec.input_action("image", (h, w))
    angles = [int(round(float(a))) for a in spec.group.elements[:, 0]]
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


def _strided_layers(mods: list[tuple[str, Any]]) -> tuple[list[tuple[str, str, tuple[int, int]]], int]:
    """The Conv/pooling layers with a stride other than 1, and how many hide their stride (traced TorchScript)."""
    layers: list[tuple[str, str, tuple[int, int]]] = []
    hidden = 0
    for name, m in mods:
        kind = layer_kind(m)
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
    return layers, hidden


def stride_finding(module: Any, shape: tuple[int, ...], fmt: str) -> Finding:
    """Whether the total stride of the strided layers divides the input's H and W."""
    h, w = int(shape[-2]), int(shape[-1])
    mods = _named_modules(module)
    if fmt == "torch.export" or not mods:
        return Finding("strides", "info", "layer strides not inspected (a torch.export program has no layer modules)",
                       STRIDE_CAVEAT, {})
    layers, hidden = _strided_layers(mods)
    if hidden:
        return Finding("strides", "info", f"layer strides not inspected ({hidden} Conv/pooling layer(s) of a traced "
                       "TorchScript module hide them)", STRIDE_CAVEAT, {})
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
    why = [f"H={h}"] * bool(h % ty) + [f"W={w}"] * bool(w % tx)
    side = max(ty, tx)
    nxt = -(-max(h, w) // side) * side
    return Finding("strides", "info", f"caveat: total stride {total} ({listed}) does not divide {' and '.join(why)}: "
                   "feature maps are cropped unevenly, so the layers cannot be exactly equivariant to shifts or 90° "
                   "rotations (models that average over input rotations are unaffected)",
                   f"usual for pooling CNNs; for exact equivariance use sizes divisible by {side} "
                   f"(e.g. {nxt}×{nxt}, padding the inputs)", details)


__all__ = ["Finding", "MODE_LAYERS", "STRIDED_LAYERS", "fmt_shape", "layer_kind", "mode_layers", "training_state",
           "format_finding", "training_finding", "rotation_finding", "stride_finding"]
