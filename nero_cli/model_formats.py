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
``torchscript``   a zip archive holding TorchScript code               ``torch.jit.load``
``pickle``        any other file (the catch-all, always last)          ``torch.load(weights_only=True)``; a whole
                                                                       pickled module only with trust_checkpoint
================  ===================================================  =========================================

``load(request)`` takes a :class:`ModelRequest` and returns a :class:`Loaded`: the module and
its provenance (default name, sha256 of the files read, sidecar metadata).
:func:`checkpoint_file` turns a reader ``read(path, trust_checkpoint) -> nn.Module`` into the
``load`` of a checkpoint-file format, after the checks every MODEL file gets: it exists, is no
directory, is not empty and is no HTML page saved by a failed download; ``--weights`` is
refused (it is for factories only); then its sha256 and its sidecar ``MODEL.json``.

Adding a format (ONNX, say) is one reader and one entry, placed before the ``pickle``
catch-all::

    def _read_onnx(path: Path, trust: bool) -> torch.nn.Module:
        ...  # raise ModelError with one line naming the problem

    ModelFormat("onnx", lambda arg, path: path.suffix == ".onnx", checkpoint_file(_read_onnx)),

Safety: state dicts and checkpoints are read with ``weights_only=True``; full unpickling (which
can run arbitrary code) happens only in :func:`_trusted_load`, reached only when the user
passed ``--trust-checkpoint``.

A file that starts like a zip archive but lost its end is named truncated (:func:`zip_damage`),
and torch's own logging and warnings are silenced while a model loads (:func:`quiet_torch`), so
a failed load prints nero's one line.

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
import logging
import struct
import sys
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

import sample_models

from .errors import ModelError, first_line

HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<?xml")
ZIP_MAGIC = b"PK\x03\x04"  # a zip archive starts with a local file header
_EOCD = struct.Struct("<4s4H2LH")  # the zip end-of-central-directory record


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


def check_file(path: Path, what: str = "model") -> None:
    """Refuse, in one line, a missing, directory, empty or HTML-page ``what`` file."""
    if not path.exists():
        raise ModelError(f"{path}: {what} file not found; check the path")
    if path.is_dir():
        raise ModelError(f"{path}: expected a {what} file, found a directory")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: the {what} file is empty (0 bytes); re-save or re-download it")
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    if any(head.startswith(m) for m in HTML_MARKERS):
        raise ModelError(f"{path}: this is an HTML/XML page, not a {what} (a failed download saves the error page); download it again")


class _TorchLogCapture(logging.Filter):
    """A handler filter that drops torch's log records and keeps the exceptions they carry."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[BaseException] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "torch" and not record.name.startswith("torch."):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and all(e is not exc for e in self.errors):  # each handler sees the record
            self.errors.append(exc)
        return False


_CAPTURING: list[_TorchLogCapture] = []  # the active capture, when quiet_torch is entered


@contextlib.contextmanager
def quiet_torch() -> Iterator[list[BaseException]]:
    """Silence torch's own logging and warnings while a model loads, so that a failed load prints
    nero's one line only; yields the exceptions torch logged (``torch.export.load`` logs the real
    cause, then raises a vague error). Re-entrant: an inner use shares the outer capture."""
    if _CAPTURING:
        yield _CAPTURING[-1].errors
        return
    capture = _TorchLogCapture()
    loggers = [logging.root, *(lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger))]
    handlers = {h for lg in loggers for h in lg.handlers} | ({logging.lastResort} if logging.lastResort else set())
    for h in handlers:
        h.addFilter(capture)
    _CAPTURING.append(capture)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield capture.errors
    finally:
        _CAPTURING.pop()
        for h in handlers:
            h.removeFilter(capture)


def zip_damage(path: Path) -> str | None:
    """How ``path``, a file that starts like a zip archive, is damaged: ``truncated (...)`` when
    its central directory is missing or it declares more bytes than it holds, ``damaged (...)``
    when zipfile cannot read it; ``None`` when it reads, or does not start like a zip archive."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        if f.read(4) != ZIP_MAGIC:
            return None
        f.seek(max(0, size - (1 << 16) - _EOCD.size))
        tail_start, tail = f.tell(), f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        return f"truncated ({size} bytes, with no zip central directory at its end)"
    cd_size, cd_offset = _EOCD.unpack_from(tail, at)[5:7]
    if cd_offset != 0xFFFFFFFF and cd_offset + cd_size > tail_start + at:  # 0xFFFFFFFF: zip64, zipfile checks it
        return f"truncated (its zip directory declares {cd_offset + cd_size} bytes before it, the file holds {tail_start + at})"
    try:
        with zipfile.ZipFile(path) as z:
            end = max((i.header_offset + i.compress_size for i in z.infolist()), default=0)
    except (zipfile.BadZipFile, OSError, ValueError, struct.error) as exc:
        return f"damaged ({first_line(exc)})"
    return f"truncated (its zip entries declare {end} bytes, the file holds {size})" if end > size else None


def refuse_damaged_zip(path: Path, what: str) -> None:
    """Refuse, in one line, a ``what`` file that starts like a zip archive but is truncated or damaged."""
    damage = zip_damage(path)
    if damage:
        raise ModelError(f"{path}: the {what} is {damage}; re-save or re-download it")


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


def _import_file(spec: str, target: str) -> Any:
    path = Path(target)
    if not path.is_file():
        raise ModelError(f"{spec}: no Python file {target}; give path/to/file.py:callable")
    mod_name = f"_nero_user_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]}"
    loader_spec = importlib.util.spec_from_file_location(mod_name, path)
    assert loader_spec and loader_spec.loader
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[mod_name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{target}: importing it failed ({exc.__class__.__name__}: {first_line(exc)})") from None
    finally:
        sys.path.remove(str(path.resolve().parent))
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
        return Loaded(module, arg.rpartition(":")[2])
    wpath = Path(weights)
    _apply_state_dict(module, load_state_dict(wpath), str(wpath))
    return Loaded(module, wpath.stem, {wpath.name: sha256_file(wpath)}, sidecar_meta(wpath))


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
    """Full unpickling; reachable only when the user passed --trust-checkpoint."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)  # trusted by the user
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{path}: unpickling failed ({exc.__class__.__name__}: {first_line(exc)}); "
                         "the classes it needs must be importable") from None


#: Every format nero loads, in the order they are tried; the pickle catch-all must stay last.
FORMATS: tuple[ModelFormat, ...] = (
    ModelFormat("sample", lambda arg, path: arg.startswith("sample:"), _load_sample),
    ModelFormat("factory", _is_factory_spec, _load_factory),
    ModelFormat("safetensors", lambda arg, path: path.suffix == ".safetensors", checkpoint_file(_refuse_weights_only)),
    ModelFormat("torch.export", lambda arg, path: path.suffix == ".pt2", checkpoint_file(_read_export)),
    ModelFormat("torchscript", _is_torchscript, checkpoint_file(_read_torchscript)),
    ModelFormat("pickle", lambda arg, path: True, checkpoint_file(_read_pickle)),
)
