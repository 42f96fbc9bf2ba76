"""Data reading fixes: 16-bit grey images decoded to colour, the CRC-32 of ``.npz`` members read
by offset, and hidden files (macOS ``._x``) in image folders."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import sample_models
from nero_cli import npz, sources
from nero_cli.cli import app
from nero_cli.data import load_images
from nero_cli.errors import DataError
from nero_cli.folders import decode, read_folder

MNIST = np.load(sample_models.data_path("mnist500"))


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


# ------------------------------------------------------------------------------------ 16-bit grey


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_sixteen_bit_grey_decodes_as_its_eight_bit_picture_in_every_mode(tmp_path, mode):
    a8 = MNIST["images"][7]
    deep = _png(a8.astype("<u2") * 257)
    assert Image.open(io.BytesIO(deep)).mode in ("I;16", "I")
    (tmp_path / "deep.png").write_bytes(deep)
    want = decode(io.BytesIO(_png(a8)), mode)
    assert want.shape == ({"L": 1, "RGB": 3, "RGBA": 4}[mode], 28, 28)
    for src in (tmp_path / "deep.png", io.BytesIO(deep)):  # a folder's path, a shard member's file object
        got = decode(src, mode)
        assert got.dtype == np.uint8 and np.array_equal(got, want), (mode, np.unique(got))


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_sixteen_bit_values_are_rounded_from_v_over_257(mode):
    v = np.array([[0, 128, 129, 257, 385, 386, 32896, 65535]], dtype="<u2")
    got = decode(io.BytesIO(_png(v)), mode)
    want = np.array([0, 0, 1, 1, 1, 2, 128, 255], dtype=np.uint8)
    for c in range(3 if mode != "L" else 1):
        assert np.array_equal(got[c, 0], want), (mode, c, got[c, 0])
    if mode == "RGBA":
        assert (got[3] == 255).all()


def test_a_folder_of_sixteen_bit_images_reads_as_its_eight_bit_twin_for_a_colour_model(tmp_path):
    for name, scale, dtype in (("f8", 1, np.uint8), ("f16", 257, "<u2")):
        (tmp_path / name).mkdir()
        for i in range(6):
            (tmp_path / name / f"{i:03d}.png").write_bytes(_png(MNIST["images"][i].astype(dtype) * scale))
    eight, deep = (load_images(str(tmp_path / n), channels=3).inputs for n in ("f8", "f16"))
    assert deep.shape == (6, 3, 28, 28) and deep.equal(eight)


# ------------------------------------------------------------------------ CRC-32 of stored members


def _damaged_npz(tmp_path: Path) -> Path:
    """A stored (numpy.savez) archive with one byte of its images flipped."""
    path = tmp_path / "bad.npz"
    np.savez(path, images=MNIST["images"], labels=MNIST["labels"])
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("images.npy")
        assert info.compress_type == zipfile.ZIP_STORED
    raw = bytearray(path.read_bytes())
    at = raw.index(b"images.npy", info.header_offset) + len("images.npy") + 128 + 300 * 784 + 400  # a pixel of row 300
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(zipfile.BadZipFile, match="Bad CRC-32"):
        np.load(path)["images"]
    return path


@pytest.mark.parametrize("lazy", [False, True])
def test_a_damaged_stored_member_is_refused_read_whole_or_by_offset(tmp_path, monkeypatch, lazy):
    path = _damaged_npz(tmp_path)
    if lazy:
        monkeypatch.setattr(sources, "EAGER_BYTES", 0)  # 'images' read by offset (FileRows)
    with pytest.raises(DataError, match=r"bad\.npz: .*Bad CRC-32 for file 'images\.npy'") as err:
        load_images(str(path))
    assert len(str(err.value).splitlines()) == 1
    with pytest.raises(DataError, match="Bad CRC-32 for file 'images.npy'"):
        load_images(str(path), limit=10)  # rows before the damage: the archive is still damaged


def test_the_crc_is_checked_in_the_digest_pass_once_per_member(tmp_path, monkeypatch):
    path = tmp_path / "good.npz"
    np.savez(path, images=MNIST["images"], labels=MNIST["labels"])
    monkeypatch.setattr(sources, "EAGER_BYTES", 0)
    reads: list[str] = []
    real = npz._stored_bytes
    monkeypatch.setattr(npz, "_stored_bytes", lambda f, info: (reads.append(info.filename), real(f, info))[1])
    ds = load_images(str(path))
    assert sorted(reads) == ["images.npy", "labels.npy"]  # each member streamed once: sha256 and CRC-32 together
    assert ds.inputs.shape == (500, 1, 28, 28)


def test_a_damaged_member_read_by_offset_exits_4_in_one_line(tmp_path, monkeypatch):
    path = _damaged_npz(tmp_path)
    monkeypatch.setattr(sources, "EAGER_BYTES", 0)
    r = CliRunner().invoke(app, ["evaluate", "sample:mnist-cnn", "--data", str(path), "-g", "rotation:step=90",
                                 "--out", str(tmp_path / "run"), "--no-plots", "-q", "--no-cache"])
    assert r.exit_code == 4, (r.exit_code, r.stderr, r.stdout)
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "Bad CRC-32 for file 'images.npy'" in err and "Traceback" not in err, err


# ------------------------------------------------------------------------------ hidden files


def test_image_folders_skip_hidden_files_as_tar_shards_do(tmp_path):
    junk = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X"  # an AppleDouble header: not an image
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        (flat / f"{i:03d}.png").write_bytes(_png(MNIST["images"][i]))
        (flat / f"._{i:03d}.png").write_bytes(junk)
    (flat / ".hidden").mkdir()
    folder = read_folder(flat, None)
    assert [f.name for f in folder.rows.files] == ["000.png", "001.png", "002.png"] and folder.folders is None
    labelled = tmp_path / "labelled"
    for i in range(4):
        d = labelled / str(int(MNIST["labels"][i]))
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i:03d}.png").write_bytes(_png(MNIST["images"][i]))
        (d / f"._{i:03d}.png").write_bytes(junk)
    (labelled / "._7.png").write_bytes(junk)  # beside the class folders: not "images and folders mixed"
    folder = read_folder(labelled, None)
    assert len(folder.rows.files) == 4 and not any(f.name.startswith(".") for f in folder.rows.files)
    assert load_images(str(flat)).inputs.shape == (3, 1, 28, 28)
