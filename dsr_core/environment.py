"""dsr's settings from the environment: every variable has the ``DSR_`` prefix; secrets are ``Secret``.

``environment()`` and ``variable(name)`` see a change made while the process runs (a test, a notebook) at
their next call: a variable's parsed value is kept while its raw value stays the same, so the request path
asks ``variable`` on every call for one dict lookup. A value dsr cannot read is an error naming the variable.

This is a frozen dataclass rather than a pydantic-settings class on purpose: the request path reads it, and
importing pydantic-settings (with the pydantic model machinery a plain ``Predict`` call never needs) added
50-80 ms to the first LM call of every process for three variables (measured, bench/RESULTS.md).

Secrets (API keys, the serving token) live in variables a config or a command names (``api_key_env``,
``--token-env``); ``secret(name)`` reads one as a ``Secret``, whose value is never printed in a repr or a log
line. ``Secret`` has pydantic's ``SecretStr`` interface (``get_secret_value()``) without loading pydantic, which
``import dsr_core`` and a plain LM call never need.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DsrError

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


class Secret:
    """A secret string (an API key, a token): its repr and str hide it; ``get_secret_value()`` reads it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    def __str__(self) -> str:
        return "**********" if self._value else ""

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("a Secret is not picklable")


def as_secret(value: Any) -> Secret | None:
    """``value`` (a str, a ``Secret`` or pydantic's ``SecretStr``) as a ``Secret``; None when it is empty."""
    if value is None or isinstance(value, Secret):
        return value or None
    text = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
    return Secret(text) if text else None


def secret(name: str | None) -> Secret | None:
    """The value of the environment variable ``name`` as a secret, or None when it is unset or empty."""
    return as_secret(os.environ.get(name)) if name else None
