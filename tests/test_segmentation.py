"""Semantic segmentation: hand-computed metrics, pointwise models exact on exact elements, the sample model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import nero_cli
from nero_cli.cli import app
from nero_cli.tasks import TASKS, Chunk
from nero_cli.tasks.base import scored_columns
from nero_cli.tasks.segmentation import IGNORE, score_probs
from orbits import parse_spec

SEG = TASKS["segmentation"]


class Threshold(torch.nn.Module):
    """Pointwise: class 1 where the pixel is above 0.5 (a per-pixel threshold, like a 1x1 convolution)."""

    def forward(self, x):
        return torch.cat([0.5 - x, x - 0.5], 1) * 20


class Ramp(Threshold):
    """Not equivariant: the threshold depends on the column."""

    def forward(self, x):
        ramp = torch.linspace(-0.3, 0.3, x.shape[-1]).view(1, 1, 1, -1)
        return super().forward(x + ramp)


def _data(n=4, size=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, size, size, generator=g).numpy().astype(np.float32)
    return {"images": images, "masks": (images > 0.5).astype(np.int64),
            "class_names": np.array(["background", "ink"])}


def _chunk(spec_text, reference, masks):
    spec = parse_spec(spec_text, image_size=(2, 2))
    group = spec.group.with_identity()
    spec = type(spec)(text=spec.text, group=group, action=spec.action, action_defaults=spec.action_defaults)
    return Chunk(identity=group.identity_index, reference=reference, labels=None, targets={"masks": masks},
                 output=spec.output_type("scalar_field", (2, 2)), spec=spec)


def test_metrics_hand_computed_on_a_2x2_image():
    # one sample, d4's 8 elements all valid on a square image; probabilities for 2 classes
    masks = torch.tensor([[[0, 1], [1, IGNORE]]])
    chunk = _chunk("d4", "labels", masks)
    p = torch.zeros(8, 1, 2, 2, 2, dtype=torch.float64)
    p[:, :, 0] = 1.0  # every element predicts class 0 everywhere ...
    p[3, 0, :, 0, 0], p[3, 0, :, 0, 1] = torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0])  # ... but element 3 flips the top row
    cols = scored_columns(SEG, score_probs(p, chunk), resampling=False)
    # identity: labels [[0,0],[0,0]] vs mask [[0,1],[1,-]]: 1 of 3 scored pixels right
    assert cols["pixel_accuracy"][0] == pytest.approx(1 / 3)
    # element 3: labels [[1,1],[0,0]]: right at (0,1) only -> 1/3; IoU class 0: {(1,0)?} ...
    assert cols["pixel_accuracy"][3] == pytest.approx(1 / 3)
    # identity mean IoU: class 0 inter 1 union 3 -> 1/3, class 1 inter 0 union 2 -> 0; mean 1/6
    assert cols["mean_iou"][0] == pytest.approx(1 / 6)
    # element 3 differs from the identity on 2 of 4 valid pixels
    assert cols["equivariance_error"][3] == pytest.approx(0.5) and cols["equivariance_error"][0] == 0
    # relative L2: |diff| = sqrt(4 * 1) ... of 2 flipped pixels (each (−1, +1)) over |p_id| = sqrt(4)
    assert cols["probability_error"][3] == pytest.approx(1.0)


def test_consensus_is_the_per_pixel_majority_vote():
    chunk = _chunk("d4", "consensus", torch.zeros(1, 2, 2, dtype=torch.long))
    p = torch.zeros(8, 1, 2, 2, 2, dtype=torch.float64)
    p[:5, :, 1] = 1.0  # 5 of 8 elements say class 1 everywhere
    p[5:, :, 0] = 1.0
    ctx = score_probs(p, chunk)
    assert ctx["ref"].tolist() == [[[1, 1], [1, 1]]]
    assert scored_columns(SEG, ctx, resampling=False)["pixel_accuracy"].tolist() == [1.0] * 5 + [0.0] * 3


@pytest.mark.parametrize("group", ["d4", "rotation:step=90", "shift:extent=3,step=1"])
def test_pointwise_model_scores_exactly_zero_on_exact_elements(group):
    table, summary = nero_cli.evaluate(Threshold(), _data(), group, task="segmentation", device="cpu")
    assert (table["equivariance_error"] == 0).all() and (table["probability_error"] == 0).all()
    assert (table["pixel_accuracy"] == 1).all()  # masks follow the same rule, compared on the valid region


def test_position_dependent_model_is_caught():
    table, _ = nero_cli.evaluate(Ramp(), _data(), "d4", task="segmentation", device="cpu")
    ident = table["identity"]
    assert (table.loc[ident, "equivariance_error"] == 0).all()
    assert table.loc[~ident, "equivariance_error"].max() > 0.05


def test_ignored_pixels_are_not_scored():
    d = _data()
    d["masks"][:, :, :6] = IGNORE  # the left half is ignored ...
    d["images"][:, :, :6] = 0.9  # ... and would be wrong for a background mask
    table, _ = nero_cli.evaluate(Threshold(), d, "d4", task="segmentation", device="cpu")
    assert (table.loc[table["identity"], "pixel_accuracy"] == 1).all()


runner = CliRunner()


def test_bad_masks_and_wrong_output_size_get_one_line(tmp_path):
    d = _data()
    np.savez(tmp_path / "bad.npz", images=d["images"], masks=d["masks"][:, :5])
    r = runner.invoke(app, ["evaluate", "sample:digitseg", "-d", str(tmp_path / "bad.npz"), "-g", "d4",
                            "--out", str(tmp_path / "r1")])
    assert r.exit_code == 4 and "'masks' must be (N, H, W)" in r.stderr
    (tmp_path / "crop.py").write_text("import torch\nclass M(torch.nn.Module):\n"
                                      "    def forward(self, x):\n        return torch.zeros(x.shape[0], 2, 4, 4)\n"
                                      "def build():\n    return M()\n")
    np.savez(tmp_path / "ok.npz", **d)
    r = runner.invoke(app, ["evaluate", f"{tmp_path}/crop.py:build", "-d", str(tmp_path / "ok.npz"), "-g", "d4",
                            "--task", "segmentation", "--out", str(tmp_path / "r2")])
    assert r.exit_code == 3 and "must keep the input's size" in r.stderr
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


@pytest.mark.slow
def test_sample_digitseg_through_the_cli(tmp_path):
    out = tmp_path / "seg"
    r = runner.invoke(app, ["evaluate", "sample:digitseg", "--data", "sample:mnistseg200", "--limit", "40",
                            "-g", "d4", "--out", str(out), "--no-cache", "--plot-samples", "worst:1"])
    assert r.exit_code == 0, r.stderr
    import json

    s = json.loads((out / "summary.json").read_text())["metrics"]["digitseg"]["d4"]
    assert s["mean_iou"] > 0.85 and s["pixel_accuracy"] > 0.97  # upright digits, as trained
    assert s["orbit_mean_iou"] < s["mean_iou"] - 0.2  # trained upright only: turns and flips hurt
    assert any("_error-maps_sample-" in p.name and p.suffix == ".png" for p in (out / "plots").iterdir())


def test_a_mask_ignored_everywhere_is_refused_against_the_labels():
    """Such a sample has no pixel to score: counted, it would score a perfect 1.0 (it did)."""
    from nero_cli.errors import DataError

    d = _data()
    d["masks"][2] = IGNORE
    with pytest.raises(DataError, match=r"masks of 1 sample\(s\) \(2\) are ignored \(255\) everywhere"):
        nero_cli.evaluate(Threshold(), d, "d4", task="segmentation", device="cpu")
    table, _ = nero_cli.evaluate(Threshold(), d, "d4", task="segmentation", device="cpu", reference="consensus")
    assert table["pixel_accuracy"].notna().all()
