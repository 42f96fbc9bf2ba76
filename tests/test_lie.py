"""``nero lie``: known answers for the Lie derivative, the finite-difference fallback, the run folder."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from typer.testing import CliRunner

from nero_cli import lie_derivative as L
from nero_cli.cli import app
from nero_cli.errors import ModelError, OptionError, OutputError
from orbits import parse_spec
from tests.fixtures.equivariant_models import RingClassifier

SIZE = 28
GROUPS = ("rotation", "shift", "scale", "perspective")


def blobs(n: int = 6, seed: int = 0) -> torch.Tensor:
    """Smooth random blobs well inside the frame (a zero border: nothing leaves under small moves)."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(SIZE, dtype=torch.float32), torch.arange(SIZE, dtype=torch.float32),
                            indexing="ij")
    out = torch.zeros(n, 1, SIZE, SIZE)
    for i in range(n):
        for _ in range(3):
            cx, cy = (8 + 12 * torch.rand(2, generator=g)).tolist()
            out[i, 0] += torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 12.0)
    out[..., :3, :] = out[..., -3:, :] = out[..., :, :3] = out[..., :, -3:] = 0
    return (out / out.amax((2, 3), keepdim=True)).clamp(0, 1)


class IgnoresInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.b = nn.Parameter(torch.tensor([0.3, -0.2, 0.1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b.expand(len(x), 3) + 0 * x.sum((1, 2, 3))[:, None]


class CentreOfMassX(nn.Module):
    """Logits ``(s·(mx − c), −s·(mx − c))`` of the image's mean x-coordinate of mass ``mx``."""

    def __init__(self, s: float = 0.7) -> None:
        super().__init__()
        self.s = s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = torch.arange(x.shape[-1], dtype=x.dtype)
        mx = (x.sum((1, 2)) * xs).sum(-1) / x.sum((1, 2, 3))
        z = self.s * (mx - (x.shape[-1] - 1) / 2)
        return torch.stack([z, -z], -1)


class SmoothCNN(nn.Module):
    """Random smooth CNN (tanh, average pooling): differentiable everywhere, so JVP = limit of FD."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.c1 = nn.Parameter(torch.randn(6, 1, 3, 3, generator=g) * 0.5)
        self.c2 = nn.Parameter(torch.randn(8, 6, 3, 3, generator=g) * 0.3)
        self.w = nn.Parameter(torch.randn(8 * 7 * 7, 5, generator=g) * 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(torch.tanh(F.conv2d(x, self.c1, padding=1)), 2)
        x = F.avg_pool2d(torch.tanh(F.conv2d(x, self.c2, padding=1)), 2)
        return 3 * x.flatten(1) @ self.w


class _NoForwardAD(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205
        return x * 1.0

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001, ANN205
        return g


class NotForwardDifferentiable(SmoothCNN):
    """A custom autograd Function without ``jvp``: torch.func.jvp cannot go through it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(_NoForwardAD.apply(x))


def measure(model: nn.Module, group: str, x: torch.Tensor, **kw) -> "L.pd.DataFrame":
    return L.lie(model, x, group, labels=np.zeros(len(x), dtype=np.int64), device="cpu", **kw)


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("method", ["jvp", "fd"])
def test_a_model_that_ignores_its_input_scores_exactly_zero(group: str, method: str) -> None:
    table = measure(IgnoresInput(), group, blobs(3), method=method)
    assert len(table) == 3 * len(L.GENERATORS[group])
    assert (table["value"] == 0).all()
    assert set(table["method"]) == {method}


class SmoothRadial(nn.Module):
    """Logits from smooth radial profiles about ``centre``: rotation-invariant about the image centre
    when ``offset`` is 0 (then only the pixel grid's discretisation moves it), not otherwise."""

    def __init__(self, offset: float = 0.0) -> None:
        super().__init__()
        c = (SIZE - 1) / 2
        ys, xs = torch.meshgrid(torch.arange(SIZE) - c, torch.arange(SIZE) - c - offset, indexing="ij")
        r = (xs**2 + ys**2).sqrt()
        self.register_buffer("phi", torch.stack([torch.exp(-((r - k) ** 2) / 8) for k in (2, 6, 10, 14)]) / 20)
        self.register_buffer("w", torch.randn(4, 4, generator=torch.Generator().manual_seed(0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nchw,khw->nk", x, self.phi) @ self.w


def off_centre_rings() -> RingClassifier:
    model = RingClassifier(scale=4.0)
    model.masks = torch.roll(model.masks, 3, dims=-1)  # rings about a point 3 px right of the centre
    return model


def test_rotation_invariant_models_score_about_zero() -> None:
    x = blobs(8)
    smooth, control = (measure(m, "rotation", x)["value"] for m in (SmoothRadial(), SmoothRadial(offset=3)))
    assert (smooth < 0.05 * control).all() and smooth.median() < 0.02 * control.median()
    rings, control = (measure(m, "rotation", x)["value"] for m in (RingClassifier(scale=4.0), off_centre_rings()))
    assert rings.median() < 0.1 * control.median()  # hard ring edges: more resampling error, still small
    assert (measure(SmoothRadial(), "shift", x)["value"] > 20 * smooth.max()).all()  # not invariant to shifts


def _centre_of_mass_rates(x: torch.Tensor, s: float) -> tuple[np.ndarray, np.ndarray]:
    """The known answers for :class:`CentreOfMassX`: TV per pixel of dx, TV per degree of rotation."""
    c = (SIZE - 1) / 2
    mass = x.double().sum((1, 2, 3))
    mx = (x.double().sum((1, 2)) * torch.arange(SIZE)).sum(-1) / mass
    my = (x.double().sum((1, 3)) * torch.arange(SIZE)).sum(-1) / mass
    p = torch.sigmoid(2 * s * (mx - c))
    dtv_dmx = 2 * s * p * (1 - p)  # |dp0/dmx| = TV of the two-class softmax per unit of mx
    return dtv_dmx.numpy(), (dtv_dmx * (my - c).abs() * math.pi / 180).numpy()


@pytest.mark.parametrize("method", ["jvp", "fd"])
def test_a_model_with_a_known_gradient_matches_it(method: str) -> None:
    x, s = blobs(6), 0.7
    rtol = 2e-3 if method == "jvp" else 1e-2  # finite differences of float32 outputs: ~0.5% noise
    per_pixel, per_degree = _centre_of_mass_rates(x, s)
    shift = measure(CentreOfMassX(s), "shift", x, method=method)
    dx = shift[shift["generator"] == "dx"]["value"].to_numpy()
    dy = shift[shift["generator"] == "dy"]["value"].to_numpy()
    np.testing.assert_allclose(dx, per_pixel, rtol=rtol)  # the mass centre moves one pixel per pixel
    assert np.abs(dy).max() < (1e-6 if method == "jvp" else 1e-2) * per_pixel.min()  # a vertical shift keeps mx
    # (finite differences of float32 images: mx ≈ 14 px to 7 digits, over 2h = 2e-3 px)
    rot = measure(CentreOfMassX(s), "rotation", x, method=method)["value"].to_numpy()
    np.testing.assert_allclose(rot, per_degree, rtol=rtol, atol=1e-7)  # d mx / dθ = (my − cy)·π/180
    assert set(shift["unit"]) == {"TV/pixel"} and set(measure(CentreOfMassX(s), "rotation", x[:1])["unit"]) == {"TV/degree"}


@pytest.mark.parametrize("group", GROUPS)
def test_finite_differences_agree_with_the_jvp(group: str) -> None:
    x = blobs(5, seed=1)
    jvp = measure(SmoothCNN(), group, x, method="jvp")
    fd = measure(SmoothCNN(), group, x, method="fd")
    assert (jvp["value"] > 1e-5).all()
    np.testing.assert_allclose(jvp["value"], fd["value"], rtol=2e-2, atol=1e-6)


def test_the_warp_equals_grid_sample_and_its_jvp_is_the_central_difference() -> None:
    x = torch.rand(2, 3, 9, 11, dtype=torch.float64)
    for padding in ("zeros", "border", "reflection"):
        m = L.generator_matrices("rotation", "rotation", torch.tensor([7.0, -33.0]), (9, 11))
        sx, sy = L.source_points(m, (9, 11))
        grid = torch.stack([(2 * sx + 1) / 11 - 1, (2 * sy + 1) / 9 - 1], -1)
        ref = F.grid_sample(x, grid, padding_mode=padding, align_corners=False)
        torch.testing.assert_close(L.warp(x, m, padding), ref)
    gen = L.Generator("shift", "dx", "pixel", (9, 11))
    t0 = torch.zeros(2, dtype=torch.float64)
    _, tangent = torch.func.jvp(lambda t: gen.act(x, t), (t0,), (torch.ones_like(t0),))
    padded = F.pad(x, (1, 1))
    torch.testing.assert_close(tangent, -(padded[..., 2:] - padded[..., :-2]) / 2)  # content moves right


@pytest.mark.parametrize("text,element,value", [("rotation:step=7,mask=circle,padding=border", 1, 7.0),
                                                ("scale:start=0.9,stop=1.1,step=0.1", 0, math.log(0.9)),
                                                ("shift:axis=x,extent=2,step=0.5", 1, -1.5)])
def test_the_warp_is_the_action_of_evaluate(text: str, element: int, value: float) -> None:
    spec = parse_spec(text, image_size=(SIZE, SIZE))
    gen = L.generators_of(spec, (SIZE, SIZE))[0]
    x = torch.rand(3, 1, SIZE, SIZE)
    torch.testing.assert_close(gen.act(x, torch.full((3,), value)), spec.input_action("image", (SIZE, SIZE))(x, [element])[0],
                               atol=1e-5, rtol=1e-5)


def test_the_fallback_is_used_where_jvp_fails() -> None:
    x = blobs(4)
    result = L.lie_run([NotForwardDifferentiable()], x, "rotation", labels=np.zeros(4, dtype=np.int64),
                       device="cpu")
    assert set(result.table["method"]) == {"fd"}
    assert any("finite differences" in w for w in result.warnings)
    reference = measure(SmoothCNN(), "rotation", x, method="jvp")["value"]
    np.testing.assert_allclose(result.table["value"], reference, rtol=2e-2)
    with pytest.raises(ModelError, match="jvp failed"):
        measure(NotForwardDifferentiable(), "rotation", x, method="jvp")


def test_scripted_models_are_measured() -> None:
    x = blobs(3)
    table = measure(torch.jit.script(SmoothCNN()), "scale", x)
    np.testing.assert_allclose(table["value"], measure(SmoothCNN(), "scale", x)["value"], rtol=1e-4)


def test_groups_without_generators_and_bad_options_are_refused() -> None:
    x = blobs(2)
    with pytest.raises(OptionError):
        measure(SmoothCNN(), "d4", x)
    with pytest.raises(OptionError, match="method"):
        measure(SmoothCNN(), "rotation", x, method="exact")
    with pytest.raises(OptionError, match="step"):
        measure(SmoothCNN(), "rotation", x, step=0.0)
    for bad in (math.inf, math.nan, -1.0):  # inf passed and crashed writing run.json (exit 70)
        with pytest.raises(OptionError, match="--step must be a positive number"):
            measure(SmoothCNN(), "rotation", x, step=bad)


@pytest.mark.parametrize("args,needle", [(["--step", "inf"], "--step must be a positive number"),
                                         (["--normalize", "nan,1"], "--normalize")])
def test_non_finite_numbers_are_usage_errors(tmp_path, args, needle) -> None:  # noqa: ANN001
    res = CliRunner().invoke(app, ["lie", "sample:mnist-cnn", "--data", "sample:mnist500", "--limit", "2",
                                   "--no-plots", "--out", str(tmp_path / "run"), *args])
    assert res.exit_code == 2, res.output
    assert needle in res.output and len(res.output.strip().splitlines()) == 1


def test_the_run_folder(tmp_path) -> None:  # noqa: ANN001
    out, x = tmp_path / "lie", blobs(5)
    result = L.lie_run([SmoothCNN(), RingClassifier()], x, "shift", out, labels=np.arange(5) % 2, device="cpu")
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete" and info["written_by"] == "nero" and info["kind"] == "lie"
    assert sorted(info["files"]) == sorted(["lie.csv", "plots/lie.png", "run.json", "summary.json"])
    table = L.pd.read_csv(out / "lie.csv")
    assert list(table.columns) == list(L.COLUMNS) and len(table) == 2 * 5 * 2 == info["n_rows"]
    assert list(table["label"][:5]) == [0, 1, 0, 1, 0]
    summary = json.loads((out / "summary.json").read_text())
    entry = summary["metrics"]["SmoothCNN"]["dx"]
    assert entry["lie_derivative_median"] == pytest.approx(float(result.table.query(
        "model == 'SmoothCNN' and generator == 'dx'")["value"].median()))
    assert entry["unit"] == "TV/pixel" and entry["method"] == "jvp" and entry["n_samples"] == 5
    with pytest.raises(OutputError, match="overwrite"):
        L.lie_run([SmoothCNN()], x, "shift", out, labels=np.zeros(5, dtype=np.int64), device="cpu")
    L.lie_run([SmoothCNN()], x, "rotation", out, labels=np.zeros(5, dtype=np.int64), device="cpu",
              overwrite=True, plots=False)
    assert json.loads((out / "run.json").read_text())["files"] == ["lie.csv", "run.json", "summary.json"]


def test_the_command(tmp_path) -> None:  # noqa: ANN001
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["lie", "sample:mnist-cnn", "--data", "sample:mnist500", "--limit", "3",
                                   "--group", "rotation", "--device", "cpu", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "TV/degree" in res.output and (out / "lie.csv").is_file() and (out / "plots" / "lie.png").is_file()
    res = CliRunner().invoke(app, ["lie", "sample:mnist-cnn", "--data", "sample:mnist500", "--limit", "3",
                                   "--group", "rotation", "--method", "exact", "--out", str(out), "--overwrite"])
    assert res.exit_code == 2


# -- along the orbit (--along) ----------------------------------------------------------------

class C4Averaged(nn.Module):
    """A model averaged over the four quarter turns of its input: exactly C4-invariant."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.base(torch.rot90(x, k, dims=(-2, -1))) for k in range(4)]).mean(0)


def along(model: nn.Module, group: str, x: torch.Tensor, **kw) -> "L.LieResult":
    return L.lie_run([model], x, group, labels=np.zeros(len(x), dtype=np.int64), device="cpu", along=True, **kw)


def test_along_the_orbit_the_identity_rows_are_the_plain_measurement() -> None:
    x = blobs(4, seed=2)
    result = along(SmoothCNN(), "rotation:step=90", x)
    table, summary = result.table, result.summary
    assert list(table.columns) == [*L.COLUMNS, *L.ORBIT_COLUMNS] and len(table) == 4 * 4
    assert summary["orbit"]["elements"] == ["angle=0", "angle=90", "angle=180", "angle=270"]
    assert summary["orbit"]["identity"] == 0 and summary["orbit"]["weights"] is None
    plain = measure(SmoothCNN(), "rotation:step=90", x)
    np.testing.assert_array_equal(table[table["element"] == 0]["value"].to_numpy(), plain["value"].to_numpy())
    entry = summary["metrics"]["SmoothCNN"]["rotation"]
    assert entry["lie_derivative_mean"] == pytest.approx(plain["value"].mean(), rel=1e-12)
    by_element = table.groupby("element")["value"].mean().to_numpy()
    np.testing.assert_allclose(entry["lie_derivative_by_element"], by_element, rtol=1e-12)
    assert entry["lie_derivative_orbit_mean"] == pytest.approx(by_element.mean(), rel=1e-12)
    assert entry["lie_derivative_orbit_max"] == pytest.approx(by_element.max(), rel=1e-12)
    assert entry["lie_derivative_orbit_argmax"] == summary["orbit"]["elements"][int(by_element.argmax())]


def test_along_the_orbit_a_c4_model_repeats_every_quarter_turn() -> None:
    """g(t) commutes with quarter turns on a square grid, so the derivative of a C4-invariant model at
    r·x equals the one at x: equal to float precision (the plain model's differ)."""
    x = blobs(5, seed=3)
    c4 = along(C4Averaged(SmoothCNN()), "rotation:step=90", x).table.pivot(index="sample", columns="element",
                                                                            values="value")
    plain = along(SmoothCNN(), "rotation:step=90", x).table.pivot(index="sample", columns="element", values="value")
    for k in (1, 2, 3):
        np.testing.assert_allclose(c4[k], c4[0], rtol=1e-4)
        assert ((plain[k] - plain[0]).abs() / plain[0] > 0.01).any()


@pytest.mark.parametrize("method", ["jvp", "fd"])
def test_along_the_orbit_a_known_gradient_is_met_at_every_element(method: str) -> None:
    """At g·x the centre-of-mass model's derivative is its known answer on the turned image."""
    x, s = blobs(4, seed=4), 0.7
    spec = parse_spec("rotation:step=90", image_size=(SIZE, SIZE))
    step = 0.1 if method == "fd" else 0.01  # float32 sums: at 0.01 degree the noise reaches 3% on small rates
    table = along(CentreOfMassX(s), "rotation:step=90", x, method=method, step=step).table
    turned = spec.input_action("image", (SIZE, SIZE))(x, range(4))
    for k in range(4):
        _, per_degree = _centre_of_mass_rates(turned[k], s)
        np.testing.assert_allclose(table[table["element"] == k]["value"], per_degree,
                                   rtol=2e-3 if method == "jvp" else 1e-2, atol=1e-7)


def test_along_the_orbit_the_run_folder(tmp_path) -> None:  # noqa: ANN001
    along(SmoothCNN(), "shift:extent=1,step=1", blobs(3, seed=5), out=tmp_path / "run")
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert "plots/lie_orbit.png" in info["files"] and info["options"]["along"] is True
    written = L.pd.read_csv(tmp_path / "run" / "lie.csv")
    assert list(written.columns) == [*L.COLUMNS, *L.ORBIT_COLUMNS] and len(written) == 3 * 9 * 2
    assert written["element_label"][0] == "dx=-1,dy=-1"


def test_the_command_along_the_orbit(tmp_path) -> None:  # noqa: ANN001
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["lie", "sample:mnist-c4", "--data", "sample:mnist500", "--limit", "2", "--group",
                                   "rotation:step=90", "--along", "--device", "cpu", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "orbit" in res.output and (out / "plots" / "lie_orbit.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    values = summary["metrics"]["mnist-c4"]["rotation"]["lie_derivative_by_element"]
    np.testing.assert_allclose(values, values[0], rtol=1e-4)  # the C4 model: the same at every quarter turn


def test_several_groups_are_refused_not_cut_to_the_last(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(OptionError, match="one --group per run"):
        L.lie(["sample:mnist-cnn"], "sample:mnist500", ["rotation", "shift"], limit=2)
    assert len(L.lie(["sample:mnist-cnn"], "sample:mnist500", ["rotation"], limit=2)) == 2
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["lie", "sample:flownet", "--data", "sample:piv64", "--group", "rotation",
                                   "--group", "shift", "--group", "scale", "--limit", "3", "--out", str(out)])
    assert res.exit_code == 2 and "run it once per group" in res.output and not out.exists()
