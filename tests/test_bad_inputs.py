"""Every case of the bad-input corpus: one clear line, its exit code, no traceback, nothing left."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from nero_cli.cli import app

from .bad_inputs import CASES, build

runner = CliRunner()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    build(d)
    return d


@pytest.mark.parametrize("name,files,args,text,code", CASES, ids=[c[0] for c in CASES])
def test_bad_input(corpus, tmp_path, name, files, args, text, code):
    out = tmp_path / "run"
    argv = ["evaluate", *(a.replace("{dir}", str(corpus)) for a in args), "--out", str(out), "-q"]
    if "--limit" not in argv:
        argv += ["--limit", "4"]
    r = runner.invoke(app, argv)
    err = r.stderr.strip()
    assert r.exit_code == code, (r.exit_code, err)
    assert text in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not out.exists() and not list(tmp_path.glob(".run.partial*"))


def test_the_pickle_payload_never_ran(corpus):
    r = runner.invoke(app, ["evaluate", str(corpus / "evil.pt"), "-d", "sample:mnist500", "-g", "rotation:step=90",
                            "--out", str(corpus / "never")])
    assert r.exit_code == 3
    assert not (corpus / "PWNED").exists()


def test_debug_shows_the_traceback(corpus, tmp_path):
    r = runner.invoke(app, ["evaluate", str(corpus / "html.pt"), "-d", "sample:mnist500", "-g", "rotation",
                            "--out", str(tmp_path / "run")], env={"NERO_DEBUG": "1"})
    assert r.exit_code != 0 and type(r.exception).__name__ == "ModelError"
