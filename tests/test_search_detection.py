"""``nero search`` for detection: known answers for the top box's breaking transformation and worst IoU."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from nero_cli.breaking import search, search_run
from nero_cli.errors import OptionError

SIZE = 64
CENTRE = (SIZE - 1) / 2


def _com(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre of mass ``(cx, cy)`` of each image, in pixel-centre coordinates."""
    m = x.sum(1)  # (N, H, W)
    idx = torch.arange(SIZE, dtype=x.dtype)
    total = m.sum((1, 2))
    return (m.sum(1) * idx).sum(1) / total, (m.sum(2) * idx).sum(1) / total


class CentreBox(nn.Module):
    """One box of side ``side`` centred on the centre of mass (exactly shift-equivariant while the
    content stays in frame: bilinear shifts keep the mass), score 1; class 1 where ``cx > flip_x``
    (``flip_x`` None: always class 0)."""

    def __init__(self, side: float = 10.0, flip_x: float | None = None):
        super().__init__()
        self.side, self.flip_x = side, flip_x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cx, cy = _com(x)
        h = self.side / 2
        cls = (cx > self.flip_x).to(x.dtype) if self.flip_x is not None else torch.zeros_like(cx)
        # pixel-centre coordinates to pixel edges: + 0.5
        row = torch.stack([cx + 0.5 - h, cy + 0.5 - h, cx + 0.5 + h, cy + 0.5 + h, torch.ones_like(cx), cls], 1)
        return row[:, None]


