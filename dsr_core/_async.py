"""Run coroutines from synchronous code, inside or outside a running event loop.

Every synchronous entry point (``program(...)``, ``lm(...)``, ``Evaluate(...)(program)``) submits its
coroutine to one background event loop per process and waits for it. That works the same from a plain
script, from a thread of a thread pool and from inside a running loop (a notebook, a Prefect async task),
and it keeps one connection pool per LM instead of one per call. The caller's contextvars (``dsr.context``)
travel with the coroutine.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    if _loop is not None and not _loop.is_closed():
        return _loop
    with _loop_lock:  # only taken until the loop exists
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="dsr-event-loop", daemon=True)
            thread.start()
            atexit.register(_shutdown, loop)
            _loop = loop
    return _loop


def _shutdown(loop: asyncio.AbstractEventLoop) -> None:
    """At exit, let the loop finalize its async generators (LM clients close their connections there)."""
    if loop.is_running():
        try:
            asyncio.run_coroutine_threadsafe(loop.shutdown_asyncgens(), loop).result(timeout=5)
        except Exception:  # noqa: BLE001 - never fail interpreter shutdown
            pass


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the background loop and return its result (exceptions propagate)."""
    loop = _background_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise RuntimeError("a synchronous dsr call was made from dsr's own event loop; use `await ...acall()`")
    ctx = contextvars.copy_context()
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def start() -> None:
        task = loop.create_task(coro, context=ctx)

        def done(t: asyncio.Task[T]) -> None:
            if t.cancelled():
                future.cancel()
            elif t.exception() is not None:
                future.set_exception(t.exception())  # type: ignore[arg-type]
            else:
                future.set_result(t.result())

        task.add_done_callback(done)

    loop.call_soon_threadsafe(start)
    return future.result()
