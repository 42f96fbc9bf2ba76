"""Data read by chunk (issues 13 and 14): memory-mapped .npy and stored .npz members, deflated
members inflated forward, image folders decoded by chunk, torch Datasets; the same pixels and
the same results.csv bytes as a whole read; the memory check on what is decoded at once;
--resize and --center-crop."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import nero_cli
import sample_models
from nero_cli import sources
from nero_cli.cli import app
from nero_cli.data import load_images
from nero_cli.errors import DataError, OptionError
from nero_cli.npz import FileRows
from nero_cli.shaping import Shaping, parse_resize
from nero_cli.sources import LazyImages

runner = CliRunner()
MNIST = np.load(sample_models.data_path("mnist500"))


def _cli(*args: object, out: Path):  # noqa: ANN202
    return runner.invoke(app, ["evaluate", "sample:mnist-cnn", *map(str, args), "--out", str(out), "--no-plots",
                               "-q", "--no-cache"])


def _one_line(r, code: int) -> str:  # noqa: ANN001
    assert r.exit_code == code, (r.exit_code, r.stderr, r.stdout)
    err = r.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def lazy(monkeypatch):
    """Every input read by chunk, however small."""
    monkeypatch.setattr(sources, "EAGER_BYTES", 0)


def _folder(root: Path, n: int = 24, mixed: bool = False) -> Path:
    for i in range(n):
        d = root / str(int(MNIST["labels"][i]))
        d.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(MNIST["images"][i])
        if mixed and i % 3:
            im = im.resize((28 + 4 * (i % 3), 30))  # 32x30 and 36x30 beside 28x28
        im.save(d / f"{i:03d}.png")
    return root


def _files(tmp_path: Path) -> dict[str, Path]:
    imgs, labels = MNIST["images"][:40], MNIST["labels"][:40]
    np.savez(tmp_path / "stored.npz", images=imgs, labels=labels)
    np.savez_compressed(tmp_path / "deflated.npz", images=imgs, labels=labels)
    np.save(tmp_path / "images.npy", imgs)
    np.savez(tmp_path / "float.npz", images=imgs.astype(np.float32) / 255, labels=labels)
    np.savez_compressed(tmp_path / "nhwc.npz", images=np.ascontiguousarray(imgs[..., None]), labels=labels)
    return {p.stem: p for p in tmp_path.glob("*.np?")} | {"folder": _folder(tmp_path / "folder", 40)}


# -- the lazy reader gives the pixels of a whole read ---------------------------------------------


@pytest.mark.parametrize("kind", ["stored", "deflated", "images", "float", "nhwc", "folder"])
def test_every_way_of_indexing_gives_the_whole_reads_pixels(tmp_path, kind, monkeypatch):
    path = _files(tmp_path)[kind]
    whole = load_images(str(path))
    assert isinstance(whole.inputs, torch.Tensor)
    monkeypatch.setattr(sources, "EAGER_BYTES", 0)
    lazy = load_images(str(path))
    x, w = lazy.inputs, whole.inputs
    assert isinstance(x, LazyImages) and x.shape == w.shape and len(lazy) == len(whole)
    assert lazy.sha256 == whole.sha256 and lazy.size == whole.size
    assert torch.equal(x[:], w) and torch.equal(x[7], w[7]) and torch.equal(x[-1], w[-1])
    assert torch.equal(x[[9, 2, 2, 30]], w[[9, 2, 2, 30]]) and torch.equal(x[torch.tensor([4, 1])], w[[4, 1]])
    assert torch.equal(x[3, 0], w[3, 0]) and torch.equal(x[2:5, :, 1], w[2:5, :, 1])
    for a in range(0, len(w), 7):  # a pass in order: the next chunk is read ahead
        assert torch.equal(x[a : a + 7], w[a : a + 7])
    assert torch.equal(x[0:5], w[0:5])  # back to the start (a deflated member starts again)
    sub = lazy.subset(np.array([3, 17, 39]))
    assert isinstance(sub.inputs, LazyImages) and torch.equal(sub.inputs[:], w[[3, 17, 39]])
    assert sub.index.tolist() == [3, 17, 39] and torch.equal(sub.inputs.to("cpu"), w[[3, 17, 39]])
    if kind != "folder":  # (a folder is cut after it is listed)
        assert torch.equal(load_images(str(path), limit=9).inputs[:], w[:9])


def test_files_are_read_by_offset_or_streamed_and_never_read_whole(tmp_path, lazy):
    paths = _files(tmp_path)
    for kind in ("stored", "images"):
        rows = load_images(str(paths[kind])).inputs.rows
        assert isinstance(rows, FileRows) and rows.n == 40
        assert np.array_equal(rows.read(np.array([0, 1, 2, 7, 8, 39])), MNIST["images"][[0, 1, 2, 7, 8, 39]])
    rows = load_images(str(paths["deflated"])).inputs.rows
    assert type(rows).__name__ == "StreamRows"
    first = rows.read(np.array([0, 1]))
    assert rows._at == 2 and np.array_equal(first, MNIST["images"][:2])
    assert np.array_equal(rows.read(np.array([5, 9, 10])), MNIST["images"][[5, 9, 10]]) and rows._at == 11
    assert np.array_equal(rows.read(np.array([1])), MNIST["images"][[1]]) and rows._at == 2  # started again


def test_truncated_and_pickled_files_are_refused(tmp_path):
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        with zf.open("images.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (10**6, 28, 28)})
            f.write(bytes(100))
    with pytest.raises(DataError, match="'images' is truncated"):
        load_images(str(path))
    np.save(tmp_path / "short.npy", MNIST["images"][:100])
    (tmp_path / "short.npy").write_bytes((tmp_path / "short.npy").read_bytes()[:-5])
    with pytest.raises(DataError, match="short.npy: the array is truncated"):
        load_images(str(tmp_path / "short.npy"))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="allow_pickle=False"):
        load_images(str(tmp_path / "obj.npy"))
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    with pytest.raises(DataError, match="junk.npy: not a readable .npy file"):
        load_images(str(tmp_path / "junk.npy"))
    np.save(tmp_path / "fortran.npy", np.asfortranarray(MNIST["images"][:6]))
    assert torch.equal(load_images(str(tmp_path / "fortran.npy")).inputs, load_images("sample:mnist500", limit=6).inputs)


def test_float_pixels_are_checked_chunk_by_chunk_with_the_whole_reads_message(tmp_path, monkeypatch):
    bad = MNIST["images"][:30].astype(np.float32) / 255
    bad[21, 3, 3] = np.nan
    bad[25, 0, 0] = np.inf
    np.save(tmp_path / "bad.npy", bad)
    messages = []
    monkeypatch.setattr(sources, "SCAN_BYTES", 784 * 4 * 4)  # four rows per scanned chunk
    for whole in (True, False):
        if not whole:
            monkeypatch.setattr(sources, "EAGER_BYTES", 0)
        with pytest.raises(DataError) as err:
            load_images(str(tmp_path / "bad.npy"))
        messages.append(str(err.value))
    assert messages[0] == messages[1] and "2 image(s) contain NaN or inf (first: sample 21)" in messages[0]
    np.save(tmp_path / "big.npy", np.nan_to_num(bad, posinf=1.0) * 3)
    with pytest.raises(DataError, match=r"found 0\.\.3; divide by 255"):
        load_images(str(tmp_path / "big.npy"))


def test_what_is_decoded_at_once_is_checked_against_memory(tmp_path, monkeypatch):
    """A deflated file of 300 images of 1000x1000 (1.2 GB as float32) loads lazily under a 100 MB
    limit; a read of 256 of them at once is refused with its figure and the flag to lower."""
    path = tmp_path / "large.npz"
    np.savez_compressed(path, images=np.zeros((300, 1000, 1000), np.uint8))
    monkeypatch.setenv("NERO_MEMORY_LIMIT", "100M")
    data = load_images(str(path))
    assert isinstance(data.inputs, LazyImages) and data.inputs.shape == (300, 1, 1000, 1000)
    assert data.inputs[:10].shape == (10, 1, 1000, 1000)  # 50 MB: fits
    with pytest.raises(DataError, match=r"loading 256 samples at once \(5\.0 MB each\) would need 1\.3 GB, "
                                        r"100\.0 MB available; lower --batch-size"):
        data.inputs[:256]


# -- the same results.csv bytes -----------------------------------------------------------------


@pytest.mark.parametrize("kind,extra", [
    ("stored", ["-g", "rotation:step=90", "--sample", "17"]),
    pytest.param("deflated", ["-g", "rotation:step=120", "--limit", "30"], marks=pytest.mark.slow),
    pytest.param("folder", ["-g", "rotation:step=120", "--limit", "30"], marks=pytest.mark.slow),
    pytest.param("mixed", ["-g", "rotation:step=90", "--resize", "28,28", "--center-crop"], marks=pytest.mark.slow),
])
def test_results_are_byte_identical_read_whole_or_by_chunk(tmp_path, monkeypatch, kind, extra):
    """rotation:step=120 has inexact elements: the resampling floor's round trips read the chunk too."""
    path = _folder(tmp_path / "mixed", mixed=True) if kind == "mixed" else _files(tmp_path)[kind]
    args = ["--data", path, *extra, "--batch-size", "24"]
    r = _cli(*args, out=tmp_path / "whole")
    assert r.exit_code == 0, r.stderr
    monkeypatch.setattr(sources, "EAGER_BYTES", 0)
    r = _cli(*args, out=tmp_path / "chunked")
    assert r.exit_code == 0, r.stderr
    whole, chunked = (json.loads((tmp_path / d / "run.json").read_text()) for d in ("whole", "chunked"))
    assert (tmp_path / "whole" / "results.csv").read_bytes() == (tmp_path / "chunked" / "results.csv").read_bytes()
    assert whole["data"]["sha256"] == chunked["data"]["sha256"] and whole["n_rows"] > 0


