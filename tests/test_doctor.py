"""nero doctor: checks of a model before a sweep, through the function and a typer app."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
import typer
from torch import nn
from typer.testing import CliRunner

import sample_models
from nero_cli import doctor as doctor_mod
from nero_cli.cli import _guard
from nero_cli.doctor import Finding, doctor, exit_code
from nero_cli.doctor_checks import rotation_finding
from nero_cli.doctor_cli import add_command
from nero_cli.errors import ModelError, NeroError, OptionError
from nero_cli.models import sha256_file

app = typer.Typer(pretty_exceptions_enable=False)
add_command(app, _guard)


@app.command("noop")
def _noop() -> None:  # a second command, so that 'doctor' is a sub-command as in nero's app
    pass


runner = CliRunner()

NETS = textwrap.dedent('''
    import torch
    import torch.nn.functional as F
    from torch import nn


    class DropoutNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))

        def forward(self, x):
            return self.body(x)


    def dropout_net():  # returned as built: nn.Module starts in training mode
        torch.manual_seed(0)
        return DropoutNet()


    class AlwaysDropout(nn.Module):  # F.dropout(training=True): random even in eval mode
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(28 * 28, 10)

        def forward(self, x):
            return F.dropout(self.lin(x.flatten(1)), 0.5, training=True)


    def always_dropout():
        torch.manual_seed(0)
        return AlwaysDropout().eval()


    class NanNet(nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :10] * float("nan")


    def nan_net():
        return NanNet()


    class PixelMap(nn.Module):  # (N, H, W): not logits (N, K)
        def forward(self, x):
            return x.mean(1)


    def pixel_map():
        return PixelMap()


    class RGBNet(nn.Module):  # 3 channels, any size: the doctor must probe 3x32x32
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.head = nn.Linear(8, 4)

        def forward(self, x):
            return self.head(self.conv(x).relu().mean((-2, -1)))


    def rgb_net():
        torch.manual_seed(0)
        return RGBNet().eval()
''')


@pytest.fixture(autouse=True)
def _short_speed_check(monkeypatch):
    monkeypatch.setattr(doctor_mod, "SPEED_BUDGET_S", 0.5)


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    path = tmp_path_factory.mktemp("doctor") / "nets.py"
    path.write_text(NETS)
    return str(path)


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


def invoke(*args: str):
    return runner.invoke(app, ["doctor", *map(str, args)], env={"COLUMNS": "250"})


def test_sample_mnist_cnn_is_ready():
    r = invoke("sample:mnist-cnn")
    assert r.exit_code == 0, r.output
    digest = sha256_file(sample_models.weights_path("mnist-cnn"))
    assert digest in r.stdout
    for check in ("format", "training mode", "input shape", "determinism", "identity", "90° rotations", "speed"):
        assert check in r.stdout
    assert "0 warn, 0 fail" in r.stdout and "use --batch-size" in r.stdout


def test_sample_mnist_cnn_findings():
    f = by_check(doctor("sample:mnist-cnn"))
    assert all(x.status in ("ok", "info") for x in f.values()), [(x.check, x.status, x.message) for x in f.values()]
    assert f["format"].details["format"] == "sample"
    assert f["input shape"].details == {"input_shape": [1, 28, 28], "source": "metadata"}
    assert f["identity"].status == "ok" and "rotation, shift, scale" in f["identity"].message
    assert f["90° rotations"].status == "ok"
    # three 2x2 max-pools: total stride 8 does not divide 28 (a caveat, not a problem for a sweep)
    assert f["strides"].status == "info" and f["strides"].details["total_stride"] == [8, 8]
    assert f["speed"].details["best_batch_size"] in (1, 16, 64, 256)
    assert f["speed"].advice == "use --batch-size %d" % f["speed"].details["best_batch_size"] or "(the default)" in f["speed"].advice


def test_json_is_parseable():
    r = invoke("sample:mnist-cnn", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["model"] == "sample:mnist-cnn" and d["exit_code"] == 0 and d["counts"]["fail"] == 0
    checks = {f["check"]: f for f in d["findings"]}
    assert set(checks["format"]["details"]["sha256"]) == {"mnist-cnn.safetensors"}
    assert {"check", "status", "message", "advice", "details"} <= set(checks["speed"])


def test_factory_with_dropout_left_in_training_mode(nets):
    findings = doctor(f"{nets}:dropout_net")
    f = by_check(findings)
    assert f["training mode"].status == "warn"
    assert "was in training mode; nero evaluates in eval mode" in f["training mode"].message
    assert "Dropout" in f["training mode"].message
    assert f["dropout"].status == "info" and "dropout present" in f["dropout"].message
    assert f["determinism"].status == "ok"  # eval mode switches the dropout off
    assert f["format"].status == "info"  # a factory without --weights
    assert exit_code(findings) == 0


def test_factory_with_random_weights_warns_that_evaluate_needs_random_init(tmp_path, nets):
    """nero evaluate refuses a factory whose weights change with the seed unless --random-init:
    the doctor says so instead of 'ready for a sweep'."""
    (tmp_path / "m.py").write_text("import torch\n\ndef rnd():\n"
                                   "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))\n")
    f = by_check(doctor(f"{tmp_path / 'm.py'}:rnd"))
    assert f["format"].status == "warn" and "--random-init" in f["format"].message
    assert f["format"].details["random_weights"] is True
    r = invoke(f"{tmp_path / 'm.py'}:rnd")
    assert r.exit_code == 0, r.output  # a warning: an untrained model may be what is meant
    verdict = r.stdout.strip().splitlines()[-1]
    assert "--random-init" in verdict and verdict.endswith("ready for a sweep with --random-init")
    seeded = by_check(doctor(f"{nets}:dropout_net"))["format"]  # seeds itself: its own weights, not random
    assert seeded.status == "info" and seeded.details["random_weights"] is False


def test_dropout_active_in_eval_mode_is_non_deterministic(nets):
    r = invoke(f"{nets}:always_dropout", "--json")
    assert r.exit_code == 0, r.output  # a warning, not a failure
    f = {x["check"]: x for x in json.loads(r.stdout)["findings"]}
    assert f["determinism"]["status"] == "warn"
    assert "outputs differ between two identical calls" in f["determinism"]["message"]
    assert f["identity"]["status"] == "warn"  # cannot be verified when the model is random
    assert f["training mode"]["status"] == "ok"


def test_nan_outputs_fail(nets):
    r = invoke(f"{nets}:nan_net")
    assert r.exit_code == 1, r.output
    f = by_check(doctor(f"{nets}:nan_net"))
    assert f["finite outputs"].status == "fail" and "NaN" in f["finite outputs"].message


def test_output_that_does_not_fit_the_task_fails(nets):
    r = invoke(f"{nets}:pixel_map", "--input-shape", "1,28,28", "--json")
    assert r.exit_code == 1, r.output
    f = {x["check"]: x for x in json.loads(r.stdout)["findings"]}
    assert f["output"]["status"] == "fail" and "does not fit classification" in f["output"]["message"]


def test_odd_size_input_warns_about_rotations():
    findings = doctor("sample:mnist-cnn", input_shape="1,29,28")
    f = by_check(findings)
    rot = f["90° rotations"]
    assert rot.status == "warn" and "interpolated" in rot.message and "180° exact" in rot.message
    assert rot.details["exact"] == {"0": True, "90": False, "180": True, "270": False}
    assert f["input shape"].details["source"] == "--input-shape"
    assert exit_code(findings) == 0


def test_rotation_exactness_by_size():
    square, same_parity, mixed = (rotation_finding(s) for s in ((1, 28, 28), (1, 29, 27), (1, 28, 29)))
    assert square.status == "ok"
    assert same_parity.status == "warn" and "cropped" in same_parity.message
    assert all(same_parity.details["exact"].values())
    assert mixed.status == "warn" and not mixed.details["exact"]["90"]


def test_probes_the_input_shape_and_stride(nets):
    f = by_check(doctor(f"{nets}:rgb_net"))
    assert f["input shape"].status == "info" and f["input shape"].details == {"input_shape": [3, 32, 32], "source": "probing"}
    assert "--input-shape 3,32,32" in f["input shape"].advice
    assert f["strides"].status == "ok" and f["strides"].details["total_stride"] == [2, 2]
    assert f["output"].status == "ok"


def test_in_memory_module_in_training_mode_is_restored():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(3))
    net(torch.rand(2, 1, 28, 28))  # materialise the lazy layer
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    f = by_check(doctor(net, input_shape=(1, 28, 28)))
    assert f["training mode"].status == "warn" and "BatchNorm2d" in f["training mode"].message
    assert f["format"].details["format"] == "module"
    assert not net.training  # left in eval mode, as nero evaluates it
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the train-mode probe restored the running stats


def test_point_cloud_subset():
    f = by_check(doctor("sample:pointnet"))
    assert "90° rotations" not in f and "strides" not in f
    assert f["identity"].status == "ok" and "viewpoint" in f["identity"].message
    assert f["output"].status == "ok" and f["input shape"].details["input_shape"] == [256, 3]


def test_flow_sample():
    f = by_check(doctor("sample:gradient-flow"))
    assert f["output"].status == "ok" and f["identity"].status == "ok" and "d4t" in f["identity"].message
    assert f["90° rotations"].status == "ok"


@pytest.mark.parametrize("args, needle, code", [
    (["sample:mnist-cnn", "--input-shape", "1,28"], "C,H,W", 2),
    (["sample:mnist-cnn", "--input-shape", "a,b,c"], "integers", 2),
    (["sample:mnist-cnn", "--task", "depth"], "unknown task", 2),
    (["sample:no-such-model"], "no such sample model", ModelError.exit_code),
    (["missing.pt"], "not found", ModelError.exit_code),
])
def test_input_errors_print_one_line(args, needle, code):
    r = invoke(*args)
    assert r.exit_code == code, r.output
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_usage_errors_raise_nero_errors():
    with pytest.raises(OptionError):
        doctor("sample:pointnet", input_shape="1,28,28")
    with pytest.raises(NeroError):
        doctor("sample:mnist-cnn", device="cuda:7" if not torch.cuda.is_available() else "tpu")
