"""--shard i/n with nero merge, and torchrun over gloo: identical to one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nero_cli.cli import app

runner = CliRunner()
ARGS = ["sample:mnist-cnn", "sample:mnist-c4", "--data", "sample:mnist500", "--limit", "90", "-g", "rotation:step=45",
        "-g", "scale:step=0.25", "--batch-size", "16", "-q", "--no-cache", "--plot-samples", "worst:1"]
SAME = ("results.csv", "summary.csv", "summary.json", "vectors/index.json", "vectors/samples.npy", "vectors/b0_0.npy")


def vectors_of(run: Path) -> dict:
    """run.json's checksums of every vectors file."""
    return json.loads((run / "run.json").read_text())["vectors"]


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "run"
    r = runner.invoke(app, ["evaluate", *ARGS, "--out", str(out)])
    assert r.exit_code == 0, r.stderr
    return out


def test_shards_merged_equal_the_whole(whole, tmp_path):
    for i in range(3):
        r = runner.invoke(app, ["evaluate", *ARGS, "--shard", f"{i}/3", "--out", str(tmp_path / f"s{i}")])
        assert r.exit_code == 0, r.stderr
        info = json.loads((tmp_path / f"s{i}" / "run.json").read_text())
        assert info["shard"]["index"] == i and info["data"]["n_samples"] < 90
    r = runner.invoke(app, ["merge", *(str(tmp_path / f"s{i}") for i in (2, 0, 1)), "--out", str(tmp_path / "merged"), "-q"])
    assert r.exit_code == 0, r.stderr
    for f in SAME:
        assert (tmp_path / "merged" / f).read_bytes() == (whole / f).read_bytes(), f
    assert json.loads((tmp_path / "merged" / "run.json").read_text())["status"] == "complete"
    assert vectors_of(tmp_path / "merged") == vectors_of(whole) and len(vectors_of(whole)["files"]) == 2 * 2 + 2
    assert (tmp_path / "merged" / "plots" / "rotation_confidence.png").exists()


