"""A command's process imports torch with the cyclic collector paused and freezes what is alive
(nero_cli.lazy.gc_paused_imports), and again when it ends (nero_cli.cli.main); a program that
imports nero keeps its collector as it was."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

from nero_cli.lazy import gc_paused_imports

COMMAND = """
import atexit, gc, json, sys
full = []
gc.callbacks.append(lambda phase, info: full.append(1) if phase == "stop" and info["generation"] == 2 else None)
def report():
    print(json.dumps({"full_collections": len(full), "frozen": gc.get_freeze_count(), "enabled": gc.isenabled()}))
    sys.stdout.flush()
atexit.register(report)
from nero_cli.cli import main
sys.argv = ["nero", *sys.argv[1:]]
main()
"""

LIBRARY = """
import gc, json, nero_cli
t = nero_cli.evaluate("sample:mnist-cnn", "sample:mnist500", "rotation:step=90", limit=4).table
print(json.dumps({"frozen": gc.get_freeze_count(), "enabled": gc.isenabled(), "rows": len(t)}))
"""


def _last_json(code: str, *args: str) -> dict:
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_the_command_imports_torch_without_a_full_collection_and_freezes_it(tmp_path):
    run = str(tmp_path / "run")
    got = _last_json(COMMAND, "evaluate", "sample:mnist-cnn", "--data", "sample:mnist500", "-g", "rotation:step=90",
                     "--limit", "4", "--no-cache", "--no-plots", "-q", "--out", run)
    # before: three full collections over torch's objects while it was imported (0.17 s here)
    assert got["full_collections"] == 0
    assert got["frozen"] > 100_000 and got["enabled"]  # torch's objects, out of every later collection
    assert (tmp_path / "run" / "summary.json").is_file()
    got = _last_json(COMMAND, "gate", run, "--max-equivariance-error", "10")  # another command, the same way
    assert got["full_collections"] == 0 and got["frozen"] > 100_000 and got["enabled"]


def test_a_program_that_imports_nero_keeps_its_collector():
    got = _last_json(LIBRARY)
    assert got == {"frozen": 0, "enabled": True, "rows": 16}


def test_paused_imports_leave_the_collector_as_they_found_it():
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused_imports():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the caller had it off: still off
    finally:
        gc.enable()
        gc.unfreeze()
    with gc_paused_imports():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.unfreeze()
