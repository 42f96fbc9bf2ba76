"""The model formats nero loads: one registry entry per format, and the files they read.

:data:`FORMATS` holds one :class:`ModelFormat` per format, in the order
:func:`nero_cli.models.load_model` tries them; the first entry whose ``matches(arg, path)``
holds loads MODEL, and its ``name`` is the ``format`` recorded in ``run.json``:

================  ===================================================  =========================================
name              matches                                              loads
================  ===================================================  =========================================
``sample``        ``sample:NAME``                                      a bundled sample model
``factory``       ``file.py:callable`` / ``pkg.mod:callable``          calls it; ``--weights`` holds a state dict
                  (when no file of that name exists)
``safetensors``   a ``.safetensors`` file                              nothing: weights only, refused with advice
``torch.export``  a ``.pt2`` file                                      ``torch.export.load(...).module()``
``onnx``          a ``.onnx`` file                                     onnxruntime (:mod:`nero_cli.onnx_model`)
``torchscript``   a zip archive holding TorchScript code               ``torch.jit.load``
``pickle``        any other file (the catch-all, always last)          ``torch.load(weights_only=True)``; a whole
                                                                       pickled module only with trust_checkpoint
================  ===================================================  =========================================

``load(request)`` takes a :class:`ModelRequest` and returns a :class:`Loaded`: the module and
its provenance (default name, sha256 of the files read, sidecar metadata).
:func:`checkpoint_file` turns a reader ``read(path, trust_checkpoint) -> nn.Module`` into the
``load`` of a checkpoint-file format, after the checks every MODEL file gets: it exists, is no
directory, is not empty and is no HTML page saved by a failed download; ``--weights`` is
refused (it is for factories only); then its sha256 and its sidecar ``MODEL.json``. Adding a
format is one reader and one entry before the ``pickle`` catch-all, as ``onnx`` is.

Safety: state dicts and checkpoints are read with ``weights_only=True``; full unpickling (which
can run arbitrary code) happens only in :func:`_trusted_load`, reached only when the user
passed ``--trust-checkpoint``; the checkpoint's folder and the current directory are then on
``sys.path`` for the load (:func:`on_sys_path`), so ``torch.save(model)`` from a script whose
class lives in a module beside it loads. TorchScript passed as ``--weights`` is named as such.

A file that starts like a zip archive but lost its end is named truncated (:func:`zip_damage`),
and torch's own logging and warnings are silenced while a model loads (:func:`quiet_torch`), so
a failed load prints nero's one line: both live in :mod:`nero_cli.model_files`.

The sidecar metadata (``MODEL.json``, :class:`ModelMeta`) gives ``task``, ``class_names``,
``input_shape``, ``normalize: {mean: [...], std: [...]}`` and ``name``.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib
import importlib.util
import json
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

import sample_models

from .errors import ModelError, first_line
from .model_files import ZIP_MAGIC, check_file, quiet_torch, refuse_damaged_zip, zip_damage  # noqa: F401 - re-exported

# -- metadata and files ---------------------------------------------------------------------


@dataclass
class ModelMeta:
    task: str | None = None
    class_names: list[str] | None = None
    input_shape: list[int] | None = None
    normalize: tuple[list[float], list[float]] | None = None
    name: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str) -> "ModelMeta":
        if not isinstance(d, dict):
            raise ModelError(f"{source}: sidecar metadata must be a JSON object, found {type(d).__name__}")
        known = {"task", "class_names", "input_shape", "normalize", "name"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ModelError(f"{source}: unknown metadata key(s) {', '.join(unknown)}; expected some of {', '.join(sorted(known))}")
        norm = d.get("normalize")
        if norm is not None:
            try:
                norm = ([float(v) for v in norm["mean"]], [float(v) for v in norm["std"]])
            except (KeyError, TypeError, ValueError):
                raise ModelError(f"{source}: 'normalize' must be {{\"mean\": [...], \"std\": [...]}}, found {norm!r}") from None
        names = d.get("class_names")
        return cls(task=d.get("task"), class_names=[str(c) for c in names] if names is not None else None,
                   input_shape=d.get("input_shape"), normalize=norm, name=d.get("name"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_meta(path: Path) -> ModelMeta:
    """The metadata JSON file at ``path`` (``--meta`` or a sidecar)."""
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: cannot read metadata ({exc.__class__.__name__}: {exc})") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: metadata is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return ModelMeta.from_dict(d, str(path))


def sidecar_meta(path: Path) -> ModelMeta | None:
    """The sidecar metadata of a model or weights file (``m.json`` or ``m.pt.json``), if any."""
    for cand in (path.with_suffix(".json"), path.with_name(path.name + ".json")):
        if cand.is_file() and cand != path:
            return read_meta(cand)
    return None


# -- state dicts ----------------------------------------------------------------------------


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a ``weights_only`` torch file.

    Accepts the usual wrappers (``{"state_dict": ...}``, ``{"model": ...}``).
    """
    check_file(path, "weights")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(f"{path}: not a readable safetensors file ({exc})") from None
    refuse_damaged_zip(path, "weights file (a zip archive)")
    model_kind = _WHOLE_MODELS.get(find_format(str(path)).name)
    if model_kind:
        raise ModelError(f"--weights {path} is {model_kind}, not a state dict; pass it as the MODEL argument instead")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the user's file
        raise ModelError(f"{path}: cannot load a state dict with weights_only=True ({first_line(exc)}); "
                         "save it with torch.save(model.state_dict(), ...) or as .safetensors") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and key in obj and _is_state_dict(obj[key]):
            obj = obj[key]
            break
    if not _is_state_dict(obj):
        raise ModelError(f"{path}: expected a state dict (name -> tensor), found {type(obj).__name__}")
    return obj


