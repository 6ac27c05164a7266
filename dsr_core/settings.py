"""Process-wide defaults and scoped overrides, built on contextvars.

``configure(lm=...)`` sets the defaults every thread and task sees; ``with context(lm=...)`` overrides them
for the current thread or asyncio task only (and whatever it starts: tasks copy the context when created,
and Evaluate copies it into its worker tasks). No thread owns the settings, so any thread may configure.

The names are DSPy's (``trace``, ``callbacks``, ``max_trace_size``, ``disable_history``, ``track_usage``,
``num_threads``, ...). ``trace`` is the same list ``dsr_core.tracking.trace()`` records into, so
``with context(trace=[]) as ...`` and ``with dsr.trace() as calls`` see the same calls.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from . import tracking as _tracking

_defaults: dict[str, Any] = {
    "lm": None,
    "adapter": None,
    "cache": True,  # global switch for the LM cache
    "max_history": 1000,  # per-LM history length kept for inspect_history
    "max_history_size": 10_000,  # DSPy's name: per-module history length (0 keeps no module history)
    "track_usage": False,  # DSPy's: a module call's prediction carries get_lm_usage() when on
    "usage_tracker": None,  # stored in tracking.current_usage_tracker (track_usage()'s tracker)
    "trace": None,  # stored in tracking.current_trace; see _CONTEXT_BACKED
    "max_trace_size": 10_000,
    "callbacks": [],
    "disable_history": False,
    "num_threads": 8,
    "max_errors": 10,
    "provide_traceback": False,
    "async_max_workers": 8,
    "rm": None,
    "interpreter_factory": None,  # DSPy's: what ProgramOfThought/CodeAct make their interpreter with
    "max_sandboxes": None,  # dsr's: PythonInterpreter processes running at once (None: 4)
    "branch_idx": 0,
    "send_stream": None,
    "stream_listeners": [],
    "caller_predict": None,
    "caller_modules": None,
    "allow_tool_async_sync_conversion": False,
    "warn_on_type_mismatch": True,
}
_KNOWN = frozenset(_defaults)
# settings whose value lives in another module's contextvar (read there on the hot path)
_CONTEXT_BACKED: dict[str, contextvars.ContextVar[Any]] = {
    "trace": _tracking.current_trace,
    "caller_modules": _tracking.current_callers,
    "usage_tracker": _tracking.current_usage_tracker,
}
_overrides: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("dsr_overrides", default=None)


def _check(kwargs: dict[str, Any]) -> None:
    unknown = set(kwargs) - _KNOWN
    if unknown:
        raise TypeError(f"unknown setting(s) {sorted(unknown)}; known: {sorted(_KNOWN)}")


def configure(**kwargs: Any) -> None:
    """Set process-wide defaults, e.g. ``configure(lm=LM("gpt-4o-mini"), adapter=ChatAdapter())``.

    ``trace`` is the exception: it is recorded per context, so ``configure(trace=[])`` applies to the
    calling thread or task and what it starts from then on.
    """
    _check(kwargs)
    for name, var in _CONTEXT_BACKED.items():
        if name in kwargs:
            var.set(_as_callers(kwargs[name]) if name == "caller_modules" else kwargs[name])
    _defaults.update(kwargs)


def snapshot() -> dict[str, Any]:
    """The process-wide defaults as they are now (a copy), to hand to ``restore`` later."""
    return dict(_defaults)


def restore(saved: Mapping[str, Any]) -> None:
    """Put the process-wide defaults back as a ``snapshot()`` had them (a setting it lacks keeps its value).

    For tests, around each one; what contexts override is theirs and stays as it is.
    """
    _check(dict(saved))
    _defaults.update(saved)


@contextmanager
def context(**kwargs: Any) -> Iterator[None]:
    """Override settings for this thread/task and what it spawns: ``with context(lm=judge): ...``."""
    _check(kwargs)
    current = _overrides.get()
    token = _overrides.set({**(current or {}), **kwargs})
    backed = [
        (var, var.set(_as_callers(kwargs[name]) if name == "caller_modules" else kwargs[name]))
        for name, var in _CONTEXT_BACKED.items()
        if name in kwargs
    ]
    try:
        yield
    finally:
        for var, var_token in reversed(backed):
            var.reset(var_token)
        _overrides.reset(token)


def _as_callers(value: Any) -> tuple[Any, ...]:
    return tuple(value or ())


def get(name: str, default: Any = None) -> Any:
    if name in _CONTEXT_BACKED:
        value = _CONTEXT_BACKED[name].get()
        if name == "caller_modules":
            return list(value) if value else None
        return value
    overrides = _overrides.get()
    if overrides is not None and name in overrides:
        return overrides[name]
    if name not in _defaults:
        return default
    return _defaults[name]


class _SettingsView:
    """``dsr.settings.lm`` reads the effective value for the current context; ``dsr.settings.configure(...)``
    and ``dsr.settings.context(...)`` are the module functions, as in DSPy."""

    configure = staticmethod(configure)
    context = staticmethod(context)
    snapshot = staticmethod(snapshot)
    restore = staticmethod(restore)

    @staticmethod
    def get(name: str, default: Any = None) -> Any:
        return get(name, default)

    def __getattr__(self, name: str) -> Any:
        if name not in _KNOWN:
            raise AttributeError(name)
        return get(name)

    def __getitem__(self, name: str) -> Any:
        if name not in _KNOWN:
            raise KeyError(name)
        return get(name)

    def __contains__(self, name: object) -> bool:
        return name in _KNOWN

    def copy(self) -> dict[str, Any]:
        """The effective settings as a plain dict."""
        return {k: get(k) for k in sorted(_KNOWN)}

    def __repr__(self) -> str:
        return f"settings({self.copy()})"


settings = _SettingsView()
