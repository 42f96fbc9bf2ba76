"""``nero lie`` on optical flow and point clouds: known answers, finite differences against the JVP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from typer.testing import CliRunner

from nero_cli import lie_derivative as L
from nero_cli import lie_fields
from nero_cli.cli import app
from nero_cli.errors import OptionError
from orbits import parse_spec
from tests.test_lie import _NoForwardAD, blobs

SIZE = 28
FLOW_GROUPS = ("rotation", "shift", "scale")


def pairs(n: int = 4, seed: int = 0) -> torch.Tensor:
    """Frame pairs ``(n, 2, 28, 28)`` of smooth blobs with a zero border (nothing enters under small moves)."""
    return torch.cat([blobs(n, seed), blobs(n, seed + 100)], 1)


def flow_lie(model: nn.Module, group: str, x: torch.Tensor, **kw) -> "L.pd.DataFrame":
    return L.lie(model, {"frames": x}, group, task="flow", device="cpu", **kw)


class ZeroFlow(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0 * x[:, :2]


class ConstantFlow(nn.Module):
    """A uniform flow ``(u, v)`` whatever the frames."""

    def __init__(self, u: float, v: float) -> None:
        super().__init__()
        self.uv = nn.Parameter(torch.tensor([u, v]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.uv[None, :, None, None] + 0 * x[:, :2]


class CentreOfMassFlow(nn.Module):
    """A uniform flow equal to frame 1's centre of mass minus the frame's centre: the vector turns,
    moves and grows with the content, so the model is equivariant under rotations and zooms about
    the centre and, under a shift by ``t``, its pulled-back field grows by ``t`` along the shift."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        mass = x[:, 0].sum((1, 2))
        mx = (x[:, 0].sum(1) * torch.arange(w, dtype=x.dtype)).sum(-1) / mass - (w - 1) / 2
        my = (x[:, 0].sum(2) * torch.arange(h, dtype=x.dtype)).sum(-1) / mass - (h - 1) / 2
        return torch.stack([mx, my], 1)[:, :, None, None].expand(len(x), 2, h, w)


class SmoothGradientFlow(nn.Module):
    """``∇(G * (frame1 − frame2))`` with the derivatives of a Gaussian sampled on the grid: a
    rotation-equivariant operator (isotropic ``G``) up to the sampling of its kernels; anisotropic
    (``sy != sx``) it is not."""

    def __init__(self, sx: float = 2.5, sy: float = 2.5, radius: int = 9) -> None:
        super().__init__()
        r = torch.arange(-radius, radius + 1, dtype=torch.float32)
        ys, xs = torch.meshgrid(r, r, indexing="ij")
        g = torch.exp(-(xs**2) / (2 * sx**2) - ys**2 / (2 * sy**2))
        g = g / g.sum()
        self.register_buffer("k", torch.stack([-xs / sx**2 * g, -ys / sy**2 * g])[:, None])
        self.pad = radius

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20 * F.conv2d(x[:, :1] - x[:, 1:2], self.k, padding=self.pad)


class SmoothFlowCNN(nn.Module):
    """A random smooth flow CNN (tanh): differentiable everywhere, so the JVP is the limit of FD."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.c1 = nn.Parameter(torch.randn(6, 2, 3, 3, generator=g) * 0.5)
        self.c2 = nn.Parameter(torch.randn(2, 6, 5, 5, generator=g) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 3 * F.conv2d(torch.tanh(F.conv2d(x, self.c1, padding=1)), self.c2, padding=2)


class NoJvpFlowCNN(SmoothFlowCNN):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(_NoForwardAD.apply(x))


def _field(model: nn.Module, group: str, x: torch.Tensor, generator: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The derivative field ``D`` ``(B, 2, H, W)`` by jvp, and the valid pixels."""
    from nero_cli.models import LoadedModel, ModelMeta
    from nero_cli.runner import ModelRunner
    from nero_cli.tasks import get_task

    runner = ModelRunner(LoadedModel(name="m", module=model.eval(), source="<test>", format="module", sha256={},
                                     meta=ModelMeta()), "cpu")
    gen = L.generators_of(parse_spec(group, image_size=(SIZE, SIZE)), (SIZE, SIZE), "flow")[generator]
    return L.jvp_derivative(runner, get_task("flow"), x, gen), lie_fields.valid_pixels(gen)


