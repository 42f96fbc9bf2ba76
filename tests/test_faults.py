"""Fault injection through real processes: SIGKILL at random moments (the final rename and the
--overwrite swap included), four writers on one --out, and SIGTERM. After every fault the target
is either absent or a complete run that validates; --resume then finishes byte-identical."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nero_cli import runrecord as rr
from nero_cli.errors import NeroError

pytestmark = pytest.mark.slow
ARGS = ["sample:mnist-cnn", "--data", "sample:mnist500", "--limit", "60", "-g", "rotation:step=30", "-q",
        "--no-cache", "--plot-samples", "none", "--batch-size", "16"]


def nero(out: Path, *extra: str, env: dict | None = None, limit: str = "60", extra_model: str | None = None) -> subprocess.Popen:
    args = [a if a != "60" else limit for a in ARGS]
    if extra_model:  # this model instead of the sample
        args[0] = extra_model
    return subprocess.Popen([sys.executable, "-m", "nero_cli", "evaluate", *args, "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, cwd=Path(__file__).resolve().parents[1])


def state(out: Path) -> str:
    """'absent' or 'complete' (a run that validates); anything else fails the test."""
    if not out.exists():
        return "absent"
    try:
        run = rr.open_run(out)
    except NeroError as exc:  # a half-run
        pytest.fail(f"{out} is neither absent nor complete: {exc}")
    return "complete" if run.info["status"] == "complete" else "?"


def _first_chunk(out: Path, timeout: float = 60) -> None:
    chunks = rr.partial_dir(out) / "chunks"
    deadline = time.time() + timeout
    while time.time() < deadline and not list(chunks.rglob("*.npz")):
        time.sleep(0.05)


def _same(a: Path, b: Path) -> None:
    for f in ("results.csv", "summary.csv", "summary.json"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_sigkill_at_random_moments_never_leaves_a_half_run(tmp_path):
    rng = random.Random(1234)
    old = tmp_path / "old"
    assert nero(old).wait(120) == 0
    kills = 0
    for k in range(20):
        fresh = tmp_path / f"fresh{k % 3}"
        target, extra = (old, ["--overwrite"]) if k % 2 else (fresh, [])
        p = nero(target, *extra, env={"NERO_TEST_SWAP_PAUSE": "0.6"} if k % 4 == 1 else None)
        time.sleep(rng.uniform(0.8, 3.2))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.wait(60)
        assert state(old) == "complete"  # an --overwrite swap never loses the previous run
        assert state(fresh) in ("absent", "complete")
    assert kills >= 10
    last = tmp_path / "last"  # a kill after the first chunk, then --resume: identical to a whole run
    p = nero(last)
    _first_chunk(last)
    p.send_signal(signal.SIGKILL)
    p.wait(60)
    assert state(last) == "absent"
    r = nero(last, "--resume")
    assert r.wait(120) == 0, r.stderr.read()
    _same(last, old)


def test_four_writers_on_one_out_exactly_one_wins(tmp_path):
    out = tmp_path / "run"
    procs = [nero(out) for _ in range(4)]
    codes = [p.wait(180) for p in procs]
    errs = [p.stderr.read() for p in procs]
    assert sorted(codes) == [0, 5, 5, 5], errs
    assert all("another nero process" in e or "already holds a nero run" in e for c, e in zip(codes, errs) if c)
    assert state(out) == "complete"


def test_sigterm_is_an_interruption_and_resume_completes_identically(tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "run"
    assert nero(ref, limit="200").wait(120) == 0
    p = nero(out, limit="200")
    partial = rr.partial_dir(out)
    _first_chunk(out)
    p.send_signal(signal.SIGTERM)
    assert p.wait(60) == 130
    assert json.loads((partial / "run.json").read_text())["status"] == "interrupted" and not out.exists()
    assert nero(out, "--resume", limit="200").wait(120) == 0
    assert rr.open_run(out).info["resumed_chunks"] >= 1
    _same(out, ref)


def test_resume_refuses_a_model_whose_code_changed(tmp_path):
    """--resume continues only the same sweep: an edited model file (its weights unchanged) is
    another model, as new weights are."""
    net = tmp_path / "net.py"
    net.write_text("import sample_models\n\n\ndef build():\n    return sample_models.build_sample('mnist-cnn')\n")
    out = tmp_path / "run"
    p = nero(out, limit="200", extra_model=f"{net}:build")
    _first_chunk(out)
    p.send_signal(signal.SIGTERM)
    assert p.wait(60) == 130
    net.write_text(net.read_text() + "# edited\n")
    r = nero(out, "--resume", limit="200", extra_model=f"{net}:build")
    assert r.wait(120) == 2 and "other models" in r.stderr.read()
