"""The sweep's per-pass costs cut in session 6: NaN/inf checked once per chunk (exactly as per
pass), input slices reused where aligned, and the CLI's allocator setting (nero_cli.heap)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from nero_cli import heap
from nero_cli.errors import ModelError
from nero_cli.runner import ModelRunner
from nero_cli.tasks import get_task
from nero_cli.tasks.base import all_finite

BIG = torch.finfo(torch.float32).max


@pytest.mark.parametrize("values, expected", [
    ([1.0, -2.0, 3.5], True),
    ([BIG, BIG, BIG], True),  # the sum overflows to inf, every value is finite
    ([-BIG, -BIG], True),
    ([1.0, float("nan")], False),
    ([1.0, float("inf")], False),
    ([float("inf"), float("-inf")], False),  # the sum is NaN
    ([BIG, float("-inf")], False),
])
def test_all_finite_agrees_with_isfinite(values, expected):
    for dtype in (torch.float32, torch.float64, torch.float16):
        x = torch.tensor(values, dtype=torch.float64).to(dtype)  # float16: BIG becomes inf
        assert all_finite(x) == bool(torch.isfinite(x).all()), (values, dtype)
    assert all_finite(torch.tensor(values)) is expected
    assert all_finite(torch.arange(5)) and all_finite(torch.zeros(0))


class _BadPass(torch.nn.Module):
    """Logits; ``bad`` on the forward pass number ``at`` (counting from 0) and finite elsewhere."""

    def __init__(self, at: int, bad: float):
        super().__init__()
        self.at, self.bad, self.calls = at, bad, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.flatten(1)[:, :10].clone()
        if self.calls == self.at:
            out[-1, 3] = self.bad
        self.calls += 1
        return out


class _Loaded:
    def __init__(self, module: torch.nn.Module):
        from nero_cli.model_formats import ModelMeta

        self.module, self.name, self.meta = module, "bad-pass", ModelMeta()


def _shift(x: torch.Tensor, elements: list[int]) -> torch.Tensor:
    return torch.stack([torch.roll(x, e, -1) for e in elements])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("at", [0, 3, 5])
def test_a_non_finite_output_in_any_pass_is_the_tasks_one_line(bad, at):
    runner = ModelRunner(_Loaded(_BadPass(at, bad)))  # type: ignore[arg-type]
    x = torch.rand(4, 1, 8, 8)
    with pytest.raises(ModelError, match=r"^model bad-pass: returned NaN or inf logits; check the model"):
        runner.orbit(x, _shift, 6, 1, get_task("classification").prepare)


def test_finite_outputs_are_the_same_with_the_check_once_per_chunk():
    runner = ModelRunner(_Loaded(_BadPass(-1, 0.0)))  # type: ignore[arg-type]
    x = torch.rand(4, 1, 8, 8)
    out = runner.orbit(x, _shift, 6, 2, get_task("classification").prepare)
    want = torch.stack([runner.model.module(_shift(x, [e])[0]) for e in range(6)])
    assert out.shape == (6, 4, 10) and torch.equal(out, want)


def test_the_other_tasks_check_finiteness_on_request_only():
    flow, boxes = get_task("flow").prepare, get_task("detection").prepare
    f = torch.zeros(2, 2, 4, 4)
    f[1, 0, 2, 2] = float("nan")
    b = torch.zeros(2, 3, 6)
    b[0, 1, 4] = float("inf")
    for prepare, out, what in ((flow, f, "flow"), (boxes, b, "boxes")):
        assert prepare(out, 2, "m", finite=False).shape == out.shape
        with pytest.raises(ModelError, match=f"NaN or inf {what}"):
            prepare(out, 2, "m")
    seg = torch.zeros(2, 3, 4, 4)
    seg[0, 1, 0, 0] = float("-inf")  # the softmax would hide it: checked whatever finite says
    with pytest.raises(ModelError, match="NaN or inf logits"):
        get_task("segmentation").prepare(seg, 2, "m", finite=False)


# ----------------------------------------------------------------------------------- the allocator

FAULTS = textwrap.dedent("""
    import json, resource, sys, torch
    from nero_cli import heap
    if sys.argv[1] == "on":
        heap.allow()
    ok = heap.keep_freed_memory()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    conv = lambda cin: [torch.nn.Conv2d(cin, 64, 3, padding=1), torch.nn.ReLU()]
    m = torch.nn.Sequential(*conv(1), *conv(64), *conv(64), torch.nn.AdaptiveAvgPool2d(1)).eval()
    x = torch.rand(32, 1, 28, 28)  # 6.4 MB per activation
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with torch.inference_mode():
        for _ in range(5):
            m(x)
        before = faults()
        for _ in range(20):
            m(x)
    print(json.dumps({"set": ok, "faults": faults() - before}))
""")



def _faults(mode: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not heap.user_tuned({k: v})}
    p = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, env={**clean, **env},
                       check=True)
    return json.loads(p.stdout)


def _faults_shown(mode: str, **env: str) -> list[dict]:
    """Measurements of a process whose allocator nero leaves at glibc's defaults, until one shows the
    pages handed back (four at most): glibc's own heuristics decide when it returns them, and now
    and then a default process keeps them over all twenty passes too, showing no difference."""
    tries = [_faults(mode, **env)]
    while tries[-1]["faults"] <= 4 * 1563 and len(tries) < 4:
        tries.append(_faults(mode, **env))
    return tries


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_cli_keeps_freed_memory_for_the_next_pass():
    on, offs = _faults("on"), _faults_shown("off")
    off = offs[-1]
    assert on["set"] and not off["set"]
    # by default glibc hands the activations' pages back after most passes and the next pass
    # faults them in again (1,000 to 10,000 faults a pass here, by its heuristics of the moment);
    # kept, the same pages serve every pass: at most the heap's growth by a few 6.4 MB
    # activations (1,563 pages each) once, over the twenty passes (seen: 0, or 3,136)
    assert on["faults"] <= 4 * 1563 < off["faults"], (offs, on)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_user_chosen_allocator_is_left_alone():
    assert heap.user_tuned({"MALLOC_ARENA_MAX": "2"}) and heap.user_tuned({"LD_PRELOAD": "libjemalloc.so"})
    assert heap.user_tuned({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}) and not heap.user_tuned({"HOME": "/"})
    tries = _faults_shown("on", MALLOC_ARENA_MAX="2")
    assert not any(t["set"] for t in tries) and tries[-1]["faults"] > 4 * 1563, tries


def test_only_a_command_that_runs_a_model_sets_it(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from nero_cli.cli import app

    calls: list[int] = []
    monkeypatch.setattr(heap, "_allowed", [])
    monkeypatch.setattr(heap, "_done", [])
    monkeypatch.setattr(heap, "keep_freed_memory", lambda: calls.append(len(heap._allowed)) or False)
    cli = CliRunner()
    assert cli.invoke(app, ["list", "tasks"]).exit_code == 0 and calls == []  # no model: not even asked
    r = cli.invoke(app, ["evaluate", "sample:mnist-cnn", "--data", "sample:mnist500", "--limit", "2", "-g",
                         "rotation:step=180", "--no-plots", "--no-cache", "-q", "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert calls and all(c > 0 for c in calls)  # asked by each model runner, after the command's consent


def test_the_python_api_never_sets_it(monkeypatch):
    import nero_cli

    monkeypatch.setattr(heap, "_allowed", [])
    monkeypatch.setattr(heap, "_done", [])
    nero_cli.evaluate("sample:mnist-cnn", "sample:mnist500", "rotation:step=180", limit=2, device="cpu")
    assert heap._done == [] and heap.keep_freed_memory() is False
