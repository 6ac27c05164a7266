"""DSPy's ``dspy.asyncify``: a synchronous program (or any function) as an async callable that runs it in a
worker thread, at most ``async_max_workers`` (a setting, default 8) at a time in the process.

dsr's modules need none of it (``await program.acall(...)`` is native); it is here for DSPy code that calls it.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from .. import settings

_lock = threading.Lock()
_limiter: Any = None


def get_limiter() -> Any:
    """The process's ``anyio.CapacityLimiter``, its size the current ``async_max_workers`` setting."""
    import anyio

    global _limiter
    workers = int(settings.get("async_max_workers") or 8)
    with _lock:
        if _limiter is None:
            _limiter = anyio.CapacityLimiter(workers)
        elif _limiter.total_tokens != workers:
            _limiter.total_tokens = workers
        return _limiter


def asyncify(program: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """``await asyncify(program)(*args, **kwargs)``: the call in a worker thread, with the caller's settings."""
    import anyio.to_thread

    async def run(*args: Any, **kwargs: Any) -> Any:
        call = functools.partial(contextvars.copy_context().run, program, *args, **kwargs)
        return await anyio.to_thread.run_sync(call, limiter=get_limiter())

    return run


__all__ = ["asyncify", "get_limiter"]
