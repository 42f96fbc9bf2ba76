"""Detection, flow and point clouds: outputs mapped back through the group, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import orbits
from nero_cli import metrics
from nero_cli.cli import app
from orbits.boxes import map_boxes
from orbits.fields import FrameAction, VectorFieldAction
from orbits.so3 import quat_matrix

runner = CliRunner()
FIX = Path(__file__).parent / "fixtures" / "equivariant_models.py"


def cli(*args):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.stderr
    return r


# -- groups ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["d4", "d4t"])
def test_dihedral_cayley_table_is_closed(name):
    g = orbits.parse_spec(name).group
    els = g.elements
    a = els[:, None].expand(-1, len(g), -1)
    b = els[None].expand(len(g), -1, -1)
    prod = g.compose(a, b)  # (G, G, P)
    hits = g.equal(prod[:, :, None], els[None, None])  # (G, G, G)
    assert (hits.sum(-1) == 1).all()  # every product is exactly one element
    assert (hits.sum(0) == 1).all() and (hits.sum(1) == 1).all()  # a Latin square
    # non-abelian: a flip and a quarter turn do not commute
    r, f = torch.tensor([1.0, 0] + [0] * (len(g.param_names) - 2)), torch.tensor([0.0, 1] + [0] * (len(g.param_names) - 2))
    assert not g.equal(g.compose(r, f), g.compose(f, r))


@pytest.mark.parametrize("spec", ["viewpoint", "viewpoint:grid=sphere,axes=200,rot_step=45"])
def test_quaternion_grids_are_unit_and_hold_the_identity(spec):
    g = orbits.parse_spec(spec).group
    assert torch.allclose(g.elements.norm(dim=-1), torch.ones(len(g), dtype=torch.float64))
    assert g.identity_index is not None
    r = quat_matrix(g.elements)
    assert torch.allclose(r @ r.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand_as(r), atol=1e-12)
    assert torch.allclose(torch.linalg.det(r), torch.ones(len(g), dtype=torch.float64))


def test_sphere_axes_cover_the_sphere_evenly():
    g = orbits.parse_spec("viewpoint:grid=sphere,axes=400,rot_step=180").group
    lat = torch.tensor(g.coords["axis_lat"][1:], dtype=torch.float64)
    z = torch.sin(torch.deg2rad(lat))
    # equal-area: z is uniform on [-1, 1], so each of 4 bands holds a quarter of the axes
    counts = torch.histc(z, bins=4, min=-1, max=1)
    assert (counts == 100).all()
    lon = torch.tensor(g.coords["axis_lon"][1:])
    assert torch.histc(lon, bins=4, min=-180, max=180).min() >= 95


def test_perspective_identity_and_tilt_direction():
    g = orbits.parse_spec("perspective:extent=20,step=20").group
    act = orbits.ImageAction(g, (32, 32))
    x = torch.rand(1, 1, 32, 32)
    assert torch.equal(act(x, [g.identity_index])[0], x)
    m = orbits.planar_matrices(g, (32, 32))
    assert not torch.allclose(m[0, 2, :2], torch.zeros(2, dtype=torch.float64))  # a true homography


# -- boxes ----------------------------------------------------------------------------------


def test_box_transforms_hand_computed():
    box = torch.tensor([[2.0, 3.0, 6.0, 5.0]])  # x1, y1, x2, y2 on a 10 x 10 image (centre 5, 5)
    shift = orbits.parse_spec("shift:extent=2,step=2").group
    i = [k for k, e in enumerate(shift.elements.tolist()) if e == [2.0, -2.0]][0]
    assert map_boxes(orbits.planar_matrices(shift, (10, 10))[i : i + 1], box)[0, 0].tolist() == [4.0, 1.0, 8.0, 3.0]
    scale = orbits.parse_spec("scale:start=2,stop=2,step=1").group
    assert map_boxes(orbits.planar_matrices(scale, (10, 10)), box)[0, 0].tolist() == [-1.0, 1.0, 7.0, 5.0]
    rot = orbits.parse_spec("rotation:step=90").group
    out = map_boxes(orbits.planar_matrices(rot, (10, 10)), box)[:, 0]
    assert out[1].tolist() == [3.0, 4.0, 5.0, 8.0]  # 90 degrees counter-clockwise as displayed
    assert out[2].tolist() == [4.0, 5.0, 8.0, 7.0]
    r45 = orbits.parse_spec("rotation:start=45,stop=45,step=1").group
    env = map_boxes(orbits.planar_matrices(r45, (10, 10)), box)[0, 0]
    # the box centre (4, 4) is (-1, -1) from the image centre; turned 45 degrees it is (-sqrt 2, 0) away,
    # and the envelope of a 4 x 2 box turned 45 degrees has half-size (2 + 1) / sqrt 2 on both axes
    cx, cy, half = 5 - 2 ** 0.5, 5.0, 3 / 2 ** 0.5
    assert torch.allclose(env, torch.tensor([cx - half, cy - half, cx + half, cy + half], dtype=torch.float64))


def test_box_iou_and_prf_hand_computed():
    a = torch.tensor([0.0, 0.0, 2.0, 2.0], dtype=torch.float64)
    b = torch.tensor([1.0, 0.0, 3.0, 2.0], dtype=torch.float64)
    assert metrics.box_iou(a, b).item() == pytest.approx(2 / 6)
    boxes = torch.tensor([[[[0, 0, 2, 2], [5, 5, 7, 7], [0, 0, 2, 2]]]], dtype=torch.float64)  # (G=1, B=1, D=3, 4)
    scores = torch.tensor([[[0.9, 0.8, 0.7]]], dtype=torch.float64)
    classes = torch.tensor([[[1, 1, 1]]])
    out = metrics.precision_recall_f1(boxes, scores, classes, scores >= 0, torch.tensor([[[0, 0, 2, 2]]], dtype=torch.float64),
                                      torch.tensor([[1]]))
    # one true positive (the duplicate is a false positive): precision 1/3, recall 1, F1 0.5
    assert out["precision"].item() == pytest.approx(1 / 3)
    assert out["recall"].item() == 1.0
    assert out["f1"].item() == pytest.approx(0.5)


# -- vector fields ----------------------------------------------------------------------------


def test_quarter_turn_turns_vectors():
    g = orbits.parse_spec("d4").group
    va = VectorFieldAction(g, (4, 4))
    field = torch.zeros(1, 1, 2, 4, 4)
    field[:, :, 0] = 1.0  # uniform flow to the right
    fwd = ImageLikeForward(g)
    k1 = [i for i, e in enumerate(g.elements.tolist()) if e == [1.0, 0.0]][0]
    turned = fwd(field[0], k1)  # g . F for a quarter turn counter-clockwise as displayed
    assert torch.allclose(turned[:, 0], torch.zeros(4, 4)) and torch.allclose(turned[:, 1], -torch.ones(4, 4))  # now up
    back = va.pull_back(turned[None], [k1])[0]
    assert torch.allclose(back, field[0])


class ImageLikeForward:
    """g . F computed independently: move pixels with torch.rot90/flip, turn vectors by hand."""

    def __init__(self, group):
        self.group = group

    def __call__(self, f, i):
        k, flip = (int(v) for v in self.group.elements[i, :2].tolist())
        u, v = f[:, 0], f[:, 1]
        if flip:
            u, v = -u.flip(-1), v.flip(-1)
        for _ in range(k):
            u, v = torch.rot90(v, 1, (-2, -1)), torch.rot90(-u, 1, (-2, -1))
        return torch.stack([u, v], 1)


def test_frame_action_swaps_frames_under_time_reversal():
    g = orbits.parse_spec("d4t").group
    fa = FrameAction(g, (5, 5))
    x = torch.rand(2, 2, 5, 5)
    t = [i for i, e in enumerate(g.elements.tolist()) if e == [0.0, 0.0, 1.0]][0]
    out = fa(x, [t])[0]
    assert torch.equal(out[:, 0], x[:, 1]) and torch.equal(out[:, 1], x[:, 0])


@pytest.fixture(scope="module")
def flow_data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("flow")
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(6, 2, 16, 16, generator=g).numpy()
    np.savez(d / "pairs.npz", frames=frames)
    return d / "pairs.npz"


def test_equivariant_flow_scores_zero_and_scalar_pair_does_not(flow_data, tmp_path):
    out = tmp_path / "run"
    cli("evaluate", f"{FIX}:gradient_flow", f"{FIX}:scalar_pair_flow", "--task", "flow", "--data", flow_data,
        "--group", "d4t", "--out", out, "--quiet", "--plot-samples", "0")
    t = pd.read_csv(out / "results.csv")
    assert len(t) == 2 * 6 * 16
    grad = t[t["model"] == "gradient_flow"]
    assert grad["equivariance_error"].max() < 1e-6
    assert grad["aee"].max() < 1e-6  # against the consensus, which equals f(x) for an equivariant model
    # the classic mistake (moving pixels without turning vectors) would score this one ~0 too
    scalar = t[t["model"] == "scalar_pair_flow"]
    turns = scalar[(scalar["k"] > 0) & (scalar["flip"] == 0) & (scalar["t"] == 0)]
    assert turns["equivariance_error"].min() > 1.0  # (s, s) must become (s, -s) at a quarter turn: error sqrt 2
    reversed_only = scalar[(scalar["k"] == 0) & (scalar["flip"] == 0) & (scalar["t"] == 1)]
    assert reversed_only["equivariance_error"].min() > 1.0  # time reversal must negate the field
    s = json.loads((out / "summary.json").read_text())
    assert s["task"] == "flow" and "orbit_aee" in s["metrics"]["gradient_flow"]["d4t"]
    plots = {p.name for p in (out / "plots").iterdir()}
    assert "d4t_aee.png" in plots and "d4t_error-maps_sample-0.png" in plots


def test_flow_against_ground_truth_and_rotation(flow_data, tmp_path):
    z = np.load(flow_data)
    import importlib.util

    spec = importlib.util.spec_from_file_location("fx", FIX)
    fx = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fx)
    truth = fx.GradientFlow()(torch.from_numpy(z["frames"])).numpy()
    np.savez(tmp_path / "gt.npz", frames=z["frames"], flow=truth)
    out = tmp_path / "run"
    cli("evaluate", f"{FIX}:gradient_flow", "--task", "flow", "--data", tmp_path / "gt.npz", "--group", "d4",
        "--group", "rotation:step=45,mask=circle", "--out", out, "--quiet", "--plot-samples", "none")
    t = pd.read_csv(out / "results.csv")
    d4 = t[t["group"] == "d4"]
    assert d4["aee"].max() < 1e-6 and d4["rmse"].max() < 1e-6
    rot = t[t["group"] == "rotation"]
    assert rot[rot["angle"] % 90 == 0]["equivariance_error"].max() < 1e-6
    assert rot[rot["angle"] == 45]["equivariance_error"].mean() > 1e-3  # interpolation is not exact


def test_consensus_equals_truth_when_truth_is_the_orbit_mean(flow_data, tmp_path):
    """With ground truth set to the model's own orbit-mean output, scoring against labels
    and against the consensus must agree."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fx", FIX)
    fx = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fx)
    model = fx.ScalarPairFlow()
    z = np.load(flow_data)
    x = torch.from_numpy(z["frames"])
    g = orbits.parse_spec("d4t").group
    fa, va = FrameAction(g, (16, 16)), VectorFieldAction(g, (16, 16))
    gx = fa(x, range(len(g)))
    outs = torch.stack([model(gx[i]) for i in range(len(g))])
    mean = va.pull_back(outs, range(len(g))).mean(0)
    np.savez(tmp_path / "gt.npz", frames=z["frames"], flow=mean.numpy())
    a, b = tmp_path / "a", tmp_path / "b"
    for out, ref in ((a, "labels"), (b, "consensus")):
        cli("evaluate", f"{FIX}:scalar_pair_flow", "--task", "flow", "--data", tmp_path / "gt.npz", "--group", "d4t",
            "--reference", ref, "--out", out, "--quiet", "--no-plots")
    ta, tb = pd.read_csv(a / "results.csv"), pd.read_csv(b / "results.csv")
    assert np.allclose(ta["aee"], tb["aee"], atol=1e-5) and ta["aee"].max() > 0.01


