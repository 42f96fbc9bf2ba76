"""Exit codes: the README's table ("Errors and exit codes") and ``nero_cli.errors`` agree, and
the commands that read a finished run (gate, report, and plot when it exists) give the same code
for the same cause."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nero_cli import errors
from nero_cli.cli import app

README = Path(__file__).resolve().parent.parent / "README.md"
runner = CliRunner()


def readme_table() -> dict[int, str]:
    """code -> meaning, from the table under '## Errors and exit codes'."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Errors and exit codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (.+?) \|$", section, flags=re.MULTILINE)
    assert rows, "no exit-code table in the README's 'Errors and exit codes' section"
    codes = [int(c) for c, _ in rows]
    assert len(codes) == len(set(codes)), f"a code is listed twice: {codes}"
    return {int(c): meaning for c, meaning in rows}


def test_the_readme_table_is_the_codes_of_errors_py():
    table = readme_table()
    assert sorted(table) == sorted(errors.EXIT_CODES)
    for code, label in errors.EXIT_CODES.items():
        assert table[code].startswith(label), f"README says {code} is '{table[code][:40]}...', errors.py '{label}'"
    constants = {v for k, v in vars(errors).items() if k.startswith("EXIT_") and isinstance(v, int)}
    assert constants == set(errors.EXIT_CODES)


def test_every_error_class_has_a_documented_code():
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.NeroError)]
    assert {c.__name__ for c in classes} >= {"NeroError", "OptionError", "ModelError", "DataError", "OutputError"}
    for cls in classes:
        assert cls.exit_code in readme_table() and cls.exit_code not in (0, 1, 70, 130), cls
    assert (errors.OptionError.exit_code, errors.ModelError.exit_code, errors.DataError.exit_code,
            errors.OutputError.exit_code) == (2, 3, 4, 5)


def test_other_sections_do_not_contradict_the_table():
    """Prose elsewhere that names an exit code for a cause says the table's code."""
    text = README.read_text(encoding="utf-8")
    for pattern, code in ((r"not `complete`[^.]*?exit code (\d+)", 5), (r"damaged run with exit (\d+)", 5),
                          (r"usage error \(exit (\d+)\)", 2)):
        for found in re.findall(pattern, text):
            assert int(found) == code, f"README: '{pattern}' says exit {found}, the table {code}"


# -- the same cause, the same code, in every command that reads a run -----------------


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("codes")
    r = runner.invoke(app, ["evaluate", "sample:mnist-cnn", "--data", "sample:mnist500", "--limit", "8",
                            "-g", "rotation:step=90", "--no-plots", "-q", "--out", str(root / "run")])
    assert r.exit_code == 0, r.output
    (root / "afile").write_text("not a folder")
    damaged = root / "damaged"
    shutil.copytree(root / "run", damaged)  # with its vectors/ folder
    with open(damaged / "results.csv", "a") as fh:
        fh.write("edited\n")
    unfinished = root / "unfinished"
    shutil.copytree(root / "run", unfinished)
    info = json.loads((unfinished / "run.json").read_text())
    (unfinished / "run.json").write_text(json.dumps({**info, "status": "running"}))
    return root


def readers(root: Path) -> dict[str, list[str]]:
    """How each command that reads a run is called on RUN (options that make it do the least)."""
    commands = {"gate": ["gate", "RUN", "--no-config", "--max-orbit-spread", "1"],
                "report": ["report", "RUN", "--out", str(root / "report"), "--no-figures", "--no-thumbnails", "-q"]}
    if any(getattr(c, "name", None) == "plot" for c in app.registered_commands):
        commands["plot"] = ["plot", "RUN"]
    return commands


CAUSES = {"a missing RUN_DIR": ("missing", errors.EXIT_USAGE),
          "RUN_DIR is a file": ("afile", errors.EXIT_USAGE),
          "an unfinished run": ("unfinished", errors.EXIT_OUTPUT),
          "a damaged run": ("damaged", errors.EXIT_OUTPUT)}


@pytest.mark.slow
@pytest.mark.parametrize("cause", list(CAUSES))
def test_the_same_cause_gives_the_same_code(place, cause):
    name, code = CAUSES[cause]
    got = {}
    for command, args in readers(place).items():
        r = runner.invoke(app, [str(place / name) if a == "RUN" else a for a in args])
        got[command] = r.exit_code
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.output, r.output  # one line
    assert set(got.values()) == {code}, f"{cause}: {got}, the README's table says {code}"


@pytest.mark.slow
def test_a_bad_option_is_2_everywhere(place):
    for command, args in readers(place).items():
        r = runner.invoke(app, [str(place / "run") if a == "RUN" else a for a in args] + ["--no-such-option"])
        assert r.exit_code == errors.EXIT_USAGE, (command, r.output)


@pytest.mark.slow
def test_an_output_path_through_a_file_is_5_everywhere(place):
    out = str(place / "afile" / "x")
    gate = runner.invoke(app, ["gate", str(place / "run"), "--no-config", "--max-orbit-spread", "1", "--junit", out])
    report = runner.invoke(app, ["report", str(place / "run"), "--out", out, "--no-figures", "--no-thumbnails", "-q"])
    assert (gate.exit_code, report.exit_code) == (errors.EXIT_OUTPUT, errors.EXIT_OUTPUT), (gate.output, report.output)
