"""The resampling floor, the excess over it, coverage and antialiasing, against independent checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nero_cli
import orbits
import sample_models
from nero_cli.resampling import coverage, in_frame
from tests.fixtures.equivariant_models import GroupAveraged, RingClassifier


def _at(table, angle):
    return table[table["angle"] == angle]


def test_floor_explains_the_invariant_model_at_45_degrees_but_not_the_plain_cnn():
    """A model invariant under continuous rotation (ring means) moves at 45° only because of
    resampling: its error stays within the floor. The plain CNN's error is far above it."""
    ring, _ = nero_cli.evaluate(RingClassifier(), "sample:mnist500", "rotation:step=45", limit=100, device="cpu")
    cnn, _ = nero_cli.evaluate(sample_models.build_sample("mnist-cnn"), "sample:mnist500", "rotation:step=45",
                               limit=100, device="cpu")
    r, c = _at(ring, 45), _at(cnn, 45)
    assert r["equivariance_error"].mean() > 0.01  # resampling does move it ...
    assert r["equivariance_error"].mean() <= 1.2 * r["floor"].mean()  # ... by no more than the floor
    assert r["excess_equivariance_error"].mean() < 0.3 * r["equivariance_error"].mean()
    assert c["excess_equivariance_error"].mean() > 20 * c["floor"].mean()  # the CNN's error is its own
    assert c["excess_equivariance_error"].mean() > 10 * r["excess_equivariance_error"].mean()


def test_floor_is_zero_on_exact_elements_and_c4_averaging_is_exact_at_quarter_turns():
    c4 = GroupAveraged(sample_models.build_sample("mnist-cnn"))
    t, s = nero_cli.evaluate(c4, "sample:mnist500", "rotation:step=45", limit=40, device="cpu")
    quarter = t[t["angle"] % 90 == 0]
    assert (quarter["floor"] == 0).all() and quarter["equivariance_error"].max() < 1e-6
    assert _at(t, 45)["floor"].min() > 0  # 45° resamples
    row = s["metrics"]["GroupAveraged"]["rotation"]
    assert row["equivariance_error_floor"] == pytest.approx(t["floor"].mean())
    assert row["excess_equivariance_error"] == pytest.approx(t["excess_equivariance_error"].mean())


def test_excess_is_the_error_above_the_floor_row_by_row():
    t, _ = nero_cli.evaluate(RingClassifier(), "sample:mnist500", "scale:start=0.8,stop=1.2,step=0.1", limit=20,
                             device="cpu")
    want = np.maximum(t["equivariance_error"] - t["floor"], 0)
    assert np.allclose(t["excess_equivariance_error"], want, atol=1e-8)


def test_coverage_hand_computed():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 0, 2] = 1.0  # one bright pixel on the top row, background 0
    spec = orbits.parse_spec("shift:extent=1,step=1", image_size=(5, 5))
    cov = coverage(x, spec, (5, 5))[:, 0]
    dy = spec.group.elements[:, 1]
    assert cov[dy == -1].tolist() == [0.0, 0.0, 0.0]  # moved up: out of frame
    assert cov[dy >= 0].tolist() == [1.0] * 6
    flat = torch.full((1, 1, 5, 5), 0.3)  # no content above the background
    assert coverage(flat, spec, (5, 5)).eq(1).all()
    kept = in_frame(spec, (5, 5))  # what a sweep keeps per orbit gives the same shares
    assert torch.equal(coverage(x, spec, (5, 5), kept)[:, 0], cov)


def test_rotation_keeps_centred_digits_and_shifts_lose_them():
    t, s = nero_cli.evaluate(RingClassifier(), "sample:mnist500", ["rotation:step=90", "shift:extent=12,step=12"],
                             limit=20, device="cpu")
    m = s["metrics"]["RingClassifier"]
    assert m["rotation"]["coverage"] > 0.99 and m["shift"]["min_coverage"] < 0.6


