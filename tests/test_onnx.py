"""ONNX models through onnxruntime (the ``nero[onnx]`` extra), and the loading errors of issue 13."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import sample_models
from nero_cli import onnx_model
from nero_cli.cli import app
from nero_cli.errors import ModelError
from nero_cli.model_formats import find_format
from nero_cli.models import expected_input, load_model
from nero_cli.runner import ModelRunner

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")  # torch.onnx.export(dynamo=True) needs it

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})


def _export(net: torch.nn.Module, path: Path, batch: int, dynamic: bool) -> None:
    x = torch.rand(batch, *sample_models.SAMPLE_MODELS["mnist-cnn"].input_shape)
    shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic else None
    with torch.no_grad():
        torch.onnx.export(net, (x,), str(path), dynamo=True, dynamic_shapes=shapes, verbose=False)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """mnist-cnn's trained weights as TorchScript, as ONNX with a dynamic batch axis (weights in
    ``dyn.onnx.data`` beside it) and as ONNX fixed at batch size 1."""
    root = tmp_path_factory.mktemp("onnx")
    net = sample_models.build_sample("mnist-cnn").eval()
    torch.jit.save(torch.jit.trace(net, torch.rand(2, 1, 28, 28)), root / "ts.pt")
    _export(net, root / "dyn.onnx", 2, True)
    _export(net, root / "one.onnx", 1, False)
    return root


def test_onnx_is_a_registry_entry_before_the_catch_all(tmp_path):
    assert find_format(str(tmp_path / "m.onnx")).name == "onnx"
    assert find_format(str(tmp_path / "M.ONNX")).name == "onnx"


def test_missing_runtime_names_the_extra_in_one_line(tmp_path, monkeypatch):
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07 not read")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    with pytest.raises(ModelError) as err:
        load_model(str(tmp_path / "m.onnx"))
    msg = str(err.value)
    assert "pip install 'nero[onnx]'" in msg and "onnxruntime is not installed" in msg
    assert "\n" not in msg and "pickle" not in msg
    r = run("doctor", tmp_path / "m.onnx")
    assert r.exit_code == 3 and "pip install 'nero[onnx]'" in r.output


def test_an_onnx_file_is_never_called_a_pickle(tmp_path):
    (tmp_path / "garbage.onnx").write_bytes(b"\x80\x04 this is no protobuf \xff\xff\xff")
    with pytest.raises(ModelError, match="garbage.onnx: not a readable ONNX model") as err:
        load_model(str(tmp_path / "garbage.onnx"))
    assert "pickle" not in str(err.value)
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):  # the checks every model file gets
        load_model(str(tmp_path / "empty.onnx"))


@pytest.mark.slow
def test_dynamic_batch_model_matches_torch_and_records_its_files(exported):
    m = load_model(str(exported / "dyn.onnx"))
    assert m.format == "onnx" and m.name == "dyn"
    assert set(m.sha256) == {"dyn.onnx", "dyn.onnx.data"}  # the weights live beside the graph
    assert m.sha256["dyn.onnx.data"] == onnx_model.sha256_file(exported / "dyn.onnx.data")
    assert m.meta.input_shape == [1, 28, 28]  # from the graph, no sidecar
    assert expected_input(m) == (("N", 1, 28, 28), "ONNX graph input")
    assert m.module.load_notes == []
    net = sample_models.build_sample("mnist-cnn").eval()
    x = torch.rand(7, 1, 28, 28)
    with torch.no_grad():
        want = net(x)
    got = m.module(x)
    assert got.dtype == torch.float32 and got.shape == (7, 10)
    assert torch.allclose(got, want, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_batch_one_model_runs_one_input_at_a_time(exported):
    m = load_model(str(exported / "one.onnx"))
    assert expected_input(m) == ((1, 1, 28, 28), "ONNX graph input")
    assert m.module.load_notes == [onnx_model.BATCH_ONE_NOTE]
    calls = []
    session = m.module._cpu
    real_run = session.run

    class Spy:
        def run(self, names, feed):
            calls.append(next(iter(feed.values())).shape)
            return real_run(names, feed)

    m.module._cpu = Spy()
    x = torch.rand(5, 1, 28, 28)
    got = m.module(x)
    m.module._cpu = session
    assert calls == [(1, 1, 28, 28)] * 5
    dyn = load_model(str(exported / "dyn.onnx"))
    assert torch.allclose(got, dyn.module(x), atol=1e-6, rtol=0)


@pytest.mark.slow
def test_no_gradients_jvp_raises_so_lie_falls_back(exported):
    m = load_model(str(exported / "dyn.onnx"))
    x = torch.rand(2, 1, 28, 28)
    with pytest.raises(NotImplementedError, match="computes no derivatives"):
        torch.func.jvp(lambda t: m.module(x * t), (torch.tensor(1.0),), (torch.tensor(1.0),))
    xg = x.clone().requires_grad_(True)
    with pytest.raises(NotImplementedError, match="computes no derivatives"):
        m.module(xg).sum().backward()


@pytest.mark.slow
def test_evaluate_matches_torchscript_within_1e_5(exported, tmp_path):
    out = tmp_path / "run"
    r = run("evaluate", exported / "ts.pt", exported / "dyn.onnx", exported / "one.onnx", "--data", "sample:mnist500",
            "--limit", "6", "--group", "rotation:step=45", "--group", "shift:extent=2,step=2",
            "--out", out, "--plot-samples", "none", "--batch-size", "16")
    assert r.exit_code == 0, r.output
    batch_one_lines = [line for line in r.output.splitlines() if "fixes batch size 1" in line]
    assert len(batch_one_lines) == 1 and "model one:" in batch_one_lines[0]
    t = pd.read_csv(out / "results.csv")
    by_model = {name: g.drop(columns="model").reset_index(drop=True) for name, g in t.groupby("model")}
    assert set(by_model) == {"ts", "dyn", "one"} and len(by_model["ts"]) == 6 * (8 + 9)
    numeric = [c for c in t.columns if c != "model" and pd.api.types.is_numeric_dtype(t[c])]
    assert {"confidence", "equivariance_error", "prediction"} <= set(numeric)
    for name in ("dyn", "one"):
        other = by_model[name]
        assert (other.drop(columns=numeric).astype(str) == by_model["ts"].drop(columns=numeric).astype(str)).all().all()
        np.testing.assert_allclose(other[numeric].to_numpy(float), by_model["ts"][numeric].to_numpy(float),
                                   rtol=0, atol=1e-5, equal_nan=True)
    info = json.loads((out / "run.json").read_text())
    formats = {m["name"]: (m["format"], sorted(m["sha256"])) for m in info["models"]}
    assert formats["dyn"] == ("onnx", ["dyn.onnx", "dyn.onnx.data"])


@pytest.mark.slow
def test_doctor_reports_format_onnx(exported):
    r = run("doctor", exported / "dyn.onnx", "--json")
    assert r.exit_code in (0, 1), r.output
    checks = {f["check"]: f for f in json.loads(r.stdout)["findings"]}
    assert checks["format"]["details"]["format"] == "onnx"
    assert set(checks["format"]["details"]["sha256"]) == {"dyn.onnx", "dyn.onnx.data"}
    assert checks["input shape"]["status"] == "ok"


@pytest.mark.slow
def test_lie_falls_back_to_finite_differences_and_layers_refuses(exported, tmp_path):
    from nero_cli import lie

    data = "sample:mnist500"
    onnx_rows = lie(str(exported / "dyn.onnx"), data, "rotation", limit=3, method="auto")
    torch_rows = lie(str(exported / "ts.pt"), data, "rotation", limit=3, method="fd")
    assert set(onnx_rows["method"]) == {"fd"}
    np.testing.assert_allclose(onnx_rows["value"], torch_rows["value"], rtol=1e-3, atol=1e-6)
    r = run("layers", exported / "dyn.onnx", "--data", data, "--limit", "2", "--group", "rotation",
            "--out", tmp_path / "layers")
    assert r.exit_code == 3 and "an ONNX graph has no modules to hook" in r.output
    assert len([line for line in r.output.splitlines() if line.strip()]) == 1


@pytest.mark.slow
def test_forward_failure_names_the_graphs_input_shape(exported):
    m = load_model(str(exported / "dyn.onnx"))
    with pytest.raises(ModelError) as err:
        ModelRunner(m)(torch.rand(2, 3, 32, 32))
    assert "(it expects (N, 1, 28, 28) per its ONNX graph input)" in str(err.value)


def test_other_fixed_batch_sizes_are_refused(tmp_path):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    with torch.no_grad():
        torch.onnx.export(net, (torch.rand(2, 1, 2, 2),), str(tmp_path / "two.onnx"), dynamo=True, verbose=False)
    with pytest.raises(ModelError, match="fixes batch size 2; nero feeds batches of any size"):
        load_model(str(tmp_path / "two.onnx"))


@pytest.mark.slow
def test_missing_external_weights_are_named(exported, tmp_path):
    (tmp_path / "dyn.onnx").write_bytes((exported / "dyn.onnx").read_bytes())  # without dyn.onnx.data
    with pytest.raises(ModelError, match=r"dyn.onnx: its weights file dyn.onnx.data \(external data\) is missing"):
        load_model(str(tmp_path / "dyn.onnx"))


# -- loading errors -------------------------------------------------------------------------


def test_trust_checkpoint_finds_the_class_beside_the_checkpoint(tmp_path):
    """torch.save(model) from a script whose class lives in mynet.py beside it loads with
    --trust-checkpoint from another directory (with the saved weights); sys.path is as it was
    afterwards, and without --trust-checkpoint it is refused."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "mynet.py").write_text(textwrap.dedent("""
        import torch

        class MyNet(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(4, 3)

            def forward(self, x):
                return self.fc(x.flatten(1))
    """))
    save = "import torch, mynet; torch.manual_seed(0); torch.save(mynet.MyNet(), 'net.pt')"
    subprocess.run([sys.executable, "-c", save], cwd=ckpt, check=True)
    check = textwrap.dedent(f"""
        import sys, torch
        from nero_cli.errors import ModelError
        from nero_cli.models import load_model
        path = {str(ckpt / 'net.pt')!r}
        try:
            load_model(path)
        except ModelError as exc:
            print("refused:", "--trust-checkpoint" in str(exc))
        before = list(sys.path)
        m = load_model(path, trust_checkpoint=True)
        print("class:", type(m.module).__module__, type(m.module).__name__)
        print("restored:", sys.path == before)
        torch.manual_seed(0)
        import mynet
        print("same:", torch.equal(m.module(torch.ones(1, 4)), mynet.MyNet()(torch.ones(1, 4))))
    """)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", check], cwd=elsewhere, capture_output=True, text=True, env=env)
    assert out.stdout.splitlines() == ["refused: True", "class: mynet MyNet", "restored: True", "same: True"], out.stderr
    cli = subprocess.run([sys.executable, "-m", "nero_cli", "doctor", str(ckpt / "net.pt"), "--trust-checkpoint",
                          "--input-shape", "1,2,2", "--json"], cwd=elsewhere, capture_output=True, text=True, env=env)
    assert cli.returncode in (0, 1), cli.stdout + cli.stderr
    assert json.loads(cli.stdout)["findings"][0]["details"]["format"] == "pickle"


def test_trust_checkpoint_finds_a_module_in_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "cwdnet_nero_test.py").write_text("import torch\n\nclass CwdNet(torch.nn.Linear):\n    pass\n")
    save = "import torch, cwdnet_nero_test as m; torch.save(m.CwdNet(4, 3), 'sub/net.pt')"
    (tmp_path / "sub").mkdir()
    subprocess.run([sys.executable, "-c", save], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    try:
        m = load_model("sub/net.pt", trust_checkpoint=True)
        assert type(m.module).__name__ == "CwdNet" and sys.path == before
    finally:
        sys.modules.pop("cwdnet_nero_test", None)


def test_torchscript_as_weights_gets_neros_own_line(tmp_path):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    torch.jit.save(torch.jit.script(net), tmp_path / "ts.pt")
    (tmp_path / "net.py").write_text("import torch\n\ndef build():\n    return torch.nn.Sequential(torch.nn.Flatten(), "
                                     "torch.nn.Linear(4, 3))\n")
    with pytest.raises(ModelError) as err:
        load_model(f"{tmp_path / 'net.py'}:build", weights=str(tmp_path / "ts.pt"))
    assert str(err.value) == (f"--weights {tmp_path / 'ts.pt'} is a TorchScript module, not a state dict; "
                              "pass it as the MODEL argument instead")
    r = run("evaluate", f"{tmp_path / 'net.py'}:build", "--weights", tmp_path / "ts.pt", "--data", "sample:mnist500",
            "--group", "rotation", "--out", tmp_path / "run")
    assert r.exit_code == 3 and "weights_only" not in r.output and "is a TorchScript module" in r.output
    ep = torch.export.export(net, (torch.zeros(2, 1, 2, 2),))
    torch.export.save(ep, tmp_path / "m.pt2")
    with pytest.raises(ModelError, match="is a torch.export archive, not a state dict"):
        load_model(f"{tmp_path / 'net.py'}:build", weights=str(tmp_path / "m.pt2"))


def test_cuda_inputs_use_the_cuda_provider_only_where_onnxruntime_has_it(monkeypatch):
    made = []

    class FakeOrt:
        providers = ["CPUExecutionProvider"]

        def get_available_providers(self):
            return self.providers

    class FakeSession:
        def get_inputs(self):
            return [type("In", (), {"name": "x", "type": "tensor(float)", "shape": ["batch", 4]})()]

        def get_outputs(self):
            return [type("Out", (), {"name": "y"})()]

    monkeypatch.setattr(onnx_model, "_session", lambda ort, path, providers: made.append(providers) or FakeSession())
    ort, cpu = FakeOrt(), FakeSession()
    module = onnx_model.OnnxModule(Path("m.onnx"), ort, cpu, [])
    assert module.input_signature == ("N", 4) and module.input_dtype == torch.float32
    assert module._session_for(torch.device("cpu")) is cpu
    assert module._session_for(torch.device("cuda", 1)) is cpu and made == []  # a CPU-only onnxruntime
    ort.providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    cuda = module._session_for(torch.device("cuda", 1))
    assert cuda is not cpu and module._session_for(torch.device("cuda", 1)) is cuda
    assert made == [[("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]]
