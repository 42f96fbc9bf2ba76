"""nero layers: layer-wise attribution of the equivariance error (issue 12)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from nero_cli.cli import app
from nero_cli.errors import ModelError, OptionError
from nero_cli.layer_errors import COLUMNS, Frame, interior, layers, layers_run, next_frame


def _plain_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    ).eval()


def _by_layer(table: pd.DataFrame) -> pd.DataFrame:
    return table.groupby(["depth", "layer", "kind"], sort=True)[["own_error", "contribution"]].mean().reset_index()


@pytest.fixture(scope="module")
def shift_table() -> pd.DataFrame:
    return layers([_plain_cnn()], "sample:mnist500", "shift:extent=1,step=1", limit=16, device="cpu")


def test_acceptance_pooling_carries_the_shift_error(shift_table: pd.DataFrame) -> None:
    """A plain CNN under one-pixel shifts: the stride-2 pools carry the error, the stride-1 convolutions
    (and the ReLU at full resolution, where the shift is exact) score 0 away from the border."""
    t = _by_layer(shift_table)
    assert list(shift_table.columns) == list(COLUMNS)
    assert list(t["kind"]) == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d", "AdaptiveAvgPool2d",
                               "head"]
    convs, pools = t[t["kind"] == "Conv2d"], t[t["kind"] == "MaxPool2d"]
    assert (convs["own_error"] < 1e-5).all()  # also at half resolution: a half-pixel shift commutes with a conv
    assert t.loc[1, "own_error"] == 0 and t.loc[0, "contribution"] < 1e-6 and t.loc[1, "contribution"] < 1e-6
    assert (pools["own_error"] > 0.05).all()
    assert pools["own_error"].min() > 100 * convs["own_error"].max()
    assert t.loc[2, "contribution"] == t["contribution"].max()  # the first pool moves the output most
    assert len(shift_table["element"].unique()) == 8  # every non-identity element of the 3x3 grid


def test_contributions_bound_the_output_error(shift_table: pd.DataFrame) -> None:
    """Moving the transformation across every layer in turn telescopes from f(g·x) to f(x): the
    contributions add up to at least the end-to-end error, per element."""
    model = _plain_cnn()
    res = layers_run([model], "sample:mnist500", "shift:extent=1,step=1", limit=16, device="cpu")
    per_element = res.table.groupby("element")["contribution"].sum()
    assert (per_element >= 0).all()
    assert per_element.mean() + 1e-9 >= res.summary["per_model"]["Sequential"]["output_error"]


def test_invariant_layers_score_zero() -> None:
    """A pointwise network (1x1 convolutions, ReLU) is exactly shift-equivariant and its global-average
    readout shift-invariant on a zero background (no bias, so the background stays 0): every own error
    and contribution is about 0."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 4, 1, bias=False), nn.ReLU(), nn.Conv2d(4, 4, 1, bias=False), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 10)).eval()
    t = _by_layer(layers([net], "sample:mnist500", "shift:extent=2,step=1", limit=8, device="cpu"))
    assert (t["own_error"].fillna(0) < 1e-6).all()
    assert (t["contribution"] < 1e-6).all()


