"""Run coroutines from synchronous code, inside or outside a running event loop.

Every synchronous entry point (``program(...)``, ``lm(...)``, ``Evaluate(...)(program)``) submits its
coroutine to one background event loop per process (the runtime's, ``dsr_core.runtime``) and waits for it.
That works the same from a plain script, from a thread of a thread pool and from inside a running loop (a
notebook, a Prefect async task), and it keeps one connection pool per LM instead of one per call. The
caller's contextvars (``dsr.context``) travel with the coroutine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
from collections.abc import Coroutine
from typing import Any, TypeVar

from .runtime import runtime

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the background loop and return its result (exceptions propagate)."""
    loop = runtime().loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise RuntimeError("a synchronous dsr call was made from dsr's own event loop; use `await ...acall()`")
    ctx = contextvars.copy_context()
    future: concurrent.futures.Future[tuple[bool, Any]] = concurrent.futures.Future()

    async def guarded() -> tuple[bool, Any]:
        # KeyboardInterrupt/SystemExit raised in a task would escape run_forever and kill the shared loop;
        # carry every outcome back to the caller's thread and raise it there instead.
        try:
            return True, await coro
        except BaseException as exc:  # noqa: BLE001
            return False, exc

    def start() -> None:
        task = loop.create_task(guarded(), context=ctx)
        task.add_done_callback(lambda t: future.cancel() if t.cancelled() else future.set_result(t.result()))

    loop.call_soon_threadsafe(start)
    ok, value = future.result()
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def is_async_callable(func: Any) -> bool:
    """A coroutine function, or an object whose ``__call__`` is one."""
    return inspect.iscoroutinefunction(func) or (callable(func) and inspect.iscoroutinefunction(type(func).__call__))