def test_antialias_is_exact_on_exact_elements_and_averages_sub_pixel_samples():
    x = torch.rand(2, 1, 12, 12)
    one = orbits.parse_spec("rotation:step=45", image_size=(12, 12)).input_action("image", (12, 12))
    three = orbits.parse_spec("rotation:step=45,antialias=3", image_size=(12, 12)).input_action("image", (12, 12))
    a, b = one(x, range(8)), three(x, range(8))
    assert torch.equal(a[::2], b[::2])  # quarter turns are gathered, never resampled
    assert not torch.allclose(a[1], b[1])
    # antialias=3 at 45° equals the mean of the 3x3 sub-pixel samples, computed here independently
    m = torch.linalg.inv(orbits.planar_matrices(one.group, (12, 12))[1])
    sub = (torch.arange(36, dtype=torch.float64) + 0.5) / 3 - 0.5
    ys, xs = torch.meshgrid(sub, sub, indexing="ij")
    src = m[:2, :2] @ torch.stack([xs.flatten(), ys.flatten()]) + m[:2, 2:]
    grid = torch.stack([(2 * src[0] + 1) / 12 - 1, (2 * src[1] + 1) / 12 - 1], -1).reshape(1, 36, 36, 2).float()
    hi = torch.nn.functional.grid_sample(x, grid.expand(2, -1, -1, -1), align_corners=False)
    assert torch.allclose(b[1], torch.nn.functional.avg_pool2d(hi, 3), atol=1e-6)


def test_a_c8_steerable_network_is_exact_at_quarter_turns_and_within_the_floor_at_45_degrees():
    """Built as e2cnn/escnn build C8 networks (a rotated filter bank, group pooling): the floor
    separates it from the plain CNN at 45°, as it separates the ring model."""
    from tests.fixtures.equivariant_models import C8Lifting

    t, _ = nero_cli.evaluate(C8Lifting(), "sample:mnist500", "rotation:step=45", limit=100, device="cpu")
    assert t.loc[t["angle"] % 90 == 0, "equivariance_error"].max() < 1e-5
    r = _at(t, 45)
    assert r["equivariance_error"].mean() > 0.002
    assert r["excess_equivariance_error"].mean() < 0.3 * r["equivariance_error"].mean()
    cnn, _ = nero_cli.evaluate(sample_models.build_sample("mnist-cnn"), "sample:mnist500", "rotation:step=45",
                               limit=100, device="cpu")
    assert _at(cnn, 45)["excess_equivariance_error"].mean() > 50 * r["excess_equivariance_error"].mean()


def test_the_gate_checks_the_error_above_the_floor(tmp_path):
    from typer.testing import CliRunner

    from nero_cli.cli import app

    runner = CliRunner()
    out = tmp_path / "run"
    r = runner.invoke(app, ["evaluate", "sample:mnist-c4", "--data", "sample:mnist500", "--sample", "30", "-g",
                            "rotation:step=90", "--out", str(out), "-q", "--no-cache", "--plot-samples", "none"])
    assert r.exit_code == 0, r.stderr
    assert runner.invoke(app, ["gate", str(out), "--check", "max-excess-equivariance-error=1e-5"]).exit_code == 0
    r = runner.invoke(app, ["gate", str(out), "--check", "min-coverage=1.01"])
    assert r.exit_code == 1


def test_no_floor_skips_the_round_trips_and_leaves_the_floor_unknown(tmp_path):
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from nero_cli.cli import app

    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["evaluate", "sample:mnist-cnn", "--data", "sample:mnist500", "--sample", "20", "-g",
                                 "rotation:step=45", "--out", str(out), "-q", "--no-cache", "--no-floor",
                                 "--plot-samples", "none"])
    assert r.exit_code == 0, r.stderr
    t = pd.read_csv(out / "results.csv")
    assert t["floor"].isna().all() and t["equivariance_error"].notna().all() and t["coverage"].notna().all()
    s = json.loads((out / "summary.json").read_text())["metrics"]["mnist-cnn"]["rotation"]
    assert s["equivariance_error_floor"] is None and s["excess_equivariance_error"] is None
    assert json.loads((out / "run.json").read_text())["options"]["floor"] is False
