"""What the sweep does around the model, made cheaper for issue 14: the untimed estimate of a
short sweep, the orbit's action over several passes at once, the writer thread and the
throttled progress bar. Each keeps the results of the simple way."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from nero_cli.models import LoadedModel
from nero_cli.runner import ModelRunner, repeatability_warnings, seconds_per_input
from nero_cli.write_behind import WriteBehind


class Counting(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0
        self.lin = torch.nn.Linear(4, 3)

    def forward(self, x):
        self.calls += 1
        return self.lin(x.reshape(len(x), -1)[:, :4])


def _runner() -> tuple[ModelRunner, Counting]:
    m = Counting()
    return ModelRunner(LoadedModel("counting", m, "<python object>", "module")), m


def test_a_short_sweep_is_not_timed_again():
    r, m = _runner()
    x = torch.zeros(8, 1, 2, 2)
    assert repeatability_warnings([r], x) == [] and m.calls == 2 and r.bound is not None and r.bound > 0
    calls = m.calls
    assert seconds_per_input([r], x[:1], 64, within=r.bound * 2) == r.bound  # under the limit: the bound
    assert m.calls == calls
    got = seconds_per_input([r], x[:1], 64, within=r.bound / 1e9)  # might exceed it: timed on a batch
    assert m.calls == calls + 2 and got > 0
    r2, m2 = _runner()  # never timed: always timed on a batch
    seconds_per_input([r2], x[:1], 64, within=1e9)
    assert m2.calls == 2


def test_action_over_several_passes_gives_the_same_outputs(monkeypatch):
    """runner.orbit transforms several passes' elements per action call (ORBIT_BYTES); the outputs
    equal one call per pass, bit for bit, and every pass holds the same inputs."""
    from nero_cli import runner as R
    from nero_cli.prepare import prepare
    from nero_cli.core import plan_orbits

    p = prepare(["sample:mnist-cnn"], "sample:mnist500", ["rotation:step=15"], device="cpu", limit=16)
    plan = plan_orbits(p.specs)[0]
    action = p.task.make_action(plan.spec, p.dataset)
    x, g, r = p.dataset.inputs[:16], len(plan.group), p.runners[0]
    calls = []

    def counted(xx, idx):
        calls.append(list(idx))
        return action(xx, idx)

    monkeypatch.setattr(R, "ORBIT_BYTES", 2**30)  # every element in one call
    together = r.orbit(x, counted, g, 2, p.task.prepare)
    assert len(calls) == 1 and calls[0] == list(range(g))
    monkeypatch.setattr(R, "ORBIT_BYTES", 1)  # one pass per call, as before
    calls.clear()
    apart = r.orbit(x, counted, g, 2, p.task.prepare)
    assert len(calls) == (g + 1) // 2 and torch.equal(together, apart)


class Recording:
    def __init__(self, fail_at: int | None = None, delay: float = 0.0):
        self.rows, self.fail_at, self.delay, self.threads = [], fail_at, delay, set()

    def begin(self, layout):
        self.layout = layout

    def add(self, b, samples, labels, cols):
        self.threads.add(threading.get_ident())
        time.sleep(self.delay)
        if self.fail_at is not None and len(self.rows) == self.fail_at:
            raise OSError("disk full")
        self.rows.append((b, samples.tolist()))


def test_write_behind_keeps_the_order_and_runs_off_the_sweep_thread():
    sink = Recording(delay=0.001)
    w = WriteBehind(sink)
    w.begin("layout")
    for i in range(50):
        w.add((0, i % 3), np.array([i]), np.array([-1]), {})
    w.close()
    assert sink.rows == [((0, i % 3), [i]) for i in range(50)]
    assert threading.get_ident() not in sink.threads and sink.layout == "layout"


def test_write_behind_hands_the_writer_error_to_the_sweep():
    w = WriteBehind(Recording(fail_at=3))
    w.begin(None)
    try:
        with pytest.raises(OSError, match="disk full"):
            for i in range(100):  # raised at a later add (or at close), never lost
                w.add((0, 0), np.array([i]), np.array([-1]), {})
            w.close()
    finally:
        w.abort()  # as the sweep does after an error: no writer thread outlives the test


def test_write_behind_abort_stops_writing():
    sink = Recording(delay=0.05)
    w = WriteBehind(sink, depth=2)
    w.begin(None)
    for i in range(10):
        w.add((0, 0), np.array([i]), np.array([-1]), {})
    w.abort()
    n = len(sink.rows)
    time.sleep(0.2)
    assert len(sink.rows) == n < 10  # nothing written after abort returned; the queue was dropped


def test_progress_bar_counts_every_input(monkeypatch):
    from nero_cli.console import Bar

    bar = Bar(1000)
    for _ in range(100):
        bar.advance(10)  # most within 0.1 s of the last update: counted, shown later
    bar.close()
    assert bar._p.tasks[0].completed == 1000


def test_chunk_loader_gives_the_slices_on_the_cpu():
    from nero_cli.prefetch import ChunkLoader

    x = torch.arange(50.0).reshape(10, 5)
    loader = ChunkLoader(x, 4, torch.device("cpu"))
    loader.prefetch(4)  # nothing to do on the CPU
    assert [loader.get(s).tolist() for s in (0, 4, 8)] == [x[0:4].tolist(), x[4:8].tolist(), x[8:].tolist()]
    assert loader.prefetched == 0
    loader.close()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (benchmarks/gpu_check.sh runs it)")
def test_chunk_loader_prefetches_on_cuda():
    from nero_cli.prefetch import ChunkLoader

    x = torch.randn(100, 3, 8, 8)
    loader = ChunkLoader(x, 16, torch.device("cuda"))
    got = []
    for s0 in range(0, 100, 16):
        chunk = loader.get(s0)
        loader.prefetch(s0 + 16)
        got.append((chunk * 2).cpu())  # work on the compute stream, after the side stream's copy
    loader.close()
    assert torch.equal(torch.cat(got), x * 2) and loader.prefetched == 6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (benchmarks/gpu_check.sh runs it)")
def test_a_cuda_sweep_prefetches_every_chunk_but_the_first(monkeypatch):
    from nero_cli import prefetch
    from nero_cli.api import evaluate

    served = []
    close = prefetch.ChunkLoader.close

    def counting_close(self):
        served.append(self.prefetched)
        close(self)

    monkeypatch.setattr(prefetch.ChunkLoader, "close", counting_close)
    gpu = evaluate("sample:mnist-cnn", "sample:mnist500", groups=["rotation:step=30"], device="cuda", limit=100,
                   batch_size=32)
    cpu = evaluate("sample:mnist-cnn", "sample:mnist500", groups=["rotation:step=30"], device="cpu", limit=100,
                   batch_size=32)
    assert served == [3]  # 100 samples in chunks of 32: four chunks, three loaded ahead
    assert np.allclose(gpu.table["confidence"], cpu.table["confidence"], atol=1e-4)


@pytest.mark.parametrize("fail", [False, True])
def test_a_run_written_behind_is_the_run_written_inline(tmp_path, monkeypatch, fail):
    """What a GPU run does (the files written on the writer thread), forced on the CPU: the same
    bytes; a writer that fails fails the run with its error, and leaves no complete-looking run."""
    from typer.testing import CliRunner

    from nero_cli import core, stream
    from nero_cli.cli import app

    args = ["evaluate", "sample:mnist-cnn", "--data", "sample:mnist500", "--limit", "40", "-g", "rotation:step=30",
            "--batch-size", "16", "--no-cache", "--no-plots"]
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "inline")])
    assert r.exit_code == 0, r.output
    monkeypatch.setattr(core, "writes_behind", lambda runners: True)
    if fail:
        def broken(self, *a):
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(stream.RunStream, "add", broken)
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "behind")])
    if fail:
        assert r.exit_code != 0 and "No space left" in r.output and not (tmp_path / "behind").exists()
        return
    assert r.exit_code == 0, r.output
    for name in ("results.csv", "summary.csv", "summary.json"):
        assert (tmp_path / "inline" / name).read_bytes() == (tmp_path / "behind" / name).read_bytes()


def test_the_floor_is_counted_only_when_it_decides_the_one_hour_check(monkeypatch):
    """Counting the floor's round trips builds every element's action (40 s for a 601 x 601 shift
    grid): the estimate does it only when the orbit alone is under the limit and twice it is over."""
    from nero_cli.prepare import Prepared, estimate_seconds, prepare

    p = prepare(["sample:mnist-cnn"], "sample:mnist500", ["rotation:step=45"], device="cpu", limit=4)
    exact = p.floor_inputs()
    assert exact == 4 * 4  # 4 samples x the 4 inexact rotations of 8 (45, 135, 225, 315)
    counted = []
    monkeypatch.setattr(Prepared, "floor_inputs", lambda self: counted.append(1) or exact)
    n, s = estimate_seconds(p, 64)  # no limit: the exact count
    assert n == 32 + 16 and counted == [1]
    per_input = s / n
    assert estimate_seconds(p, 64, limit=per_input * 1e-3)[0] == 32 and counted == [1]  # over anyway: not counted
    assert estimate_seconds(p, 64, limit=per_input * 1e6)[0] == 64 and counted == [1]  # under anyway: a bound