def _apply_state_dict(module: torch.nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
    try:
        module.load_state_dict(sd, strict=True)
        return
    except RuntimeError:
        pass
    # Common wrappers: DataParallel/DDP "module." and Lightning "model." prefixes.
    for prefix in ("module.", "model."):
        if all(k.startswith(prefix) for k in sd):
            stripped = {k[len(prefix):]: v for k, v in sd.items()}
            try:
                module.load_state_dict(stripped, strict=True)
                return
            except RuntimeError:
                pass
    expected = set(module.state_dict())
    found = set(sd)
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    detail = []
    if missing:
        detail.append(f"missing {len(missing)} (e.g. {missing[0]})")
    if unexpected:
        detail.append(f"unexpected {len(unexpected)} (e.g. {unexpected[0]})")
    if not detail:
        detail.append("tensor shapes differ")
    raise ModelError(f"{source}: the weights do not fit the module: {', '.join(detail)}; check that the factory builds the same architecture")


# -- the registry ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRequest:
    """What the user asked for: MODEL as given, as a path, ``--weights`` and ``--trust-checkpoint``."""

    arg: str
    path: Path
    weights: str | None = None
    trust_checkpoint: bool = False


@dataclass(frozen=True)
class Loaded:
    """A format's answer: the module and where it came from."""

    module: torch.nn.Module
    default_name: str  # the model's name unless --name or the metadata give one
    sha256: dict[str, str] = field(default_factory=dict)  # file name -> digest
    sidecar: ModelMeta | None = None  # metadata found next to the file (or the sample's)
    code: tuple[Any, ...] = ()  # what built the module beside its layers' classes (a factory)


@dataclass(frozen=True)
class ModelFormat:
    """One format: ``matches(arg, path)`` says whether MODEL is in it, ``load`` loads it."""

    name: str  # recorded as LoadedModel.format
    matches: Callable[[str, Path], bool]
    load: Callable[[ModelRequest], Loaded]


def checkpoint_file(read: Callable[[Path, bool], torch.nn.Module]) -> Callable[[ModelRequest], Loaded]:
    """The ``load`` of a checkpoint-file format: the checks every MODEL file gets, then ``read``."""

    def load(request: ModelRequest) -> Loaded:
        path = request.path
        check_file(path)
        if request.weights:
            raise ModelError(f"--weights is for factory models (file.py:callable); {request.arg} is a checkpoint file")
        sha = {path.name: sha256_file(path)}
        sidecar = sidecar_meta(path)
        return Loaded(read(path, request.trust_checkpoint), path.stem, sha, sidecar)

    return load


def find_format(arg: str) -> ModelFormat:
    """The first entry of :data:`FORMATS` that matches MODEL."""
    path = Path(arg)
    for fmt in FORMATS:
        if fmt.matches(arg, path):
            return fmt
    raise ModelError(f"{arg}: not a model format nero knows")  # unreachable while the pickle catch-all is last


# -- sample: and factory models -------------------------------------------------------------


def _load_sample(request: ModelRequest) -> Loaded:
    key = request.arg.split(":", 1)[1]
    if key not in sample_models.SAMPLE_MODELS:
        close = difflib.get_close_matches(key, list(sample_models.SAMPLE_MODELS), n=1)
        hint = f"did you mean 'sample:{close[0]}'?" if close else "see 'nero list samples'"
        raise ModelError(f"{request.arg}: no such sample model; {hint}")
    info = sample_models.SAMPLE_MODELS[key]
    module = sample_models.build_sample(key)
    sha: dict[str, str] = {}
    if info.weights:
        wp = sample_models.weights_path(key)
        sha[wp.name] = sha256_file(wp)
    sidecar = ModelMeta(task=info.task, class_names=list(info.class_names), input_shape=list(info.input_shape))
    return Loaded(module, key, sha, sidecar)


def _is_factory_spec(arg: str, path: Path) -> bool:
    if ":" not in arg:
        return False
    target, _, attr = arg.rpartition(":")
    return bool(target) and attr.isidentifier() and not path.exists()


@contextlib.contextmanager
def on_sys_path(*folders: Path) -> Iterator[None]:
    """``folders`` first on ``sys.path`` for the block, ``sys.path`` as it was afterwards."""
    saved = list(sys.path)
    sys.path[:0] = [str(f) for f in folders]
    try:
        yield
    finally:
        sys.path[:] = saved


def _import_file(spec: str, target: str) -> Any:
    path = Path(target)
    if not path.is_file():
        raise ModelError(f"{spec}: no Python file {target}; give path/to/file.py:callable")
    mod_name = f"_nero_user_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]}"
    loader_spec = importlib.util.spec_from_file_location(mod_name, path)
    assert loader_spec and loader_spec.loader
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[mod_name] = module
    try:
        with on_sys_path(path.resolve().parent):
            loader_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{target}: importing it failed ({exc.__class__.__name__}: {first_line(exc)})") from None
    return module


def _import_factory(spec: str) -> Any:
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py") or "/" in target or "\\" in target:
        module = _import_file(spec, target)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ModelError(f"{spec}: cannot import module '{target}' ({first_line(exc)}); is it on PYTHONPATH?") from None
    if not hasattr(module, attr):
        raise ModelError(f"{spec}: '{target}' has no attribute '{attr}'")
    return getattr(module, attr)


def _load_factory(request: ModelRequest) -> Loaded:
    arg, weights = request.arg, request.weights
    factory = _import_factory(arg)
    try:
        module = factory()
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{arg}: calling the factory failed ({exc.__class__.__name__}: {first_line(exc)})") from None
    if not isinstance(module, torch.nn.Module):
        raise ModelError(f"{arg}: the factory returned {type(module).__name__}, expected a torch.nn.Module")
    if not weights:
        return Loaded(module, arg.rpartition(":")[2], code=(factory,))
    wpath = Path(weights)
    _apply_state_dict(module, load_state_dict(wpath), str(wpath))
    return Loaded(module, wpath.stem, {wpath.name: sha256_file(wpath)}, sidecar_meta(wpath), (factory,))


# -- checkpoint files -----------------------------------------------------------------------


def _refuse_weights_only(path: Path, trust: bool) -> torch.nn.Module:
    raise ModelError(f"{path}: a .safetensors file holds weights only; give the architecture as "
                     f"file.py:callable --weights {path}")


def _read_export(path: Path, trust: bool) -> torch.nn.Module:
    with open(path, "rb") as f:
        if f.read(4) != ZIP_MAGIC:
            raise ModelError(f"{path}: not a readable torch.export archive (not a zip file; torch.export.save writes one)")
    refuse_damaged_zip(path, "torch.export archive")
    with quiet_torch() as logged:
        seen = len(logged)
        try:
            program = torch.export.load(str(path))
        except Exception as exc:  # noqa: BLE001 - torch logs the cause, then raises "check the warnings above"
            cause = logged[-1] if len(logged) > seen else exc
            raise ModelError(f"{path}: not a readable torch.export archive ({first_line(cause)})") from None
    return program.module()


def _is_torchscript(arg: str, path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except zipfile.BadZipFile:
        return False
    return any(n.endswith("constants.pkl") or "/code/" in n for n in names)


def _read_torchscript(path: Path, trust: bool) -> torch.nn.Module:
    refuse_damaged_zip(path, "TorchScript archive")
    try:  # torch 2.13 deprecates TorchScript (users still ship it): quiet_torch hides the warning
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{path}: a TorchScript archive that cannot be loaded ({first_line(exc)}); is it truncated?") from None


def _read_pickle(path: Path, trust: bool) -> torch.nn.Module:
    refuse_damaged_zip(path, "checkpoint (a zip archive)")
    try:  # quiet_torch hides the pickle-protocol notices of the safe unpickler
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        msg = first_line(exc)
        if "weights only load failed" in str(exc).lower() or "unsupported global" in str(exc).lower():
            if not trust:
                raise ModelError(f"{path}: a pickled whole module; unpickling it can run arbitrary code, so nero refuses it. "
                                 "If you trust its source, add --trust-checkpoint, or save it with torch.jit.save / "
                                 "torch.export, or as a state dict with a factory") from None
            obj = _trusted_load(path)
        else:
            raise ModelError(f"{path}: not a PyTorch checkpoint nero can read ({msg})") from None
    if _is_state_dict(obj) or (isinstance(obj, dict) and any(_is_state_dict(v) for v in obj.values())):
        raise ModelError(f"{path}: a state dict (weights only); give the architecture as file.py:callable --weights {path}")
    if not isinstance(obj, torch.nn.Module):
        raise ModelError(f"{path}: the checkpoint holds a {type(obj).__name__}, expected a model (torch.nn.Module)")
    return obj


def _trusted_load(path: Path) -> Any:
    """Full unpickling; reachable only when the user passed --trust-checkpoint. The classes it
    needs may live in modules beside the checkpoint or in the current directory."""
    try:
        with on_sys_path(path.resolve().parent, Path.cwd()):
            return torch.load(path, map_location="cpu", weights_only=False)  # trusted by the user
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{path}: unpickling failed ({exc.__class__.__name__}: {first_line(exc)}); "
                         "the classes it needs must be importable") from None


def _load_onnx(request: ModelRequest) -> Loaded:
    from .onnx_model import load_onnx  # onnxruntime is optional: imported for an .onnx MODEL only

    return load_onnx(request)


#: What a whole-model file given as ``--weights`` is, by its format's name.
_WHOLE_MODELS = {"torchscript": "a TorchScript module", "torch.export": "a torch.export archive",
                 "onnx": "an ONNX model"}

#: Every format nero loads, in the order they are tried; the pickle catch-all must stay last.
FORMATS: tuple[ModelFormat, ...] = (
    ModelFormat("sample", lambda arg, path: arg.startswith("sample:"), _load_sample),
    ModelFormat("factory", _is_factory_spec, _load_factory),
    ModelFormat("safetensors", lambda arg, path: path.suffix == ".safetensors", checkpoint_file(_refuse_weights_only)),
    ModelFormat("torch.export", lambda arg, path: path.suffix == ".pt2", checkpoint_file(_read_export)),
    ModelFormat("onnx", lambda arg, path: path.suffix.lower() == ".onnx", _load_onnx),
    ModelFormat("torchscript", _is_torchscript, checkpoint_file(_read_torchscript)),
    ModelFormat("pickle", lambda arg, path: True, checkpoint_file(_read_pickle)),
)