# -- --resize and --center-crop -------------------------------------------------------------------


def test_resize_matches_pillows_bilinear_resize():
    """torch's antialiased bilinear resize, computed independently by Pillow on float images."""
    rng = np.random.default_rng(0)
    for (h, w), (th, tw) in [((40, 30), (13, 17)), ((10, 12), (25, 31)), ((64, 64), (32, 32))]:
        a = rng.random((h, w), dtype=np.float32)
        ours = Shaping((th, tw)).fit(torch.from_numpy(a)[None])[0].numpy()
        pil = np.asarray(Image.fromarray(a, mode="F").resize((tw, th), Image.BILINEAR))
        assert ours.shape == (th, tw) and np.abs(ours - pil).max() < 1e-5
    two = torch.tensor([[[0.0, 1.0], [0.5, 0.25]]])
    assert Shaping((1, 1)).fit(two).item() == pytest.approx(0.4375)  # halving: the mean of the 2x2


def test_center_crop_keeps_the_aspect_ratio_and_the_centre():
    img = torch.arange(4 * 8, dtype=torch.float32).reshape(1, 4, 8) / 31
    assert torch.equal(Shaping((4, 4), crop=True).fit(img), img[:, :, 2:6])  # no scaling: columns 2..5
    assert Shaping((4, 4), crop=True).scaled_size(8, 16) == (4, 8)  # shorter side 8 -> 4, then crop
    assert Shaping((4, 4), crop=True).scaled_size(3, 5) == (4, 7)  # enlarged by 4/3: round(6.67) = 7
    assert Shaping((4, 4)).scaled_size(3, 5) == (4, 4)
    flat = torch.full((3, 10, 20), 0.3)
    assert torch.allclose(Shaping((5, 5), crop=True).fit(flat), torch.full((3, 5, 5), 0.3))