def test_frames_follow_strides() -> None:
    """A 2x2 max pool maps image pixels 0 and 1 to map pixel 0: x_map = (x - 0.5) / 2; the pool of a
    7-pixel map keeps pixels 0..5 (its centre is not the 3-pixel map's centre)."""
    f = next_frame(Frame(), nn.MaxPool2d(2), (28, 28), (14, 14))
    assert (f.ax, f.bx) == (0.5, -0.25)
    g = next_frame(next_frame(f, nn.MaxPool2d(2), (14, 14), (7, 7)), nn.MaxPool2d(2), (7, 7), (3, 3))
    assert g.ax == 0.125 and 13.5 * g.ax + g.bx == pytest.approx(1.25)  # the image centre, off the map's (1)
    assert next_frame(Frame(), nn.Conv2d(1, 1, 3, padding=1), (28, 28), (28, 28)) == Frame()
    shift = torch.tensor([[1.0, 0, 1], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    assert float(f.on_map(shift)[0, 2]) == 0.5  # one image pixel = half a map pixel
    mask = interior((6, 6), shift, 1)
    assert mask.sum() == 3 * 4 and not mask[:, :2].any()  # columns 2..4, rows 1..4


class _Wrapped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = _plain_cnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_torchscript_sequential_unfolded_others_refused_in_one_line(tmp_path, shift_table) -> None:
    path = tmp_path / "cnn.pt"
    torch.jit.script(_plain_cnn()).save(str(path))
    t = layers([str(path)], "sample:mnist500", "shift:extent=1,step=1", limit=16, device="cpu")
    pd.testing.assert_frame_equal(t.drop(columns="model"), shift_table.drop(columns="model"))
    torch.jit.script(_Wrapped()).save(str(path))
    with pytest.raises(ModelError, match="cannot be inspected .*TorchScript") as exc:
        layers([str(path)], "sample:mnist500", "shift:extent=1,step=1", limit=2, device="cpu")
    assert "\n" not in str(exc.value)


def test_pickled_module_is_hooked(tmp_path) -> None:
    path = tmp_path / "cnn.pt"
    torch.save(_plain_cnn(), str(path))
    t = layers([str(path)], "sample:mnist500", "shift:extent=1,step=0.5", limit=2, device="cpu",
               trust_checkpoint=True)
    assert set(t["kind"]) >= {"Conv2d", "MaxPool2d", "head"} and t["element"].nunique() == 24


def test_refusals_are_one_line() -> None:
    with pytest.raises(OptionError, match="only the identity"):
        layers([_plain_cnn()], "sample:mnist500", "shift:extent=0,step=1", limit=2, device="cpu")
    with pytest.raises(ModelError, match="no module maps a feature map"):
        layers([nn.Sequential(nn.Flatten(), nn.Linear(784, 10))], "sample:mnist500", "shift:extent=1,step=1",
               limit=2, device="cpu")
    with pytest.raises(TypeError, match="limt"):
        layers([_plain_cnn()], "sample:mnist500", "shift:extent=1,step=1", limt=2)


def test_run_folder_through_outdir(tmp_path) -> None:
    """The run folder: layers.csv, summary.json and run.json listing every file (nero's manifest)."""
    out = tmp_path / "run"
    res = layers_run([_plain_cnn()], "sample:mnist500", "shift:extent=1,step=1", out, limit=4, device="cpu",
                     plots=False)
    info = json.loads((out / "run.json").read_text())
    assert info["written_by"] == "nero" and info["status"] == "complete"
    assert info["files"] == ["layers.csv", "run.json", "summary.json"] and info["n_rows"] == len(res.table)
    assert not (tmp_path / ".run.partial").exists()
    with pytest.raises(Exception, match="--overwrite"):
        layers_run([_plain_cnn()], "sample:mnist500", "shift:extent=1,step=1", out, limit=4, device="cpu")


@pytest.mark.slow
def test_cli_writes_a_run_folder(tmp_path) -> None:
    out = tmp_path / "run"
    args = ["layers", "sample:mnist-cnn", "--data", "sample:mnist500", "--group", "shift:extent=1,step=1",
            "--limit", "8", "--device", "cpu", "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    info = json.loads((out / "run.json").read_text())
    assert info["written_by"] == "nero" and info["status"] == "complete" and info["kind"] == "layers"
    assert sorted(info["files"]) == sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert "plots/layers_mnist-cnn.png" in info["files"]
    table = pd.read_csv(out / "layers.csv")
    assert len(table) == info["n_rows"] == 10 * 8
    s = json.loads((out / "summary.json").read_text())["per_model"]["mnist-cnn"]
    assert s["max_layer_error_layer"] in ("features.2", "features.5") and math.isfinite(s["output_error"])
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 5 and "--overwrite" in again.output
    assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 0


def test_limit_warning_suggests_only_options_of_nero_layers(tmp_path) -> None:
    """nero layers has no --sample: its --limit warning must not suggest one."""
    res = layers_run([_plain_cnn()], "sample:mnist500", "shift:extent=1,step=1", tmp_path / "run", limit=2,
                     device="cpu", plots=False)
    (w,) = [w for w in res.warnings if "--limit" in w]
    assert w.startswith("--limit 2 covers class 0 of 10") and "--sample" not in w


@pytest.mark.parametrize("form", ["array", "dict", "dict+labels", "tensor"])
def test_in_memory_data_as_in_the_rest_of_the_api(form: str) -> None:
    """Arrays, a dict of arrays or a tensor as data (as nero_cli.evaluate and lie take them), not only --data strings."""
    import numpy as np
    import sample_models

    z = np.load(sample_models.data_path("mnist500"))
    images = z["images"][:3]
    data = {"array": images, "dict": {"images": images}, "dict+labels": {"images": images, "labels": z["labels"][:3]},
            "tensor": torch.from_numpy(images)}[form]
    got = layers(_plain_cnn(), data, ["shift:extent=1,step=1"], device="cpu")
    want = layers([_plain_cnn()], "sample:mnist500", "shift:extent=1,step=1", limit=3, device="cpu")
    pd.testing.assert_frame_equal(got, want)


def test_several_groups_are_refused_not_cut_to_the_last(tmp_path) -> None:
    with pytest.raises(OptionError, match="one --group per run"):
        layers([_plain_cnn()], "sample:mnist500", ["shift:extent=1,step=1", "rotation:step=90"], limit=2)
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["layers", "sample:mnist-cnn", "--data", "sample:mnist500", "--limit", "2",
                                   "--group", "shift:extent=1,step=1", "--group", "rotation:start=-90,stop=90,step=90",
                                   "--out", str(out)])
    assert res.exit_code == 2 and "run it once per group" in res.output and not out.exists()
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize("model, data, group", [("sample:flownet", "sample:piv64", "shift"),
                                                ("sample:pointnet", "sample:shapes200", "rotation")])
def test_the_task_is_refused_before_its_groups(tmp_path, model: str, data: str, group: str) -> None:
    """A flow or point-cloud model: the message is that nero layers measures classifiers, not the task's valid groups."""
    res = CliRunner().invoke(app, ["layers", model, "--data", data, "--group", group, "--limit", "2",
                                   "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and "measures image classifiers" in res.output, res.output
    assert "valid:" not in res.output
