"""A content-addressed cache of evaluated (model, orbit) pieces of the results table.

The key hashes everything that determines the rows: the checkpoint's bytes (sha256 of each
file) and the model's Python code (``LoadedModel.code_sha256``), the data's content and the selected samples, the group spec, the task, the reference
mode, normalisation, batch size, device and nero's version. Re-running a sweep evaluates
only what changed. Entries are ``.npz`` files (plain arrays, loaded with
``allow_pickle=False``) under ``$NERO_CACHE_DIR`` or ``~/.cache/nero``, named
``XX/<sha256>.npz``; nothing else in that folder is ever touched.

The result cache (:meth:`Cache.results`) is bounded: ``$NERO_CACHE_MAX`` (default 2G; ``0``
stores nothing) caps its size, a hit refreshes an entry's modification time, and after each
store the least recently used entries are removed until the cache fits. A run's chunk store
(:class:`Cache` without a cap) is not bounded: its chunks are what ``--resume`` continues from.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from .errors import OptionError

#: The environment variable of the result cache's size cap, and its default (2 GB).
MAX_ENV = "NERO_CACHE_MAX"
DEFAULT_MAX = 2 * 10**9
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]i?)?b?\s*", re.IGNORECASE)
#: Names of the files nero writes in the cache: ``XX/<64 hex digits>.npz``, XX the first two.
_SUBDIR = re.compile(r"[0-9a-f]{2}")
_ENTRY = re.compile(r"[0-9a-f]{64}\.npz")


def default_dir() -> Path:
    env = os.environ.get("NERO_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nero"


def parse_size(text: str, source: str = MAX_ENV) -> int:
    """A size in bytes from ``500M``, ``2G``, ``1.5GB``, ``512Mi`` or plain bytes (``1000000``).

    K, M, G and T are powers of 1000 (as ``GB``), Ki, Mi, Gi and Ti powers of 1024; a trailing
    ``B`` and the case are optional. Raises :class:`~nero_cli.errors.OptionError` otherwise.
    """
    m = _SIZE.fullmatch(str(text))
    if not m:
        raise OptionError(f"{source}={text!r}: expected a size such as 500M, 2G or a number of bytes "
                          "(0 stores nothing); set it to one of those or unset it for the default 2G")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


def max_size() -> int:
    """The result cache's cap in bytes: ``$NERO_CACHE_MAX``, else :data:`DEFAULT_MAX`."""
    text = os.environ.get(MAX_ENV, "").strip()
    return parse_size(text) if text else DEFAULT_MAX


