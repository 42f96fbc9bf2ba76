"""How ``nero layers`` reaches a model's layers, per format (:func:`check_format`): an ``nn.Module``
as it is; a scripted ``nn.Sequential`` unfolded into a Python ``Sequential`` of its scripted layers
(TorchScript compiles the calls between submodules, so hooks never run inside it); a torch.export
program unflattened into its module hierarchy; anything else refused in one line.

**torch.export.** A ``.pt2`` archive loads (for every other command) as ``ExportedProgram.module()``, one flat graph
with no modules to hook. For ``nero layers`` the program is read again and
``torch.export.unflatten`` rebuilds the original module hierarchy: one ``InterpreterModule`` per
submodule the exported code called, each running its own piece of the graph. Forward hooks fire on
them and each can be called alone (torch 2.13), which is all :mod:`nero_cli.layer_errors` needs.

What the hooks cannot read from an ``InterpreterModule`` is read from its graph:

- its kind (``Conv2d``, ``MaxPool2d``, ...): the class recorded for that module path in the nodes'
  ``nn_module_stack`` metadata;
- the kernel, stride, padding and dilation of a leaf whose graph holds exactly one 2-D convolution or
  pooling call (``aten.conv2d``, ``aten.convolution`` unless transposed, ``aten.max_pool2d``,
  ``aten.avg_pool2d``), set as the attributes an ``nn.Conv2d`` or ``nn.MaxPool2d`` has, so that the
  frames and reaches of its maps are those of the ``nn.Module`` it was exported from.

A leaf with several such calls (a custom module) is pointwise for the reach, as a custom ``nn.Module``
is. A program that cannot be unflattened is refused in one line.
"""

from __future__ import annotations

from functools import reduce
from pathlib import Path
from typing import Any

import torch

from .errors import ModelError, first_line
from .model_formats import quiet_torch, sha256_file
from .runner import ModelRunner

#: Model formats whose layers nero cannot reach, and why (one line each).
UNINSPECTABLE = {
    "torchscript": "TorchScript compiles the calls between its submodules, so forward hooks never run",
    "onnx": "an ONNX graph has no modules to hook",
}
CONV_OPS = ("aten.conv2d.default", "aten.conv2d.padding", "aten.convolution.default")
POOL_OPS = ("aten.max_pool2d.default", "aten.max_pool2d_with_indices.default", "aten.avg_pool2d.default")


def _arguments(node: torch.fx.Node) -> dict[str, Any]:
    """A call's arguments by schema name, defaults filled in."""
    out: dict[str, Any] = {}
    for i, arg in enumerate(node.target._schema.arguments):  # type: ignore[union-attr]
        if i < len(node.args):
            out[arg.name] = node.args[i]
        elif arg.name in node.kwargs:
            out[arg.name] = node.kwargs[arg.name]
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
    return out


def _shape(leaf: torch.nn.Module, node: torch.fx.Node) -> torch.Size:
    """The shape of a graph value: a parameter the leaf holds, else the value recorded at export."""
    if node.op == "get_attr":
        return reduce(getattr, str(node.target).split("."), leaf).shape
    return node.meta["val"].shape


def _kernel_attributes(leaf: torch.nn.Module, node: torch.fx.Node) -> dict[str, Any] | None:
    """``kernel_size``, ``stride``, ``padding``, ``dilation`` of one conv or pool call, as the
    ``nn.Module`` attributes; None for a transposed convolution."""
    a, op = _arguments(node), str(node.target)
    if op in CONV_OPS:
        if a.get("transposed", False):
            return None
        kernel = tuple(int(k) for k in _shape(leaf, a["weight"])[-2:])
    else:
        kernel = tuple(a["kernel_size"])
    return {"kernel_size": kernel, "stride": tuple(a.get("stride") or ()), "padding": a.get("padding", 0),
            "dilation": a.get("dilation", 1)}


def _kind(fqn: str, nodes: list[torch.fx.Node]) -> str | None:
    """The class name recorded for module path ``fqn`` in the nodes' ``nn_module_stack``."""
    for node in nodes:
        for path, cls in (node.meta.get("nn_module_stack") or {}).values():
            if path == fqn:
                return str(getattr(cls, "__name__", cls)).rsplit(".", 1)[-1]
    return None