class FixedBox(nn.Module):
    """Always the same box, whatever the input (not equivariant at all)."""

    def __init__(self, box: tuple[float, float, float, float]):
        super().__init__()
        self.box = torch.tensor([*box, 0.9, 3.0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.box.to(x.dtype).expand(len(x), 1, 6).clone()


def blobs(n: int = 3) -> np.ndarray:
    """Gaussian blobs near the centre, at least 20 px from every edge (a shift of up to 12 px keeps them in frame)."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    out = np.zeros((n, 1, SIZE, SIZE), np.float32)
    for i in range(n):
        cx, cy, r = CENTRE - 3 + 2 * i, CENTRE + 1 - i, 2.0 + i
        blob = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * r * r))
        out[i, 0] = blob * (np.hypot(xs - cx, ys - cy) < 3 * r)
    return out


def data(n: int = 3, box: tuple[float, ...] = (26, 26, 38, 38), cls: int = 3) -> dict[str, np.ndarray]:
    return {"images": blobs(n), "boxes": np.tile(np.array(box, np.float32), (n, 1)), "box_labels": np.full(n, cls)}


def test_equivariant_detector_never_breaks_under_shifts():
    t = search(CentreBox(), data(), "shift:extent=12,step=1", task="detection", reference="prediction",
               device="cpu", refine=8)
    assert len(t) == 6 and set(t["axis"]) == {"dx", "dy"}
    assert t["breaking"].isna().all() and t["breaking_param"].isna().all()
    assert np.allclose(t["worst_value"], 1.0, atol=1e-5)  # the mapped-back box is the identity's box
    assert np.allclose(t["identity_value"], 1.0)
    assert (t["prediction"] == 0).all() and (t["label"] == -1).all() and t["correct_at_identity"].isna().all()


def test_class_change_breaks_at_the_known_shift():
    images = blobs()
    flip = 2.37
    cx = _com(torch.from_numpy(images))[0].numpy()
    t = search(CentreBox(flip_x=CENTRE + flip), {"images": images}, "shift:extent=8,step=1", task="detection",
               device="cpu", tol=0.01, refine=0)
    dx, dy = t[t["axis"] == "dx"], t[t["axis"] == "dy"]
    want = CENTRE + flip - cx  # the shift that moves the centre of mass onto flip_x
    assert np.allclose(dx["breaking_param"], want, atol=0.011)
    assert (dx["breaking_param"] >= want - 1e-6).all()  # the bisection keeps a parameter that breaks it
    assert dy["breaking"].isna().all()  # moving vertically never changes cx
    assert (dx["method"].str.contains("IoU<0.5")).all()


def test_box_that_does_not_follow_breaks_at_a_third_of_its_width():
    """A fixed 12-px box mapped back by a shift d: IoU (12 - d) / (12 + d), below 0.5 beyond d = 4;
    its worst IoU with the ground truth (the same box) over ±6 px is 1/3, at the ends."""
    t = search(FixedBox((26, 26, 38, 38)), data(), "shift:extent=6,step=1", task="detection", device="cpu",
               tol=0.01, refine=6)
    assert np.allclose(t["breaking"], 4.0, atol=0.011) and (t["breaking"] >= 4.0).all()
    assert np.allclose(t["identity_value"], 1.0) and (t["label"] == 3).all() and (t["prediction"] == 3).all()
    assert np.allclose(t["worst_value"], 1 / 3) and np.allclose(t["worst_param"].abs(), 6.0)
    assert t["correct_at_identity"].all()
    looser = search(FixedBox((26, 26, 38, 38)), data(), "shift:axis=x,extent=8,step=1", task="detection",
                    device="cpu", tol=0.01, refine=0, iou_threshold=0.25)
    assert np.allclose(looser["breaking"], 7.2, atol=0.011)  # IoU 0.25 at d = 12 * 0.75 / 1.25


def test_box_that_does_not_scale_breaks_at_a_factor_of_root_two():
    """A fixed box centred on the image, mapped back by a scaling s, is the same box scaled by 1/s
    about its centre: IoU 1/s² (s > 1) or s² (s < 1), below 0.5 beyond |log2 s| = 0.5."""
    t = search(FixedBox((26, 26, 38, 38)), data(), "scale:start=0.5,stop=2,step=0.25", task="detection",
               device="cpu", tol=0.001, refine=0)
    assert set(t["axis"]) == {"log2_scale"}
    assert np.allclose(t["breaking"], 0.5, atol=0.0011) and (t["breaking"] >= 0.5 - 1e-9).all()
    assert np.allclose(t["worst_value"], 0.25) and np.allclose(t["worst_param"].abs(), 1.0)  # 0.5x and 2x


def test_wrong_class_scores_zero_iou():
    t = search(FixedBox((26, 26, 38, 38)), data(cls=5), "shift:axis=x,extent=2,step=1", task="detection",
               device="cpu", refine=0)
    assert (t["identity_value"] == 0).all() and (t["worst_value"] == 0).all()
    assert not t["correct_at_identity"].any()
    assert t["breaking"].isna().all()  # the top box never changes within ±2 px: IoU 10/14 > 0.5


def test_rotation_envelope_breaks_where_the_envelope_outgrows_the_threshold():
    """A square box turned by θ is mapped back to its envelope, of side (|cos θ| + |sin θ|) times
    larger: IoU 1 / (cos θ + sin θ)², below 0.6 beyond θ = asin(2/3) / 2 = 20.9 degrees."""
    t = search(CentreBox(side=12), data(), "rotation:step=5", task="detection", reference="prediction",
               device="cpu", tol=0.05, refine=0, iou_threshold=0.6)
    want = math.degrees(math.asin(2 / 3)) / 2
    assert np.allclose(t["breaking"], want, atol=0.5)  # the centre of mass moves by resampling only


def test_refined_worst_never_above_the_grid_for_digitdet():
    values = [search("sample:digitdet", "sample:digits200", "shift:extent=16,step=4", limit=5, device="cpu",
                     refine=r)["worst_value"].to_numpy() for r in (0, 2, 5, 10)]
    for lower, higher in zip(values, values[1:]):
        assert (higher <= lower + 1e-12).all()


def test_batched_equals_one_sample_at_a_time():
    with np.load("sample_models/data/digits_det200.npz") as d:
        arrays = {k: d[k][:3] for k in ("images", "boxes", "box_labels")}
    kw = {"task": "detection", "device": "cpu", "refine": 4}
    together = search("sample:digitdet", arrays, "shift:axis=x,extent=16,step=4", **kw)
    for i in range(3):
        alone = search("sample:digitdet", {k: v[i:i + 1] for k, v in arrays.items()},
                       "shift:axis=x,extent=16,step=4", **kw)
        cols = ["identity_value", "worst_value", "worst_param", "breaking"]
        assert np.allclose(alone[cols].to_numpy(float), together.iloc[[i]][cols].to_numpy(float), atol=1e-5,
                           equal_nan=True)


def test_iou_threshold_refused_where_it_does_not_apply():
    with pytest.raises(OptionError, match="--iou-threshold applies to detection"):
        search("sample:mnist-cnn", "sample:mnist500", "rotation:step=90", limit=2, device="cpu", iou_threshold=0.5)
    with pytest.raises(OptionError, match=r"--iou-threshold must be in \(0, 1\]"):
        search(FixedBox((26, 26, 38, 38)), data(), "shift:extent=1,step=1", task="detection", device="cpu",
               iou_threshold=1.5)


def test_run_folder_with_boxes_drawn(tmp_path):
    out = tmp_path / "run"
    r = search_run(["sample:digitdet"], "sample:digits200", ["shift:extent=16,step=4"], out, limit=6, refine=2,
                   device="cpu", iou_threshold=0.4)
    info = json.loads((out / "run.json").read_text())
    assert info["record"]["primary_quantity"] == "iou" and info["record"]["iou_threshold"] == 0.4
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == info["files"]
    assert {"plots/survival.png", "plots/worst_digitdet_shift_dx.png", "plots/worst_digitdet_shift_dy.png"} <= set(
        info["files"])
    s = json.loads((out / "summary.json").read_text())
    assert s["quantity"] == "iou" and s["reference"] == "labels" and s["task"] == "detection"
    per = s["models"]["digitdet"]["shift/dx"]
    assert per["n_samples"] == 6
    assert per["share_correct_at_identity"] == pytest.approx(float(r.table["correct_at_identity"][:6].mean()))
    assert (r.table["method"].str.contains("IoU<0.4")).all()
    again = tmp_path / "again"
    search_run(["sample:digitdet"], "sample:digits200", ["shift:extent=16,step=4"], again, limit=6, refine=2,
               device="cpu", iou_threshold=0.4, plots=False)
    for name in ("search.csv", "summary.json"):
        assert (out / name).read_bytes() == (again / name).read_bytes()


def test_cli(tmp_path):
    from nero_cli.cli import app

    out = tmp_path / "s"
    res = CliRunner().invoke(app, ["search", "sample:digitdet", "--data", "sample:digits200", "--group",
                                   "shift:axis=x,extent=8,step=4", "--limit", "3", "--device", "cpu", "--no-plots",
                                   "--iou-threshold", "0.5", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "shift/dx" in res.output and "median worst iou" in res.output
