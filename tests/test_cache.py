"""The result cache: size cap and its parsing, least-recently-used eviction, ``nero cache
info|clear`` (which never touch a file nero did not write) and the closing line of a run
that reused cached pieces."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from nero_cli.cache import DEFAULT_MAX, Cache, load_columns, max_size, parse_size, reuse_line
from nero_cli.cli import app
from nero_cli.errors import OptionError

runner = CliRunner()


def key(i: int) -> str:
    """A key shaped like make_key's (64 hex digits), distinct per ``i``."""
    return f"{i:02x}" + f"{i:062x}"


def frame(seed: int) -> dict[str, np.ndarray]:
    """A piece of fixed shape (so every entry has the same size on disk), as its columns."""
    rng = np.random.default_rng(seed)
    return {"sample": np.arange(50, dtype=np.int64), "confidence": rng.random(50)}


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return list(a) == list(b) and all(a[c].dtype == b[c].dtype and np.array_equal(a[c], b[c]) for c in a)


def entry(cache: Cache, i: int) -> Path:
    return cache.root / key(i)[:2] / f"{key(i)}.npz"


def foreign_files(root: Path) -> list[Path]:
    """Files a user (or another tool) put in the cache folder, some named almost like entries."""
    files = [root / "notes.txt",                                # not in a XX folder
             root / "ab" / "foo.npz",                           # in a XX folder, not a sha256 name
             root / "cd" / f"ab{'0' * 62}.npz",                 # a sha256 name in the wrong XX folder
             root / "ef" / f"ef{'0' * 62}.NPZ",                 # another extension
             root / "EF" / f"EF{'0' * 62}.npz",                 # upper case: nero writes lower-case hex
             root / "ef" / f"ef{'0' * 62}.npz.tmp"]
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("not nero's")
    return files


# -- the cap ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("0", 0), ("1000000", 1_000_000), ("500M", 500 * 10**6), ("500m", 500 * 10**6), ("2G", 2 * 10**9),
    ("2GB", 2 * 10**9), ("1.5G", 1_500_000_000), ("3k", 3000), ("512Mi", 512 * 2**20), ("1GiB", 2**30),
    ("1T", 10**12), (" 2 G ", 2 * 10**9)])
def test_size_parsing(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "-1", "abc", "2X", "1e9", "G", "2 G B B"])
def test_bad_sizes_are_one_clear_error(text):
    with pytest.raises(OptionError, match=r"NERO_CACHE_MAX=.*expected a size such as 500M, 2G"):
        parse_size(text)


def test_the_cap_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("NERO_CACHE_MAX", raising=False)
    assert max_size() == DEFAULT_MAX == 2 * 10**9
    monkeypatch.setenv("NERO_CACHE_MAX", "500M")
    assert max_size() == 500 * 10**6
    assert Cache.results().max_bytes == 500 * 10**6
    assert Cache().max_bytes is None  # a run's chunk store is not capped: --resume needs its chunks


# -- eviction --------------------------------------------------------------------------


