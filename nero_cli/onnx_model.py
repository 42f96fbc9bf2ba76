"""ONNX models, run by onnxruntime: the optional extra ``pip install 'nero[onnx]'``.

:func:`load_onnx` is the ``load`` of the ``onnx`` entry of :data:`nero_cli.model_formats.FORMATS`
(a ``.onnx`` MODEL). It gives an :class:`OnnxModule`, an ``nn.Module`` that feeds its one float
input to an onnxruntime ``InferenceSession`` (the CPU provider; CUDA's when the input is on a GPU
and the installed onnxruntime has that provider) and returns the outputs as torch tensors on the
input's device: one tensor, or a tuple of them for a graph with several outputs.

- **Eval only.** onnxruntime computes no derivatives: the session runs inside an autograd
  function whose ``jvp`` and ``backward`` raise ``NotImplementedError``, so ``nero lie`` (method
  ``auto``) falls back to finite differences and says so; ``nero layers`` refuses the ``onnx``
  format in one line (an ONNX graph has no modules to hook).
- **Batch.** A symbolic first input dimension takes any batch. A graph that fixes it at 1 is run
  one input at a time; :attr:`OnnxModule.load_notes` says so, and :func:`nero_cli.prepare.prepare`
  prints it as a warning. Any other fixed batch size is refused at load, in one line.
- **Input shape.** The graph's input shape is the module's :attr:`~OnnxModule.input_signature`
  (``N`` for a symbolic batch, ``*`` for another symbolic dimension), which
  :func:`nero_cli.models.expected_input` reports as the "ONNX graph input" in forward-failure
  messages; when its per-input dimensions are all fixed and no sidecar gives ``input_shape``,
  they become the metadata's ``input_shape`` (so the data's image size is checked before a run).
- **Provenance.** The sha256 covers the ``.onnx`` file and every external-data file it names
  (``torch.onnx.export(..., dynamo=True)`` writes the weights to ``model.onnx.data`` beside it),
  so the result cache sees a change of weights.

Without onnxruntime (or onnx, which lists the external-data files), loading an ``.onnx`` file
fails in one line that names the extra to install.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator

import torch

from .errors import ModelError, first_line
from .model_formats import Loaded, ModelMeta, ModelRequest, checkpoint_file, sha256_file

EXTRA = "pip install 'nero[onnx]'"
NO_DERIVATIVES = "an ONNX model runs in onnxruntime, which computes no derivatives (eval only)"
#: The ONNX input element types nero feeds, as the torch dtype the input is converted to.
DTYPES = {"tensor(float)": torch.float32, "tensor(double)": torch.float64, "tensor(float16)": torch.float16}
BATCH_ONE_NOTE = ("the ONNX graph fixes batch size 1, so nero runs it one input at a time (slower; "
                  "export it with a dynamic batch axis to run batches)")


def runtime(path: Path) -> tuple[Any, Any]:
    """The ``onnxruntime`` and ``onnx`` modules, or one ModelError line naming the extra."""
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:  # also a module set to None in sys.modules
        missing = getattr(exc, "name", None) or "onnxruntime"
        raise ModelError(f"{path}: an ONNX model needs onnxruntime and onnx ({missing} is not installed); "
                         f"install them with {EXTRA}") from None
    return onnxruntime, onnx


def _node_tensors(nodes: Any) -> Iterator[Any]:
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for graph in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _graph_tensors(graph)


def _graph_tensors(graph: Any) -> Iterator[Any]:
    """Every tensor of an ONNX graph: initializers, sparse ones, node attributes, subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    yield from _node_tensors(graph.node)


def external_files(onnx: Any, path: Path) -> list[str]:
    """The external-data files ``path`` names (relative to its folder), sorted; each must exist."""
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - a protobuf decode error: not an ONNX file
        raise ModelError(f"{path}: not a readable ONNX model ({first_line(exc)})") from None
    tensors = [*_graph_tensors(model.graph), *(t for f in model.functions for t in _node_tensors(f.node))]
    names = sorted({e.value for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL
                    for e in t.external_data if e.key == "location"})
    for name in names:
        if not (path.parent / name).is_file():
            raise ModelError(f"{path}: its weights file {name} (external data) is missing; keep it beside the .onnx file")
    return names


def _session(ort: Any, path: Path, providers: list[Any]) -> Any:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: onnxruntime's warnings are not nero's one line
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own errors (invalid graph, unknown op)
        raise ModelError(f"{path}: onnxruntime cannot load this ONNX model ({first_line(exc)})") from None


