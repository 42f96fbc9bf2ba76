"""``nero search``: known answers for the worst element and the smallest breaking transformation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import sample_models
from nero_cli.errors import OptionError, OutputError
from nero_cli.breaking import axes_for, search, search_run
from orbits import parse_spec
from tests.fixtures.equivariant_models import GroupAveraged

SIZE = 28
CENTRE = (SIZE - 1) / 2


class CentreOfMassX(nn.Module):
    """Logits from the horizontal centre of mass ``cx`` (pixels): ``[a (cx - m)², 1]`` with
    ``quadratic``, else ``[0, cx - m]`` (class 1 exactly when ``cx > m``)."""

    def __init__(self, m: float, quadratic: bool = False):
        super().__init__()
        self.m, self.quadratic = m, quadratic

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.sum((1, 2))  # (N, W)
        cx = (w * torch.arange(x.shape[-1], dtype=x.dtype)).sum(1) / w.sum(1)
        d = cx - self.m
        if self.quadratic:
            return torch.stack([d * d, torch.ones_like(d)], 1)
        return torch.stack([torch.zeros_like(d), d], 1)


def blobs(n: int = 4) -> np.ndarray:
    """Symmetric blobs about the image centre (centre of mass exactly at ``CENTRE``), well inside the frame."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE] - CENTRE
    out = np.zeros((n, 1, SIZE, SIZE), np.float32)
    for i in range(n):
        r = 2.5 + i
        out[i, 0] = np.exp(-(xs**2 + ys**2) / (2 * r * r * 0.25)) * (np.abs(xs) < r + 1) * (np.abs(ys) < r + 1)
    return out


def test_breaking_equals_the_known_threshold_under_shift():
    images = blobs()
    flip = 2.37
    t = search(CentreOfMassX(CENTRE + flip), images, "shift:extent=6,step=1", labels=np.zeros(4, int),
               device="cpu", tol=0.01)
    dx, dy = t[t["axis"] == "dx"], t[t["axis"] == "dy"]
    assert (dx["prediction"] == 0).all()
    assert np.allclose(dx["breaking_param"], flip, atol=0.01)
    assert (dx["breaking"] >= flip - 1e-9).all()  # the bisection keeps a parameter that breaks it
    assert dy["breaking"].isna().all()  # moving vertically never changes cx


def test_refinement_finds_an_off_grid_worst_element():
    images = blobs()
    t = search(CentreOfMassX(CENTRE + 2.3, quadratic=True), images, "shift:axis=x,extent=6,step=1",
               labels=np.zeros(4, int), device="cpu", refine=14)
    assert np.allclose(t["worst_param"], 2.3, atol=0.02)
    assert np.allclose(t["worst_value"], 1 / (1 + np.e), atol=1e-4)  # softmax([0, 1])[0] at cx = m
    grid_only = search(CentreOfMassX(CENTRE + 2.3, quadratic=True), images, "shift:axis=x,extent=6,step=1",
                       labels=np.zeros(4, int), device="cpu", refine=0)
    assert (t["worst_value"].to_numpy() < grid_only["worst_value"].to_numpy() - 1e-3).all()


def test_refined_worst_never_above_the_worst_grid_point():
    """The golden-section steps are a prefix-closed sequence after the grid, and the lowest value
    seen is kept: more budget never gives a higher worst confidence, and never one above the grid's."""
    cnn = sample_models.build_sample("mnist-cnn")
    values = [search(cnn, "sample:mnist500", "rotation:step=30", limit=6, device="cpu", refine=r)["worst_value"]
              .to_numpy() for r in (0, 2, 5, 10)]
    for lower, higher in zip(values, values[1:]):
        assert (higher <= lower + 1e-12).all()
    assert (values[-1] < values[0]).any()  # refinement does find lower values


def _c4_model() -> nn.Module:
    return GroupAveraged(sample_models.build_sample("mnist-cnn"))


def test_c4_model_is_never_broken_by_quarter_turns():
    t = search(_c4_model(), "sample:mnist500", "rotation:step=90", limit=10, device="cpu", refine=0)
    assert t["breaking"].isna().all()
    assert np.allclose(t["worst_value"], t["identity_value"], atol=1e-6)


