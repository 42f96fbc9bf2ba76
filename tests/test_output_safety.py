"""Output folders: nero replaces only its own folders, holds one writer per target, and turns
I/O failures into one line with exit 5. Each case failed before the output safety work."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nero_cli import outdir
from nero_cli import runrecord as rr
from nero_cli.cli import app

runner = CliRunner()
ARGS = ["sample:mnist-cnn", "--data", "sample:mnist500", "--limit", "12", "-g", "rotation:step=90", "-q",
        "--no-cache", "--plot-samples", "none"]


def evaluate(out, *extra):
    return runner.invoke(app, ["evaluate", *ARGS, "--out", str(out), *extra])


@pytest.fixture
def user_files(tmp_path):
    d = tmp_path / "work"
    d.mkdir()
    (d / "thesis.tex").write_text("years of work")
    (d / "notes").mkdir()
    (d / "notes" / "a.md").write_text("keep")
    return d


def _intact(d: Path) -> None:
    assert (d / "thesis.tex").read_text() == "years of work" and (d / "notes" / "a.md").read_text() == "keep"


def test_out_dot_never_deletes_the_working_directory(user_files, monkeypatch):
    monkeypatch.chdir(user_files)
    for out in (".", "..", str(user_files)):
        r = evaluate(out, "--overwrite")
        assert r.exit_code == 5 and "working directory" in r.stderr and "--overwrite" not in r.stderr.split(";")[-1]
    _intact(user_files)
    assert sorted(p.name for p in user_files.iterdir()) == ["notes", "thesis.tex"]


def test_folder_of_user_files_is_never_replaced_and_overwrite_is_not_suggested(user_files):
    r = evaluate(user_files)
    assert r.exit_code == 5 and "did not write" in r.stderr and "add --overwrite" not in r.stderr
    r = evaluate(user_files, "--overwrite")
    assert r.exit_code == 5 and "thesis.tex" in r.stderr
    _intact(user_files)


def test_a_run_with_a_user_file_added_is_not_replaced(tmp_path):
    out = tmp_path / "run"
    assert evaluate(out).exit_code == 0
    (out / "my-analysis.ipynb").write_text("{}")
    r = evaluate(out, "--overwrite")
    assert r.exit_code == 5 and "my-analysis.ipynb" in r.stderr
    assert (out / "my-analysis.ipynb").exists() and rr.open_run(out).models == ["mnist-cnn"]


def test_a_folder_holding_the_data_is_refused(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    np.savez(d / "x.npz", images=np.zeros((4, 28, 28), np.uint8), labels=np.zeros(4, np.int64))
    r = runner.invoke(app, ["evaluate", "sample:mnist-cnn", "-d", str(d / "x.npz"), "-g", "rotation:step=90",
                            "--out", str(d), "--overwrite", "-q", "--no-cache"])
    assert r.exit_code == 5 and "input of this command" in r.stderr and (d / "x.npz").exists()


def test_nero_run_is_replaced_only_with_overwrite_and_atomically(tmp_path):
    out = tmp_path / "run"
    assert evaluate(out).exit_code == 0
    first = json.loads((out / "run.json").read_text())["started"]
    r = evaluate(out)
    assert r.exit_code == 5 and "add --overwrite" in r.stderr
    assert evaluate(out, "--overwrite").exit_code == 0
    assert rr.open_run(out).info["status"] == "complete" and first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no partial, old copy or lock left behind


def test_a_file_in_the_path_is_one_line_exit_5(tmp_path):
    (tmp_path / "afile").write_text("x")
    r = evaluate(tmp_path / "afile" / "sub")
    assert r.exit_code == 5 and "is a file, not a directory" in r.stderr


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT])
def test_io_errors_while_writing_are_exit_5_and_leave_nothing(tmp_path, monkeypatch, code):
    def fail(path, table):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(rr, "write_columns", fail)
    out = tmp_path / "run"
    r = evaluate(out)
    assert r.exit_code == 5, r.stderr
    # the first table written through write_columns names itself (results.csv is streamed; summary.csv is next)
    assert "summary.csv: cannot write" in r.stderr and os.strerror(code) in r.stderr and "internal error" not in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_full_cache_is_a_warning_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    import nero_cli.cache as cache_mod

    def savez(f, **arrays):
        f.write(b"x" * 100_000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_mod.np, "savez", savez)
    monkeypatch.setenv("NERO_CACHE_DIR", str(tmp_path / "cache"))
    r = runner.invoke(app, ["evaluate", *[a for a in ARGS if a != "--no-cache"], "--out", str(tmp_path / "run")])
    assert r.exit_code == 0 and "cannot be written" in r.stderr
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_damaged_runs_are_refused_by_gate_and_report(tmp_path):
    out = tmp_path / "run"
    assert evaluate(out).exit_code == 0
    text = (out / "results.csv").read_text()
    (out / "results.csv").write_text(text.splitlines()[0] + "\n")  # cut to its header
    for cmd in (["gate", str(out), "--max-equivariance-error", "1"], ["report", str(out), "--out", str(tmp_path / "r")]):
        r = runner.invoke(app, cmd)
        assert r.exit_code == 5 and "checksum" in r.stderr, (cmd, r.stderr)
    (out / "results.csv").write_text(text)
    assert runner.invoke(app, ["gate", str(out), "--max-equivariance-error", "1"]).exit_code == 0


def _edited(src: Path, dst: Path, name: str, edit) -> Path:
    shutil.copytree(src, dst)
    info = json.loads((dst / name).read_text())
    edit(info)
    (dst / name).write_text(json.dumps(info))
    return dst


def test_edited_summary_or_run_record_is_refused(tmp_path):
    """A number changed in summary.json (the gate reads its statistics there), or a run.json whose
    record no longer names the groups, is refused with exit 5, not checked as if nothing happened."""
    out = tmp_path / "run"
    assert evaluate(out).exit_code == 0
    model, group = json.loads((out / "summary.json").read_text())["models"][0], "rotation"

    def lower(s):
        s["metrics"][model][group]["equivariance_error"] = 0.0

    def empty(info):
        info["record"]["plots"] = {}

    def unsealed(info):  # as a nero that recorded no checksum of summary.json
        info.pop("summary_sha256")
        info["record"]["plots"] = {}

    cases = {"checksum": _edited(out, tmp_path / "a", "summary.json", lower),
             "disagree": _edited(out, tmp_path / "b", "run.json", empty)}
    cases["disagree "] = _edited(out, tmp_path / "c", "run.json", unsealed)
    for why, run in cases.items():
        for cmd in (["gate", str(run), "--max-equivariance-error", "1"], ["report", str(run), "--out", str(run) + "r"],
                    ["plot", str(run), "--out", str(run) + "p"]):
            r = runner.invoke(app, cmd)
            assert r.exit_code == 5 and why.strip() in r.stderr and "internal error" not in r.stderr, (cmd, r.stderr)


def test_a_held_lock_makes_a_second_writer_exit_5_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    with outdir.Lock(out):
        r = evaluate(out)
        assert r.exit_code == 5 and f"pid {os.getpid()}" in r.stderr
    assert evaluate(out).exit_code == 0


def test_a_lock_left_by_a_dead_process_does_not_block(tmp_path):
    out = tmp_path / "run"
    code = f"import sys, os; sys.path.insert(0, {str(Path.cwd())!r}); from nero_cli.outdir import Lock; " \
           f"from pathlib import Path; Lock(Path({str(out)!r})).__enter__(); os.kill(os.getpid(), 9)"
    subprocess.run([sys.executable, "-c", code], timeout=60)
    assert (tmp_path / ".run.lock").exists()  # the file stays, the kernel dropped the lock
    assert evaluate(out).exit_code == 0


# -- files of the user's beside or inside --out ------------------------------------------------


def test_a_user_file_named_like_the_lock_is_neither_written_nor_deleted(tmp_path):
    mine = tmp_path / ".run.lock"
    mine.write_text("precious\n")
    r = evaluate(tmp_path / "run")
    assert r.exit_code == 5 and "not nero's lock file" in r.stderr and "internal error" not in r.stderr
    assert mine.read_text() == "precious\n" and not (tmp_path / "run").exists()
    mine.unlink()
    (tmp_path / ".run.lock").write_text("4242\n")  # a lock left by a nero before the mark: still nero's
    assert evaluate(tmp_path / "run").exit_code == 0 and not (tmp_path / ".run.lock").exists()


def test_a_symbolic_link_as_out_is_refused_and_left_as_it_is(tmp_path):
    real = tmp_path / "real"
    assert evaluate(real).exit_code == 0
    before = {f: (real / f).read_bytes() for f in outdir.listing(real)}
    link = tmp_path / "link"
    link.symlink_to(real)
    r = evaluate(link, "--overwrite")
    assert r.exit_code == 5 and "symbolic link" in r.stderr and "internal error" not in r.stderr
    assert link.is_symlink() and {f: (real / f).read_bytes() for f in outdir.listing(real)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_a_file_added_to_out_while_the_run_runs_stops_the_swap(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert evaluate(out).exit_code == 0
    old = {f: (out / f).read_bytes() for f in outdir.listing(out)}
    write_json = rr.write_json

    def late(path, obj):  # the user saves notes into the old run just before nero swaps the new one in
        if path.name == "run.json" and obj.get("written_by") == "nero":
            (out / "notes.txt").write_text("mine")
        write_json(path, obj)

    monkeypatch.setattr(rr, "write_json", late)
    r = evaluate(out, "--overwrite")
    assert r.exit_code == 5 and "notes.txt appeared" in r.stderr and ".run.new" in r.stderr, r.stderr
    assert (out / "notes.txt").read_text() == "mine"
    assert {f: (out / f).read_bytes() for f in outdir.listing(out) if f != "notes.txt"} == old
    kept = tmp_path / ".run.new"
    assert outdir.manifest(kept, "run") is not None and not outdir.foreign_files(kept, "run")


def test_a_replaced_folder_loses_only_the_files_its_manifest_lists(tmp_path):
    old = tmp_path / "old"
    (old / "plots").mkdir(parents=True)
    (old / "plots" / "a.png").write_text("x")
    (old / "results.csv").write_text("x")
    (old / "run.json").write_text(json.dumps({"written_by": "nero", "files": ["plots/a.png", "results.csv", "run.json"]}))
    outdir._remove_own(old, "run")
    assert not old.exists()
    (old / "plots").mkdir(parents=True)
    (old / "plots" / "a.png").write_text("x")
    (old / "notes.txt").write_text("mine")  # came after the check
    (tmp_path / "outside.txt").write_text("mine too")
    (old / "run.json").write_text(json.dumps({"written_by": "nero", "files": ["plots/a.png", "run.json", "../outside.txt"]}))
    outdir._remove_own(old, "run")
    assert outdir.listing(old) == ["notes.txt"] and (old / "notes.txt").read_text() == "mine"
    assert (tmp_path / "outside.txt").read_text() == "mine too"  # an edited manifest reaches nothing outside


def test_a_full_disk_names_the_file_or_the_output(tmp_path, monkeypatch):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")  # as a close() reports it: no file name

    monkeypatch.setattr(rr.os, "fsync", full)
    with pytest.raises(outdir.OutputError, match=r"x\.json: cannot write \(No space left on device\)"):
        rr.write_atomic(tmp_path / "x.json", "{}")
    assert list(tmp_path.iterdir()) == []
    with outdir.claim(tmp_path / "run", "run", overwrite=False):
        pass
    assert str(outdir.io_error(OSError(errno.ENOSPC, "No space left on device"))).startswith(f"--out {tmp_path / 'run'}:")