def test_merge_refuses_missing_or_foreign_shards(whole, tmp_path):
    for i in range(2):
        r = runner.invoke(app, ["evaluate", *ARGS, "--shard", f"{i}/2", "--out", str(tmp_path / f"s{i}")])
        assert r.exit_code == 0, r.stderr
    r = runner.invoke(app, ["merge", str(tmp_path / "s0"), "--out", str(tmp_path / "m")])
    assert r.exit_code == 5 and "missing [1]" in r.stderr
    r = runner.invoke(app, ["merge", str(tmp_path / "s0"), str(whole), "--out", str(tmp_path / "m")])
    assert r.exit_code == 5 and "not a shard" in r.stderr
    r = runner.invoke(app, ["evaluate", *ARGS, "--shard", "2/2", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "0 <= i < n" in r.stderr


def _free_port() -> int:
    """A port nothing listens on now (a fixed one collides with another torchrun on the machine)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_torchrun_two_processes_equal_one(tmp_path):
    # torchrun gives each worker one thread; the single process gets one too, since CPU kernels may
    # sum in another order with another thread count
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NERO_BACKEND": "gloo"}
    one = [sys.executable, "-m", "nero_cli", "evaluate", *ARGS, "--out", str(tmp_path / "one")]
    p = subprocess.run(one, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    two = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
           "-m", "nero_cli", "evaluate", *ARGS, "--out", str(tmp_path / "two")]
    p = subprocess.run(two, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    for f in SAME:
        assert (tmp_path / "two" / f).read_bytes() == (tmp_path / "one" / f).read_bytes(), f
    assert json.loads((tmp_path / "two" / "run.json").read_text())["processes"] == 2
    assert vectors_of(tmp_path / "two") == vectors_of(tmp_path / "one")


def test_batch_size_auto_backs_off_on_out_of_memory():
    import torch

    from nero_cli.prepare import prepare, resolve_batch_size
    from nero_cli.runner import AUTO_BATCH_SIZES

    class Greedy(torch.nn.Module):
        """Runs out of memory above 128 inputs."""

        def forward(self, x):
            if x.shape[0] > 128:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return x.flatten(1)[:, :10]

    p = prepare([Greedy()], "sample:mnist500", ["rotation:step=90"], device="cpu", limit=4)
    size = resolve_batch_size(p, "auto")
    assert size in AUTO_BATCH_SIZES and size <= 128
    assert resolve_batch_size(p, "64") == 64
    with pytest.raises(Exception, match="positive number or auto"):
        resolve_batch_size(p, "fast")

    class Broken(torch.nn.Module):
        def forward(self, x):
            raise ValueError("not a memory problem")

    from nero_cli.errors import ModelError
    from nero_cli.models import LoadedModel
    from nero_cli.runner import ModelRunner, autotune_batch_size

    with pytest.raises(ModelError, match="not a memory problem"):  # refused before any work
        prepare([Broken()], "sample:mnist500", ["rotation:step=90"], device="cpu", limit=4)
    broken = ModelRunner(LoadedModel("broken", Broken(), "<python object>", "module"))
    with pytest.raises(ValueError):  # the autotuner backs off on out-of-memory only
        autotune_batch_size([broken], torch.zeros(1, 1, 28, 28))


def test_channels_last_and_amp_flags_keep_results(whole, tmp_path):
    r = runner.invoke(app, ["evaluate", *ARGS, "--channels-last", "--amp", "--out", str(tmp_path / "cl")])
    assert r.exit_code == 0, r.stderr
    import pandas as pd

    a, b = pd.read_csv(whole / "results.csv"), pd.read_csv(tmp_path / "cl" / "results.csv")
    assert (a["prediction"] == b["prediction"]).mean() > 0.99  # --amp is a no-op on CPU; layout changes rounding only
    assert abs(a["confidence"] - b["confidence"]).max() < 1e-4


def test_chunking_bounds_every_forward_pass():
    from nero_cli.core import chunk_sizes
    from nero_cli.shard import shard_positions

    for n, g, b in [(500, 72, 256), (10, 72, 256), (1000, 1, 64), (3, 2, 1)]:
        per_chunk, per_pass = chunk_sizes(n, g, b)
        assert per_chunk * per_pass <= max(b, per_chunk)  # one pass holds at most about batch_size inputs
        assert per_chunk <= n and per_pass <= g
    # shards cover every sample once, in order, on whole chunks of the full run
    for n, b, k in [(90, 16, 3), (500, 256, 2), (17, 4, 5)]:
        parts = [shard_positions(n, b, i, k) for i in range(k)]
        assert np.concatenate(parts).tolist() == list(range(n))
        assert all(p[0] % min(n, b) == 0 for p in parts)


def test_merge_reads_the_records_and_never_loads_a_model(tmp_path):
    """The shards' run records say everything: merging works after the model file is gone."""
    net = tmp_path / "net.py"
    net.write_text("import torch\n\ndef build():\n    torch.manual_seed(0)\n"
                   "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))\n")
    args = [f"{net}:build", "--data", "sample:mnist500", "--limit", "40", "-g", "rotation:step=90", "--batch-size",
            "8", "-q", "--no-cache", "--no-plots"]
    r = runner.invoke(app, ["evaluate", *args, "--out", str(tmp_path / "whole")])
    assert r.exit_code == 0, r.stderr
    for i in range(2):
        r = runner.invoke(app, ["evaluate", *args, "--shard", f"{i}/2", "--out", str(tmp_path / f"s{i}")])
        assert r.exit_code == 0, r.stderr
    net.unlink()
    r = runner.invoke(app, ["merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "m"),
                            "-q", "--no-plots"])
    assert r.exit_code == 0, r.stderr
    for f in SAME:
        assert (tmp_path / "m" / f).read_bytes() == (tmp_path / "whole" / f).read_bytes(), f
