"""Test-suite set-up: a private result cache, so tests never share ~/.cache/nero."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("NERO_CACHE_DIR", str(tmp_path_factory.mktemp("nero-cache")))
    yield
    mp.undo()
