"""Input bounds: declared shapes read first, --limit/--classes inflate only the rows they need,
loads that would not fit in memory refused with the figure, and the class_names count checked
against the model's classes (issue 10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from nero_cli import npz
from nero_cli.cli import app
from nero_cli.data import load_images, select
from nero_cli.errors import DataError, OptionError
from nero_cli.prepare import prepare
from nero_cli.tasks import get_task

ROOT = Path(__file__).resolve().parent.parent
BIG = (1_000_000, 28, 28)
runner = CliRunner()


def _write_member(zf: zipfile.ZipFile, name: str, shape: tuple[int, ...], dtype: str, data: bytes | None = None,
                  zero_bytes: int = 0) -> None:
    """An ``.npy`` member declaring ``shape``: ``data``, or ``zero_bytes`` zeros written in blocks."""
    with zf.open(name, "w", force_zip64=True) as f:
        np.lib.format.write_array_header_1_0(f, {"descr": dtype, "fortran_order": False, "shape": shape})
        if data is not None:
            f.write(data)
        block = bytes(8 << 20)
        while zero_bytes:
            n = min(zero_bytes, len(block))
            f.write(block[:n])
            zero_bytes -= n


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """A 3.6 MB deflated .npz that expands to 1M x 28 x 28 uint8 images (784 MB) and 1M labels."""
    path = tmp_path_factory.mktemp("big") / "big.npz"
    labels = (np.arange(BIG[0]) % 10).astype(np.int64)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        _write_member(zf, "images.npy", BIG, "|u1", zero_bytes=int(np.prod(BIG)))
        _write_member(zf, "labels.npy", labels.shape, "<i8", data=labels.tobytes())
    assert path.stat().st_size < 8_000_000
    return path


def _evaluate(*args: str, out: Path, data: Path | str, limit: str | None = "10") -> list[str]:
    return ["evaluate", *args, "--data", str(data), "--group", "rotation:step=90", *(["--limit", limit] if limit else []),
            "--out", str(out), "--quiet", "--plot-samples", "none"]


def _one_line(r, code: int) -> str:  # noqa: ANN001
    err = r.stderr.strip()
    assert r.exit_code == code, (r.exit_code, err)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


# -- the large compressed file ---------------------------------------------------------------


def test_limit_on_a_huge_compressed_npz_stays_small(big, tmp_path):
    """`--limit 10` inflates 10 rows: the CLI's peak RSS stays far below the 784 MB (3.1 GB as
    float32) the file expands to (it was 7 GB before)."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "nero_cli", *_evaluate("sample:mnist-cnn", out=out, data=big)]
    probe = ("import resource, subprocess, sys; "
             "r = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=120); "
             "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
             "print(r.stderr, file=sys.stderr)")
    env = {k: v for k, v in os.environ.items() if k != "NERO_MEMORY_LIMIT"}
    p = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, cwd=ROOT, env=env, timeout=150)
    code, peak_kb = map(int, p.stdout.split())
    assert code == 0, p.stderr
    assert peak_kb < 1_000_000, f"peak RSS {peak_kb / 1e3:.0f} MB"
    table = pd.read_csv(out / "results.csv")
    assert sorted(table["sample"].unique()) == list(range(10))


def test_only_what_is_decoded_at_once_is_compared_with_memory(big, tmp_path, monkeypatch):
    """The 1M images (3.1 GB as float32) are read by chunk, so a 1 GB limit no longer refuses them:
    everything before the sweep runs (models, data, the first forward pass); reading them whole
    is refused with the figure."""
    monkeypatch.setenv("NERO_MEMORY_LIMIT", "1G")
    p = prepare(["sample:mnist-cnn"], str(big), ["rotation:step=90"])
    assert len(p.dataset) == BIG[0] and p.dataset.inputs[:3].shape == (3, 1, 28, 28)
    with pytest.raises(DataError, match=r"loading \(1000000, 1, 28, 28\) images as float32 would need 3\.1 GB, "
                                        r"1\.0 GB available"):
        p.dataset.inputs.materialise()
    out = tmp_path / "run"
    r = runner.invoke(app, _evaluate("sample:mnist-cnn", out=out, data=big, limit="10"))
    assert r.exit_code == 0, r.stderr


