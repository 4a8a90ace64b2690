"""Shared test set-up: every test writes its caches under a temporary folder, never the user's."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("BERTNLI_CACHE", str(tmp_path_factory.mktemp("cache")))
