"""Loading models from the common PyTorch formats, safely.

MODEL may be
- ``sample:NAME``: a bundled sample model (``nero list samples``);
- a TorchScript archive (``torch.jit.save``, usually ``.pt``);
- a torch.export archive (``.pt2``);
- ``path/to/file.py:callable`` or ``package.module:callable`` building an ``nn.Module``,
  with ``--weights FILE`` holding a state dict (``.pt``/``.pth`` loaded with
  ``weights_only=True``, or ``.safetensors``);
- a whole pickled module (``torch.save(model)``), only with ``trust_checkpoint=True``:
  unpickling runs arbitrary code.

Each of these is one entry of the format registry :data:`nero_cli.model_formats.FORMATS`
(name, ``matches(arg, path)``, ``load(request)``); :func:`load_model` walks it in order, lets
the first entry that matches load the module, then applies the metadata, the device and eval
mode. Adding a format (ONNX, say) is one loader function and one registry entry in
:mod:`nero_cli.model_formats`; nothing here changes.

An optional sidecar ``MODEL.json`` (or ``meta=FILE``) gives ``task``, ``class_names``,
``input_shape`` and ``normalize: {mean: [...], std: [...]}``.

Beside the sha256 of the files it read, a model records the sha256 of the Python files that
define it (``code_sha256``: its factory's file and the modules of its layers' classes, not
torch's, the standard library's or nero's): the result cache and ``--resume`` then notice an
edited ``forward`` as they notice new weights.
"""

from __future__ import annotations

import sys
import sysconfig
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from .model_formats import (FORMATS, ModelFormat, ModelMeta, ModelRequest, find_format, load_state_dict, quiet_torch,
                            read_meta, sha256_file)

__all__ = ["FORMATS", "LoadedModel", "code_digests", "ModelFormat", "ModelMeta", "expected_input", "export_signature", "load_model",
           "load_state_dict", "read_meta", "set_eval", "sha256_file"]

@dataclass
class LoadedModel:
    """A model ready to evaluate, with where it came from."""

    name: str
    module: torch.nn.Module
    source: str
    format: str
    sha256: dict[str, str] = field(default_factory=dict)  # file -> digest
    meta: ModelMeta = field(default_factory=ModelMeta)
    code_sha256: dict[str, str] = field(default_factory=dict)  # module (a factory file: its name) -> digest


#: Top-level packages whose code is not the model's (their versions are recorded apart).
NOT_MODEL_CODE = {"torch", "builtins", "onnx", "onnxruntime", "onnxscript", "nero_cli", "safetensors", "numpy"}


def code_digests(objects: Iterable[Any]) -> dict[str, str]:
    """sha256 of the Python files that define ``objects`` (a factory, the classes of a model's
    layers), by module name (a file imported as ``file.py:callable`` by its file name)."""
    stdlib = sysconfig.get_paths()["stdlib"]
    found: dict[str, str] = {}
    for obj in objects:
        name = getattr(obj, "__module__", None) or ""
        path = getattr(sys.modules.get(name), "__file__", None)
        if not path or not path.endswith(".py") or name.split(".")[0] in NOT_MODEL_CODE or path.startswith(stdlib):
            continue
        key = Path(path).name if name.startswith("_nero_user_") else name
        if key not in found:
            found[key] = sha256_file(Path(path))
    return dict(sorted(found.items()))


def set_eval(module: torch.nn.Module) -> None:
    try:
        module.eval()
    except Exception:  # noqa: BLE001 - torch.export modules refuse train/eval switches
        pass


def export_signature(module: torch.nn.Module | None) -> tuple[int | str, ...] | None:
    """The input shape a torch.export program was exported for (its first placeholder's example
    value), a dynamic dimension as ``N`` (the batch) or ``*``; ``None`` for any other module."""
    graph = getattr(getattr(module, "_orig_mod", module), "graph", None)  # _orig_mod: under torch.compile
    if not isinstance(graph, torch.fx.Graph):
        return None
    for node in graph.nodes:
        if node.op == "placeholder":
            val = node.meta.get("val")
            if not isinstance(val, torch.Tensor):
                return None
            return tuple(int(d) if isinstance(d, int) else ("N" if i == 0 else "*") for i, d in enumerate(val.shape))
    return None


def expected_input(model: LoadedModel) -> tuple[tuple[int | str, ...], str] | None:
    """The input shape ``model`` records, batch included, and where it records it: a torch.export
    program's signature or an ONNX graph's input, else the per-input ``input_shape`` of its
    metadata (batch ``N``)."""
    signature = export_signature(model.module)
    if signature is not None:
        return signature, "export signature"
    if getattr(model.module, "input_signature", None) is not None:  # nero_cli.onnx_model.OnnxModule
        return tuple(model.module.input_signature), "ONNX graph input"
    shape = model.meta.input_shape
    if isinstance(shape, (list, tuple)) and shape and all(isinstance(v, int) for v in shape):
        return ("N", *shape), "sidecar input_shape"
    return None


def _merge_meta(meta: str | None, sidecar: ModelMeta | None) -> ModelMeta:
    """``--meta FILE`` wins, the sidecar fills its gaps; either alone is used as is."""
    merged = read_meta(Path(meta)) if meta else (sidecar or ModelMeta())
    if meta and sidecar:
        for f in fields(ModelMeta):
            if getattr(merged, f.name) is None:
                setattr(merged, f.name, getattr(sidecar, f.name))
    return merged


def load_model(arg: str, weights: str | None = None, meta: str | None = None, name: str | None = None,
               trust_checkpoint: bool = False, device: str | torch.device = "cpu",
               before_eval: Callable[[torch.nn.Module], None] | None = None) -> LoadedModel:
    """Load MODEL from any supported format; see the module docstring. ``before_eval`` sees the
    module as loaded, before nero puts it in eval mode (doctor reads its training flags)."""
    fmt = find_format(arg)
    with quiet_torch():  # a failed load prints nero's one line, not torch's logged traceback
        loaded = fmt.load(ModelRequest(arg, Path(arg), weights, trust_checkpoint))
    meta_obj = _merge_meta(meta, loaded.sidecar)
    module = loaded.module
    try:
        module = module.to(device)
    except Exception:  # noqa: BLE001 - exported programs may not move; leave them where they are
        pass
    if before_eval is not None:
        before_eval(module)
    set_eval(module)
    code = code_digests([*loaded.code, *(type(m) for m in module.modules())])
    return LoadedModel(name=name or meta_obj.name or loaded.default_name, module=module, source=arg, format=fmt.name,
                       sha256=dict(loaded.sha256), meta=meta_obj, code_sha256=code)