def test_least_recently_used_entries_are_evicted_first(tmp_path):
    store = Cache(tmp_path)  # unbounded, to measure one entry
    store.put(key(0), frame(0))
    size = entry(store, 0).stat().st_size
    entry(store, 0).unlink()

    cache = Cache(tmp_path, max_bytes=3 * size + size // 2)  # room for three entries
    for i in (1, 2, 3):
        cache.put(key(i), frame(i))
        os.utime(entry(cache, i), (1000 * i, 1000 * i))  # stored in the order 1, 2, 3
    assert [entry(cache, i).stat().st_size for i in (1, 2, 3)] == [size] * 3
    got = cache.get(key(1))  # a hit makes 1 the most recently used
    assert got is not None and same(got, frame(1))
    assert entry(cache, 1).stat().st_mtime > 3000

    cache.put(key(4), frame(4))  # four entries do not fit: the least recently used (2) goes
    assert sorted(i for i in range(1, 6) if entry(cache, i).exists()) == [1, 3, 4]
    cache.put(key(5), frame(5))  # then 3
    assert sorted(i for i in range(1, 6) if entry(cache, i).exists()) == [1, 4, 5]
    assert cache.info().size == 3 * size <= cache.max_bytes
    assert same(load_columns(entry(cache, 5)), frame(5))


def test_an_entry_keeps_its_columns_and_their_types(tmp_path):
    cache = Cache(tmp_path)
    cols = {"group": np.array(["rotation", "scale,1"], dtype=object), "element": np.array([3, 4], dtype=np.int64),
            "correct": np.array([True, False]), "confidence": np.array([0.25, np.nan])}
    cache.put(key(1), cols)
    got = cache.get(key(1))
    assert got is not None and list(got) == list(cols)
    assert got["group"].dtype == object and got["group"].tolist() == ["rotation", "scale,1"]
    assert all(np.array_equal(got[c], cols[c], equal_nan=True) and got[c].dtype == cols[c].dtype
               for c in ("element", "correct", "confidence"))


def test_an_entry_larger_than_the_cap_is_not_kept(tmp_path):
    cache = Cache(tmp_path, max_bytes=100)
    cache.put(key(1), frame(1))
    assert cache.info().entries == 0 and cache.warning is None


def test_a_zero_cap_stores_nothing(tmp_path):
    cache = Cache(tmp_path / "c", max_bytes=0)
    cache.put(key(1), frame(1))
    assert not (tmp_path / "c").exists() and cache.get(key(1)) is None and cache.misses == 1


def test_eviction_and_clear_never_touch_foreign_files(tmp_path):
    theirs = foreign_files(tmp_path)
    cache = Cache(tmp_path, max_bytes=0)
    unbounded = Cache(tmp_path)
    for i in (1, 2, 0xab):
        unbounded.put(key(i), frame(i))
    assert cache.info().entries == 3
    assert cache.evict(0) == 3
    assert all(f.read_text() == "not nero's" for f in theirs)
    for i in (1, 2, 0xab):
        unbounded.put(key(i), frame(i))
    sizes = sum(entry(unbounded, i).stat().st_size for i in (1, 2, 0xab))
    assert unbounded.clear() == (3, sizes)
    assert all(f.read_text() == "not nero's" for f in theirs)
    assert not (tmp_path / "01").exists() and not (tmp_path / "02").exists()  # emptied XX folders go
    assert (tmp_path / "ab" / "foo.npz").exists()  # a XX folder with a foreign file stays


def test_a_served_entry_stored_again_counts_as_a_miss(tmp_path):
    cache = Cache(tmp_path)
    cache.put(key(1), frame(1))
    assert cache.get(key(1)) is not None and (cache.hits, cache.misses) == (1, 0)
    cache.put(key(1), frame(2))  # the caller did not use what it got (e.g. the wrong number of rows)
    assert (cache.hits, cache.misses) == (0, 1)


def test_info_counts_only_nero_entries(tmp_path):
    foreign_files(tmp_path)
    cache = Cache(tmp_path, max_bytes=10**6)
    for i in (1, 2):
        cache.put(key(i), frame(i))
    info = cache.info()
    assert (info.root, info.entries, info.max_size) == (tmp_path, 2, 10**6)
    assert info.size == sum(os.path.getsize(entry(cache, i)) for i in (1, 2))
    assert Cache(tmp_path / "missing").info().entries == 0


# -- nero cache info | clear -----------------------------------------------------------


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("NERO_CACHE_DIR", str(root))
    monkeypatch.delenv("NERO_CACHE_MAX", raising=False)
    return root


def test_cache_info_and_clear(cache_dir):
    theirs = foreign_files(cache_dir)
    store = Cache(cache_dir)
    for i in (1, 2, 3):
        store.put(key(i), frame(i))
    size = sum(entry(store, i).stat().st_size for i in (1, 2, 3))

    r = runner.invoke(app, ["cache", "info"])
    assert r.exit_code == 0, r.output
    assert str(cache_dir) in r.stdout and "$NERO_CACHE_DIR" in r.stdout
    assert "3 (model, group) pieces" in r.stdout and f"({size} bytes)" in r.stdout
    assert "(2000000000 bytes)" in r.stdout and "default 2G" in r.stdout

    r = runner.invoke(app, ["cache", "info"], env={"NERO_CACHE_MAX": "1k"})
    assert "(1000 bytes)" in r.stdout and "over the cap" in r.stdout

    r = runner.invoke(app, ["cache", "clear"])  # no terminal to confirm on: refused, nothing removed
    assert r.exit_code == 2 and "pass --yes" in r.stderr and store.info().entries == 3

    r = runner.invoke(app, ["cache", "clear", "--yes"])
    assert r.exit_code == 0, r.output
    assert "removed 3 entries" in r.stdout and store.info().entries == 0
    assert all(f.read_text() == "not nero's" for f in theirs)
    assert "nothing to clear" in runner.invoke(app, ["cache", "clear", "--yes"]).stdout


def test_a_bad_cap_is_one_line_and_exit_2(cache_dir):
    r = runner.invoke(app, ["cache", "info"], env={"NERO_CACHE_MAX": "lots"})
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "NERO_CACHE_MAX='lots'" in r.stderr
    assert "Traceback" not in r.output


def test_the_cache_command_is_light():
    code = ("import sys, nero_cli.cache_cli; "
            "print(any(m in sys.modules for m in ('pandas', 'numpy', 'torch', 'matplotlib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# -- the closing line of a run ---------------------------------------------------------


def test_reuse_line():
    assert reuse_line(None, 4) is None and reuse_line({"hits": 0, "misses": 4}, 4) is None
    assert reuse_line({"hits": 3, "misses": 3}, 6) == ("3 of 6 (model, group) pieces reused from the cache; "
                                                       "pass --no-cache to measure")


EVAL = ["--data", "sample:mnist500", "--limit", "8", "-g", "rotation:step=90", "--no-plots"]


def evaluate(*args: object):
    r = runner.invoke(app, ["evaluate", *map(str, args), *EVAL])
    assert r.exit_code == 0, r.output
    return r.stdout


@pytest.mark.slow
def test_a_run_says_how_many_pieces_came_from_the_cache(cache_dir, tmp_path):
    first = evaluate("sample:mnist-cnn", "--out", tmp_path / "a")
    assert "reused" not in first
    both = evaluate("sample:mnist-cnn", "sample:mnist-c4", "--out", tmp_path / "b")
    assert both.rstrip().splitlines()[-1] == ("1 of 2 (model, group) pieces reused from the cache; "
                                              "pass --no-cache to measure")
    assert "reused" not in evaluate("sample:mnist-cnn", "--out", tmp_path / "c", "--no-cache")
    a = pd.read_csv(tmp_path / "a" / "results.csv")
    b = pd.read_csv(tmp_path / "b" / "results.csv")
    pd.testing.assert_frame_equal(a, b[b["model"] == "mnist-cnn"].reset_index(drop=True))


@pytest.mark.slow
def test_a_run_keeps_the_cache_under_its_cap(cache_dir, tmp_path, monkeypatch):
    evaluate("sample:mnist-cnn", "--out", tmp_path / "a")
    one = Cache(cache_dir).info().size
    monkeypatch.setenv("NERO_CACHE_MAX", str(one + one // 2))  # room for one piece
    evaluate("sample:mnist-c4", "--out", tmp_path / "b")
    info = Cache(cache_dir).info()
    assert info.entries == 1 and info.size <= one + one // 2
    assert "1 of 1" in evaluate("sample:mnist-c4", "--out", tmp_path / "c")  # the newer piece stayed


NET = """import torch


class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(784, 10)

    def forward(self, x):
        return self.fc(x.flatten(1)) * {k}


def build():
    torch.manual_seed(0)
    return M()
"""


def test_an_edited_model_file_is_not_served_from_the_cache(cache_dir, tmp_path):
    """The key holds the sha256 of the file defining the model, not only of its weights: an
    edited forward is evaluated again (it was served the old rows)."""
    from safetensors.torch import save_file

    net, weights = tmp_path / "net.py", tmp_path / "w.safetensors"
    net.write_text(NET.format(k="1.0"))
    torch = __import__("torch")
    torch.manual_seed(0)
    save_file({"fc.weight": torch.randn(10, 784) / 28, "fc.bias": torch.zeros(10)}, str(weights))
    model = [f"{net}:build", "--weights", weights]
    evaluate(*model, "--out", tmp_path / "a")
    net.write_text(NET.format(k="30.0"))  # another length: Python's bytecode cache cannot mistake it
    edited = evaluate(*model, "--out", tmp_path / "b")
    assert "reused" not in edited
    again = evaluate(*model, "--out", tmp_path / "c")
    assert "1 of 1 (model, group) pieces reused" in again
    a, b, c = (pd.read_csv(tmp_path / x / "results.csv") for x in "abc")
    assert not a["confidence"].equals(b["confidence"]) and b.equals(c)
    info = __import__("json").loads((tmp_path / "b" / "run.json").read_text())
    assert list(info["models"][0]["code_sha256"]) == ["net.py"]
