"""``nero evaluate`` from configuration (``--config``, ``nero.toml``, ``[tool.nero.evaluate]``), ``--json``,
``--version``, ``-h``, ``nero list`` and help without ``<bool>``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nero_cli.cli import app

runner = CliRunner()
BASE = ('models = ["sample:mnist-cnn"]\ndata = "sample:mnist500"\ngroup = ["rotation:step=90"]\n'
        'limit = 6\nno-plots = true\nquiet = true\n')


def run(*args: object, **kw):
    return runner.invoke(app, [str(a) for a in args], **kw)


def run_json(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


def test_config_file_gives_the_run_and_is_recorded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.toml").write_text("[evaluate]\n" + BASE)
    r = run("evaluate", "--config", "run.toml", "--out", "a")
    assert r.exit_code == 0, r.output
    info = run_json(tmp_path / "a")
    assert info["data"]["n_samples"] == 6 and info["options"]["groups"] == ["rotation:step=90"]
    conf = info["configuration"]
    assert conf["file"] == "run.toml" and conf["from_file"]["limit"] == 6 and conf["options"]["limit"] == 6
    assert not (tmp_path / "a" / "plots").exists()  # no-plots = true


def test_the_command_line_overrides_the_file_option_by_option(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.toml").write_text("[evaluate]\n" + BASE)
    r = run("evaluate", "--config", "run.toml", "--out", "b", "--limit", "3", "-g", "rotation:step=180")
    assert r.exit_code == 0, r.output
    info = run_json(tmp_path / "b")
    assert info["data"]["n_samples"] == 3 and info["options"]["groups"] == ["rotation:step=180"]
    assert "limit" not in info["configuration"]["from_file"] and info["configuration"]["options"]["limit"] == 3


def test_pyproject_table_is_found_and_no_config_ignores_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n\n[tool.nero.evaluate]\n" + BASE)
    r = run("evaluate", "--out", "c")
    assert r.exit_code == 0, r.output
    assert run_json(tmp_path / "c")["configuration"]["table"] == "tool.nero.evaluate"
    r = run("evaluate", "--out", "d", "--no-config")
    assert r.exit_code == 2 and "no MODEL arguments given" in r.output


def test_paths_in_a_config_file_are_relative_to_it(tmp_path, monkeypatch):
    import numpy as np

    conf = tmp_path / "conf"
    conf.mkdir()
    rng = np.random.default_rng(0)
    np.savez(conf / "digits.npz", images=rng.random((5, 1, 28, 28), dtype=np.float32), labels=np.arange(5))
    (conf / "run.toml").write_text('[evaluate]\nmodels = ["sample:mnist-cnn"]\ndata = "digits.npz"\n'
                                   'group = "rotation:step=180"\nno-plots = true\nquiet = true\nout = "run"\n')
    monkeypatch.chdir(tmp_path)
    r = run("evaluate", "--config", conf / "run.toml")
    assert r.exit_code == 0, r.output
    assert (conf / "run" / "results.csv").is_file()


@pytest.mark.parametrize("line,message", [
    ("limt = 3", "unknown option 'limt'; did you mean 'limit'?"),
    ('no-cache = "yes"', "'no-cache' is a flag; expected true or false"),
    ('limit = "abc"', "'limit'"),
    ('seed = [1, 2]', "'seed' takes one value"),
])
def test_bad_config_values_are_one_line(tmp_path, monkeypatch, line, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.toml").write_text("[evaluate]\n" + BASE.replace("limit = 6\n", "") + line + "\n")
    r = run("evaluate", "--config", "run.toml", "--out", "e")
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("line,message", [
    # integer options: integers only (no bools, no floats, not even 3.0, no quoted numbers)
    ("limit = true", "'limit' must be an integer, got true"),
    ("limit = 3.7", "'limit' must be an integer, got 3.7"),
    ("limit = 3.0", "'limit' must be an integer, got 3.0"),
    ('limit = "5"', "'limit' must be an integer, got \"5\""),
    ("seed = 1.9", "'seed' must be an integer, got 1.9"),
    ("sample = false", "'sample' must be an integer, got false"),
    # float options: numbers, not bools or strings
    ("score-threshold = true", "'score-threshold' must be a number, got true"),
    ('score_threshold = "0.5"', "'score_threshold' must be a number, got \"0.5\""),
    # string options: strings (integers where they read as one, e.g. batch-size = 64), no bools or floats
    ("device = true", "'device' must be a string, got true"),
    ("batch-size = 1.5", "'batch-size' must be a string, got 1.5"),
    ("shard = 1979-05-27", "'shard' must be a string, got 1979-05-27"),
    ("classes = [3, true]", "'classes' must be a string or a list of strings, got true in the list"),
    ("name = false", "'name' must be a string or a list of strings, got false"),
    # path options: strings only
    ("meta = true", "'meta' must be a string or a list of strings, got true"),
    ("weights = [1]", "'weights' must be a string or a list of strings, got 1 in the list"),
    # one option under its two spellings
    ("no_plots = false", "'no-plots' and 'no_plots' are the same option"),
    ('model = "sample:mnist-cnn"', "'models' and 'model' are the same option"),
    ('groups = "rotation:step=180"', "'group' and 'groups' are the same option"),
])
def test_wrong_types_and_twice_given_options_are_refused(tmp_path, monkeypatch, line, message):
    test_bad_config_values_are_one_line(tmp_path, monkeypatch, line, message)


def test_a_path_must_be_a_string(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.toml").write_text("[evaluate]\n" + BASE.replace('data = "sample:mnist500"', "data = 500"))
    r = run("evaluate", "--config", "run.toml", "--out", "e")
    assert r.exit_code == 2 and "run.toml [evaluate]: 'data' must be a string, got 500" in r.output, r.output


def test_a_twice_given_option_is_refused_even_when_the_command_line_sets_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.toml").write_text("[evaluate]\n" + BASE + "no_plots = false\n")
    r = run("evaluate", "--config", "run.toml", "--out", "e", "--no-plots")
    assert r.exit_code == 2 and "'no-plots' and 'no_plots' are the same option" in r.output, r.output


def test_numbers_where_options_take_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.toml").write_text("[evaluate]\n" + BASE + "score-threshold = 1\nbatch-size = 4\nseed = 0\n")
    r = run("evaluate", "--config", "run.toml", "--out", "g")
    assert r.exit_code == 0, r.output
    conf = run_json(tmp_path / "g")["configuration"]
    assert conf["options"]["score_threshold"] == 1.0 and conf["options"]["batch_size"] == "4"
    assert conf["from_file"]["score-threshold"] == 1 and conf["options"]["seed"] == 0


def test_json_prints_summary_json_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("evaluate", "sample:mnist-cnn", "--data", "sample:mnist500", "--limit", "4", "-g", "rotation:step=90",
            "--no-plots", "--json", "--out", "f", "--no-config")
    assert r.exit_code == 0, r.output
    assert r.stdout == (tmp_path / "f" / "summary.json").read_text()
    json.loads(r.stdout)


def test_version_short_help_and_list():
    from importlib.metadata import version

    r = run("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"nero {version('nero')}"
    r = run("-h")
    assert r.exit_code == 0 and "--install-completion" in r.stdout and "evaluate" in r.stdout
    assert run("evaluate", "-h").exit_code == 0
    r = run("list")
    assert r.exit_code == 0
    assert [line.split()[2] for line in r.stdout.splitlines()] == ["groups", "metrics", "samples", "tasks"]


def _commands(group, prefix=()):  # every (sub)command path of the app
    import typer.main

    cmd = typer.main.get_command(app)

    def walk(c, path):
        yield path
        for name, sub in getattr(c, "commands", {}).items():
            yield from walk(sub, (*path, name))

    return list(walk(cmd, ()))


def test_no_help_text_shows_bool():
    paths = _commands(app)
    assert len(paths) > 10
    for path in paths:
        r = run(*path, "--help")
        assert r.exit_code == 0, (path, r.output)
        assert "<bool>" not in r.stdout, path


def test_help_is_still_instant():
    code = "import sys, nero_cli.cli; print(sorted(m for m in ('torch', 'pandas', 'numpy', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
