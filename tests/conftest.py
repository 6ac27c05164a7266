"""Shared fixtures: a real OpenAI-compatible server on 127.0.0.1, an isolated cache, clean settings."""

from __future__ import annotations

import importlib

import pytest

import dsr_core as dsr
from dsr_core.testing.server import LMTestServer

settings_module = importlib.import_module("dsr_core.settings")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own cache directory (the default cache follows DSR_CACHE_DIR)."""
    directory = tmp_path / "dsr-cache"
    monkeypatch.setenv("DSR_CACHE_DIR", str(directory))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return directory


@pytest.fixture(autouse=True)
def clean_settings():
    saved = dict(settings_module._defaults)
    yield
    settings_module._defaults.clear()
    settings_module._defaults.update(saved)


@pytest.fixture
def server():
    with LMTestServer() as srv:
        yield srv


@pytest.fixture
def lm(server):
    """An LM pointed at the test server, with fast retries."""
    return dsr.LM("test-model", api_base=server.url, retry_backoff=(0.01, 0.05), timeout=5.0)