@pytest.mark.parametrize("group", FLOW_GROUPS)
@pytest.mark.parametrize("method", ["jvp", "fd"])
def test_a_zero_flow_scores_exactly_zero(group: str, method: str) -> None:
    table = flow_lie(ZeroFlow(), group, pairs(3), method=method)
    assert (table["value"] == 0).all() and set(table["method"]) == {method}
    assert len(table) == 3 * len(L.GENERATORS[group])


@pytest.mark.parametrize("method", ["jvp", "fd"])
def test_a_uniform_flow_turns_at_its_known_rate(method: str) -> None:
    """Pulled back under a rotation by t degrees, the uniform field (u, v) becomes L(t)⁻¹ (u, v):
    its derivative is (−v, u)·π/180 at every valid pixel; a zoom shrinks it, a shift leaves it."""
    u, v = 1.5, -0.8
    x = pairs(2)
    rate = math.hypot(u, v) * math.pi / 180
    rtol = 1e-6 if method == "jvp" else 1e-4
    np.testing.assert_allclose(flow_lie(ConstantFlow(u, v), "rotation", x, method=method)["value"], rate, rtol=rtol)
    np.testing.assert_allclose(flow_lie(ConstantFlow(u, v), "scale", x, method=method)["value"], math.hypot(u, v),
                               rtol=rtol)
    assert (flow_lie(ConstantFlow(u, v), "shift", x, method=method)["value"].abs() < 1e-9).all()
    field, valid = _field(ConstantFlow(u, v), "rotation", x)
    expected = torch.tensor([-v, u], dtype=torch.float64)[:, None] * math.pi / 180
    torch.testing.assert_close(field[:, :, valid], expected.expand(2, 2, int(valid.sum())), rtol=1e-6, atol=1e-12)
    assert 0 < (~valid).sum() < 4 * SIZE  # the border ring that reads the zero padding, no more


@pytest.mark.parametrize("method", ["jvp", "fd"])
def test_a_vector_that_moves_with_the_content_has_known_derivatives(method: str) -> None:
    """The centre-of-mass flow turns and grows with the content: 0 under rotation and zoom; under a
    shift its pulled-back field grows by one pixel per pixel along the shift, so the rate is 1."""
    x = pairs(4)
    # jvp: float32 sums. fd: float32 frames, and an O(h) bias of central differences through bilinear
    # resampling (a zoom by e^±h moves pixels by h ± h²/2), hence a smaller step.
    tol, kw = (1e-5, {}) if method == "jvp" else (3e-3, {"step": 1e-3})
    for group in ("rotation", "scale"):
        assert (flow_lie(CentreOfMassFlow(), group, x, method=method, **kw)["value"] < tol).all()
    shift = flow_lie(CentreOfMassFlow(), "shift", x, method=method, **kw)
    np.testing.assert_allclose(shift["value"], 1.0, rtol=tol)
    field, valid = _field(CentreOfMassFlow(), "shift", x, generator=1)  # dy: the field gains (0, 1)
    torch.testing.assert_close(field[:, 1, valid], torch.ones(4, int(valid.sum()), dtype=torch.float64))
    assert field[:, 0, valid].abs().max() < 1e-6


def test_an_isotropic_smoothed_gradient_scores_about_zero() -> None:
    """Up to the sampling of kernels and central differences on the grid; against the rate of a field
    that moves without turning (|F|·π/180) and an anisotropic smoothing."""
    x = pairs(6, seed=3)
    iso = flow_lie(SmoothGradientFlow(), "rotation", x)["value"].to_numpy()
    unturned = (SmoothGradientFlow()(x).double().norm(dim=1).mean((1, 2)) * math.pi / 180).numpy()
    control = flow_lie(SmoothGradientFlow(1.0, 2.5), "rotation", x)["value"].to_numpy()
    assert (iso < 0.05 * unturned).all() and (iso < 0.1 * control).all()
    assert (flow_lie(SmoothGradientFlow(), "shift", x)["value"] < 1e-6).all()  # convolutions commute with shifts
    # a pointwise nonlinearity does not commute with sub-pixel shifts (Gruver et al.'s aliasing)
    assert (flow_lie(SmoothFlowCNN(), "shift", x)["value"] > 1e-3).all()