def test_resize_option_parsing():
    assert parse_resize("224,200") == Shaping((224, 200)) and parse_resize("32x32", True) == Shaping((32, 32), True)
    assert parse_resize((8, 9)) == Shaping((8, 9)) and parse_resize(None) is None
    for bad in ("224", "a,b", "0,3", "1,2,3"):
        with pytest.raises(OptionError, match="--resize expects H,W"):
            parse_resize(bad)
    with pytest.raises(OptionError, match="--center-crop needs --resize"):
        parse_resize(None, True)


def test_a_folder_of_mixed_sizes(tmp_path):
    data = _folder(tmp_path / "mixed", mixed=True)
    err = _one_line(_cli("--data", data, "-g", "rotation:step=90", out=tmp_path / "run"), 4)
    assert "images differ in size" in err and "--resize H,W" in err and "--center-crop" in err
    assert not (tmp_path / "run").exists()
    _one_line(_cli("--data", data, "-g", "rotation:step=90", "--center-crop", out=tmp_path / "run"), 2)
    r = _cli("--data", data, "-g", "rotation:step=90", "--resize", "28,28", "--center-crop", out=tmp_path / "crop")
    assert r.exit_code == 0, r.stderr
    r = _cli("--data", data, "-g", "rotation:step=90", "--resize", "28,28", out=tmp_path / "plain")
    assert r.exit_code == 0, r.stderr
    crop, plain = (json.loads((tmp_path / d / "run.json").read_text()) for d in ("crop", "plain"))
    assert (crop["options"]["resize"], crop["options"]["center_crop"]) == ([28, 28], True)
    assert (plain["options"]["resize"], plain["options"]["center_crop"]) == ([28, 28], False)
    assert crop["data"]["sha256"] != plain["data"]["sha256"]  # the cache key tells them apart
    ds = load_images(str(data), shaping=Shaping((28, 28), crop=True))
    img = np.asarray(Image.open(data / "0" / "001.png"), dtype=np.float32) / 255  # 30x32: scaled to 28x30, cropped
    want = Shaping((28, 28), True).fit(torch.from_numpy(img)[None])
    pos = sorted(p.relative_to(data).as_posix() for p in data.rglob("*.png")).index("0/001.png")
    assert torch.equal(ds.inputs[pos], want)


