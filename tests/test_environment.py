"""The DSR_ variables: parsed once per change, a bad value named, secrets never shown."""

from __future__ import annotations

import pytest

from dsr_core.environment import EnvironmentVariableError, environment, secret, variable


def test_defaults_and_a_change_seen_at_the_next_read(monkeypatch, tmp_path):
    for name in ("DSR_CACHE", "DSR_CACHE_DIR", "DSR_HTTP_TRANSPORT", "DSR_GC_THRESHOLD"):
        monkeypatch.delenv(name, raising=False)
    settings = environment()
    assert (settings.cache, settings.cache_dir, settings.use_aiohttp) == (True, None, True)
    assert settings.gc_threshold == 50_000
    assert environment() == settings

    monkeypatch.setenv("DSR_CACHE", " Off ")
    monkeypatch.setenv("DSR_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("DSR_HTTP_TRANSPORT", "httpx")
    monkeypatch.setenv("DSR_GC_THRESHOLD", "20_000")
    changed = environment()
    assert (changed.cache, changed.cache_dir, changed.use_aiohttp) == (False, tmp_path / "c", False)
    assert changed.gc_threshold == 20_000
    assert variable("DSR_CACHE") is False and variable("DSR_CACHE_DIR") == tmp_path / "c"


@pytest.mark.parametrize(("name", "value"), [("DSR_CACHE", "maybe"), ("DSR_HTTP_TRANSPORT", "curl")])
def test_a_value_dsr_cannot_read_is_an_error_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(EnvironmentVariableError, match=f"{name}='{value}': expected one of"):
        environment()


@pytest.mark.parametrize("value", ["-1", "many", "1.5"])
def test_a_gc_threshold_must_be_a_count(monkeypatch, value):
    monkeypatch.setenv("DSR_GC_THRESHOLD", value)
    with pytest.raises(EnvironmentVariableError, match=f"DSR_GC_THRESHOLD='{value}': expected a whole number"):
        environment()


def test_a_secret_is_never_shown(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-very-secret")
    value = secret("MY_KEY")
    assert value is not None and value.get_secret_value() == "sk-very-secret"
    assert "sk-very-secret" not in repr(value) and "sk-very-secret" not in str(value)
    monkeypatch.setenv("MY_KEY", "")
    assert secret("MY_KEY") is None and secret(None) is None
