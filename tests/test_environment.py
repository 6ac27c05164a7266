"""The DSR_ variables: parsed once per change, a bad value named, secrets never shown."""

from __future__ import annotations

import pickle

import pytest
from pydantic import SecretStr

import dsr_core as dsr
from dsr_core.environment import EnvironmentVariableError, Secret, as_secret, environment, secret, variable


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


def test_a_secret_hides_its_value_and_an_lm_keeps_its_key_as_one(monkeypatch):
    value = Secret("sk-very-secret")
    assert value.get_secret_value() == "sk-very-secret" and value == Secret("sk-very-secret")
    assert "sk-very-secret" not in f"{value!r} {value} {[value]} { {'key': value} }"
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(value)
    assert as_secret("") is None and as_secret(None) is None and as_secret(value) is value
    assert as_secret(SecretStr("sk-very-secret")) == value  # pydantic's, as a caller may pass it

    lm = dsr.LM("m", api_base="http://127.0.0.1:9/v1", api_key="sk-very-secret")
    assert "sk-very-secret" not in repr(vars(lm)) and "sk-very-secret" not in repr(vars(lm.copy(max_tokens=5)))
    assert lm.copy()._api_key() == "sk-very-secret"
    monkeypatch.setenv("MY_KEY", "sk-from-env")
    from_env = dsr.LM("m", api_base="http://127.0.0.1:9/v1", api_key_env="MY_KEY")
    assert from_env._api_key() == "sk-from-env" and "MY_KEY" in from_env._key_source()