@pytest.mark.slow
def test_c4_breaking_angles_are_a_property_of_the_model():
    """Two searches with different grids and tolerances agree within their tolerances, and no
    breaking angle exceeds 45 degrees (a C4-invariant model unchanged over [-45, 45] never changes)."""
    model = _c4_model()
    a = search(model, "sample:mnist500", "rotation:step=5", sample=40, device="cpu", refine=0, tol=0.1)
    b = search(model, "sample:mnist500", "rotation:step=9", sample=40, device="cpu", refine=0, tol=0.03)
    assert (a["breaking"].isna() == b["breaking"].isna()).all()
    broken = a["breaking"].notna()
    assert broken.any()
    assert np.allclose(a["breaking_param"][broken], b["breaking_param"][broken], atol=0.1)
    assert (a["breaking"][broken] <= 45 + 0.1).all()


def test_batched_equals_one_sample_at_a_time():
    cnn = sample_models.build_sample("mnist-cnn")
    with np.load(sample_models.data_path("mnist500")) as d:
        images, labels = d["images"][:4], d["labels"][:4]
    together = search(cnn, images, "rotation:step=45", labels=labels, device="cpu", refine=4)
    cols = ["worst_value", "breaking"]  # batched convolutions differ in the last bits: ±180° may swap
    for i in range(4):
        alone = search(cnn, images[i:i + 1], "rotation:step=45", labels=labels[i:i + 1], device="cpu", refine=4)
        assert np.allclose(alone[cols].to_numpy(float), together.iloc[[i]][cols].to_numpy(float), atol=1e-5,
                           equal_nan=True)
        turn = (alone["worst_param"].iloc[0] - together["worst_param"].iloc[i]) % 360
        assert min(turn, 360 - turn) < 1e-6


def test_axes_of_each_group():
    def axes(text):
        return {a.name: a.grid for a in axes_for(parse_spec(text, (SIZE, SIZE)))}

    rot = axes("rotation:step=5")["angle"]
    assert rot[0] == -180 and rot[-1] == 180 and len(rot) == 73 and 0 in rot
    assert list(axes("shift:extent=2,step=1")) == ["dx", "dy"]
    assert list(axes("shift:axis=y,extent=2,step=1")) == ["dy"]
    sc = axes("scale:start=0.5,stop=2,step=0.5")["log2_scale"]
    assert np.allclose(sc, np.log2([0.5, 1, 1.5, 2]))
    assert set(axes("perspective:extent=20,step=10")) == {"yaw", "pitch"}


def test_python_api_returns_a_dataframe():
    import nero_cli
    import nero_cli.breaking  # noqa: F401  (importing the module leaves nero_cli.search the function)

    t = nero_cli.search(CentreOfMassX(CENTRE + 2.37), blobs(2), "shift:axis=x,extent=3,step=1",
                        labels=np.zeros(2, int), device="cpu", refine=0)
    assert list(t.columns)[:8] == ["model", "sample", "label", "prediction", "group", "axis", "identity_value",
                                   "worst_param"]
    assert len(t) == 2


def test_unsearchable_group_and_task_are_refused():
    with pytest.raises(OptionError, match="d4"):
        search(CentreOfMassX(CENTRE), blobs(2), "d4", labels=np.zeros(2, int), device="cpu")
    with pytest.raises(OptionError, match="image classification"):
        search(sample_models.build_sample("mnist-cnn"), "sample:mnist500", "rotation", task="segmentation",
               limit=2, device="cpu")


def test_run_folder(tmp_path):
    out = tmp_path / "run"
    r = search_run([CentreOfMassX(CENTRE + 2.37)], blobs(), ["shift:extent=4,step=1"], out,
                   labels=np.zeros(4, int), device="cpu", refine=3)
    info = json.loads((out / "run.json").read_text())
    assert info["written_by"] == "nero" and info["status"] == "complete" and info["kind"] == "search"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == info["files"]
    assert "search.csv" in info["files"] and "plots/survival.png" in info["files"]
    assert any(f.startswith("plots/worst_") for f in info["files"])
    assert info["record"]["axes"]["shift/dx"]["tol"] == 0.05
    s = json.loads((out / "summary.json").read_text())["models"]["CentreOfMassX"]
    assert s["shift/dx"]["median_breaking"] == pytest.approx(2.37, abs=0.05)
    assert s["shift/dy"]["share_never_broken"] == 1.0 and s["shift/dy"]["median_breaking"] is None
    assert len(r.table) == 8
    with pytest.raises(OutputError, match="--overwrite"):
        search_run([CentreOfMassX(CENTRE)], blobs(), ["shift"], out, labels=np.zeros(4, int), device="cpu")


