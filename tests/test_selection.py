"""Numbers you can trust (issue 11): no random weights by accident, representative subsets
(``--sample``, a warning for ``--limit``), and image folders labelled with the model's classes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import nero_cli
import sample_models
from nero_cli.cli import app
from nero_cli.data import load_images, load_selected, select
from nero_cli.errors import OptionError
from nero_cli.npz import NpzArchive
from nero_cli.selection import Selection, positions, quotas, stratified
from nero_cli.tasks import get_task

runner = CliRunner()
G = ["-g", "rotation:step=90"]
NET = "from sample_models.mnist import MnistCNN\n\ndef build():\n    return MnistCNN()\n"


def cli(*args: object, out: Path, quiet: bool = True):  # noqa: ANN201
    return runner.invoke(app, ["evaluate", *map(str, args), *G, "--out", str(out), "--no-plots",
                               *(["-q"] if quiet else [])])


def one_line(r, code: int) -> str:  # noqa: ANN001
    assert r.exit_code == code, (r.exit_code, r.stderr, r.stdout)
    err = r.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def info(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


@pytest.fixture(scope="module")
def mnist() -> dict[str, np.ndarray]:
    z = np.load(sample_models.data_path("mnist500"))
    return {k: z[k] for k in z.files}


# -- no random weights by accident -------------------------------------------------------------


def test_factory_without_weights_is_refused(tmp_path):
    (tmp_path / "net.py").write_text(NET)
    r = cli(f"{tmp_path / 'net.py'}:build", "--data", "sample:mnist500", "--limit", "20", out=tmp_path / "run")
    err = one_line(r, 2)
    assert "random weights" in err and "--weights" in err and "--random-init" in err
    assert not (tmp_path / "run").exists()


def test_random_init_is_recorded_marked_and_seeded(tmp_path):
    (tmp_path / "net.py").write_text(NET)
    spec = f"{tmp_path / 'net.py'}:build"
    r = cli(spec, "sample:mnist-cnn", "--random-init", "--data", "sample:mnist500", "--sample", "20",
            out=tmp_path / "a", quiet=False)
    assert r.exit_code == 0, r.stderr
    assert "build (random init)" in r.stdout and "mnist-cnn (random init)" not in r.stdout
    rec = info(tmp_path / "a")
    assert [m["random_init"] for m in rec["models"]] == [True, False]
    assert rec["options"]["random_init"] is True
    # the same seed builds the same random weights: the same numbers
    assert cli(spec, "sample:mnist-cnn", "--random-init", "--data", "sample:mnist500", "--sample", "20", "--no-cache",
               out=tmp_path / "b").exit_code == 0
    assert (tmp_path / "a" / "results.csv").read_bytes() == (tmp_path / "b" / "results.csv").read_bytes()


def test_factories_whose_weights_are_not_random_need_no_flag(tmp_path):
    """A factory with no parameters, or one that sets its own weights, builds the same module under
    any seed: it is evaluated as it is, not marked."""
    (tmp_path / "fixed.py").write_text(
        "import torch\n\nclass Mean(torch.nn.Module):\n    def forward(self, x):\n"
        "        return x.flatten(1)[:, :10]\n\ndef mean():\n    return Mean()\n\n"
        "def seeded():\n    torch.manual_seed(1)\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))\n")
    for name in ("mean", "seeded"):
        r = cli(f"{tmp_path / 'fixed.py'}:{name}", "--data", "sample:mnist500", "--sample", "10", out=tmp_path / name)
        assert r.exit_code == 0, r.stderr
        assert info(tmp_path / name)["models"][0]["random_init"] is False


def test_python_api_random_init(tmp_path):
    (tmp_path / "net.py").write_text(NET)
    spec = f"{tmp_path / 'net.py'}:build"
    with pytest.raises(OptionError, match="random weights"):
        nero_cli.evaluate(spec, "sample:mnist500", "rotation:step=90", limit=4, device="cpu")
    res = nero_cli.evaluate(spec, "sample:mnist500", "rotation:step=90", sample=4, random_init=True, device="cpu")
    assert res.table["sample"].nunique() == 4
    # an nn.Module in memory holds the user's own weights
    module = sample_models.build_sample("mnist-cnn")
    assert nero_cli.evaluate(module, "sample:mnist500", "rotation:step=90", limit=4, device="cpu").summary


# -- representative subsets ---------------------------------------------------------------------


def test_quotas_are_proportional_and_cover_every_class():
    assert quotas(np.array([50] * 10), 20).tolist() == [2] * 10
    assert quotas(np.array([90, 5, 5]), 10).tolist() == [8, 1, 1]  # proportional: 9, 0.5, 0.5
    q = quotas(np.array([1000, 3, 2, 1]), 8)
    assert q.sum() == 8 and (q >= 1).all()
    assert quotas(np.array([10, 10, 10]), 2).sum() == 2  # fewer samples than classes


def test_stratified_draw_is_sorted_deterministic_and_per_class():
    labels = np.repeat(np.arange(10), 50)
    a = stratified(labels, 30, seed=0)
    assert a.tolist() == sorted(set(a.tolist())) and len(a) == 30
    assert np.bincount(labels[a], minlength=10).tolist() == [3] * 10
    assert a.tolist() == stratified(labels, 30, seed=0).tolist()
    assert a.tolist() != stratified(labels, 30, seed=1).tolist()
    keep, notes = positions(None, 100, Selection(sample=7, seed=2), None, "x")  # unlabelled: plain random
    assert len(keep) == 7 and keep.tolist() == sorted(keep.tolist()) and not notes


def _old_draw(labels: np.ndarray, quota: list[int], seed: int) -> np.ndarray:
    """The draw before ties were broken at random: one generator, classes in order."""
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(labels == c), q, replace=False) for c, q in enumerate(quota)]
    return np.sort(np.concatenate(picks))


def test_largest_remainder_ties_are_broken_at_random_for_each_seed():
    """--sample 7 of 10 equal classes gave classes 0-6 whatever the seed (ties went to the earlier
    class): now the seed decides which classes get the extra samples, the same for a seed every time."""
    labels = np.repeat(np.arange(10), 50)
    for n, sizes in ((7, [0] * 3 + [1] * 7), (15, [1] * 5 + [2] * 5)):
        seen = set()
        for seed in range(8):
            a = stratified(labels, n, seed)
            counts = np.bincount(labels[a], minlength=10)
            assert sorted(counts.tolist()) == sizes
            assert a.tolist() == stratified(labels, n, seed).tolist()  # deterministic for a seed
            seen.add(tuple(counts.tolist()))
        assert len(seen) > 1, seen
    assert {c for seed in range(20) for c in np.unique(labels[stratified(labels, 7, seed)])} == set(range(10))


def test_draws_without_ties_are_unchanged():
    """Only the tie order changed: without ties the draw is byte-identical to the one before."""
    labels = np.repeat(np.arange(10), 50)
    for seed in (0, 5, 9):
        assert stratified(labels, 20, seed).tolist() == _old_draw(labels, [2] * 10, seed).tolist()
    labels = np.repeat(np.arange(4), [13, 7, 29, 51])  # shares 1.3, 0.7, 2.9, 5.1 of 10: no tie
    assert quotas(np.array([13, 7, 29, 51]), 10).tolist() == [1, 1, 3, 5]
    for seed in (0, 3):
        assert stratified(labels, 10, seed).tolist() == _old_draw(labels, [1, 1, 3, 5], seed).tolist()


def test_classes_by_name_on_data_without_class_names(tmp_path, mnist):
    """No class_names in the .npz: say so and what --classes takes instead (an empty 'known:' list before)."""
    np.savez(tmp_path / "d.npz", images=mnist["images"][::50], labels=mnist["labels"][::50])
    err = one_line(cli("sample:mnist-cnn", "--data", tmp_path / "d.npz", "--classes", "foo", out=tmp_path / "r"), 4)
    assert "'foo'" in err and "no class names" in err and "class ids" in err and "known: " not in err


def test_sample_on_the_command_line(tmp_path):
    r = cli("sample:mnist-cnn", "--data", "sample:mnist500", "--sample", "20", "--seed", "5", out=tmp_path / "run")
    assert r.exit_code == 0, r.stderr
    table = pd.read_csv(tmp_path / "run" / "results.csv")
    per_sample = table.groupby("sample")["label"].first()
    assert np.bincount(per_sample, minlength=10).tolist() == [2] * 10
    rec = info(tmp_path / "run")
    assert rec["data"]["selection"] == {"method": "stratified", "classes": None, "sample": 20, "seed": 5}
    assert rec["options"]["sample"] == 20 and rec["options"]["seed"] == 5
    r = cli("sample:mnist-cnn", "--data", "sample:mnist500", "--classes", "3,5", "--sample", "6", out=tmp_path / "c")
    assert r.exit_code == 0, r.stderr
    labels = pd.read_csv(tmp_path / "c" / "results.csv").groupby("sample")["label"].first()
    assert sorted(labels) == [3, 3, 3, 5, 5, 5]


def test_sample_and_limit_together_is_a_usage_error(tmp_path):
    err = one_line(cli("sample:mnist-cnn", "--data", "sample:mnist500", "--sample", "5", "--limit", "5",
                       out=tmp_path / "run"), 2)
    assert "--limit and --sample" in err
    assert "positive" in one_line(cli("sample:mnist-cnn", "--data", "sample:mnist500", "--sample", "0",
                                      out=tmp_path / "run"), 2)
    assert "--seed must be 0 or more" in one_line(cli("sample:mnist-cnn", "--data", "sample:mnist500", "--sample",
                                                      "5", "--seed", "-1", out=tmp_path / "run"), 2)  # was exit 70


def test_limit_warns_when_it_misses_classes(tmp_path):
    r = cli("sample:mnist-cnn", "--data", "sample:mnist500", "--limit", "100", out=tmp_path / "run")
    assert r.exit_code == 0, r.stderr
    line = "--limit 100 covers classes 0, 1 of 10; use --sample 100 for a stratified subset"
    assert line in r.stderr and line in info(tmp_path / "run")["warnings"]
    r = cli("sample:mnist-cnn", "--data", "sample:mnist500", "--classes", "4", "--limit", "3", out=tmp_path / "r2")
    assert r.exit_code == 0 and "covers" not in r.stderr  # every selected class is covered


def _spy_reads(monkeypatch) -> list[tuple[str, int | None]]:  # noqa: ANN001
    reads: list[tuple[str, int | None]] = []
    original = NpzArchive.read

    def read(self, key, rows=None):  # noqa: ANN001, ANN202
        reads.append((key, rows))
        return original(self, key, rows)

    monkeypatch.setattr(NpzArchive, "read", read)
    return reads


def test_sample_reads_the_labels_then_only_the_rows_it_needs(tmp_path, monkeypatch, mnist):
    """Classes 0 and 1 fill the first 100 rows: --classes 0,1 --sample 10 inflates no image past them,
    and picks exactly what the whole-file selection picks."""
    path = tmp_path / "d.npz"
    np.savez_compressed(path, images=mnist["images"], labels=mnist["labels"])
    sel = Selection(("0", "1"), sample=10, seed=4)
    want = select(load_images(str(path)), classes=["0", "1"], sample=10, seed=4)
    reads = _spy_reads(monkeypatch)
    got, _ = load_selected(get_task("classification"), str(path), None, sel)
    assert got.index.tolist() == want.index.tolist() and torch.equal(got.inputs, want.inputs)
    assert reads[0] == ("labels", None)
    image_rows = [rows for key, rows in reads if key == "images"]
    assert image_rows == [int(want.index[-1]) + 1] and image_rows[0] <= 100


# -- image folders labelled with the model's classes -------------------------------------------


def _folder(root: Path, mnist: dict, digits: dict[str, int], n: int = 10) -> Path:
    for name, digit in digits.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for j, i in enumerate(np.flatnonzero(mnist["labels"] == digit)[:n]):
            Image.fromarray(mnist["images"][i]).save(root / name / f"{j:03d}.png")
    return root


def test_folders_map_to_the_models_classes_by_name(tmp_path, mnist):
    data = _folder(tmp_path / "digits", mnist, {"3": 3, "7": 7})
    r = cli("sample:mnist-cnn", "--data", data, out=tmp_path / "run")
    assert r.exit_code == 0, r.stderr
    acc = json.loads((tmp_path / "run" / "summary.json").read_text())["metrics"]["mnist-cnn"]["rotation"]["accuracy"]
    assert acc >= 0.9  # 0.0000 when the folders were labels 0 and 1
    rec = info(tmp_path / "run")
    assert rec["data"]["class_map"] == {"3": 3, "7": 7} and rec["data"]["class_map_from"] == "class names"
    assert sorted(set(pd.read_csv(tmp_path / "run" / "results.csv")["label"])) == [3, 7]
    _folder(data, mnist, {"cat": 1}, n=1)
    err = one_line(cli("sample:mnist-cnn", "--data", data, out=tmp_path / "run2"), 4)
    assert "'cat'" in err and "--class-names" in err


def test_class_names_option(tmp_path, mnist):
    data = _folder(tmp_path / "pets", mnist, {"cat": 3, "dog": 7}, n=5)
    names = "zero,one,two,cat,four,five,six,dog,eight,nine"
    r = cli("sample:mnist-cnn", "--data", data, "--class-names", names, out=tmp_path / "run")
    assert r.exit_code == 0, r.stderr
    rec = info(tmp_path / "run")
    assert rec["data"]["class_map"] == {"cat": 3, "dog": 7} and rec["record"]["class_names"] == names.split(",")
    assert rec["options"]["class_names"] == names.split(",")
    err = one_line(cli("sample:mnist-cnn", "--data", data, "--class-names", "cat,dog,x", out=tmp_path / "r2"), 2)
    assert "--class-names names 3 classes" in err and "10 classes" in err
    assert "distinct" in one_line(cli("sample:mnist-cnn", "--data", data, "--class-names", "cat,cat",
                                      out=tmp_path / "r3"), 2)


def test_integer_folders_without_class_names(tmp_path, mnist):
    """A model that names no classes: integer folder names are class ids, checked against its logits."""
    torch.jit.save(torch.jit.script(sample_models.build_sample("mnist-cnn")), tmp_path / "cnn.pt")
    data = _folder(tmp_path / "ints", mnist, {"3": 3, "7": 7}, n=5)
    r = cli(tmp_path / "cnn.pt", "--data", data, out=tmp_path / "run")
    assert r.exit_code == 0, r.stderr
    assert info(tmp_path / "run")["data"]["class_map_from"] == "integer folder names"
    assert sorted(set(pd.read_csv(tmp_path / "run" / "results.csv")["label"])) == [3, 7]
    _folder(data, mnist, {"12": 1}, n=1)
    err = one_line(cli(tmp_path / "cnn.pt", "--data", data, out=tmp_path / "run2"), 4)
    assert "'12'" in err and "10" in err
    named = _folder(tmp_path / "named", mnist, {"a": 3, "b": 7}, n=2)  # no names anywhere: sorted order, said so
    r = cli(tmp_path / "cnn.pt", "--data", named, out=tmp_path / "run3")
    assert r.exit_code == 0 and "sorted order (a=0, b=1)" in r.stderr


def test_flat_folder_is_unlabelled(tmp_path, mnist):
    flat = tmp_path / "flat"
    flat.mkdir()
    for j in range(6):
        Image.fromarray(mnist["images"][j * 50]).save(flat / f"{j}.png")
    r = cli("sample:mnist-cnn", "--data", flat, "--sample", "4", out=tmp_path / "run")
    assert r.exit_code == 0, r.stderr
    rec = info(tmp_path / "run")
    assert rec["record"]["reference"] == "consensus" and rec["data"]["selection"]["method"] == "random"
    assert rec["data"]["n_samples"] == 4
    (flat / "sub").mkdir()
    Image.fromarray(mnist["images"][0]).save(flat / "sub" / "x.png")
    assert "both class folders and images" in one_line(cli("sample:mnist-cnn", "--data", flat, out=tmp_path / "r2"), 4)


def test_merge_of_a_sampled_run_equals_the_whole(tmp_path):
    args = ["sample:mnist-cnn", "--data", "sample:mnist500", "--sample", "24", "--seed", "9", "--batch-size", "8",
            "--no-cache"]
    assert cli(*args, out=tmp_path / "whole").exit_code == 0
    for i in range(2):
        r = cli(*args, "--shard", f"{i}/2", out=tmp_path / f"s{i}")
        assert r.exit_code == 0, r.stderr
    r = runner.invoke(app, ["merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "m"), "-q",
                            "--no-plots"])
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "m" / "results.csv").read_bytes() == (tmp_path / "whole" / "results.csv").read_bytes()
    assert info(tmp_path / "m")["data"]["selection"] == info(tmp_path / "whole")["data"]["selection"]
