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
    assert [f.name for f in FORMATS] == ["sample", "factory", "safetensors", "torch.export", "onnx", "torchscript",
                                       "pickle"]
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
        str(tmp_path / "m.onnx"): "onnx",
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
    from nero_cli import model_files
    from nero_cli.models import LoadedModel, ModelMeta, load_state_dict, read_meta, set_eval, sha256_file  # noqa: F401

    assert read_meta is model_formats.read_meta
    assert model_formats.zip_damage is model_files.zip_damage and model_formats.quiet_torch is model_files.quiet_torch


def test_on_sys_path_restores_sys_path_even_on_error(tmp_path):
    import sys

    before = list(sys.path)
    with pytest.raises(RuntimeError):
        with model_formats.on_sys_path(tmp_path / "a", tmp_path / "b"):
            assert sys.path[:2] == [str(tmp_path / "a"), str(tmp_path / "b")]
            sys.path.append("added inside")
            raise RuntimeError("boom")
    assert sys.path == before


def test_before_eval_sees_the_module_as_loaded():
    seen = []
    m = load_model("sample_models.mnist:mnist_cnn", before_eval=lambda module: seen.append(module.training))
    assert seen == [True] and not m.module.training  # doctor reads the flags before eval()


def _zip_bytes(tmp_path: Path) -> bytes:
    torch.jit.save(torch.jit.script(_tiny()), tmp_path / "whole.zip")
    return (tmp_path / "whole.zip").read_bytes()


def test_zip_damage_names_a_truncated_archive(tmp_path):
    data = _zip_bytes(tmp_path)
    cases = {
        "whole.zip": data,
        "half.zip": data[: len(data) // 2],  # a download cut short: no central directory
        "middle.zip": data[:200] + data[-1500:],  # the directory declares more bytes than precede it
        "no_zip.bin": b"\x80\x02 not a zip",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    damage = {name: model_formats.zip_damage(tmp_path / name) for name in cases}
    assert damage["whole.zip"] is None and damage["no_zip.bin"] is None
    assert damage["half.zip"] == f"truncated ({len(data) // 2} bytes, with no zip central directory at its end)"
    assert damage["middle.zip"].startswith("truncated (its zip directory declares")
    with pytest.raises(ModelError, match=r"half.zip: the checkpoint \(a zip archive\) is truncated"):
        load_model(str(tmp_path / "half.zip"))


def test_zip_damage_names_a_damaged_directory_and_oversized_entries(tmp_path):
    data = _zip_bytes(tmp_path)
    cd = data.rindex(b"PK\x01\x02")  # the last central directory entry: break its signature
    (tmp_path / "bad_cd.zip").write_bytes(data[:cd] + b"XX\x01\x02" + data[cd + 4:])
    assert model_formats.zip_damage(tmp_path / "bad_cd.zip").startswith("damaged (")
    stored = bytearray(data)  # the first central entry declares a compressed size beyond the file
    first = data.index(b"PK\x01\x02")
    stored[first + 20:first + 24] = (len(data) * 2).to_bytes(4, "little")
    (tmp_path / "big_entry.zip").write_bytes(bytes(stored))
    assert model_formats.zip_damage(tmp_path / "big_entry.zip").startswith("truncated (its zip entries declare")


def test_truncated_export_archive_is_named_truncated(tmp_path):
    ep = torch.export.export(_tiny(), (torch.zeros(2, 1, 2, 2),))
    torch.export.save(ep, tmp_path / "m.pt2")
    data = (tmp_path / "m.pt2").read_bytes()
    (tmp_path / "m.pt2").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="m.pt2: the torch.export archive is truncated"):
        load_model(str(tmp_path / "m.pt2"))
    (tmp_path / "m.pt2").write_bytes(b"hello world")
    with pytest.raises(ModelError, match=r"not a readable torch.export archive \(not a zip file"):
        load_model(str(tmp_path / "m.pt2"))


def test_quiet_torch_drops_torch_logging_and_keeps_the_logged_error(tmp_path):
    import io
    import logging
    import warnings

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    torch_log, other_log = logging.getLogger("torch.export"), logging.getLogger("nero_test_other")
    torch_log.addHandler(handler)
    other_log.addHandler(handler)
    try:
        with model_formats.quiet_torch() as logged:
            try:
                raise RuntimeError("the cause")
            except RuntimeError:
                torch_log.warning("Ran into the following error", exc_info=True)
            warnings.warn("torch deprecates this", DeprecationWarning)
            with model_formats.quiet_torch() as inner:  # re-entrant: one shared capture
                assert inner is logged
            other_log.warning("not torch's")
        assert [str(e) for e in logged] == ["the cause"]
        assert stream.getvalue() == "not torch's\n"
        torch_log.warning("after")  # the filters are gone again
        assert stream.getvalue().endswith("after\n")
    finally:
        torch_log.removeHandler(handler)
        other_log.removeHandler(handler)


def test_export_load_failure_names_torchs_logged_cause(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "m.pt2", "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(ModelError) as err:
        load_model(str(tmp_path / "m.pt2"))
    assert "not a readable torch.export archive" in str(err.value)
    assert "warnings above" not in str(err.value)  # torch's vague error points at the log nero silenced


def test_export_signature_and_sidecar_give_the_expected_input(tmp_path):
    ep = torch.export.export(_tiny(), (torch.zeros(2, 1, 2, 2),),
                             dynamic_shapes={"input": {0: torch.export.Dim("batch", min=1, max=1024)}})
    torch.export.save(ep, tmp_path / "dyn.pt2")
    torch.export.save(torch.export.export(_tiny(), (torch.zeros(2, 1, 2, 2),)), tmp_path / "fixed.pt2")
    assert models.expected_input(load_model(str(tmp_path / "dyn.pt2"))) == (("N", 1, 2, 2), "export signature")
    assert models.expected_input(load_model(str(tmp_path / "fixed.pt2"))) == ((2, 1, 2, 2), "export signature")
    assert models.expected_input(load_model("sample:mnist-cnn")) == (("N", 1, 28, 28), "sidecar input_shape")
    assert models.expected_input(load_model("sample_models.mnist:mnist_cnn")) is None