def human_size(n: int) -> str:
    """``1234567`` -> ``1.2 MB`` (powers of 1000, as :func:`parse_size` reads ``M``)."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def reuse_line(cache: dict[str, Any] | None, pieces: int) -> str | None:
    """The closing line of a run that reused cached pieces (``cache``: run.json's ``cache``
    record, ``pieces``: the run's (model, group) pieces); None when nothing came from the cache."""
    hits = int((cache or {}).get("hits") or 0)
    if not hits:
        return None
    return f"{hits} of {pieces} (model, group) pieces reused from the cache; pass --no-cache to measure"


def make_key(parts: dict[str, Any]) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def save_columns(path: Path, columns: Mapping[str, np.ndarray]) -> None:
    """Write a table's columns losslessly as plain arrays (``.npz``), atomically (text as ``str``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"__columns__": np.array(list(columns), dtype=str)}
    for i, col in enumerate(map(np.asarray, columns.values())):
        arrays[f"c{i}"] = col.astype(str) if col.dtype == object else col
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)  # never leave a large orphan behind
        raise


def n_rows(columns: Mapping[str, np.ndarray]) -> int:
    """The number of rows of a table given as its columns (0 without columns)."""
    return len(next(iter(columns.values()))) if columns else 0


def load_columns(path: Path) -> dict[str, np.ndarray]:
    """Read what :func:`save_columns` wrote (``allow_pickle=False``; text columns as ``object``)."""
    with np.load(path, allow_pickle=False) as z:
        order = [str(c) for c in z["__columns__"].tolist()]
        cols = {c: z[f"c{i}"] for i, c in enumerate(order)}
    return {c: v.astype(object) if v.dtype.kind == "U" else v for c, v in cols.items()}


@dataclass(frozen=True)
class CacheInfo:
    """What ``nero cache info`` shows: the folder, nero's entries in it and the cap."""

    root: Path
    entries: int
    size: int
    max_size: int | None


class Cache:
    """Get and put results pieces (a table's columns, without the ``model`` column) by key.

    ``max_bytes``: the size cap (None: unbounded, as a run's chunk store; 0: store nothing).
    :meth:`results` opens the user's result cache with the cap of ``$NERO_CACHE_MAX``.
    """

    def __init__(self, root: Path | None = None, max_bytes: int | None = None):
        self.root = Path(root) if root else default_dir()
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._served: set[str] = set()
        #: The first failure to store an entry (the cache degrades to a warning, the run goes on).
        self.warning: str | None = None

    @classmethod
    def results(cls, root: Path | None = None) -> "Cache":
        """The result cache (``root`` or :func:`default_dir`), capped by :func:`max_size`."""
        return cls(root, max_bytes=max_size())

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def has(self, key: str) -> bool:
        """Whether an entry of ``key`` is stored (it may still turn out damaged on :meth:`get`)."""
        return self._path(key).is_file()

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        """The entry of ``key`` (refreshing its modification time, for the LRU order), or None."""
        path = self._path(key)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            columns = load_columns(path)
        except Exception:  # noqa: BLE001 - a damaged entry is a miss, never an error
            self.misses += 1
            return None
        try:
            os.utime(path)
        except OSError:
            pass  # a read-only cache still serves its entries
        self.hits += 1
        self._served.add(key)
        return columns

    def put(self, key: str, columns: Mapping[str, np.ndarray]) -> None:
        """Store ``columns`` as ``key`` and evict the least recently used entries beyond the cap.

        Storing a key that :meth:`get` served means the caller did not use that entry: it
        counts as a miss, not a hit."""
        if key in self._served:
            self._served.discard(key)
            self.hits -= 1
            self.misses += 1
        if self.max_bytes == 0:
            return
        try:
            save_columns(self._path(key), columns)
            if self.max_bytes is not None:
                self.evict(self.max_bytes)
        except OSError as exc:  # a read-only or full cache never fails a run
            if self.warning is None:
                self.warning = (f"the result cache {self.root} cannot be written ({exc.strerror or exc}); "
                                "results are not cached")

    def entries(self) -> Iterator[tuple[Path, os.stat_result]]:
        """nero's entry files (``XX/<sha256>.npz``, regular files) and their stat, in no order."""
        try:
            subdirs = [d for d in self.root.iterdir() if _SUBDIR.fullmatch(d.name) and d.is_dir()]
        except OSError:
            return
        for sub in subdirs:
            try:
                names = [n for n in os.listdir(sub) if _ENTRY.fullmatch(n) and n.startswith(sub.name)]
            except OSError:
                continue
            for name in names:
                try:
                    st = os.lstat(sub / name)
                except OSError:
                    continue  # removed meanwhile (another nero evicting)
                if stat.S_ISREG(st.st_mode):
                    yield sub / name, st

    def evict(self, max_bytes: int) -> int:
        """Remove the least recently used entries (oldest modification time first) until the
        entries fit in ``max_bytes``; return how many were removed."""
        found = sorted(self.entries(), key=lambda e: (e[1].st_mtime_ns, e[0].name))
        total = sum(st.st_size for _, st in found)
        removed = 0
        for path, st in found:
            if total <= max_bytes:
                break
            _remove(path)
            total -= st.st_size
            removed += 1
        return removed

    def info(self) -> CacheInfo:
        """The folder, the number and total size of nero's entries, and the cap."""
        found = list(self.entries())
        return CacheInfo(self.root, len(found), sum(st.st_size for _, st in found), self.max_bytes)

    def clear(self) -> tuple[int, int]:
        """Remove every entry nero wrote (and its emptied ``XX`` folders); any other file stays.
        Returns the number and total size of the entries removed."""
        n = size = 0
        for path, st in list(self.entries()):
            _remove(path)
            n, size = n + 1, size + st.st_size
        return n, size


def _remove(entry: Path) -> None:
    """Delete one entry file, then its ``XX`` folder if that is now empty."""
    entry.unlink(missing_ok=True)
    try:
        entry.parent.rmdir()  # fails (and is meant to) while anything is left in it
    except OSError:
        pass
