"""A content-addressed cache of evaluated (model, orbit) pieces of the results table.

The key hashes everything that determines the rows: the checkpoint's bytes (sha256 of each
file), the data's content and the selected samples, the group spec, the task, the reference
mode, normalisation, batch size, device and nero's version. Re-running a sweep evaluates
only what changed. Entries are ``.npz`` files (plain arrays, loaded with
``allow_pickle=False``) under ``$NERO_CACHE_DIR`` or ``~/.cache/nero``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def default_dir() -> Path:
    env = os.environ.get("NERO_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nero"


def make_key(parts: dict[str, Any]) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def save_frame(path: Path, frame: pd.DataFrame) -> None:
    """Write a DataFrame losslessly as plain arrays (``.npz``), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"__columns__": np.array(list(frame.columns), dtype=str)}
    for i, c in enumerate(frame.columns):
        col = frame[c].to_numpy()
        arrays[f"c{i}"] = col.astype(str) if col.dtype == object else col
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)  # never leave a large orphan behind
        raise


def load_frame(path: Path) -> pd.DataFrame:
    """Read what :func:`save_frame` wrote (``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as z:
        order = [str(c) for c in z["__columns__"].tolist()]
        frame = pd.DataFrame({c: z[f"c{i}"] for i, c in enumerate(order)})
    for c in frame.columns:
        if frame[c].dtype.kind == "U":
            frame[c] = frame[c].astype(object)
    return frame


class Cache:
    """Get and put results pieces (DataFrames without the ``model`` column) by key."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else default_dir()
        self.hits = 0
        self.misses = 0
        #: The first failure to store an entry (the cache degrades to a warning, the run goes on).
        self.warning: str | None = None

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str) -> pd.DataFrame | None:
        path = self._path(key)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            frame = load_frame(path)
        except Exception:  # noqa: BLE001 - a damaged entry is a miss, never an error
            self.misses += 1
            return None
        self.hits += 1
        return frame

    def put(self, key: str, frame: pd.DataFrame) -> None:
        try:
            save_frame(self._path(key), frame)
        except OSError as exc:  # a read-only or full cache never fails a run
            if self.warning is None:
                self.warning = (f"the result cache {self.root} cannot be written ({exc.strerror or exc}); "
                                "results are not cached")