# -- point clouds -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cloud_data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pts")
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(5, 16, 3, generator=g).numpy().astype(np.float32)
    np.savez(d / "clouds.npz", points=pts, labels=np.array([0, 1, 2, 0, 1]))
    return d / "clouds.npz"


@pytest.mark.parametrize("grid", ["viewpoint:axis_step=30,rot_step=45", "viewpoint:grid=sphere,axes=12,rot_step=60"])
def test_invariant_point_classifier_scores_zero(cloud_data, tmp_path, grid):
    out = tmp_path / "run"
    cli("evaluate", f"{FIX}:sorted_distance", f"{FIX}:plain_points", "--task", "pointcloud", "--data", cloud_data,
        "--group", grid, "--out", out, "--quiet", "--plot-samples", "worst:1")
    t = pd.read_csv(out / "results.csv")
    for c in ("qw", "qx", "qy", "qz"):
        assert c in t.columns
    assert t[t["model"] == "sorted_distance"]["equivariance_error"].max() < 1e-5
    assert t[t["model"] == "plain_points"]["equivariance_error"].mean() > 0.05
    slug = "viewpoint-planes" if "sphere" not in grid else "viewpoint-sphere"
    assert (out / "plots" / f"{slug}_confidence.png").exists(), slug


# -- detection -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def det_data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("det")
    imgs = np.zeros((4, 32, 32), np.uint8)
    boxes = []
    for i, (x, y, w, h) in enumerate([(10, 12, 6, 8), (14, 9, 5, 5), (11, 11, 9, 7), (12, 13, 4, 6)]):
        imgs[i, y : y + h, x : x + w] = 255
        boxes.append([x, y, x + w, y + h])
    np.savez(d / "det.npz", images=imgs, boxes=np.array(boxes, np.float32), box_labels=np.zeros(4, np.int64))
    return d / "det.npz"