def test_limit_and_classes_inflate_only_the_leading_rows(big):
    tracemalloc.start()
    try:
        ds = load_images(str(big), limit=10)
        _, peak_limit = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        by_class = select(load_images(str(big), limit=5, classes=["3"]), classes=["3"], limit=5)
        _, peak_classes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(ds) == 10 and ds.inputs.shape == (10, 1, 28, 28) and ds.index.tolist() == list(range(10))
    assert by_class.index.tolist() == [3, 13, 23, 33, 43] and by_class.labels.tolist() == [3] * 5
    assert peak_limit < 16e6, peak_limit  # 10 rows and one read block, not 784 MB
    assert peak_classes < 64e6, peak_classes  # the 8 MB labels, then 44 rows


def test_declared_size_is_compared_with_memory_before_reading(tmp_path):
    """A stored member whose header declares 10^12 images (and holds 16 bytes) is refused as
    truncated before anything is read (it would be memory-mapped), with --limit too; labels
    declaring 10^12 entries (read whole) are refused from their header with the figure."""
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        _write_member(zf, "images.npy", (10**12, 28, 28), "|u1", data=bytes(16))
    for limit in (None, 10):
        with pytest.raises(DataError, match="'images' is truncated"):
            load_images(str(path), limit=limit)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        _write_member(zf, "images.npy", (4, 28, 28), "|u1", data=bytes(4 * 784))
        _write_member(zf, "labels.npy", (10**12,), "<i8", data=bytes(16))
    with pytest.raises(DataError, match=r"'labels' \(1000000000000,\) int64 would need 8\.0 TB, .* available") as exc:
        load_images(str(path))
    assert "\n" not in str(exc.value)


def test_memory_limit_setting(monkeypatch):
    monkeypatch.setenv("NERO_MEMORY_LIMIT", "1.5G")
    assert npz.available_memory() == 1_500_000_000
    monkeypatch.setenv("NERO_MEMORY_LIMIT", "lots")
    with pytest.raises(DataError, match="NERO_MEMORY_LIMIT"):
        npz.available_memory()
    monkeypatch.delenv("NERO_MEMORY_LIMIT")
    assert npz.available_memory() is None or npz.available_memory() > 0
    assert npz.human_bytes(3_136_000_000) == "3.1 GB" and npz.human_bytes(512) == "512 B"


# -- the lazy reader is exact -------------------------------------------------------------------


def _save(path: Path, compressed: bool, **arrays: np.ndarray) -> None:
    (np.savez_compressed if compressed else np.savez)(path, **arrays)


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("layout", ["nchw", "nhwc-fortran", "float"])
def test_lazy_reads_equal_a_full_read(tmp_path, compressed, layout):
    rng = np.random.default_rng(0)
    if layout == "nchw":
        images = rng.integers(0, 256, (40, 3, 8, 8), dtype=np.uint8)
    elif layout == "nhwc-fortran":
        images = np.asfortranarray(rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8))
    else:
        images = rng.random((40, 8, 8), dtype=np.float32)
    labels = rng.integers(0, 5, 40)
    path = tmp_path / "d.npz"
    _save(path, compressed, images=images, labels=labels, class_names=np.array(list("abcde")), extra=np.arange(7))
    full = load_images(str(path))
    for limit, classes in [(None, None), (7, None), (3, ["2"]), (None, ["b", "4"]), (100, None)]:
        want = select(full, classes=classes, limit=limit)
        got = select(load_images(str(path), limit=limit, classes=classes), classes=classes, limit=limit)
        assert np.array_equal(got.inputs.numpy(), want.inputs.numpy())
        assert np.array_equal(got.labels.numpy(), want.labels.numpy())
        assert got.index.tolist() == want.index.tolist() and got.class_names == want.class_names == list("abcde")
        assert got.sha256 == full.sha256  # the digest covers the file, not the rows read
        assert got.inputs.is_contiguous()