@pytest.mark.slow
def test_resized_shards_merge_into_the_whole_run(tmp_path, lazy):
    """nero merge reads the folder again as the shards' run.json records it (--resize, --center-crop)."""
    data = _folder(tmp_path / "mixed", mixed=True)
    args = ["--data", data, "-g", "rotation:step=90", "--resize", "28,28", "--center-crop", "--batch-size", "8"]
    assert _cli(*args, out=tmp_path / "whole").exit_code == 0
    for i in range(2):
        r = _cli(*args, "--shard", f"{i}/2", out=tmp_path / f"s{i}")
        assert r.exit_code == 0, r.stderr
    r = runner.invoke(app, ["merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "merged"),
                            "-q", "--no-plots"])
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "merged" / "results.csv").read_bytes() == (tmp_path / "whole" / "results.csv").read_bytes()
    merged = json.loads((tmp_path / "merged" / "run.json").read_text())
    assert (merged["options"]["resize"], merged["options"]["center_crop"]) == ([28, 28], True)


def test_resize_the_same_size_changes_nothing_but_the_digest(tmp_path):
    plain = load_images("sample:mnist500", limit=20)
    same = load_images("sample:mnist500", limit=20, shaping=Shaping((28, 28)))
    assert torch.equal(plain.inputs, same.inputs) and plain.sha256 != same.sha256


def test_resize_is_refused_where_the_truth_would_need_it_too(tmp_path):
    r = runner.invoke(app, ["evaluate", "sample:digitdet", "--data", "sample:digits200", "-g", "rotation:step=90",
                            "--limit", "3", "--resize", "28,28", "--out", str(tmp_path / "run"), "-q"])
    assert "--resize applies to classification images" in _one_line(r, 2)


# -- torch Datasets in the Python API ----------------------------------------------------------------


class Items(torch.utils.data.Dataset):
    """A map-style Dataset of (uint8 image (1, 28, 28), label), or images alone."""

    def __init__(self, labelled: bool = True, jitter: bool = False, mixed: bool = False):
        self.labelled, self.jitter, self.mixed = labelled, jitter, mixed

    def __len__(self) -> int:
        return 40

    def __getitem__(self, i: int):  # noqa: ANN204
        x = torch.from_numpy(MNIST["images"][i][None].copy())
        if self.jitter:
            x = x + torch.randint(0, 2, x.shape, dtype=torch.uint8)
        if self.mixed and i % 2:
            x = torch.nn.functional.pad(x, (2, 2, 2, 2))
        return (x, int(MNIST["labels"][i])) if self.labelled else x


@pytest.fixture(scope="module")
def cnn():  # noqa: ANN201
    return sample_models.build_sample("mnist-cnn")


def _table_of(cnn, data, **kw):  # noqa: ANN001, ANN202
    return nero_cli.evaluate(cnn, data, "rotation:step=120", batch_size=16, **kw).table


@pytest.mark.slow
def test_tensor_dataset_and_map_style_dataset_give_the_arrays_results(cnn, monkeypatch):
    images, labels = torch.from_numpy(MNIST["images"][:40]), torch.from_numpy(MNIST["labels"][:40])
    want = _table_of(cnn, images, labels=labels)
    for data in (torch.utils.data.TensorDataset(images[:, None], labels), Items()):
        got = _table_of(cnn, data)
        assert got.equals(want), type(data).__name__
    monkeypatch.setattr(sources, "EAGER_BYTES", 0)
    from nero_cli.api import as_dataset

    assert isinstance(as_dataset(Items()).inputs, LazyImages)
    assert _table_of(cnn, Items()).equals(want)
    unlabelled = _table_of(cnn, Items(labelled=False))
    assert (unlabelled["label"] == -1).all() and unlabelled["prediction"].equals(want["prediction"])