def test_exact_detector_under_shift_and_scale(det_data, tmp_path):
    out = tmp_path / "run"
    cli("evaluate", f"{FIX}:blob_detector", "--task", "detection", "--data", det_data, "--group", "shift:extent=4,step=2",
        "--group", "rotation:step=90", "--out", out, "--quiet", "--plot-samples", "worst:1")
    t = pd.read_csv(out / "results.csv")
    assert np.allclose(t["iou"], 1.0) and np.allclose(t["equivariance_error"], 0.0, atol=1e-9)
    assert (t["f1"] == 1.0).all() and t["correct"].all()
    assert np.allclose(t["conf_iou"], t["confidence"] * t["iou"])
    s = json.loads((out / "summary.json").read_text())["metrics"]["blob_detector"]["shift"]
    assert s["orbit_iou"] == pytest.approx(1.0) and s["orbit_f1"] == 1.0


def test_detection_consensus_without_boxes(det_data, tmp_path):
    z = np.load(det_data)
    np.savez(tmp_path / "nobox.npz", images=z["images"])
    out = tmp_path / "run"
    cli("evaluate", f"{FIX}:blob_detector", "--task", "detection", "--data", tmp_path / "nobox.npz",
        "--group", "shift:extent=2,step=1", "--out", out, "--quiet", "--no-plots")
    t = pd.read_csv(out / "results.csv")
    assert np.allclose(t["iou"], 1.0)  # an exactly equivariant detector agrees with its own consensus
