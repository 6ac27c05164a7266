"""dsr's settings from the environment: every variable has the ``DSR_`` prefix; secrets are ``SecretStr``.

``environment()`` and ``variable(name)`` see a change made while the process runs (a test, a notebook) at
their next call: a variable's parsed value is kept while its raw value stays the same, so the request path
asks ``variable`` on every call for one dict lookup. A value dsr cannot read is an error naming the variable.

This is a frozen dataclass rather than a pydantic-settings class on purpose: the request path reads it, and
importing pydantic-settings (with the pydantic model machinery a plain ``Predict`` call never needs) added
50-80 ms to the first LM call of every process for three variables (measured, bench/RESULTS.md).

Secrets (API keys, the serving token) live in variables a config or a command names (``api_key_env``,
``--token-env``); ``secret(name)`` reads one without its value ever being printed in a repr or a log line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    """``DSR_CACHE``, ``DSR_CACHE_DIR``, ``DSR_HTTP_TRANSPORT`` and ``DSR_GC_THRESHOLD``."""

    cache: bool = True  # DSR_CACHE=0 (false, no, off) turns the LM cache off for the whole process
    cache_dir: Path | None = None  # where the on-disk LM cache lives (default ~/.cache/dsr)
    http_transport: str = "aiohttp"  # the openai SDK's aiohttp transport, or "httpx" for its httpx default
    gc_threshold: int = 50_000  # the collector's first threshold while examples are in flight (collector.py)

    @property
    def use_aiohttp(self) -> bool:
        return self.http_transport == "aiohttp"


def _cache_dir(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


# each variable, the DsrEnvironment field it sets, and how its raw value is read (None: unset)
PARSERS: dict[str, tuple[str, Callable[[str | None], Any]]] = {
    "DSR_CACHE": ("cache", lambda value: _switch("DSR_CACHE", value, default=True)),
    "DSR_CACHE_DIR": ("cache_dir", _cache_dir),
    "DSR_HTTP_TRANSPORT": ("http_transport", lambda value: _choice("DSR_HTTP_TRANSPORT", value, TRANSPORTS)),
    "DSR_GC_THRESHOLD": ("gc_threshold", lambda value: _count("DSR_GC_THRESHOLD", value, default=50_000)),
}
VARIABLES = tuple(PARSERS)
_parsed: dict[str, tuple[str | None, Any]] = {}  # variable -> (raw value, parsed value)


def variable(name: str) -> Any:
    """One ``DSR_`` setting as the environment has it now: one lookup, parsed again only when the raw value
    changed (what the request path asks, per call)."""
    raw = os.environ.get(name)
    seen = _parsed.get(name)  # one read: another thread may replace it meanwhile, with a value just as current
    if seen is None or seen[0] != raw:
        seen = _parsed[name] = (raw, PARSERS[name][1](raw))
    return seen[1]


def environment() -> DsrEnvironment:
    """The ``DSR_`` settings as the environment has them now."""
    return DsrEnvironment(**{field: variable(name) for name, (field, _) in PARSERS.items()})


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


def _count(name: str, value: str | None, *, default: int) -> int:
    if value is None or not value.strip():
        return default
    try:
        number = int(value.strip().replace("_", ""))
    except ValueError:
        number = -1
    if number < 0:
        raise EnvironmentVariableError(f"{name}={value!r}: expected a whole number, 0 or more")
    return number


def secret(name: str | None) -> SecretStr | None:
    """The value of the environment variable ``name`` as a secret, or None when it is unset or empty."""
    from pydantic import SecretStr

    value = os.environ.get(name) if name else None
    return SecretStr(value) if value else None
