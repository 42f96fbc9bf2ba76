"""``nero plot RUN``, the choice of samples for individual plots, and ``nero list groups``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from nero_cli.cli import app
from nero_cli.errors import OptionError
from nero_cli.group_list import groups_overview
from nero_cli.plot_samples import DEFAULT, parse_plot_samples, pick_samples, spread_ranking
from tests.fixtures.old_runs import strip_vectors

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


# ------------------------------------------------------------------------------------------- choosing samples


def _table(values: dict[int, dict[str, list[float]]]) -> pd.DataFrame:
    """Results rows: per sample, per model, the value at each element of one group."""
    rows = [{"model": m, "sample": s, "group": "rotation", "element": e, "confidence": v}
            for s, per_model in values.items() for m, vs in per_model.items() for e, v in enumerate(vs)]
    return pd.DataFrame(rows)


HAND = _table({
    0: {"a": [0.0, 0.0], "b": [0.0, 0.0], "c": [0.0, 0.0]},    # worst (mean 0), models agree
    1: {"a": [0.1, 0.1], "b": [0.9, 0.9], "c": [0.5, 0.5]},    # spread 0.8
    2: {"a": [0.4, 0.6], "b": [0.45, 0.45], "c": [0.5, 0.5]},  # spreads 0.1 and 0.15: 0.125
    3: {"a": [1.0, 1.0], "b": [1.0, 1.0], "c": [1.0, 1.0]},    # best, models agree
    4: {"a": [0.0, 0.0], "b": [1.0, 1.0], "c": [1.0, 1.0]},    # spread 1.0
})


def _pick(text: str, table: pd.DataFrame = HAND, higher_is_better: bool = True) -> list[int]:
    return pick_samples(table, "confidence", higher_is_better, parse_plot_samples(text))


def test_samples_where_models_differ_are_chosen_besides_the_worst():
    assert DEFAULT == "worst:1,spread:2"
    assert spread_ranking(HAND, "confidence") == [4, 1, 2, 0, 3]
    assert _pick(DEFAULT) == [0, 4, 1]
    assert _pick("worst:3") == [0, 2, 1]  # means 0, 0.483, 0.5: every model near 0 first
    assert _pick("best:1,spread:1") == [3, 4]
    assert _pick("spread:2,4") == [4, 1]  # each sample once
    assert _pick("4,spread:1") == [4, 1]
    assert _pick("worst:1", higher_is_better=False) == [3]  # an error metric: the highest is the worst
    assert _pick("none") == [] and _pick("") == []
    # one model: the spread over the sample's own orbit
    assert _pick("spread:1", HAND[HAND["model"] == "a"]) == [2]
    # missing values count as no spread
    nan = HAND.copy()
    nan.loc[nan["sample"] == 4, "confidence"] = np.nan
    assert spread_ranking(nan, "confidence")[:2] == [1, 2] and spread_ranking(nan, "confidence")[-1] == 4


def test_sample_picks_are_parsed_strictly():
    assert parse_plot_samples("worst:1, spread:2 ,17") == [("worst", 1), ("spread", 2), 17]
    for bad in ("wrost:2", "spread:x", "3,a", "worst:-1", "spread"):
        with pytest.raises(OptionError, match="--plot-samples expects a comma list of worst:K"):
            parse_plot_samples(bad)
    with pytest.raises(OptionError, match="--samples expects"):
        parse_plot_samples("x", "--samples")
    with pytest.raises(OptionError, match=r"sample id\(s\) \[99\] are not in the evaluated data \(ids 0..4\)"):
        _pick("1,99")


# ------------------------------------------------------------------------------------------- nero list groups


EXPECTED_KINDS = {"rotation": ["polar"], "shift": ["heatmap"], "scale": ["curve"], "d4": ["mosaic"],
                  "d4t": ["mosaic"], "perspective": ["heatmap"], "viewpoint": ["disks", "sphere"]}


def test_list_groups_shows_the_real_plot_kinds_and_no_empty_table():
    overview = {g["name"]: g for g in groups_overview()}
    assert set(overview) == set(EXPECTED_KINDS)
    for name, kinds in EXPECTED_KINDS.items():
        assert [part.split(" over ")[0] for part in overview[name]["plot"].split("; ")] == kinds
    assert overview["viewpoint"]["plot"].startswith("disks over plane of the axis, axis angle (\u00b0), rotation angle (\u00b0) "
                                                    "with grid=planes; sphere over axis longitude (\u00b0)")
    assert overview["perspective"]["plot"] == "heatmap over yaw (\u00b0), pitch (\u00b0)"
    assert overview["shift"]["plot"] == "heatmap over dx (px, right), dy (px, down)"
    for name in ("d4", "d4t"):
        (row,) = overview[name]["rows"]
        n = 8 if name == "d4" else 16
        assert row[0] == "(none)" and f"{n} elements: rot0, rot90, rot180, rot270, flip\u00b7rot0" in row[2]
    assert "flip\u00b7rot270\u00b7T" in overview["d4t"]["rows"][0][2]
    r = run("list", "groups")
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "plot: disks over" in text and "sphere over" in text and "(plot: curve)" not in text
    assert "no keys: the grid is fixed, 8 elements: rot0, rot90" in text


# ------------------------------------------------------------------------------------------- nero plot RUN


EVAL = ("evaluate", "sample:mnist-cnn", "sample:mnist-c4", "--data", "sample:mnist500", "--limit", "16",
        "--group", "rotation:step=90", "--group", "rotation:step=45", "--group", "shift:extent=2,step=2", "--quiet")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("replot")
    with_plots, without = root / "with", root / "without"
    r = run(*EVAL, "--out", with_plots)
    assert r.exit_code == 0, r.output
    r = run(*EVAL, "--out", without, "--no-plots")
    assert r.exit_code == 0, r.output
    assert not (without / "plots").exists()
    return {"root": root, "with": with_plots, "without": without}


@pytest.mark.slow
def test_nero_plot_redraws_the_plots_of_evaluate_byte_for_byte(runs):
    out = runs["root"] / "redrawn"
    r = run("plot", runs["without"], "--out", out)
    assert r.exit_code == 0, r.output
    assert f"Plots written to {out}" in " ".join(r.output.split())
    drawn = {p.name: p.read_bytes() for p in (runs["with"] / "plots").iterdir()}
    again = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "plots.json"}
    assert sorted(again) == sorted(drawn)
    differ = [name for name in drawn if drawn[name] != again[name]]
    assert not differ
    names = set(drawn)
    for slug in ("rotation", "rotation-2", "shift"):
        assert f"{slug}_confidence.png" in names and f"{slug}_confidence.svg" in names
    assert not any("=" in n or "," in n or ":" in n for n in names)
    assert sum(n.endswith(".png") and "_sample-" in n for n in names) == 3 * 3  # worst:1,spread:2 per group
    manifest = json.loads((out / "plots.json").read_text())
    info = json.loads((runs["without"] / "run.json").read_text())
    assert manifest["written_by"] == "nero" and sorted(manifest["files"]) == sorted([*again, "plots.json"])
    specs = list(info["record"]["plots"].values())
    assert manifest["groups"] == {"rotation": {"label": "rotation:start=0,stop=270,step=90", "spec": specs[0]["spec"],
                                               "kind": "polar"},
                                  "rotation-2": {"label": "rotation:start=0,stop=315,step=45", "spec": specs[1]["spec"],
                                                 "kind": "polar"},
                                  "shift": {"label": "shift", "spec": specs[2]["spec"], "kind": "heatmap"}}
    assert manifest["metrics"] == ["confidence"] and len(manifest["samples"]) == 3


@pytest.mark.slow
def test_nero_plot_options_and_refusals(runs):
    src, root = runs["without"], runs["root"]
    out = root / "opts"
    r = run("plot", src, "--out", out, "--metric", "equivariance_error,accuracy", "--samples", "3", "--own-scale", "-q")
    assert r.exit_code == 0, r.output
    names = {p.name for p in out.iterdir()}
    assert {"shift_equivariance_error.png", "shift_accuracy.png", "shift_accuracy_sample-3.png",
            "rotation-2_equivariance_error_sample-3.png"} <= names
    assert not any("confidence" in n for n in names)
    assert json.loads((out / "plots.json").read_text())["own_scale"] is True
    # the default folder is RUN-plots beside the run
    r = run("plot", src, "--samples", "none", "-q")
    assert r.exit_code == 0 and (root / "without-plots" / "rotation_confidence.png").exists()
    assert not any("_sample-" in p.name for p in (root / "without-plots").iterdir())
    # an existing plots folder: refused without --overwrite, replaced with it
    r = run("plot", src, "--out", out, "-q")
    assert r.exit_code == 5 and "--overwrite" in r.output
    r = run("plot", src, "--out", out, "--overwrite", "-q")
    assert r.exit_code == 0 and (out / "rotation_confidence.png").exists()
    assert not (out / "shift_accuracy.png").exists()
    # never a folder with the user's files, never inside the run
    mine = root / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    r = run("plot", src, "--out", mine, "--overwrite")
    assert r.exit_code == 5 and "nero did not write" in r.output and (mine / "notes.txt").read_text() == "keep me"
    r = run("plot", src, "--out", src / "plots")
    assert r.exit_code == 5 and "inside the run folder" in r.output and not (src / "plots").exists()
    # usage errors exit 2, damaged runs 5: as gate and report
    assert run("plot", root / "nope").exit_code == 2
    r = run("plot", src, "--metric", "iou", "--out", root / "x")
    assert r.exit_code == 2 and "--metric for classification must be among" in r.output
    r = run("plot", src, "--samples", "worst", "--out", root / "x")
    assert r.exit_code == 2 and "--samples expects" in r.output
    r = run("plot", src, "--samples", "999", "--out", root / "x")
    assert r.exit_code == 2 and "--samples: sample id(s) [999]" in r.output
    assert not (root / "x").exists()
    damaged = root / "damaged"
    shutil.copytree(src, damaged)
    with open(damaged / "results.csv", "a") as fh:
        fh.write("x\n")
    r = run("plot", damaged, "--out", root / "y")
    assert r.exit_code == 5 and "checksum" in r.output and not (root / "y").exists()


@pytest.mark.slow
def test_nero_plot_without_the_data_draws_no_thumbnail(runs):
    src, root = runs["without"], runs["root"]
    moved = root / "moved-data"
    shutil.copytree(src, moved)
    info = json.loads((moved / "run.json").read_text())
    info["data"]["source"] = str(root / "gone.npz")
    (moved / "run.json").write_text(json.dumps(info))
    out = root / "no-data"
    r = run("plot", moved, "--out", out, "--samples", "3", "-q")
    assert r.exit_code == 0, r.output
    assert "cannot load the data" in r.output and "individual plots have none" in r.output
    r = run("plot", src, "--out", root / "no-thumbs", "--samples", "3", "--no-thumbnails", "-q")
    assert r.exit_code == 0 and "warning" not in r.output
    with_thumb = root / "thumbs"
    assert run("plot", src, "--out", with_thumb, "--samples", "3", "-q").exit_code == 0
    name = "rotation_confidence_sample-3.png"
    narrow, wide = Image.open(out / name).size, Image.open(with_thumb / name).size
    assert Image.open(root / "no-thumbs" / name).size == narrow and narrow[0] < wide[0]  # no input column
    assert (out / "rotation_confidence.png").read_bytes() == (with_thumb / "rotation_confidence.png").read_bytes()


def _drawn(folder: Path) -> dict[str, bytes]:
    """Every file of a plots folder; plots.json without the run's path."""
    out = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "plots.json"}
    manifest = json.loads((folder / "plots.json").read_text())
    out["plots.json"] = json.dumps({k: v for k, v in manifest.items() if k != "run"}).encode()
    return out