@pytest.mark.parametrize("group", FLOW_GROUPS)
def test_flow_finite_differences_agree_with_the_jvp(group: str) -> None:
    """With a step of 1e-3: central differences along the kinked path of bilinear resampling carry
    an O(h) bias (3% at the default 0.01 px for this model under shifts, 0.3% at 0.001)."""
    x = pairs(3, seed=1)
    jvp = flow_lie(SmoothFlowCNN(), group, x, method="jvp")
    fd = flow_lie(SmoothFlowCNN(), group, x, method="fd", step=1e-3)
    assert (jvp["value"] > 1e-3).all()
    np.testing.assert_allclose(jvp["value"], fd["value"], rtol=1e-2)
    assert set(jvp["unit"]) == {lie_fields.unit_of(u) for _, u in L.GENERATORS[group]}


def test_the_flow_fallback_and_refused_groups() -> None:
    x = pairs(3, seed=2)
    result = L.lie_run([NoJvpFlowCNN()], {"frames": x}, "rotation", task="flow", device="cpu")
    assert set(result.table["method"]) == {"fd"} and any("finite differences" in w for w in result.warnings)
    np.testing.assert_allclose(result.table["value"], flow_lie(SmoothFlowCNN(), "rotation", x)["value"], rtol=1e-2)
    with pytest.raises(OptionError, match="perspective|d4"):
        flow_lie(SmoothFlowCNN(), "d4", x)


