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

An optional sidecar ``MODEL.json`` (or ``meta=FILE``) gives ``task``, ``class_names``,
``input_shape`` and ``normalize: {mean: [...], std: [...]}``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import sys
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import ModelError
from .errors import first_line as _first_line

HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<?xml")


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


@dataclass
class LoadedModel:
    """A model ready to evaluate, with where it came from."""

    name: str
    module: torch.nn.Module
    source: str
    format: str
    sha256: dict[str, str] = field(default_factory=dict)  # file -> digest
    meta: ModelMeta = field(default_factory=ModelMeta)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_meta(path: Path) -> ModelMeta:
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: cannot read metadata ({exc.__class__.__name__}: {exc})") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: metadata is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return ModelMeta.from_dict(d, str(path))


def _sidecar(path: Path) -> ModelMeta | None:
    for cand in (path.with_suffix(".json"), path.with_name(path.name + ".json")):
        if cand.is_file() and cand != path:
            return _read_meta(cand)
    return None


def _check_file(path: Path, what: str = "model") -> None:
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


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except zipfile.BadZipFile:
        return False
    return any(n.endswith("constants.pkl") or "/code/" in n for n in names)


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a ``weights_only`` torch file.

    Accepts the usual wrappers (``{"state_dict": ...}``, ``{"model": ...}``).
    """
    _check_file(path, "weights")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the user's file
        raise ModelError(f"{path}: cannot load a state dict with weights_only=True ({_first_line(exc)}); "
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


def _import_factory(spec: str) -> Any:
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py") or "/" in target or "\\" in target:
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
            raise ModelError(f"{target}: importing it failed ({exc.__class__.__name__}: {_first_line(exc)})") from None
        finally:
            sys.path.remove(str(path.resolve().parent))
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ModelError(f"{spec}: cannot import module '{target}' ({_first_line(exc)}); is it on PYTHONPATH?") from None
    if not hasattr(module, attr):
        raise ModelError(f"{spec}: '{target}' has no attribute '{attr}'")
    return getattr(module, attr)


def _is_factory_spec(arg: str) -> bool:
    if ":" not in arg:
        return False
    target, _, attr = arg.rpartition(":")
    return bool(target) and attr.isidentifier()


def load_model(arg: str, weights: str | None = None, meta: str | None = None, name: str | None = None,
               trust_checkpoint: bool = False, device: str | torch.device = "cpu") -> LoadedModel:
    """Load MODEL from any supported format; see the module docstring."""
    sha: dict[str, str] = {}
    sidecar: ModelMeta | None = None
    if arg.startswith("sample:"):
        import sample_models

        key = arg.split(":", 1)[1]
        if key not in sample_models.SAMPLE_MODELS:
            import difflib

            close = difflib.get_close_matches(key, list(sample_models.SAMPLE_MODELS), n=1)
            hint = f"did you mean 'sample:{close[0]}'?" if close else "see 'nero list samples'"
            raise ModelError(f"{arg}: no such sample model; {hint}")
        info = sample_models.SAMPLE_MODELS[key]
        module = sample_models.build_sample(key)
        if info.weights:
            wp = sample_models.weights_path(key)
            sha[wp.name] = sha256_file(wp)
        fmt = "sample"
        sidecar = ModelMeta(task=info.task, class_names=list(info.class_names), input_shape=list(info.input_shape))
        default_name = key
    elif _is_factory_spec(arg) and not Path(arg).exists():
        factory = _import_factory(arg)
        try:
            module = factory()
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{arg}: calling the factory failed ({exc.__class__.__name__}: {_first_line(exc)})") from None
        if not isinstance(module, torch.nn.Module):
            raise ModelError(f"{arg}: the factory returned {type(module).__name__}, expected a torch.nn.Module")
        if weights:
            wpath = Path(weights)
            _apply_state_dict(module, load_state_dict(wpath), str(wpath))
            sha[wpath.name] = sha256_file(wpath)
            sidecar = _sidecar(wpath)
        fmt = "factory"
        default_name = Path(weights).stem if weights else arg.rpartition(":")[2]
    else:
        path = Path(arg)
        _check_file(path)
        if weights:
            raise ModelError(f"--weights is for factory models (file.py:callable); {arg} is a checkpoint file")
        sha[path.name] = sha256_file(path)
        sidecar = _sidecar(path)
        default_name = path.stem
        module, fmt = _load_checkpoint(path, trust_checkpoint)
    meta_obj = _read_meta(Path(meta)) if meta else (sidecar or ModelMeta())
    if meta and sidecar:  # explicit --meta wins, sidecar fills the gaps
        for f in ("task", "class_names", "input_shape", "normalize", "name"):
            if getattr(meta_obj, f) is None:
                setattr(meta_obj, f, getattr(sidecar, f))
    try:
        module = module.to(device)
    except Exception:  # noqa: BLE001 - exported programs may not move; leave them where they are
        pass
    _set_eval(module)
    return LoadedModel(name=name or meta_obj.name or default_name, module=module, source=arg, format=fmt,
                       sha256=sha, meta=meta_obj)


def _set_eval(module: torch.nn.Module) -> None:
    try:
        module.eval()
    except Exception:  # noqa: BLE001 - torch.export modules refuse train/eval switches
        pass


def _load_checkpoint(path: Path, trust: bool) -> tuple[torch.nn.Module, str]:
    if path.suffix == ".safetensors":
        raise ModelError(f"{path}: a .safetensors file holds weights only; give the architecture as "
                         f"file.py:callable --weights {path}")
    if path.suffix == ".pt2":
        try:
            program = torch.export.load(str(path))
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{path}: not a readable torch.export archive ({_first_line(exc)})") from None
        return program.module(), "torch.export"
    if _is_torchscript(path):
        try:
            with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript, users still ship it
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.load(str(path), map_location="cpu"), "torchscript"
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{path}: a TorchScript archive that cannot be loaded ({_first_line(exc)}); is it truncated?") from None
    if zipfile.is_zipfile(path) is False and path.suffix in (".pt", ".pth", ".ts"):
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic[:2] == b"PK":
            raise ModelError(f"{path}: a damaged zip archive (truncated download?); re-save or re-download it")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pickle-protocol notices of the safe unpickler
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        msg = _first_line(exc)
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
    return obj, "pickle"


def _trusted_load(path: Path) -> Any:
    """Full unpickling; reachable only when the user passed --trust-checkpoint."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)  # trusted by the user
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{path}: unpickling failed ({exc.__class__.__name__}: {_first_line(exc)}); "
                         "the classes it needs must be importable") from None