def test_every_task_reads_only_the_rows_it_needs_and_matches_a_full_read():
    for task, spec in [("pointcloud", "sample:shapes200"), ("flow", "sample:piv64"), ("detection", "sample:digits200"),
                       ("segmentation", "sample:mnistseg200")]:
        t = get_task(task)
        full = select(t.load_data(spec), limit=6)
        lazy = t.load_data(spec, limit=6)
        assert len(lazy) == 6 and np.array_equal(lazy.inputs.numpy(), full.inputs.numpy()), task
        assert sorted(lazy.targets) == sorted(full.targets) and lazy.sha256 == full.sha256, task
        for k in full.targets:
            assert np.array_equal(lazy.targets[k].numpy(), full.targets[k].numpy()), (task, k)


def test_digest_identifies_the_arrays(tmp_path):
    a = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    np.savez(tmp_path / "one.npz", images=a, labels=np.array([0, 1]))
    np.savez(tmp_path / "two.npz", labels=np.array([0, 1]), images=a)  # other member order, other timestamps
    b = a.copy()
    b[1, 3, 3] += 1
    np.savez(tmp_path / "three.npz", images=b, labels=np.array([0, 1]))
    d1, d2, d3 = (load_images(str(tmp_path / f"{n}.npz")).sha256 for n in ("one", "two", "three"))
    assert d1 == d2 != d3


def test_object_array_in_any_member_is_refused(tmp_path):
    np.savez(tmp_path / "obj.npz", images=np.zeros((2, 4, 4), np.uint8), notes=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(DataError, match="allow_pickle=False"):
        load_images(str(tmp_path / "obj.npz"))


# -- usage errors and class names ---------------------------------------------------------------


@pytest.mark.parametrize("limit", ["0", "-3"])
def test_limit_must_be_positive(tmp_path, limit):
    out = tmp_path / "run"
    err = _one_line(runner.invoke(app, _evaluate("sample:mnist-cnn", out=out, data="sample:mnist500", limit=limit)), 2)
    assert f"--limit must be a positive number of samples, got {limit}" in err
    assert not out.exists()
    with pytest.raises(OptionError):
        prepare(["sample:mnist-cnn"], "sample:mnist500", ["rotation"], limit=int(limit))


def test_class_names_of_the_data_must_match_the_model(tmp_path):
    np.savez(tmp_path / "three.npz", images=np.zeros((4, 28, 28), np.uint8), labels=np.zeros(4, np.int64),
             class_names=np.array(["a", "b", "c"]))
    err = _one_line(runner.invoke(app, _evaluate("sample:mnist-cnn", out=tmp_path / "run", data=tmp_path / "three.npz")), 4)
    assert "class_names name 3 classes" in err and "mnist-cnn has 10 classes" in err, err
    assert not (tmp_path / "run").exists()


def test_class_names_of_the_model_must_match_its_outputs(tmp_path):
    np.savez(tmp_path / "plain.npz", images=np.zeros((4, 28, 28), np.uint8), labels=np.zeros(4, np.int64))
    (tmp_path / "meta.json").write_text(json.dumps({"class_names": ["a", "b", "c"]}))
    args = _evaluate("sample:mnist-cnn", "--meta", str(tmp_path / "meta.json"), out=tmp_path / "run",
                     data=tmp_path / "plain.npz")
    err = _one_line(runner.invoke(app, args), 3)
    assert "metadata's class_names name 3 classes but it has 10 classes" in err, err
    (tmp_path / "meta.json").write_text(json.dumps({"class_names": list("abcdefghij")}))
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.stderr