def test_the_pull_back_matches_the_vector_field_output_type() -> None:
    """nero lie's differentiable pull-back is evaluate's (orbits.outputs.VectorField) at a finite angle."""
    spec = parse_spec("rotation:start=0,stop=30,step=30", image_size=(SIZE, SIZE))
    field = torch.randn(3, 2, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    out = spec.output_type("vector_field", (SIZE, SIZE))
    gen = L.generators_of(spec, (SIZE, SIZE), "flow")[0]
    ours = lie_fields.pull_back(field.double(), gen.matrices(torch.full((3,), 30.0)))
    theirs = out.pull_back(field[None].expand(2, -1, -1, -1, -1), [0, 1])[1].double()
    valid = out.valid([1])[0] > 0
    torch.testing.assert_close(ours[:, :, valid], theirs[:, :, valid], atol=1e-5, rtol=1e-5)


# -- point clouds -------------------------------------------------------------------------------

def clouds(n: int = 5, p: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, p, 3, generator=g) * torch.tensor([1.0, 0.6, 0.3]) + torch.tensor([0.4, -0.2, 0.1])


def point_lie(model: nn.Module, x: torch.Tensor, **kw) -> "L.pd.DataFrame":
    return L.lie(model, {"points": x}, "viewpoint", task="pointcloud", labels=np.zeros(len(x), dtype=np.int64),
                 device="cpu", **kw)


class PairwiseDistances(nn.Module):
    """Logits from soft histograms of pairwise distances and of the points' norms: rotation
    invariant by construction (written with forward-differentiable operations)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(16, 3, generator=torch.Generator().manual_seed(0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = ((x[:, :, None] - x[:, None]) ** 2).sum(-1).add(1e-9).sqrt().flatten(1)
        r = x.norm(dim=-1)
        centres = torch.linspace(0, 3, 8)
        hist = lambda v: torch.exp(-((v[..., None] - centres) ** 2) / 0.2).mean(1)  # noqa: E731
        return 4 * torch.cat([hist(d), hist(r)], -1) @ self.w


class MeanX(nn.Module):
    """Logits ``(s·m_x, −s·m_x)`` of the clouds' mean x coordinate."""

    def __init__(self, s: float = 1.3) -> None:
        super().__init__()
        self.s = s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.s * x[..., 0].mean(1)
        return torch.stack([z, -z], -1)


class PointMLP(nn.Module):
    """A random smooth per-point MLP with mean pooling (not invariant)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.a = nn.Parameter(torch.randn(3, 16, generator=g))
        self.b = nn.Parameter(torch.randn(16, 4, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 3 * torch.tanh(x @ self.a).mean(1) @ self.b


@pytest.mark.parametrize("method", ["jvp", "fd"])
def test_a_distance_based_cloud_model_scores_zero(method: str) -> None:
    x = clouds()
    table = point_lie(PairwiseDistances(), x, method=method)
    assert list(dict.fromkeys(table["generator"])) == ["rot_x", "rot_y", "rot_z"] and set(table["unit"]) == {"TV/degree"}
    assert table["value"].max() < (1e-7 if method == "jvp" else 1e-4)  # float32 rounding only
    assert (point_lie(PointMLP(), x, method=method)["value"] > 1e-4).all()


@pytest.mark.parametrize("method", ["jvp", "fd"])
def test_the_mean_x_model_matches_its_gradient(method: str) -> None:
    """d m_x/dt per degree is −m_y·π/180 about z, m_z·π/180 about y, 0 about x; TV of a two-class
    softmax is |dp₀/dt| = 2s·p₀(1 − p₀)·|dm_x/dt|."""
    x, s = clouds(6, seed=2), 1.3
    m = x.double().mean(1)
    p = torch.sigmoid(2 * s * m[:, 0])
    scale = 2 * s * p * (1 - p) * math.pi / 180
    table = point_lie(MeanX(s), x, method=method)
    got = {g: table[table["generator"] == g]["value"].to_numpy() for g in ("rot_x", "rot_y", "rot_z")}
    rtol = 1e-5 if method == "jvp" else 1e-2  # finite differences of float32 points
    np.testing.assert_allclose(got["rot_z"], (scale * m[:, 1].abs()).numpy(), rtol=rtol)
    np.testing.assert_allclose(got["rot_y"], (scale * m[:, 2].abs()).numpy(), rtol=rtol)
    assert got["rot_x"].max() < 1e-6


def test_cloud_finite_differences_agree_with_the_jvp() -> None:
    x = clouds(4, seed=3)
    np.testing.assert_allclose(point_lie(PointMLP(), x, method="jvp")["value"],
                               point_lie(PointMLP(), x, method="fd")["value"], rtol=1e-2, atol=1e-7)


def test_the_axis_rotations_are_the_viewpoint_action() -> None:
    """rot_x, rot_y, rot_z by 15° are the planes grid's elements with axes x, z (plane xz at 90°) and y."""
    spec = parse_spec("viewpoint:axis_step=90,rot_step=15")
    cols = spec.group.columns()
    x = clouds(2)
    action = spec.input_action("points")
    for name, (plane, axis_angle) in {"rot_x": ("xy", 0.0), "rot_y": ("xy", 90.0), "rot_z": ("xz", 90.0)}.items():
        index = next(i for i in range(len(spec.group)) if cols["plane"][i] == plane
                     and cols["axis_angle"][i] == axis_angle and cols["rot_angle"][i] == 15.0)
        gen = L.generators_of(spec, None, "pointcloud")[["rot_x", "rot_y", "rot_z"].index(name)]
        torch.testing.assert_close(gen.act(x, torch.full((2,), 15.0)), action(x, [index])[0])


@pytest.mark.slow
def test_the_command_on_flow_and_clouds(tmp_path) -> None:  # noqa: ANN001
    out = tmp_path / "flow"
    res = CliRunner().invoke(app, ["lie", "sample:gradient-flow", "sample:flownet", "--data", "sample:piv64", "--limit",
                                   "4", "--group", "shift", "--device", "cpu", "--out", str(out)])
    assert res.exit_code == 0, res.output
    table = L.pd.read_csv(out / "lie.csv")
    assert set(table["unit"]) == {"mean EPE px/pixel"} and (table["label"] == -1).all()
    grad, net = (table[table["model"] == m]["value"] for m in ("gradient-flow", "flownet"))
    assert grad.max() < 1e-6 < 1e-3 < net.min()  # a stencil commutes with shifts; the U-Net does not
    out = tmp_path / "clouds"
    res = CliRunner().invoke(app, ["lie", "sample:pointnet-dist", "sample:pointnet-aug", "--data", "sample:shapes200",
                                   "--limit", "5", "--group", "viewpoint", "--device", "cpu", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "finite differences" in res.output  # torch.cdist has no forward derivative
    table = L.pd.read_csv(out / "lie.csv")
    dist, aug = (table[table["model"] == m] for m in ("pointnet-dist", "pointnet-aug"))
    assert set(dist["method"]) == {"fd"} and set(aug["method"]) == {"jvp"}
    assert dist["value"].max() < 1e-5 < aug["value"].median()
    res = CliRunner().invoke(app, ["lie", "sample:flownet", "--data", "sample:piv64", "--limit", "2", "--group",
                                   "perspective", "--device", "cpu", "--out", str(tmp_path / "bad")])
    assert res.exit_code == 2 and "perspective" in res.output


# -- along the orbit --------------------------------------------------------------------------

def test_clouds_along_a_grid_that_repeats_elements_count_each_once() -> None:
    """The planes grid repeats the identity (every axis at angle 0) and more: the orbit mean weighs
    each copy 1/copies, and every copy of one rotation has the same derivative."""
    x = clouds(3, seed=4)
    result = L.lie_run([PointMLP()], {"points": x}, "viewpoint:axis_step=90,rot_step=90", task="pointcloud",
                       labels=np.zeros(3, dtype=np.int64), device="cpu", along=True)
    orbit = result.summary["orbit"]
    weights = np.asarray(orbit["weights"])
    assert len(weights) == 36 and weights.sum() == pytest.approx(len(set(map(_rounded, _quaternions(orbit)))))
    for gen in ("rot_x", "rot_y", "rot_z"):
        entry = result.summary["metrics"]["PointMLP"][gen]
        by_element = np.asarray(entry["lie_derivative_by_element"])
        identities = [i for i, label in enumerate(orbit["elements"]) if label.endswith("rot_angle=0")]
        np.testing.assert_allclose(by_element[identities], entry["lie_derivative_mean"], rtol=1e-6)
        assert entry["lie_derivative_orbit_mean"] == pytest.approx(float(weights @ by_element / weights.sum()))


def _quaternions(orbit: dict) -> list:
    spec = parse_spec(orbit["spec"])
    return [tuple(q) for q in spec.group.with_identity().elements.tolist()]


def _rounded(q: tuple) -> tuple:
    q = np.asarray(q)
    q = -q if q[0] < -1e-9 or (abs(q[0]) < 1e-9 and q[np.nonzero(np.abs(q) > 1e-9)[0][0]] < 0) else q
    return tuple(np.round(q, 6) + 0.0)


def test_clouds_along_the_orbit_meet_the_known_gradient_on_the_turned_cloud() -> None:
    x, s = clouds(4, seed=5), 1.3
    spec = parse_spec("viewpoint:grid=sphere,axes=2,rot_step=90")
    table = L.lie(MeanX(s), {"points": x}, spec.text, task="pointcloud", labels=np.zeros(4, dtype=np.int64),
                  device="cpu", along=True)
    turned = spec.input_action("points")(x, range(len(spec.group)))
    for k in range(len(spec.group)):
        m = turned[k].double().mean(1)
        p = torch.sigmoid(2 * s * m[:, 0])
        rows = table[(table["element"] == k) & (table["generator"] == "rot_z")]
        np.testing.assert_allclose(rows["value"], (2 * s * p * (1 - p) * math.pi / 180 * m[:, 1].abs()).numpy(),
                                   rtol=1e-5)


def test_flow_along_the_orbit() -> None:
    """The centre-of-mass flow at integer shifts of the frames: still one pixel per pixel, and 0 under
    rotation at every quarter turn."""
    x = pairs(3)
    shift = flow_lie(CentreOfMassFlow(), "shift:extent=2,step=1", x, along=True)
    assert set(shift["element"]) == set(range(25))
    np.testing.assert_allclose(shift["value"], 1.0, rtol=1e-5)
    assert (flow_lie(CentreOfMassFlow(), "rotation:step=90", x, along=True)["value"] < 1e-5).all()
