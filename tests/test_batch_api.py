"""Checkpoint sweeps (globs, epoch order), the result cache, and the Python API."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import nero_cli
import sample_models
from nero_cli.checkpoints import epoch_of, expand_models
from nero_cli.cli import app
from nero_cli.testing import assert_orbit_equivariant

runner = CliRunner()


@pytest.mark.parametrize("name,epoch", [
    ("ckpt_epoch_12.pt", 12), ("model-ep3.pt", 3), ("run/step-1000.pt", 1000), ("net_0005.pt", 5),
    ("epoch=7-step=350.ckpt", 350), ("final.pt", None), ("resnet.e20.pt", 20),
])
def test_epoch_of(name, epoch):
    assert epoch_of(name) == epoch


def test_globs_are_ordered_by_epoch(tmp_path):
    for e in (10, 2, 1):
        (tmp_path / f"ckpt_epoch{e}.pt").write_bytes(b"x")
    (tmp_path / "ckpt_epoch2.json").write_text("{}")  # sidecars are not models
    got = expand_models([str(tmp_path / "ckpt_*"), "sample:mnist-cnn"])
    assert [p.rsplit("/", 1)[-1] for p in got[:3]] == ["ckpt_epoch1.pt", "ckpt_epoch2.pt", "ckpt_epoch10.pt"]
    assert got[3] == "sample:mnist-cnn"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpts")
    base = sample_models.build_sample("mnist-cnn")
    aug = sample_models.build_sample("mnist-cnn-aug")
    for e, m in ((1, base), (3, aug)):
        torch.jit.save(torch.jit.script(m), d / f"cnn_epoch{e}.pt")
    return d


def test_sweep_then_cache_skips_unchanged_work(sweep, tmp_path, monkeypatch):
    monkeypatch.setenv("NERO_CACHE_DIR", str(tmp_path / "cache"))
    args = ["evaluate", str(sweep / "cnn_epoch*.pt"), "--data", "sample:mnist500", "--limit", "20",
            "-g", "rotation:step=90", "-q", "--no-plots"]
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.stderr
    info = json.loads((tmp_path / "a" / "run.json").read_text())
    assert [m["name"] for m in info["models"]] == ["cnn_epoch1", "cnn_epoch3"]
    assert info["cache"] == {"hits": 0, "misses": 2}
    # a third checkpoint appears: only it is evaluated
    torch.jit.save(torch.jit.script(sample_models.build_sample("mnist-cnn")), sweep / "cnn_epoch2.pt")
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.stderr
    info = json.loads((tmp_path / "b" / "run.json").read_text())
    assert [m["name"] for m in info["models"]] == ["cnn_epoch1", "cnn_epoch2", "cnn_epoch3"]
    assert info["cache"] == {"hits": 2, "misses": 1}
    a, b = pd.read_csv(tmp_path / "a" / "results.csv"), pd.read_csv(tmp_path / "b" / "results.csv")
    pd.testing.assert_frame_equal(a, b[b["model"] != "cnn_epoch2"].reset_index(drop=True))
    # --no-cache evaluates everything again and gives the same table
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "c"), "--no-cache"])
    assert r.exit_code == 0, r.stderr
    assert json.loads((tmp_path / "c" / "run.json").read_text())["cache"] is None
    pd.testing.assert_frame_equal(b, pd.read_csv(tmp_path / "c" / "results.csv"))
    (sweep / "cnn_epoch2.pt").unlink()


def test_glob_without_match(tmp_path):
    r = runner.invoke(app, ["evaluate", str(tmp_path / "*.pt"), "--data", "sample:mnist500", "-g", "rotation",
                            "--out", str(tmp_path / "run")])
    assert r.exit_code == 3 and "matches no checkpoint" in r.stderr


def test_python_api_with_modules_and_arrays():
    z = np.load(sample_models.data_path("mnist500"))
    c4 = sample_models.build_sample("mnist-c4")
    table, summary = nero_cli.evaluate([c4, sample_models.build_sample("mnist-cnn")], z["images"][::50],
                                       "rotation:step=90", labels=z["labels"][::50], names=["c4", "plain"])
    assert set(table["model"]) == {"c4", "plain"} and len(table) == 2 * 10 * 4
    assert summary["metrics"]["c4"]["rotation"]["max_equivariance_error"] < 1e-6
    assert summary["metrics"]["plain"]["rotation"]["equivariance_error"] > 0.1


def test_assert_orbit_equivariant_names_the_worst_element():
    z = np.load(sample_models.data_path("mnist500"))
    images = z["images"][::50]
    assert_orbit_equivariant(sample_models.build_sample("mnist-c4"), "rotation:step=90", images, tol=1e-6)
    with pytest.raises(AssertionError, match=r"worst element \d+ \(angle=(90|180|270)\) on sample \d+ has equivariance_error"):
        assert_orbit_equivariant(sample_models.build_sample("mnist-cnn"), "rotation:step=90", images)


def test_one_group_string_is_one_group_in_every_entry(tmp_path):
    """evaluate_run / search_run with groups as one string: one group, not one per character."""
    from nero_cli.breaking import search_run

    res = nero_cli.evaluate_run(["sample:mnist-cnn"], "sample:mnist500", "rotation:step=90", tmp_path / "run",
                                limit=2, plots=False, floor=False)
    assert list(res.summary["metrics"]["mnist-cnn"]) == ["rotation"]
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["options"]["groups"] == ["rotation:step=90"] and list(info["groups"]) == ["rotation"]
    s = search_run(["sample:mnist-cnn"], "sample:mnist500", "rotation:step=90", tmp_path / "search", limit=2, plots=False)
    assert json.loads((tmp_path / "search" / "run.json").read_text())["options"]["groups"] == ["rotation:step=90"]
    assert len(s.table) == 2


def test_evaluate_run_takes_arrays_as_evaluate_does(tmp_path):
    """In-memory data (an array, a dict of arrays) writes the same rows as the same data in a file."""
    d = np.load(sample_models.data_path("mnist500"))
    images, labels = d["images"][:4], d["labels"][:4]
    np.savez(tmp_path / "four.npz", images=images, labels=labels)
    args = dict(plots=False, floor=False)
    nero_cli.evaluate_run(["sample:mnist-cnn"], str(tmp_path / "four.npz"), "rotation:step=90", tmp_path / "f", **args)
    nero_cli.evaluate_run(["sample:mnist-cnn"], {"images": images, "labels": labels}, "rotation:step=90",
                          tmp_path / "a", **args)
    assert (tmp_path / "a" / "results.csv").read_bytes() == (tmp_path / "f" / "results.csv").read_bytes()
    nero_cli.evaluate_run(["sample:mnist-cnn"], images, "rotation:step=90", tmp_path / "u", reference="consensus", **args)
    assert len(pd.read_csv(tmp_path / "u" / "results.csv")) == 16
