"""dsr's settings from the environment: every variable has the ``DSR_`` prefix; secrets are ``SecretStr``.

``environment()`` sees a change made while the process runs (a test, a notebook) at its next call: it keeps
the last parsed settings only while the raw values of its variables stay the same (three dict lookups, so the
request path may ask on every call). A value it cannot read is an error that names the variable.

This is a frozen dataclass rather than a pydantic-settings class on purpose: the request path reads it, and
importing pydantic-settings (with the pydantic model machinery a plain ``Predict`` call never needs) added
50-80 ms to the first LM call of every process for three variables (measured, bench/RESULTS.md).

Secrets (API keys, the serving token) live in variables a config or a command names (``api_key_env``,
``--token-env``); ``secret(name)`` reads one without its value ever being printed in a repr or a log line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DsrError

if TYPE_CHECKING:
    from pydantic import SecretStr

ON = ("1", "true", "yes", "on")
OFF = ("0", "false", "no", "off")
TRANSPORTS = ("aiohttp", "httpx")


class EnvironmentVariableError(DsrError, ValueError):
    """A ``DSR_`` variable holds a value dsr cannot read."""


@dataclass(frozen=True)
class DsrEnvironment:
    """``DSR_CACHE``, ``DSR_CACHE_DIR`` and ``DSR_HTTP_TRANSPORT``."""

    cache: bool = True  # DSR_CACHE=0 (false, no, off) turns the LM cache off for the whole process
    cache_dir: Path | None = None  # where the on-disk LM cache lives (default ~/.cache/dsr)
    http_transport: str = "aiohttp"  # the openai SDK's aiohttp transport, or "httpx" for its httpx default

    @classmethod
    def from_values(cls, cache: str | None, cache_dir: str | None, http_transport: str | None) -> DsrEnvironment:
        """Parse the raw variable values (None: unset)."""
        return cls(
            cache=_switch("DSR_CACHE", cache, default=True),
            cache_dir=Path(cache_dir).expanduser() if cache_dir else None,
            http_transport=_choice("DSR_HTTP_TRANSPORT", http_transport, TRANSPORTS),
        )

    @property
    def use_aiohttp(self) -> bool:
        return self.http_transport == "aiohttp"


VARIABLES = ("DSR_CACHE", "DSR_CACHE_DIR", "DSR_HTTP_TRANSPORT")  # in the order of from_values' parameters
_parsed: tuple[tuple[str | None, ...], DsrEnvironment] | None = None


def environment() -> DsrEnvironment:
    """The ``DSR_`` settings as the environment has them now."""
    global _parsed
    raw = tuple(os.environ.get(name) for name in VARIABLES)
    parsed = _parsed  # one read: another thread may replace it meanwhile, with settings just as current
    if parsed is None or parsed[0] != raw:
        parsed = _parsed = (raw, DsrEnvironment.from_values(*raw))
    return parsed[1]


def _switch(name: str, value: str | None, *, default: bool) -> bool:
    if value is None or not value.strip():
        return default
    text = value.strip().lower()
    if text in ON or text in OFF:
        return text in ON
    raise EnvironmentVariableError(f"{name}={value!r}: expected one of {', '.join(ON + OFF)}")


def _choice(name: str, value: str | None, choices: tuple[str, ...]) -> str:
    if value is None or not value.strip():
        return choices[0]
    text = value.strip().lower()
    if text not in choices:
        raise EnvironmentVariableError(f"{name}={value!r}: expected one of {', '.join(choices)}")
    return text


def secret(name: str | None) -> SecretStr | None:
    """The value of the environment variable ``name`` as a secret, or None when it is unset or empty."""
    from pydantic import SecretStr

    value = os.environ.get(name) if name else None
    return SecretStr(value) if value else None
