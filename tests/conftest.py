"""Test-suite set-up: a private result cache, so tests never share ~/.cache/nero; under
pytest-xdist (``make test`` runs two workers) one thread per worker and its subprocesses, so that
the two workers share the two cores instead of each asking torch for both."""

from __future__ import annotations

import os

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"  # the subprocesses' torch
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("NERO_CACHE_DIR", str(tmp_path_factory.mktemp("nero-cache")))
    yield
    mp.undo()
