"""dsr's settings from the environment: every variable has the ``DSR_`` prefix; secrets are ``SecretStr``.

``environment()`` sees a change made while the process runs (a test, a notebook) at its next call: it keeps
the last parsed settings only while the raw values of its variables stay the same (three dict lookups, so the
request path may ask on every call). This module imports pydantic-settings, which costs tens of milliseconds:
dsr_core imports it on first use, never when ``dsr_core`` itself is imported. Secrets (API keys, the serving token) live in variables a config or a
command names (``api_key_env``, ``--token-env``); ``secret(name)`` reads one without its value ever being
printed in a repr or a log line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

OFF = ("0", "false", "no", "off")


class DsrEnvironment(BaseSettings):
    """``DSR_CACHE``, ``DSR_CACHE_DIR`` and ``DSR_HTTP_TRANSPORT``."""

    model_config = SettingsConfigDict(env_prefix="DSR_", extra="ignore")

    cache: bool = True  # DSR_CACHE=0 (false, no, off) turns the LM cache off for the whole process
    cache_dir: Path | None = None  # where the on-disk LM cache lives (default ~/.cache/dsr)
    http_transport: str = "aiohttp"  # aiohttp, or anything else for the SDK's httpx transport

    @field_validator("cache", mode="before")
    @classmethod
    def _switch(cls, value: Any) -> Any:
        return value.lower() not in OFF if isinstance(value, str) else value

    @field_validator("cache_dir", mode="before")
    @classmethod
    def _folder(cls, value: Any) -> Any:
        if isinstance(value, str):
            return Path(value).expanduser() if value else None
        return value

    @property
    def use_aiohttp(self) -> bool:
        return self.http_transport == "aiohttp"


VARIABLES = tuple(f"DSR_{name.upper()}" for name in DsrEnvironment.model_fields)
_parsed: tuple[tuple[str | None, ...], DsrEnvironment] | None = None


def environment() -> DsrEnvironment:
    """The ``DSR_`` settings as the environment has them now."""
    global _parsed
    raw = tuple(os.environ.get(name) for name in VARIABLES)
    parsed = _parsed  # one read: another thread may replace it meanwhile, with settings just as current
    if parsed is None or parsed[0] != raw:
        parsed = _parsed = (raw, DsrEnvironment())
    return parsed[1]


def secret(name: str | None) -> SecretStr | None:
    """The value of the environment variable ``name`` as a secret, or None when it is unset or empty."""
    value = os.environ.get(name) if name else None
    return SecretStr(value) if value else None
