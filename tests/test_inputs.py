"""Every model format nero loads, and every bad input it must refuse with one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

import sample_models
from nero_cli.cli import app
from sample_models.mnist import MnistCNN

runner = CliRunner()
GROUP = ["--group", "rotation:step=90"]


def evaluate(*args, out: Path, data: str = "sample:mnist500"):
    a = ["evaluate", *map(str, args), "--data", str(data), *GROUP, "--limit", "4", "--out", str(out), "--quiet",
         "--plot-samples", "none"]
    return runner.invoke(app, a)


def assert_refused(r, needle: str, out: Path | None = None, code: int = 2):
    """One line on stderr naming the problem, the documented exit code, nothing left behind."""
    assert r.exit_code == code, (r.exit_code, r.stderr, r.stdout)
    err = r.stderr.strip()
    assert needle in err, err
    assert "Traceback" not in r.stderr and len(err.splitlines()) == 1, err
    if out is not None:
        assert not out.exists()
        assert not list(out.parent.glob(f".{out.name}.partial*"))


@pytest.fixture(scope="module")
def cnn() -> MnistCNN:
    return sample_models.build_sample("mnist-cnn")


@pytest.fixture(scope="module")
def reference_table(tmp_path_factory):
    import pandas as pd

    out = tmp_path_factory.mktemp("ref") / "run"
    r = evaluate("sample:mnist-cnn", out=out)
    assert r.exit_code == 0, r.stderr
    return pd.read_csv(out / "results.csv")


def same_results(out: Path, ref) -> None:  # noqa: ANN001
    import pandas as pd

    t = pd.read_csv(out / "results.csv")
    assert np.allclose(t["confidence"], ref["confidence"], atol=1e-5)
    assert (t["prediction"] == ref["prediction"]).all()


# -- formats that load ----------------------------------------------------------------


def test_torchscript(tmp_path, cnn, reference_table):
    torch.jit.save(torch.jit.script(cnn), tmp_path / "cnn.pt")
    r = evaluate(tmp_path / "cnn.pt", out=tmp_path / "run")
    assert r.exit_code == 0, r.stderr
    same_results(tmp_path / "run", reference_table)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["models"][0]["format"] == "torchscript" and info["models"][0]["name"] == "cnn"


def test_torch_export(tmp_path, cnn, reference_table):
    ep = torch.export.export(cnn, (torch.rand(2, 1, 28, 28),),
                             dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=100000)}})
    torch.export.save(ep, tmp_path / "cnn.pt2")
    r = evaluate(tmp_path / "cnn.pt2", out=tmp_path / "run")
    assert r.exit_code == 0, r.stderr
    same_results(tmp_path / "run", reference_table)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_factory_with_weights(tmp_path, cnn, reference_table, suffix):
    w = tmp_path / f"weights{suffix}"
    if suffix == ".pt":
        torch.save({"state_dict": {f"module.{k}": v for k, v in cnn.state_dict().items()}}, w)  # a wrapped DDP state dict
    else:
        save_file({k: v.contiguous() for k, v in cnn.state_dict().items()}, str(w))
    factory = tmp_path / "net.py"
    factory.write_text("from sample_models.mnist import MnistCNN\n\ndef build():\n    return MnistCNN()\n")
    r = evaluate(f"{factory}:build", "--weights", w, "--name", "mine", out=tmp_path / "run")
    assert r.exit_code == 0, r.stderr
    same_results(tmp_path / "run", reference_table)
    r = evaluate("sample_models.mnist:mnist_cnn", "--weights", w, out=tmp_path / "run2")
    assert r.exit_code == 0, r.stderr
    same_results(tmp_path / "run2", reference_table)


def test_pickled_module_needs_trust(tmp_path, cnn, reference_table):
    torch.save(cnn, tmp_path / "whole.pt")
    r = evaluate(tmp_path / "whole.pt", out=tmp_path / "run")
    assert_refused(r, "--trust-checkpoint", tmp_path / "run", code=3)
    assert "arbitrary code" in r.stderr
    r = evaluate(tmp_path / "whole.pt", "--trust-checkpoint", out=tmp_path / "run")
    assert r.exit_code == 0, r.stderr
    same_results(tmp_path / "run", reference_table)


def test_pickle_payload_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    import pickle

    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Payload()))
    r = evaluate(tmp_path / "evil.pt", out=tmp_path / "run")
    assert r.exit_code == 3
    assert not marker.exists()


def test_sidecar_metadata_sets_normalisation_and_name(tmp_path, cnn):
    torch.jit.save(torch.jit.script(cnn), tmp_path / "cnn.pt")
    (tmp_path / "cnn.json").write_text(json.dumps({"name": "side", "class_names": [str(i) for i in range(10)],
                                                    "normalize": {"mean": [0.5], "std": [0.25]}}))
    r = evaluate(tmp_path / "cnn.pt", out=tmp_path / "run")
    assert r.exit_code == 0, r.stderr
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["models"][0]["name"] == "side"


# -- bad models ---------------------------------------------------------------------------


def test_missing_model(tmp_path):
    assert_refused(evaluate(tmp_path / "nope.pt", out=tmp_path / "run"), "not found", tmp_path / "run", code=3)


def test_html_page_saved_as_checkpoint(tmp_path):
    (tmp_path / "m.pt").write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>")
    assert_refused(evaluate(tmp_path / "m.pt", out=tmp_path / "run"), "HTML", tmp_path / "run", code=3)


def test_empty_checkpoint(tmp_path):
    (tmp_path / "m.pt").write_bytes(b"")
    assert_refused(evaluate(tmp_path / "m.pt", out=tmp_path / "run"), "empty", tmp_path / "run", code=3)


def test_truncated_torchscript(tmp_path, cnn):
    torch.jit.save(torch.jit.script(cnn), tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "m.pt").write_bytes(data[: len(data) // 2])
    r = evaluate(tmp_path / "m.pt", out=tmp_path / "run")
    assert r.exit_code == 3 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_state_dict_given_as_model(tmp_path, cnn):
    torch.save(cnn.state_dict(), tmp_path / "sd.pt")
    assert_refused(evaluate(tmp_path / "sd.pt", out=tmp_path / "run"), "--weights", tmp_path / "run", code=3)


def test_weights_do_not_fit(tmp_path):
    save_file({"fc.weight": torch.zeros(3, 3)}, str(tmp_path / "w.safetensors"))
    r = evaluate("sample_models.mnist:mnist_cnn", "--weights", tmp_path / "w.safetensors", out=tmp_path / "run")
    assert_refused(r, "do not fit", tmp_path / "run", code=3)


def test_unknown_sample_model(tmp_path):
    assert_refused(evaluate("sample:mnist-cn", out=tmp_path / "run"), "did you mean 'sample:mnist-cnn'", tmp_path / "run", code=3)


def _factory(tmp_path: Path, body: str) -> str:
    f = tmp_path / "bad.py"
    f.write_text("import torch\nfrom torch import nn\n\nclass M(nn.Module):\n    def forward(self, x):\n" + body + "\n\ndef build():\n    return M()\n")
    return f"{f}:build"


def test_model_rejects_input_shape(tmp_path):
    spec = _factory(tmp_path, "        return torch.nn.functional.linear(x.flatten(1), torch.zeros(10, 100))")
    assert_refused(evaluate(spec, out=tmp_path / "run"), "forward failed on input of shape", tmp_path / "run", code=3)


def test_model_returns_nan(tmp_path):
    spec = _factory(tmp_path, "        return torch.full((x.shape[0], 10), float('nan'))")
    assert_refused(evaluate(spec, out=tmp_path / "run"), "NaN", tmp_path / "run", code=3)


def test_model_output_shape_does_not_fit_task(tmp_path):
    spec = _factory(tmp_path, "        return x")
    assert_refused(evaluate(spec, out=tmp_path / "run"), "does not fit classification", tmp_path / "run", code=3)


def test_labels_outside_model_classes(tmp_path):
    spec = _factory(tmp_path, "        return torch.zeros(x.shape[0], 3)")
    assert_refused(evaluate(spec, "--classes", "9", out=tmp_path / "run"), "3 classes", tmp_path / "run", code=4)


# -- bad data -------------------------------------------------------------------------------


@pytest.mark.parametrize("arrays,needle", [
    ({"images": np.zeros((0, 28, 28), np.uint8)}, "empty"),
    ({"images": np.zeros((4, 28), np.uint8)}, "must be (N, H, W)"),
    ({"images": np.full((4, 28, 28), np.nan, np.float32)}, "NaN"),
    ({"images": np.full((4, 28, 28), 255.0, np.float32)}, "divide by 255"),
    ({"images": np.zeros((4, 28, 28), np.uint8), "labels": np.zeros(3, np.int64)}, "4 images but 3 labels"),
    ({"images": np.zeros((4, 28, 28), np.uint8), "labels": np.array([0, 1, 2, 99])}, "10 classes"),
    ({"pixels": np.zeros((4, 28, 28), np.uint8)}, "no 'images' array"),
    ({"images": np.zeros((4, 3, 28, 28), np.uint8)}, "expects 1 channel"),
])
def test_bad_npz(tmp_path, arrays, needle):
    np.savez(tmp_path / "d.npz", **arrays)
    assert_refused(evaluate("sample:mnist-cnn", out=tmp_path / "run", data=tmp_path / "d.npz"), needle, tmp_path / "run", code=4)


def test_npz_with_pickled_objects_is_refused(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.array([object()] * 4, dtype=object))
    assert_refused(evaluate("sample:mnist-cnn", out=tmp_path / "run", data=tmp_path / "d.npz"), "allow_pickle", tmp_path / "run", code=4)


def test_npz_layouts_load(tmp_path):
    z = np.load(sample_models.data_path("mnist500"))
    imgs = z["images"][:4]
    for i, arr in enumerate([imgs, imgs[:, None], imgs[..., None], imgs.astype(np.float32) / 255]):
        np.savez(tmp_path / f"d{i}.npz", images=arr, labels=z["labels"][:4])
        r = evaluate("sample:mnist-cnn", out=tmp_path / f"run{i}", data=tmp_path / f"d{i}.npz")
        assert r.exit_code == 0, r.stderr


def test_image_folder(tmp_path, reference_table):
    from PIL import Image

    z = np.load(sample_models.data_path("mnist500"))
    for i in range(4):  # the first four samples are digit 0
        (tmp_path / "data" / "0").mkdir(parents=True, exist_ok=True)
        Image.fromarray(z["images"][i]).save(tmp_path / "data" / "0" / f"{i:03d}.png")
    r = evaluate("sample:mnist-cnn", out=tmp_path / "run", data=tmp_path / "data")
    assert r.exit_code == 0, r.stderr
    same_results(tmp_path / "run", reference_table)
    (tmp_path / "data" / "0" / "zzz.png").write_bytes(b"not an image")
    assert_refused(evaluate("sample:mnist-cnn", out=tmp_path / "run2", data=tmp_path / "data"), "unreadable image", code=4)


def test_missing_data(tmp_path):
    assert_refused(evaluate("sample:mnist-cnn", out=tmp_path / "run", data=tmp_path / "none.npz"), "not found", tmp_path / "run", code=4)


# -- bad options ------------------------------------------------------------------------------


def test_unknown_group(tmp_path):
    r = runner.invoke(app, ["evaluate", "sample:mnist-cnn", "--data", "sample:mnist500", "-g", "rotaton",
                            "--out", str(tmp_path / "run")])
    assert_refused(r, "did you mean 'rotation'", tmp_path / "run")


def test_bad_plot_metric_and_samples(tmp_path):
    assert_refused(evaluate("sample:mnist-cnn", "--plot-metric", "iou", out=tmp_path / "run"), "--plot-metric")
    r = runner.invoke(app, ["evaluate", "sample:mnist-cnn", "--data", "sample:mnist500", *GROUP, "--out",
                            str(tmp_path / "run"), "--plot-samples", "worst"])
    assert_refused(r, "--plot-samples")


def test_reference_labels_without_labels(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((4, 28, 28), np.uint8))
    r = evaluate("sample:mnist-cnn", "--reference", "labels", out=tmp_path / "run", data=tmp_path / "d.npz")
    assert_refused(r, "--reference consensus", tmp_path / "run")


def test_debug_env_shows_traceback(tmp_path):
    r = runner.invoke(app, ["evaluate", "sample:mnist-cnn", "--data", str(tmp_path / "x.npz"), *GROUP,
                            "--out", str(tmp_path / "run")], env={"NERO_DEBUG": "1"})
    assert r.exit_code != 0 and r.exception is not None and type(r.exception).__name__ == "DataError"


def test_huge_orbit_needs_yes(tmp_path):
    r = runner.invoke(app, ["evaluate", "sample:mnist-cnn", "--data", "sample:mnist500", "-g", "shift:extent=300,step=1",
                            "--out", str(tmp_path / "run")])
    assert_refused(r, "--yes", tmp_path / "run")
    assert "hours" in r.stderr


def test_output_dir_not_writable(tmp_path, monkeypatch):
    import os

    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    # root may write anywhere, so the permission check is simulated for this directory
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == ro and mode == os.W_OK else real(p, mode))
    assert_refused(evaluate("sample:mnist-cnn", out=ro / "run"), "not writable", code=5)


def test_output_file_in_the_way(tmp_path):
    (tmp_path / "run").write_text("x")
    assert_refused(evaluate("sample:mnist-cnn", out=tmp_path / "run"), "not a directory", code=5)


def test_dropout_left_active_warns(tmp_path):
    f = tmp_path / "drop.py"
    f.write_text("import torch\nfrom torch import nn\n\nclass M(nn.Module):\n    def forward(self, x):\n"
                 "        return torch.nn.functional.dropout(x.flatten(1)[:, :10] + 1.0, 0.5, training=True)\n\n"
                 "def build():\n    return M()\n")
    r = evaluate(f"{f}:build", out=tmp_path / "run")
    assert r.exit_code == 0, r.stderr
    assert "outputs differ between two identical calls" in r.stderr
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["warnings"] and "dropout" in info["warnings"][0]


def test_evaluate_gate_flag_uses_the_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nero.toml").write_text("[gate]\nmax-equivariance-error = 0.01\n")
    r = evaluate("sample:mnist-c4", "--gate", out=tmp_path / "run")
    assert r.exit_code == 0, r.stdout + r.stderr  # C4-invariant at multiples of 90 degrees
    r = evaluate("sample:mnist-cnn", "--gate", out=tmp_path / "run2")
    assert r.exit_code == 1 and "FAIL" in r.stdout
    assert (tmp_path / "run2" / "results.csv").exists()  # the run itself is complete


# -- what a failed load or forward pass prints ---------------------------------------------


@pytest.mark.parametrize("kind", ["truncated", "not_export"])
def test_failing_pt2_load_prints_one_line_through_a_real_process(tmp_path, cnn, kind):
    """torch.export.load logs a traceback before it raises: nero silences it (real stderr, not CliRunner's)."""
    import subprocess
    import sys
    import zipfile

    path = tmp_path / "m.pt2"
    if kind == "truncated":
        torch.export.save(torch.export.export(cnn.eval(), (torch.zeros(2, 1, 28, 28),)), path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("hello.txt", "hi")
    r = subprocess.run([sys.executable, "-m", "nero_cli", "evaluate", str(path), "-d", "sample:mnist500", *GROUP,
                        "--limit", "4", "--out", str(tmp_path / "run"), "-q"], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert r.returncode == 3, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), r.stderr
    assert ("the torch.export archive is truncated" if kind == "truncated" else "not a readable torch.export") in lines[0]


def test_torchscript_forward_failure_names_the_real_error():
    from nero_cli.runner import error_line

    class M(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[1] != 3:
                raise ValueError("need 3 channels\nsecond line")
            return torch.nn.functional.conv2d(x, torch.zeros(4, 3, 3, 3))

    scripted = torch.jit.script(M())
    for x, expected in [(torch.zeros(2, 1, 5, 5), ("ValueError", "need 3 channels")),
                        (torch.zeros(2, 3, 2, 2), ("RuntimeError", "Calculated padded input size per channel"))]:
        with pytest.raises(Exception) as err:
            scripted(x)
        assert str(err.value).startswith("The following operation failed in the TorchScript interpreter")
        name, message = error_line(err.value)
        assert (name, message[: len(expected[1])]) == expected
    assert error_line(KeyError("k")) == ("KeyError", "'k'")


def test_forward_failure_says_the_shape_given_and_expected():
    from nero_cli.models import LoadedModel, ModelMeta
    from nero_cli.runner import ModelRunner

    net = torch.nn.Conv2d(3, 4, 3)
    m = LoadedModel("rgb", net, "x", "factory", meta=ModelMeta(input_shape=[3, 28, 28]))
    with pytest.raises(Exception) as err:
        ModelRunner(m)(torch.zeros(64, 1, 28, 28))
    assert str(err.value).startswith("model rgb: forward failed on input of shape (64, 1, 28, 28) "
                                     "(it expects (N, 3, 28, 28) per its sidecar input_shape): RuntimeError: ")
    m.meta = ModelMeta(input_shape=[1, 28, 28])  # the shape fits: the failure is not about it
    with pytest.raises(Exception) as err:
        ModelRunner(m)(torch.zeros(64, 1, 28, 28))
    assert "forward failed on input of shape (64, 1, 28, 28): RuntimeError: " in str(err.value)
    fixed = torch.export.export(torch.nn.Flatten(), (torch.zeros(2, 1, 28, 28),)).module()
    m = LoadedModel("fixed", fixed, "x", "torch.export")
    with pytest.raises(Exception) as err:
        ModelRunner(m)(torch.zeros(64, 1, 28, 28))
    assert "(64, 1, 28, 28) (it expects (2, 1, 28, 28) per its export signature)" in str(err.value)
    assert str(err.value).endswith("export it with a dynamic batch dimension (torch.export.Dim)")