def _signature(path: Path, session: Any) -> tuple[tuple[int | str, ...], torch.dtype]:
    """The graph's one input as ``(dims, dtype)``, refused in one line where nero cannot feed it."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelError(f"{path}: the ONNX graph has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                         "nero feeds one tensor, so export the model with one input")
    spec = inputs[0]
    if spec.type not in DTYPES:
        raise ModelError(f"{path}: the ONNX input '{spec.name}' is {spec.type}; nero feeds "
                         f"{', '.join(DTYPES)}, so export the model with a float input")
    dims = tuple(d if isinstance(d, int) else ("N" if i == 0 else "*") for i, d in enumerate(spec.shape or []))
    if not dims:
        raise ModelError(f"{path}: the ONNX input '{spec.name}' has no batch dimension; nero feeds batches")
    if isinstance(dims[0], int) and dims[0] != 1:
        raise ModelError(f"{path}: the ONNX graph fixes batch size {dims[0]}; nero feeds batches of any size, so "
                         "export it with a dynamic batch axis (or batch size 1)")
    return dims, DTYPES[spec.type]


class _Run(torch.autograd.Function):
    """One onnxruntime call as an autograd function whose derivatives raise (see the module doc)."""

    @staticmethod
    def forward(module: "OnnxModule", x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        return module.run(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        pass

    @staticmethod
    def jvp(ctx: Any, *tangents: Any) -> Any:
        raise NotImplementedError(NO_DERIVATIVES)

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:
        raise NotImplementedError(NO_DERIVATIVES)


class OnnxModule(torch.nn.Module):
    """An ONNX graph as an eval-only ``nn.Module`` (see the module doc)."""

    def __init__(self, path: Path, ort: Any, session: Any, external: list[str]):
        super().__init__()
        self.path, self._ort, self._cpu, self._cuda = path, ort, session, None
        self.external_files = external
        self.input_signature, self.input_dtype = _signature(path, session)
        self.input_name, self.output_names = session.get_inputs()[0].name, [o.name for o in session.get_outputs()]
        self.batch_one = self.input_signature[0] == 1
        self.load_notes = [BATCH_ONE_NOTE] if self.batch_one else []

    def _session_for(self, device: torch.device) -> Any:
        if device.type != "cuda" or "CUDAExecutionProvider" not in self._ort.get_available_providers():
            return self._cpu
        if self._cuda is None:
            cuda = ("CUDAExecutionProvider", {"device_id": device.index or 0})
            self._cuda = _session(self._ort, self.path, [cuda, "CPUExecutionProvider"])
        return self._cuda

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The graph's outputs on ``x``, on ``x``'s device; one input at a time for a batch-1 graph."""
        if self.batch_one and len(x) != 1:
            parts = [self.run(x[i : i + 1]) for i in range(len(x))]
            return tuple(torch.cat(outs) for outs in zip(*parts))
        feed = x.detach().to("cpu", self.input_dtype).contiguous().numpy()
        outs = self._session_for(x.device).run(None, {self.input_name: feed})
        return tuple(torch.from_numpy(o).to(x.device) for o in outs)

    def forward(self, x: torch.Tensor) -> Any:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"an ONNX model takes one float tensor, got {type(x).__name__}")
        outs = _Run.apply(self, x)
        return outs[0] if len(outs) == 1 else outs

    def extra_repr(self) -> str:
        return f"{self.path.name}, input {tuple(self.input_signature)}, outputs {self.output_names}"


def read_onnx(path: Path, trust: bool) -> OnnxModule:
    """The ONNX file at ``path`` as an :class:`OnnxModule` (``trust`` is unused: ONNX holds no code)."""
    ort, onnx = runtime(path)
    external = external_files(onnx, path)
    return OnnxModule(path, ort, _session(ort, path, ["CPUExecutionProvider"]), external)


def load_onnx(request: ModelRequest) -> Loaded:
    """The ``load`` of the ``onnx`` format: the checks of every checkpoint file, the module, the
    sha256 of its external-data files, and the graph's fixed input shape as metadata."""
    loaded = checkpoint_file(read_onnx)(request)
    module: OnnxModule = loaded.module  # type: ignore[assignment]
    sha = {**loaded.sha256, **{name: sha256_file(request.path.parent / name) for name in module.external_files}}
    meta = loaded.sidecar or ModelMeta()
    per_input = list(module.input_signature[1:])
    if meta.input_shape is None and per_input and all(isinstance(d, int) for d in per_input):
        meta = dataclasses.replace(meta, input_shape=per_input)
    return dataclasses.replace(loaded, sha256=sha, sidecar=meta)


__all__ = ["EXTRA", "OnnxModule", "external_files", "load_onnx", "read_onnx", "runtime"]
