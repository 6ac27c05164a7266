"""Process-wide defaults and scoped overrides, built on contextvars.

``configure(lm=...)`` sets the defaults every thread and task sees; ``with context(lm=...)`` overrides them
for the current thread or asyncio task only (and whatever it starts: tasks copy the context when created,
and Evaluate copies it into its worker tasks). No thread owns the settings, so any thread may configure.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_KNOWN = {"lm", "adapter", "cache", "max_history", "track_usage"}

_defaults: dict[str, Any] = {
    "lm": None,
    "adapter": None,
    "cache": True,  # global switch for the LM cache
    "max_history": 1000,  # per-LM history length kept for inspect_history
    "track_usage": True,
}
_overrides: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("dsr_overrides", default=None)


def _check(kwargs: dict[str, Any]) -> None:
    unknown = set(kwargs) - _KNOWN
    if unknown:
        raise TypeError(f"unknown setting(s) {sorted(unknown)}; known: {sorted(_KNOWN)}")


def configure(**kwargs: Any) -> None:
    """Set process-wide defaults, e.g. ``configure(lm=LM("gpt-4o-mini"), adapter=ChatAdapter())``."""
    _check(kwargs)
    _defaults.update(kwargs)


@contextmanager
def context(**kwargs: Any) -> Iterator[None]:
    """Override settings for this thread/task and what it spawns: ``with context(lm=judge): ...``."""
    _check(kwargs)
    current = _overrides.get()
    token = _overrides.set({**(current or {}), **kwargs})
    try:
        yield
    finally:
        _overrides.reset(token)


def get(name: str) -> Any:
    overrides = _overrides.get()
    if overrides is not None and name in overrides:
        return overrides[name]
    return _defaults[name]


class _SettingsView:
    """``dsr.settings.lm`` reads the effective value for the current context."""

    def __getattr__(self, name: str) -> Any:
        if name not in _KNOWN:
            raise AttributeError(name)
        return get(name)

    def __repr__(self) -> str:
        return f"settings({ {k: get(k) for k in sorted(_KNOWN)} })"


settings = _SettingsView()
