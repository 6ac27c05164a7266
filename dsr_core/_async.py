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
_thread: threading.Thread | None = None
_loop_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop, _thread
    if _loop is not None and _thread is not None and _thread.is_alive():
        return _loop
    with _loop_lock:  # only taken until the loop exists
        if _loop is None or _thread is None or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=_run_forever, args=(loop,), name="dsr-event-loop", daemon=True)
            thread.start()
            atexit.register(_shutdown, loop)
            _loop, _thread = loop, thread
    return _loop


def _run_forever(loop: asyncio.AbstractEventLoop) -> None:
    """Keep the shared loop alive: a KeyboardInterrupt/SystemExit raised inside some task (asyncio lets
    those escape ``run_forever``) is delivered to the awaiting caller, not allowed to stop every caller."""
    asyncio.set_event_loop(loop)
    while True:
        try:
            loop.run_forever()
            return  # stopped on purpose
        except BaseException:  # noqa: BLE001, S112 - the task that raised it has it as its exception
            continue


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