def test_cli(tmp_path):
    from nero_cli.cli import app

    out = tmp_path / "s"
    res = CliRunner().invoke(app, ["search", "sample:mnist-cnn", "--data", "sample:mnist500", "--group",
                                   "rotation:step=90", "--limit", "3", "--device", "cpu", "--no-plots", "--out",
                                   str(out)])
    assert res.exit_code == 0, res.output
    assert "rotation/angle" in res.output and (out / "search.csv").is_file()
    bad = CliRunner().invoke(app, ["search", "sample:mnist-cnn", "--data", "sample:mnist500", "--group", "d4",
                                   "--out", str(tmp_path / "t")])
    assert bad.exit_code == 2



def test_gate_says_plainly_that_it_does_not_read_search_runs(tmp_path):
    from nero_cli.errors import OutputError
    from nero_cli.runrecord import open_run

    out = tmp_path / "s"
    search_run(["sample:mnist-cnn"], "sample:mnist500", ["rotation:step=90"], out, limit=4, plots=False)
    with pytest.raises(OutputError, match="holds a 'nero search' run"):
        open_run(out)


def _cli(*args):
    from nero_cli.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("tol", ["0", "-1", "nan", "inf", "-inf"])
def test_tol_must_be_a_positive_finite_number(tmp_path, tol):
    """--tol 0 bisected forever; nan and inf crashed writing run.json (exit 70): a usage error first."""
    r = _cli("search", "sample:mnist-cnn", "--data", "sample:mnist500", "--limit", "3", "-g", "rotation:step=90",
             "--tol", tol, "--no-plots", "--out", tmp_path / "sx")
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "--tol must be a positive number" in lines[0] and "Traceback" not in r.output
    assert not (tmp_path / "sx").exists()
    with pytest.raises(OptionError, match="--tol"):
        search(CentreOfMassX(CENTRE), blobs(2), "shift:extent=2,step=1", labels=np.zeros(2, int), device="cpu",
               tol=float(tol))


@pytest.mark.parametrize("spec", ["shift:extent=0", "scale:start=1,stop=1", "rotation:step=360"])
def test_a_grid_of_the_identity_alone_is_a_usage_error(tmp_path, spec):
    """As nero layers says it: nothing to search along (was exit 70, 'No objects to concatenate')."""
    with pytest.raises(OptionError, match="holds only the identity"):
        search(CentreOfMassX(CENTRE), blobs(2), spec, labels=np.zeros(2, int), device="cpu")
    r = _cli("search", "sample:mnist-cnn", "--data", "sample:mnist500", "--limit", "2", "-g", spec, "--no-plots",
             "--out", tmp_path / "s")
    assert r.exit_code == 2 and "holds only the identity" in r.output and "Traceback" not in r.output, r.output


def test_median_breaking_is_the_usual_median():
    """The mean of the two middle values (as numpy's median), never-broken samples beyond the range."""
    from nero_cli.breaking import summarise

    def median(breaking):
        n = len(breaking)
        t = pd.DataFrame({"model": "m", "group": "shift", "axis": "dx", "breaking": breaking,
                          "worst_value": np.zeros(n), "correct_at_identity": pd.array([True] * n, dtype="boolean")})
        return summarise(t)["m"]["shift/dx"]["median_breaking"]

    assert median([1.0, 2.0, 3.0, 4.0]) == pytest.approx(np.median([1.0, 2.0, 3.0, 4.0])) == 2.5
    assert median([4.0, 1.0, 3.0]) == 3.0
    assert median([1.0, 2.0, 3.0, np.nan]) == 2.5
    assert median([1.0, 2.0, np.nan, np.nan]) is None  # the upper middle value lies beyond the range
