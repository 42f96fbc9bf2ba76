"""The model-format registry: which entry loads which MODEL, and that a new format is one entry."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from nero_cli import model_formats, models
from nero_cli.errors import ModelError
from nero_cli.model_formats import FORMATS, ModelFormat, checkpoint_file, find_format
from nero_cli.models import load_model


def _tiny() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))


def test_registry_order_and_catch_all():
    assert [f.name for f in FORMATS] == ["sample", "factory", "safetensors", "torch.export", "torchscript", "pickle"]
    assert FORMATS[-1].matches("anything at all", Path("anything at all"))
    with pytest.raises(AttributeError):  # frozen entries
        FORMATS[0].name = "other"  # type: ignore[misc]


def test_find_format(tmp_path):
    torch.jit.save(torch.jit.script(_tiny()), tmp_path / "ts.pt")
    torch.save(_tiny(), tmp_path / "whole.pt")
    (tmp_path / "net.py").write_text("x = 1\n")
    cases = {
        "sample:mnist-cnn": "sample",
        "sample:no-such": "sample",
        "sample_models.mnist:mnist_cnn": "factory",
        f"{tmp_path / 'net.py'}:build": "factory",
        str(tmp_path / "w.safetensors"): "safetensors",
        str(tmp_path / "m.pt2"): "torch.export",
        str(tmp_path / "ts.pt"): "torchscript",
        str(tmp_path / "whole.pt"): "pickle",
        str(tmp_path / "missing.pt"): "pickle",
        str(tmp_path): "pickle",
    }
    assert {arg: find_format(arg).name for arg in cases} == cases


def test_checkpoint_checks_come_first(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        load_model(str(tmp_path / "w.safetensors"))
    with pytest.raises(ModelError, match="not found"):
        load_model(str(tmp_path / "m.pt2"))
    save_file({"w": torch.zeros(2)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(ModelError, match="--weights is for factory models"):
        load_model(str(tmp_path / "w.safetensors"), weights=str(tmp_path / "w.safetensors"))
    with pytest.raises(ModelError, match="holds weights only; give the architecture as file.py:callable --weights"):
        load_model(str(tmp_path / "w.safetensors"))


def test_torchscript_provenance_and_sidecar(tmp_path):
    torch.jit.save(torch.jit.script(_tiny()), tmp_path / "ts.pt")
    (tmp_path / "ts.json").write_text(json.dumps({"task": "classification", "class_names": [1, 2, 3]}))
    (tmp_path / "meta.json").write_text(json.dumps({"name": "given", "task": "detection"}))
    m = load_model(str(tmp_path / "ts.pt"), meta=str(tmp_path / "meta.json"))
    assert (m.format, m.name, m.source) == ("torchscript", "given", str(tmp_path / "ts.pt"))
    assert m.sha256 == {"ts.pt": models.sha256_file(tmp_path / "ts.pt")}
    assert m.meta.task == "detection" and m.meta.class_names == ["1", "2", "3"]  # --meta wins, sidecar fills
    assert not m.module.training


def test_factory_weights_sidecar_names_the_model(tmp_path):
    net = _tiny()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "w.safetensors"))
    (tmp_path / "w.json").write_text(json.dumps({"name": "from-sidecar"}))
    (tmp_path / "net.py").write_text("import torch\n\ndef build():\n    return torch.nn.Sequential(torch.nn.Flatten(), "
                                     "torch.nn.Linear(4, 3))\n")
    m = load_model(f"{tmp_path / 'net.py'}:build", weights=str(tmp_path / "w.safetensors"))
    assert (m.format, m.name) == ("factory", "from-sidecar")
    assert set(m.sha256) == {"w.safetensors"}
    assert torch.equal(m.module[1].weight, net[1].weight)
    bare = load_model(f"{tmp_path / 'net.py'}:build")
    assert (bare.name, bare.sha256, bare.meta) == ("build", {}, models.ModelMeta())


def test_sample_metadata():
    m = load_model("sample:mnist-cnn")
    assert (m.format, m.name) == ("sample", "mnist-cnn")
    assert m.meta.task == "classification" and m.meta.input_shape == [1, 28, 28] and len(m.sha256) == 1


def test_pickle_refused_without_trust_and_payload_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ModelError, match="--trust-checkpoint"):
        load_model(str(tmp_path / "evil.pt"))
    assert not marker.exists()
    torch.save(_tiny(), tmp_path / "whole.pt")
    assert load_model(str(tmp_path / "whole.pt"), trust_checkpoint=True).format == "pickle"


def test_a_new_format_is_one_entry(tmp_path, monkeypatch):
    def read_fake(path: Path, trust: bool) -> torch.nn.Module:
        return _tiny()

    entry = ModelFormat("fake", lambda arg, path: path.suffix == ".fake", checkpoint_file(read_fake))
    monkeypatch.setattr(model_formats, "FORMATS", (*FORMATS[:-1], entry, FORMATS[-1]))
    (tmp_path / "m.fake").write_bytes(b"fake model")
    m = load_model(str(tmp_path / "m.fake"))
    assert (m.format, m.name, list(m.sha256)) == ("fake", "m", ["m.fake"])
    (tmp_path / "e.fake").write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):  # the checks every model file gets
        load_model(str(tmp_path / "e.fake"))


def test_public_names_stay_importable():
    from nero_cli.models import LoadedModel, ModelMeta, load_state_dict, read_meta, set_eval, sha256_file  # noqa: F401

    assert read_meta is model_formats.read_meta


def test_before_eval_sees_the_module_as_loaded():
    seen = []
    m = load_model("sample_models.mnist:mnist_cnn", before_eval=lambda module: seen.append(module.training))
    assert seen == [True] and not m.module.training  # doctor reads the flags before eval()
