"""Adversarial checks of issue 14's features: .tar shards as --data, per-sample vectors, the sweep
overhead changes (batched orbit actions, checkpoints every ~1 s, the writer thread) and --resume.

Each test marked ``xfail(strict=True, reason="BUG: ...")`` fails on the code it was written
against and describes the bug; the others check behaviour no other test file checks."""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import sys
import tarfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import sample_models
from nero_cli import runrecord as rr
from nero_cli import sources
from nero_cli.cli import app
from nero_cli.data import load_images
from nero_cli.errors import EXIT_DATA, DataError
from nero_cli.shaping import Shaping
from nero_cli.sources import LazyImages
from nero_cli.tar_shards import split_key

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
MNIST = np.load(sample_models.data_path("mnist500"))


# ------------------------------------------------------------------------------------------ helpers


def _png(i: int, mode: str | None = None, size: tuple[int, int] | None = None) -> bytes:
    im = Image.fromarray(MNIST["images"][i])
    if size is not None:
        im = im.resize(size)
    if mode is not None:
        im = im.convert(mode)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _tar(path: Path, members: list[tuple[str, bytes]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _labelled(picks: list[int]) -> list[tuple[str, bytes]]:
    return [m for i in picks for m in ((f"{i:03d}.png", _png(i)), (f"{i:03d}.cls", str(int(MNIST["labels"][i])).encode()))]


def _evaluate(data: object, out: Path, *extra: str):  # noqa: ANN202
    return runner.invoke(app, ["evaluate", "sample:mnist-cnn", "--data", str(data), "-g", "rotation:step=90",
                               "--batch-size", "4", *extra, "--out", str(out), "--no-plots", "-q", "--no-cache"])


def _one_line_exit_4(r) -> None:  # noqa: ANN001
    err = r.stderr.strip()
    assert r.exit_code == EXIT_DATA, (r.exit_code, err)
    assert len(err.splitlines()) == 1 and "internal error" not in err, err


# ------------------------------------------------------------------------------------------ .tar shards: bugs


def test_a_shard_cut_between_two_samples_is_refused(tmp_path):
    whole = _tar(tmp_path / "whole.tar", _labelled([0, 50, 100, 150]))
    with tarfile.open(whole) as tf:
        third = [m.offset for m in tf.getmembers()][4]  # the header of the third sample's image
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole.read_bytes()[:third])
    assert len(load_images(str(whole))) == 4
    with pytest.raises(DataError, match="not a readable tar file"):
        load_images(str(cut))  # got: a Dataset of 2 samples, no word about the missing end of the archive


@pytest.mark.parametrize("text", ["²", "99999999999999999999999"])
def test_class_ids_that_are_not_integers_nero_can_use_are_a_data_error(tmp_path, text):
    shard = _tar(tmp_path / "odd.tar", [("a.png", _png(0)), ("a.cls", text.encode())])
    _one_line_exit_4(_evaluate(shard, tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` grey pixels (the pixels themselves are not there)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("kind", ["tar", "folder"])
def test_a_huge_image_is_a_data_error(tmp_path, kind):
    bomb = _png_header_only(20000, 20000)  # 400 M pixels, a few bytes on disk
    if kind == "tar":
        data = _tar(tmp_path / "huge.tar", [("a.png", bomb)])
    else:
        data = tmp_path / "flat"
        data.mkdir()
        (data / "a.png").write_bytes(bomb)
    _one_line_exit_4(_evaluate(data, tmp_path / "run"))


def test_sixteen_bit_images_are_scaled_not_saturated(tmp_path):
    a8 = MNIST["images"][0]
    buf = io.BytesIO()
    Image.fromarray(a8.astype(np.uint16) * 257).save(buf, format="PNG")  # the same picture in 16 bits
    assert Image.open(io.BytesIO(buf.getvalue())).mode == "I;16"
    shard = _tar(tmp_path / "deep.tar", [("a.png", buf.getvalue())])
    try:
        got = load_images(str(shard)).inputs[0, 0].numpy()
    except DataError:
        return  # refusing 16-bit images in one line is fine too
    want = a8.astype(np.float32) / 255  # == (a8 * 257) / 65535
    assert np.abs(got - want).max() < 1 / 255, float(np.abs(got - want).max())


# ------------------------------------------------------------------------------------------ .tar shards: checks


def test_lazy_reads_of_mixed_modes_and_compressions_equal_the_whole_read(tmp_path, monkeypatch):
    """Grey, RGB, palette and RGBA members in one pattern of a plain, an .xz and a .bz2 shard, long
    (PAX) member names and ./ prefixes: read by offset (forward and back) equals a whole read."""
    long = "d" * 120
    plain = _tar(tmp_path / "s-a.tar", [(f"./{long}/000.png", _png(0)), ("./001.png", _png(1, "RGB"))])
    _tar(tmp_path / "s-b.tar.xz", [("k.v1/002.png", _png(2, "P")), ("003.png", _png(3, "RGBA"))], "w:xz")
    _tar(tmp_path / "s-c.tar.bz2", [("004.png", _png(4)), ("005.png", _png(5, "LA"))], "w:bz2")
    assert plain.exists()
    for spec in (tmp_path / "s-a.tar", tmp_path / "s-b.tar.xz", tmp_path / "s-c.tar.bz2"):
        whole = load_images(str(spec), channels=3)
        monkeypatch.setattr(sources, "EAGER_BYTES", 0)
        lazy = load_images(str(spec), channels=3)
        monkeypatch.setattr(sources, "EAGER_BYTES", 32 * 2**20)
        x, w = lazy.inputs, whole.inputs
        assert isinstance(x, LazyImages) and lazy.sha256 == whole.sha256 and len(w) == 2
        assert torch.equal(x[1:2], w[1:2]) and torch.equal(x[0:1], w[0:1]) and torch.equal(x[[1, 0, 1]], w[[1, 0, 1]])
    rgb = MNIST["images"][1].astype(np.float32) / 255  # an RGB copy of a grey digit: three equal channels
    assert torch.equal(load_images(str(plain)).inputs[1], torch.from_numpy(np.stack([rgb] * 3)))
    assert split_key(f"./{long}/000.png") == (f"./{long}/000", "png") and split_key("k.v1/002.png") == ("k.v1/002", "png")


def test_resized_mixed_sizes_read_lazily_equal_the_whole_read(tmp_path, monkeypatch):
    members = [("a.png", _png(0, size=(30, 20))), ("b.png", _png(1, "RGB", size=(17, 41))), ("c.png", _png(2))]
    shard = _tar(tmp_path / "m.tar", members)
    shaping = Shaping((24, 24), crop=True)
    whole = load_images(str(shard), shaping=shaping)
    monkeypatch.setattr(sources, "EAGER_BYTES", 0)
    lazy = load_images(str(shard), shaping=shaping)
    assert isinstance(lazy.inputs, LazyImages) and torch.equal(lazy.inputs[:], whole.inputs)
    assert whole.inputs.shape == (3, 3, 24, 24) and lazy.sha256 == whole.sha256
    assert lazy.sha256 != load_images(str(shard), shaping=Shaping((24, 24), crop=False)).sha256


def test_shard_order_is_sample_order_and_part_of_the_digest(tmp_path):
    _tar(tmp_path / "a.tar", _labelled([0, 50]))
    _tar(tmp_path / "b.tar", _labelled([100, 150]))
    ab, ba = load_images(str(tmp_path / "{a,b}.tar")), load_images(str(tmp_path / "{b,a}.tar"))
    assert ab.labels.tolist() == [0, 1, 2, 3] and ba.labels.tolist() == [2, 3, 0, 1]
    assert ab.sha256 != ba.sha256  # the same bytes in another order: other sample ids, another cache key
    shutil.copy(tmp_path / "a.tar", tmp_path / "c.tar")
    assert load_images(str(tmp_path / "{c,b}.tar")).sha256 == ab.sha256  # a renamed shard: the same data


def test_selection_on_shards_matches_the_same_selection_on_an_npz(tmp_path):
    """--classes then --sample on shards picks the samples (and results) it picks on the same digits in an .npz."""
    picks = list(range(0, 500, 25))  # 2 per class
    _tar(tmp_path / "d-0.tar", _labelled(picks[:10]))
    _tar(tmp_path / "d-1.tar", _labelled(picks[10:]))
    np.savez(tmp_path / "d.npz", images=MNIST["images"][picks], labels=MNIST["labels"][picks])
    sel = ("--classes", "2,3,7,9", "--sample", "5", "--seed", "3")
    r = _evaluate(tmp_path / "d-{0..1}.tar", tmp_path / "t", *sel)
    assert r.exit_code == 0, r.stderr
    r = _evaluate(tmp_path / "d.npz", tmp_path / "n", *sel)
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "t" / "results.csv").read_bytes() == (tmp_path / "n" / "results.csv").read_bytes()


# ------------------------------------------------------------------------------------------ the orbit's action


def _linear_first_model(path: Path, side: int) -> str:
    path.write_text("import torch\n\ndef build():\n    torch.manual_seed(0)\n"
                    f"    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear({side * side}, 10))\n")
    return f"{path}:build"


def _matmul_depends_on_alignment() -> bool:
    """Whether this machine's float32 matmul rounds differently for an input not aligned to 16 bytes."""
    torch.manual_seed(0)
    lin, x = torch.nn.Linear(729, 10), torch.rand(6, 729)
    buf = torch.empty(6 * 729 + 16)
    skew = (4 - (buf.data_ptr() % 16) // 4) % 4 + 1  # a start 4 bytes past a 16-byte boundary
    y = buf[skew : skew + 6 * 729].view(6, 729)
    y.copy_(x)
    with torch.inference_mode():
        return not torch.equal(lin(x), lin(y))


def test_several_passes_per_action_call_keep_the_outputs_for_any_image_size(tmp_path, monkeypatch):
    if not _matmul_depends_on_alignment():
        pytest.skip("this machine's matmul does not depend on the input's alignment")
    from nero_cli import runner as R
    from nero_cli.core import plan_orbits
    from nero_cli.prepare import prepare

    np.save(tmp_path / "r27.npy", np.random.default_rng(0).random((6, 27, 27)).astype(np.float32))
    p = prepare([_linear_first_model(tmp_path / "lin.py", 27)], str(tmp_path / "r27.npy"), ["rotation:step=30"],
                device="cpu", random_init=True)
    plan = plan_orbits(p.specs)[0]
    action = p.task.make_action(plan.spec, p.dataset)
    x, g, r = p.dataset.inputs[:6], len(plan.group), p.runners[0]
    together = r.orbit(x, action, g, 1, p.task.prepare)  # the default ORBIT_BYTES: 12 elements in one call
    monkeypatch.setattr(R, "ORBIT_BYTES", 1)  # one call per pass, as before
    apart = r.orbit(x, action, g, 1, p.task.prepare)
    assert torch.equal(together, apart), float((together - apart).abs().max())


@pytest.mark.parametrize("spec", ["rotation:step=30,mask=circle", "rotation:step=30,interp=nearest",
                                  "rotation:step=45,antialias=3,padding=reflection", "shift:extent=2,step=0.5,mask=circle",
                                  "shift:extent=3,step=1.5,padding=border", "scale:step=0.25,antialias=2",
                                  "perspective:step=30", "d4", "d4t"])
def test_an_action_call_over_many_elements_equals_one_call_per_element(spec):
    """ImageAction.__call__ with gathered and resampled elements mixed (index_copy_ into one output, the
    stacked grids cached), elements repeated and out of order; apply_each (the floor's way back) too."""
    from orbits.image import ImageAction
    from orbits.spec import parse_spec

    torch.manual_seed(0)
    s = parse_spec(spec, (20, 20))
    action = ImageAction(s.group, (20, 20), **s.action)
    g = len(s.group)
    x = torch.rand(5, 3, 20, 20)
    idx = list(range(g))[::-1] + [0, 0]
    for _ in range(2):  # the second time from the grid cache
        assert torch.equal(action(x, idx), torch.cat([action(x, [i]) for i in idx]))
    y = torch.rand(g, 5, 3, 20, 20)
    assert torch.equal(action.apply_each(y, list(range(g))),
                       torch.cat([action.apply_each(y[i : i + 1], [i]) for i in range(g)]))


# ------------------------------------------------------------------------------------------ the time estimate


class _Counting(torch.nn.Module):
    """A linear model that counts the inputs it is given."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin, self.seen = torch.nn.Linear(784, 10), 0

    def forward(self, x):  # noqa: ANN001, ANN201
        self.seen += x.shape[0]
        return self.lin(x.flatten(1))


def test_the_long_sweep_estimate_counts_every_forward_input():
    from nero_cli.prepare import estimate_seconds, prepare
    from nero_cli.run import compute

    model = _Counting()
    p = prepare([model], "sample:mnist500", ["rotation:step=45"], device="cpu", limit=4)
    estimated, _ = estimate_seconds(p, 256)
    before = model.seen
    compute(p, batch_size=256)
    assert estimated == model.seen - before, (estimated, model.seen - before)  # got 32 estimated, 48 run


# ------------------------------------------------------------------------------------------ the writer thread


class _SlowSink:
    """A sink whose add takes ``delay`` seconds, recording when each add ended."""

    def __init__(self, delay: float):
        self.delay, self.ended = delay, []

    def begin(self, layout):  # noqa: ANN001
        self.layout = layout

    def add(self, *args):  # noqa: ANN002
        time.sleep(self.delay)
        self.ended.append(time.monotonic())


def test_an_interruption_while_the_writer_drains_stops_the_writer(monkeypatch):
    from nero_cli import core
    from nero_cli.prepare import prepare
    from nero_cli.write_behind import WriteBehind

    p = prepare(["sample:mnist-cnn"], "sample:mnist500", ["rotation:step=90"], device="cpu", limit=24)
    monkeypatch.setattr(core, "writes_behind", lambda runners: True)

    def interrupted(self):
        raise KeyboardInterrupt  # Ctrl-C arriving while close() blocks on the queue or the join

    monkeypatch.setattr(WriteBehind, "close", interrupted)
    sink = _SlowSink(0.25)
    before = {t for t in threading.enumerate() if t.name == "nero-writer"}
    with pytest.raises(KeyboardInterrupt):
        core.evaluate(p.runners, p.dataset, p.specs, p.task, batch_size=4, sink=sink)
    gave_up = time.monotonic()
    time.sleep(0.8)
    late = [t for t in sink.ended if t > gave_up]
    alive = [t.name for t in threading.enumerate() if t.name == "nero-writer" and t.is_alive() and t not in before]
    assert not late and not alive, (len(late), alive)


# ------------------------------------------------------------------------------------------ --resume


ARGS = ["evaluate", "sample:mnist-cnn", "--data", "sample:mnist500", "--sample", "24", "-g", "rotation:step=45",
        "-g", "shift:extent=2,step=1,mask=circle", "--batch-size", "8", "--no-cache", "--no-plots", "-q"]
FILES = ("results.csv", "summary.csv", "summary.json", "vectors/b0_0.npy", "vectors/b0_1.npy", "vectors/samples.npy",
         "vectors/index.json")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("adv14") / "ref"
    r = runner.invoke(app, [*ARGS, "--out", str(out)])
    assert r.exit_code == 0, r.stderr
    return out


@pytest.mark.slow
def test_ctrl_c_mid_sweep_with_the_writer_thread_keeps_chunks_and_resumes_identically(reference, tmp_path,
                                                                                       monkeypatch):
    """Rows written behind the sweep (forced on the CPU), only the first chunk checkpointed (so the
    resumed run mixes kept and recomputed chunks, of a group with resampled elements and a masked
    one), Ctrl-C in a forward pass mid-sweep: exit 130, no run at --out, the partial folder marked
    interrupted; --resume gives the uninterrupted run's bytes, vectors included."""
    from nero_cli import core
    from nero_cli.runner import ModelRunner

    monkeypatch.setattr(core, "writes_behind", lambda runners: True)
    monkeypatch.setattr(core, "CHECKPOINT_SECONDS", float("inf"))
    raw, calls = ModelRunner.raw, [0]

    def flaky(self, x):  # noqa: ANN001, ANN202
        calls[0] += 1
        if calls[0] == 30:
            raise KeyboardInterrupt
        return raw(self, x)

    monkeypatch.setattr(ModelRunner, "raw", flaky)
    out = tmp_path / "run"
    r = runner.invoke(app, [*ARGS, "--out", str(out)])
    assert r.exit_code == 130 and "--resume" in r.stderr, (r.exit_code, r.stderr)
    part = rr.partial_dir(out)
    assert not out.exists() and json.loads((part / "run.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(ModelRunner, "raw", raw)
    r = runner.invoke(app, [*ARGS, "--out", str(out), "--resume"])
    assert r.exit_code == 0, r.stderr
    assert json.loads((out / "run.json").read_text())["resumed_chunks"] == 1
    for f in FILES:
        assert (out / f).read_bytes() == (reference / f).read_bytes(), f


KILL_IN_WRITE_PHASE = """
import os, sys
from nero_cli import runrecord as rr
write_columns = rr.write_columns
def killed(path, table):  # SIGKILL right after summary.csv: results, vectors and parquet are in the partial folder
    write_columns(path, table)
    os._exit(137)
rr.write_columns = killed
from nero_cli.cli import main
sys.argv = ["nero", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
def test_resume_after_a_kill_in_the_write_phase_gives_a_fresh_runs_files(reference, tmp_path):
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-c", KILL_IN_WRITE_PHASE, *ARGS, "--parquet", "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 137, p.stderr
    assert (rr.partial_dir(out) / "vectors").is_dir() and not out.exists()
    r = runner.invoke(app, [*ARGS, "--out", str(out), "--resume"])
    assert r.exit_code == 0, r.stderr
    for f in FILES:
        assert (out / f).read_bytes() == (reference / f).read_bytes(), f
    got, want = json.loads((out / "run.json").read_text()), json.loads((reference / "run.json").read_text())
    assert got["files"] == want["files"], sorted(set(got["files"]) ^ set(want["files"]))


# ------------------------------------------------------------------------------------------ vectors of other tasks


def _page(run: Path, whole: bool) -> str:
    from nero_cli.report_data import ReportRun, build_report_data, load_run, name_runs
    from nero_cli.report_rows import TableRows, VectorRows

    r = load_run(run)
    assert isinstance(r.rows, VectorRows)
    if whole:
        r = ReportRun(r.rec, TableRows(r.rec.results(), r.rec.task), r.rec.aggregate())
    name_runs([r])
    return json.dumps(build_report_data([r], reductions=("pca",)))


@pytest.mark.slow
@pytest.mark.parametrize("args", [
    ["sample:digitdet", "--data", "sample:digits200", "--limit", "6", "-g", "shift:extent=8,step=8", "-g", "rotation:step=90"],
    ["sample:digitseg", "--data", "sample:mnistseg200", "--limit", "6", "-g", "rotation:step=45"]])
def test_report_data_of_detection_and_segmentation_runs_equal_through_vectors_and_results_csv(args, tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(app, ["evaluate", *args, "-q", "--no-plots", "--no-cache", "--out", str(out)])
    assert r.exit_code == 0, r.stderr
    assert _page(out, whole=False) == _page(out, whole=True)