def test_torch_dataset_refusals(cnn):
    from nero_cli.api import as_dataset

    with pytest.raises(DataError, match="item 0 differs between two reads"):
        as_dataset(Items(jitter=True))
    with pytest.raises(DataError, match=r"items differ in shape .* resize=\(H, W\)"):
        as_dataset(Items(mixed=True))
    shaped = as_dataset(Items(mixed=True), shaping=Shaping((28, 28)))
    assert shaped.inputs.shape == (40, 1, 28, 28) and torch.equal(shaped.inputs[0], torch.from_numpy(MNIST["images"][0][None] / np.float32(255)))
    with pytest.raises(DataError, match="TensorDataset.*found 3 tensors"):
        as_dataset(torch.utils.data.TensorDataset(*[torch.zeros(4, 1, 8, 8)] * 3))
    with pytest.raises(DataError, match="labels= is for arrays"):
        as_dataset(Items(), labels=np.zeros(40))
    table = nero_cli.evaluate(cnn, Items(mixed=True), "rotation:step=90", resize=(28, 28)).table
    assert table["sample"].nunique() == 40


# -- memory does not grow with the data (issue 14) ---------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
PROBE = ("import resource, subprocess, sys; "
         "r = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=900); "
         "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
         "print(r.stderr, file=sys.stderr)")


def _peak_rss_kb(tmp_path: Path, data: Path, group: str, *extra: str) -> int:
    """The peak RSS (kB) of ``nero evaluate`` of a linear model over ``data``, in a subprocess."""
    import os
    import subprocess
    import sys

    model = tmp_path / "linear.py"
    shape = np.load(data, mmap_mode="r").shape[1:]
    model.write_text(f"from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Flatten(), "
                     f"nn.Linear({int(np.prod(shape))}, 10))\n")
    cmd = [sys.executable, "-m", "nero_cli", "evaluate", f"{model}:build", "--random-init", "--data", str(data),
           "-g", group, "--no-plots", "--no-cache", "--yes", "-q", "--out", str(tmp_path / f"run-{data.stem}"), *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NERO_MEMORY", "MALLOC_"))}
    p = subprocess.run([sys.executable, "-c", PROBE, *cmd], capture_output=True, text=True, cwd=ROOT, env=env,
                       timeout=1000)
    code, kb = map(int, p.stdout.split())
    assert code == 0, p.stderr
    return kb


@pytest.mark.slow
@pytest.mark.parametrize("shape,n,group,extra", [
    # 3x32x32 images, 4 elements: the input dominates (20,000 samples are 246 MB as float32; read
    # whole, the peak went from 370 MB for 2,000 samples to 597 MB); read by chunk: 351 and 335 MB.
    ((3, 32, 32), 2000, "rotation:step=90", ()),
    # 72 elements: 360,000 result rows for 5,000 samples, streamed to disk as they are made
    # (1,000 and 10,000 samples: 377 and 424 MB; 2,000 and 20,000 x 36 rotations: 358 and 367 MB).
    ((28, 28), 500, "rotation:step=5", ("--no-floor",)),
])
def test_peak_memory_does_not_grow_with_the_data(tmp_path, shape, n, group, extra):
    """A run over 10x the samples keeps its peak RSS within 1.25x (issue 14's test)."""
    rng = np.random.default_rng(0)
    peaks = []
    for size in (n, 10 * n):
        np.save(tmp_path / f"d{size}.npy", rng.integers(0, 256, (size, *shape), dtype=np.uint8))
        peaks.append(_peak_rss_kb(tmp_path, tmp_path / f"d{size}.npy", group, *extra))
    assert peaks[1] <= 1.25 * peaks[0], f"peak RSS {peaks[0] / 1e3:.0f} MB for {n} samples, {peaks[1] / 1e3:.0f} MB for {10 * n}"


@pytest.mark.slow
def test_report_thumbnails_of_a_resized_run(tmp_path):
    """The report reads the data resized as the run recorded it: a folder of mixed sizes gets its thumbnails."""
    from typer.testing import CliRunner

    from nero_cli.cli import app

    folder = _folder(tmp_path / "mixed", 12, mixed=True)
    cli = CliRunner()
    r = cli.invoke(app, ["evaluate", "sample:mnist-cnn", "--data", str(folder), "-g", "rotation:step=180",
                         "--resize", "28,28", "--center-crop", "--no-plots", "-q", "--no-cache",
                         "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    r = cli.invoke(app, ["report", str(tmp_path / "run"), "--out", str(tmp_path / "report")])
    assert r.exit_code == 0, r.output
    assert "cannot load the data" not in r.output and "shows none" not in r.output, r.output