def _same_from_vectors_and_results_csv(src: Path, root: Path, option_sets: list[list[str]], monkeypatch) -> None:
    """``nero plot`` of ``src`` through its vectors (results.csv never loaded) and of a copy without
    them (results.csv whole): the same files, byte for byte, for every option set."""
    from nero_cli.runrecord import RunRecord

    old = root / "old"
    shutil.copytree(src, old)
    strip_vectors(old)
    for i, opts in enumerate(option_sets):
        with monkeypatch.context() as m:
            m.setattr(RunRecord, "results", lambda self: (_ for _ in ()).throw(AssertionError("results.csv read")))
            r = run("plot", src, "--out", root / f"vec{i}", "-q", *opts)
        assert r.exit_code == 0, r.output
        r = run("plot", old, "--out", root / f"csv{i}", "-q", *opts)
        assert r.exit_code == 0, r.output
        vec, csv = _drawn(root / f"vec{i}"), _drawn(root / f"csv{i}")
        assert sorted(vec) == sorted(csv) and [n for n in vec if vec[n] != csv[n]] == [], opts


@pytest.mark.slow
def test_nero_plot_reads_the_vectors_of_a_run_not_results_csv(runs, tmp_path, monkeypatch):
    from nero_cli.runrecord import RunRecord

    def whole(self):
        raise AssertionError("results.csv read whole")

    with monkeypatch.context() as m:  # the default plots, equal to the run's own
        m.setattr(RunRecord, "results", whole)
        r = run("plot", runs["without"], "--out", tmp_path / "own", "-q")
    assert r.exit_code == 0, r.output
    drawn = {p.name: p.read_bytes() for p in (runs["with"] / "plots").iterdir()}
    assert {n: b for n, b in _drawn(tmp_path / "own").items() if n != "plots.json"} == drawn
    _same_from_vectors_and_results_csv(runs["without"], tmp_path, [
        ["--metric", "equivariance_error,accuracy", "--samples", "3,worst:2,best:1,spread:2", "--own-scale"],
        ["--samples", "15,0", "--no-thumbnails"]], monkeypatch)
    r = run("plot", runs["without"], "--samples", "999", "--out", tmp_path / "x")  # the same range in the message
    assert r.exit_code == 2 and "sample id(s) [999] are not in the evaluated data (ids 0..15)" in " ".join(r.output.split())


@pytest.mark.slow
def test_nero_plot_of_point_clouds_reads_their_vectors(tmp_path, monkeypatch):
    src = tmp_path / "clouds"
    r = run("evaluate", "sample:pointnet", "sample:pointnet-aug", "--data", "sample:shapes200", "--limit", "6",
            "-g", "viewpoint:axis_step=90,rot_step=90", "--plot-samples", "worst:1,spread:1", "-q", "--out", src)
    assert r.exit_code == 0, r.output
    _same_from_vectors_and_results_csv(src, tmp_path, [[], ["--metric", "equivariance_error", "--samples", "2"]],
                                       monkeypatch)
    assert _drawn(tmp_path / "vec0").keys() - {"plots.json"} == {p.name for p in (src / "plots").iterdir()}
    assert all((src / "plots" / n).read_bytes() == b for n, b in _drawn(tmp_path / "vec0").items() if n != "plots.json")