def annotate(module: torch.nn.Module) -> int:
    """Give every leaf ``InterpreterModule`` of an unflattened program its ``layer_kind`` and, for a
    single conv or pool call, its kernel attributes; the number of leaves annotated."""
    count = 0
    for fqn, leaf in module.named_modules():
        graph = getattr(leaf, "graph", None)
        if any(True for _ in leaf.children()) or not isinstance(graph, torch.fx.Graph):
            continue
        calls = [n for n in graph.nodes if n.op == "call_function"]
        leaf.layer_kind = _kind(fqn, calls) or type(leaf).__name__
        windows = [n for n in calls if str(n.target) in CONV_OPS + POOL_OPS]
        attrs = _kernel_attributes(leaf, windows[0]) if len(windows) == 1 else None
        for key, value in (attrs or {}).items():
            setattr(leaf, key, value)
        count += 1
    return count


def unflattened(model: Any) -> torch.nn.Module:
    """The torch.export program of ``model`` (a loaded ``.pt2``) as a hookable module hierarchy,
    read again from its file (refused if the file changed since it was loaded)."""
    path = Path(model.source)
    if model.sha256.get(path.name) not in (None, sha256_file(path)):
        raise ModelError(f"model {model.name}: {path} changed while nero was reading it; run again")
    with quiet_torch():
        try:
            program = torch.export.load(str(path))
            module = torch.export.unflatten(program)
        except Exception as exc:  # noqa: BLE001 - torch raises many kinds for programs it cannot unflatten
            raise ModelError(f"model {model.name}: its layers cannot be inspected (torch.export.unflatten "
                             f"failed: {first_line(exc)}); give the nn.Module itself (file.py:callable with "
                             "--weights)") from None
    annotate(module)
    return module


class _ScriptedLayer(torch.nn.Module):
    """A leaf of a TorchScript ``Sequential``, callable from Python so that hooks run around it."""

    def __init__(self, leaf: Any):
        super().__init__()
        object.__setattr__(self, "leaf", leaf)  # not a registered child: the wrapper is the leaf
        self.layer_kind = str(getattr(leaf, "original_name", "ScriptModule"))
        if not self.layer_kind.startswith("ConvTranspose"):
            for key in ("kernel_size", "stride", "padding", "dilation"):
                if hasattr(leaf, key):
                    setattr(self, key, getattr(leaf, key))

    def forward(self, *args: Any) -> Any:
        return self.leaf(*args)


def _unfold(module: Any) -> torch.nn.Module | None:
    """A TorchScript ``nn.Sequential`` (nested ones too) as a Python ``Sequential`` of its scripted
    layers, so that its calls go through Python; None for other TorchScript modules."""
    if getattr(module, "original_name", None) != "Sequential":
        return None
    seq = torch.nn.Sequential()
    for name, child in module.named_children():
        has_children = any(True for _ in child.children())
        inner = _unfold(child) if has_children else _ScriptedLayer(child)
        if inner is None:
            return None
        seq.add_module(name, inner)
    return seq


def check_format(runner: ModelRunner) -> None:
    """Make the model's layers reachable by hooks (a TorchScript ``Sequential`` is unfolded, a
    torch.export program unflattened), or refuse in one line."""
    module, why = runner.model.module, UNINSPECTABLE.get(runner.model.format)
    if runner.model.format == "torch.export":
        runner.model.module = unflattened(runner.model).to(runner.device)
        return
    if isinstance(module, torch.jit.ScriptModule):
        unfolded = _unfold(module)
        if unfolded is not None:
            runner.model.module = unfolded
            return
        why = UNINSPECTABLE["torchscript"] + " (only a scripted nn.Sequential can be unfolded)"
    if why or not isinstance(module, torch.nn.Module):
        raise ModelError(f"model {runner.name}: its layers cannot be inspected ({why or 'not an nn.Module'}); give "
                         "the nn.Module itself (file.py:callable with --weights, or a pickled module)")


__all__ = ["annotate", "unflattened", "check_format", "UNINSPECTABLE", "CONV_OPS", "POOL_OPS"]
