"""WebDataset-style .tar shards as --data (issue 14): the same results.csv bytes as the same
images in an image folder, labels from .cls (or .json), sample order (shard, then image member),
brace patterns, the digest, reading by offset (and forward through a .tar.gz) equal to a whole
read, and one clear line (exit 4) for each malformed shard."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import sample_models
from nero_cli import sources
from nero_cli.cli import app
from nero_cli.data import load_images
from nero_cli.errors import EXIT_DATA, DataError
from nero_cli.shaping import Shaping
from nero_cli.sources import LazyImages
from nero_cli.tar_shards import TarRows, expand, split_key

runner = CliRunner()
MNIST = np.load(sample_models.data_path("mnist500"))
PICK = [0, 1, 2, 50, 51, 100, 101, 150]  # classes 0, 0, 0, 1, 1, 2, 2, 3 (mnist500 is sorted by class)


def _png(i: int, size: tuple[int, int] | None = None) -> bytes:
    im = Image.fromarray(MNIST["images"][i])
    if size is not None:
        im = im.resize(size)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _sample(i: int) -> list[tuple[str, bytes]]:
    return [(f"{i:03d}.png", _png(i)), (f"{i:03d}.cls", str(int(MNIST["labels"][i])).encode())]


def _folder(root: Path, picks: list[int]) -> Path:
    for i in picks:
        d = root / str(int(MNIST["labels"][i]))
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i:03d}.png").write_bytes(_png(i))
    return root


def _cli(data: object, out: Path, *extra: str):  # noqa: ANN202
    return runner.invoke(app, ["evaluate", "sample:mnist-cnn", "--data", str(data), "-g", "rotation:step=90",
                               "--batch-size", "3", *extra, "--out", str(out), "--no-plots", "-q", "--no-cache"])


def _refused(r, needle: str) -> str:  # noqa: ANN001
    assert r.exit_code == EXIT_DATA == 4, (r.exit_code, r.stderr, r.stdout)
    err = r.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and needle in err, err
    return err


# -- the same results as an image folder ------------------------------------------------------------


def test_shards_give_the_image_folders_results_byte_for_byte(tmp_path, monkeypatch):
    """The folder lists its files class by class, name by name; two shards hold the same samples
    in that order, so the sample ids agree and results.csv must be the same bytes, whether the
    shards are read whole or by chunk."""
    folder = _folder(tmp_path / "folder", PICK)
    _tar(tmp_path / "d-00.tar", [m for i in PICK[:4] for m in _sample(i)])
    _tar(tmp_path / "d-01.tar", [m for i in PICK[4:] for m in _sample(i)])
    r = _cli(folder, tmp_path / "f")
    assert r.exit_code == 0, r.stderr
    r = _cli(tmp_path / "d-{00..01}.tar", tmp_path / "t")
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "f" / "results.csv").read_bytes() == (tmp_path / "t" / "results.csv").read_bytes()
    monkeypatch.setattr(sources, "EAGER_BYTES", 0)
    r = _cli(tmp_path / "d-{00..01}.tar", tmp_path / "lazy")
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "lazy" / "results.csv").read_bytes() == (tmp_path / "t" / "results.csv").read_bytes()
    info = json.loads((tmp_path / "t" / "run.json").read_text())
    assert info["data"]["source"] == str(tmp_path / "d-{00..01}.tar") and info["data"]["n_samples"] == len(PICK)
    import pandas as pd

    table = pd.read_csv(tmp_path / "t" / "results.csv")
    by_sample = table.groupby("sample")["label"].first()
    assert by_sample.tolist() == [int(MNIST["labels"][i]) for i in PICK]


# -- what is read, in what order ----------------------------------------------------------------


def test_labels_order_and_ignored_members(tmp_path):
    """Samples in shard order, then in the order of their images in the shard; .cls before or after
    its image; a .json "label" (.cls wins over it); other members and hidden files ignored."""
    _tar(tmp_path / "a.tar", [
        ("x/b.cls", b"7\n"), ("x/b.png", _png(150)),  # class before image, key with a folder
        ("a.png", _png(0)), ("a.json", json.dumps({"label": 4, "id": "a"}).encode()),
        ("a.txt", b"a caption"), ("a.seg.png", _png(1)), ("._a.png", b"macOS junk"), ("README", b"no key"),
        ("c.json", json.dumps({"cls": 5}).encode()), ("c.cls", b" 6 "), ("c.jpeg", _png(50)),
    ])
    _tar(tmp_path / "b.tar", [("a.png", _png(100)), ("a.cls", b"2")])
    data = load_images(str(tmp_path / "{a,b}.tar"))
    assert data.labels.tolist() == [7, 4, 6, 2] and data.folders is None and data.class_names is None
    want = torch.from_numpy(MNIST["images"][[150, 0, 50, 100]]).float().div(255)[:, None]
    assert torch.equal(data.inputs, want)
    assert [split_key(n) for n in ("x/b.cls", "a.seg.png", "._a.png", "README")] == [
        ("x/b", "cls"), ("a", "seg.png"), None, None]
    unlabelled = load_images(str(_tar(tmp_path / "u.tar", [("q.png", _png(3)), ("q.json", b"[1, 2]")])))
    assert unlabelled.labels is None and len(unlabelled) == 1


def test_brace_patterns():
    assert expand("d-{000000..000002}.tar") == ["d-000000.tar", "d-000001.tar", "d-000002.tar"]
    assert expand("d-{8..10}.tar") == ["d-8.tar", "d-9.tar", "d-10.tar"]
    assert expand("{a,b}-{0..1}.tar") == ["a-0.tar", "a-1.tar", "b-0.tar", "b-1.tar"]
    assert expand("plain.tar") == ["plain.tar"]
    with pytest.raises(DataError, match="is empty"):
        expand("d-{3..1}.tar")
    with pytest.raises(DataError, match="expected a shard pattern"):
        expand("d-{x}.tar")


def test_digest_is_the_shards_bytes_and_the_colour_mode(tmp_path):
    members = [m for i in PICK[:3] for m in _sample(i)]
    path = _tar(tmp_path / "one.tar", members)
    raw = path.read_bytes()
    shard = f"{hashlib.sha256(raw).hexdigest()}:{len(raw)}"
    want = hashlib.sha256(f"webdataset\0mode=L\0{shard}".encode()).hexdigest()
    assert load_images(str(path)).sha256 == want
    assert load_images(str(path), channels=3).sha256 == hashlib.sha256(
        f"webdataset\0mode=RGB\0{shard}".encode()).hexdigest()
    shutil.copy(path, tmp_path / "renamed.tar")
    assert load_images(str(tmp_path / "renamed.tar")).sha256 == want  # the name is not the identity
    other = _tar(tmp_path / "other.tar", [*members[:-1], (members[-1][0], b"1")])
    assert load_images(str(other)).sha256 != want


# -- read by chunk ----------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_read_by_offset_equals_the_whole_read(tmp_path, monkeypatch, compress):
    picks = list(range(0, 500, 13))
    path = _tar(tmp_path / "d.tar", [m for i in picks for m in _sample(i)])
    if compress:
        with open(path, "rb") as f, gzip.open(tmp_path / "d.tar.gz", "wb") as g:
            shutil.copyfileobj(f, g)
        path = tmp_path / "d.tar.gz"
    whole = load_images(str(path))
    assert isinstance(whole.inputs, torch.Tensor)
    assert torch.equal(whole.inputs, torch.from_numpy(MNIST["images"][picks]).float().div(255)[:, None])
    monkeypatch.setattr(sources, "EAGER_BYTES", 0)
    lazy = load_images(str(path))
    x, w = lazy.inputs, whole.inputs
    assert isinstance(x, LazyImages) and isinstance(x.rows, TarRows) and x.shape == w.shape
    assert lazy.sha256 == whole.sha256 and torch.equal(lazy.labels, whole.labels)
    assert x.rows.comp == ["gz" if compress else "tar"]
    for a in range(0, len(w), 7):  # a pass in order, the next chunk read ahead
        assert torch.equal(x[a : a + 7], w[a : a + 7])
    assert torch.equal(x[[30, 2, 2, 17]], w[[30, 2, 2, 17]]) and torch.equal(x[0:3], w[0:3])  # back to the start
    sub = lazy.subset(np.array([3, 17, 38]))
    assert isinstance(sub.inputs, LazyImages) and torch.equal(sub.inputs[:], w[[3, 17, 38]])
    with x._lock:  # as every read of the images takes it: a read started ahead may still be running
        raw = x.rows.read(np.array([0, 5]))  # offsets: the members' own bytes
    assert [a.shape for a in raw] == [(1, 28, 28)] * 2 and np.array_equal(raw[1][0], MNIST["images"][picks[5]])


def test_mixed_sizes_need_resize_and_then_match_the_folder(tmp_path):
    sizes = [None, (32, 30), (36, 30), None]
    members = [(f"{i:03d}.png", _png(i, s)) for i, s in zip(PICK, sizes)]
    path = _tar(tmp_path / "mixed.tar", members)
    with pytest.raises(DataError, match=r"images differ in size \(height x width 28x28, 30x32, 30x36\); give --resize"):
        load_images(str(path))
    (tmp_path / "flat").mkdir()
    for name, data in members:
        (tmp_path / "flat" / name).write_bytes(data)
    shaping = Shaping((28, 28), crop=True)
    tar, flat = load_images(str(path), shaping=shaping), load_images(str(tmp_path / "flat"), shaping=shaping)
    assert tar.labels is None and torch.equal(tar.inputs, flat.inputs) and tar.inputs.shape == (4, 1, 28, 28)


# -- malformed shards: one line, exit 4 -----------------------------------------------------------


@pytest.mark.parametrize("members,needle", [
    ([("000.png", "png:0"), ("001.cls", b"1")], "sample '001' has 001.cls but no image (.png, .jpg, ...)"),
    ([("000.png", "png:0"), ("000.cls", b"cat")],
     "000.cls: expected an integer class id as text (e.g. 3), from 0 to 2**31-1, found 'cat'"),
    ([("000.png", "png:0"), ("000.cls", b"-1")], "found '-1'"),
    ([("000.png", "png:0"), ("000.json", b'{"label": "zero"}')], 'expected an integer "label" (or "cls")'),
    ([("000.png", "png:0"), ("000.jpg", "png:1")], "sample '000' has two images (000.png, 000.jpg)"),
    ([("000.png", "png:0"), ("000.cls", b"0"), ("001.png", "png:1")], "bad.tar: 1 of 2 samples have a class (.cls or a .json label) but 001.png has none"),
    ([("000.png", b"not an image")], "000.png: unreadable image (UnidentifiedImageError); remove or replace it"),
    ([("000.txt", b"hello")], "sample '000' has 000.txt but no image"),
    ([], "no images in the shards"),
])
def test_malformed_shards_are_refused_in_one_line(tmp_path, members, needle):
    made = [(n, _png(int(d[4:])) if isinstance(d, str) else d) for n, d in members]
    path = _tar(tmp_path / "bad.tar", made)
    _refused(_cli(path, tmp_path / "run"), needle)
    assert not (tmp_path / "run").exists()


def test_unreadable_and_missing_shards_are_refused_in_one_line(tmp_path):
    (tmp_path / "junk.tar").write_bytes(b"this is not a tar file" * 40)
    err = _refused(_cli(tmp_path / "junk.tar", tmp_path / "r1"), "junk.tar: not a readable tar file")
    assert "tar -tf junk.tar" in err
    whole = _tar(tmp_path / "d-0.tar", [m for i in PICK[:3] for m in _sample(i)]).read_bytes()
    for cut in (700, 1500):  # in the first image's bytes; in the second member's header
        (tmp_path / "cut.tar").write_bytes(whole[:cut])
        _refused(_cli(tmp_path / "cut.tar", tmp_path / "r2"), "cut.tar: not a readable tar file")
    (tmp_path / "damaged.tar").write_bytes(whole[:1024] + b"x" * 512 + whole[1536:])  # the second header
    _refused(_cli(tmp_path / "damaged.tar", tmp_path / "r2"), "(ReadError: invalid header at byte 1024)")
    (tmp_path / "cut.tar.gz").write_bytes(gzip.compress(whole)[:900])
    _refused(_cli(tmp_path / "cut.tar.gz", tmp_path / "r3"), "cut.tar.gz: not a readable tar file")
    _refused(_cli(tmp_path / "d-{0..2}.tar", tmp_path / "r4"),
             "d-1.tar: shard not found (1 of the 3 shards it names exist)")
    _refused(_cli(tmp_path / "none.tar", tmp_path / "r5"), "none.tar: shard not found; give existing .tar files")
