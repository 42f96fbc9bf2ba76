"""Atomic, resumable and deterministic runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nero_cli.errors import NeroError
from nero_cli.run import evaluate_run

ARGS = (["sample:mnist-cnn", "sample:mnist-cnn-aug"], "sample:mnist500", ["rotation:step=30", "scale:step=0.25"])
KW = dict(limit=60, batch_size=32, plots=False, cache=False, device="cpu")


class StopAfter:
    """A progress bar that presses Ctrl-C after ``n`` updates."""

    def __init__(self, n: int):
        self.n = n

    def __call__(self, total: int) -> "StopAfter":
        return self

    def advance(self, k: int) -> None:
        self.n -= 1
        if self.n < 0:
            raise KeyboardInterrupt

    def close(self) -> None:
        pass


def test_same_command_gives_the_same_bytes(tmp_path):
    a = evaluate_run(*ARGS, tmp_path / "a", **KW).out
    b = evaluate_run(*ARGS, tmp_path / "b", **KW).out
    for f in ("results.csv", "summary.csv", "summary.json"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert json.loads((a / "run.json").read_text())["status"] == "complete"


def test_resume_after_interruption_is_byte_identical(tmp_path):
    whole = evaluate_run(*ARGS, tmp_path / "whole", **KW).out
    out = tmp_path / "run"
    with pytest.raises(NeroError) as info:
        evaluate_run(*ARGS, out, progress_factory=StopAfter(30), **KW)
    assert info.value.exit_code == 130 and "--resume" in str(info.value)
    partial = tmp_path / ".run.partial"
    assert not out.exists() and partial.is_dir()
    assert json.loads((partial / "run.json").read_text())["status"] == "interrupted"
    assert not (partial / "results.csv").exists()  # nothing there looks complete
    done = evaluate_run(*ARGS, out, resume=True, **KW)
    info = json.loads((done.out / "run.json").read_text())
    assert info["status"] == "complete" and info["resumed_chunks"] > 0
    assert (done.out / "results.csv").read_bytes() == (whole / "results.csv").read_bytes()
    assert (done.out / "summary.json").read_bytes() == (whole / "summary.json").read_bytes()
    assert not partial.exists()


def test_resume_refuses_other_options(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(NeroError):
        evaluate_run(*ARGS, out, progress_factory=StopAfter(20), **KW)
    with pytest.raises(NeroError, match="other models, data or options"):
        evaluate_run(ARGS[0], ARGS[1], ["rotation:step=45"], out, resume=True, **KW)
    with pytest.raises(NeroError, match="no interrupted run"):
        evaluate_run(*ARGS, tmp_path / "other", resume=True, **KW)


def test_a_failed_run_leaves_nothing_that_looks_complete(tmp_path):
    with pytest.raises(NeroError):
        evaluate_run(["sample:mnist-cnn"], "sample:mnist500", ["rotation"], tmp_path / "run", plot_metric="iou", **KW)
    assert list(Path(tmp_path).iterdir()) == []
