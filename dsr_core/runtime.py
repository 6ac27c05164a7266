"""The process's shared machinery, in one object with a lifecycle.

What every LM, module and cache in the process shares: the background event loop synchronous calls run on
(``dsr_core._async.run_sync``), the thread pool that runs synchronous ``forward`` methods and tools under
async code, the cache's disk writer, the default cache, the SDK clients of every event loop (held until
their loop ends, so they close at its shutdown), the probes that succeeded, the endpoints that rejected a
``json_schema`` response format (``JSONAdapter``), the garbage collector's raised threshold while calls are in
flight (``collector.py``) and the global call history.

Everything starts lazily on first use. ``reset()`` (for tests) closes every client, drops the client
pools, the default cache, the probe and ``json_schema`` memos and the history, and puts the collector's
thresholds back; the loop and the threads keep running.
``close()`` (registered at exit) also finishes the cache's writes and stops the loop and the threads; what
is used afterwards starts again. ``runtime()`` is the process's one instance. The request path reads
attributes only: a lock is taken when something is created, never per call.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

from .collector import CollectorHold
from .environment import variable

if TYPE_CHECKING:
    from pathlib import Path

    from .cache import Cache

log = logging.getLogger(__name__)

HISTORY_SIZE = 10_000  # entries of the global history (``inspect_history``)
FORWARD_WORKERS = 256  # threads for synchronous forward methods and tools (the default pool has ~6 here)
CLOSE_TIMEOUT = 5.0  # seconds, at most, to wait for clients to close and the loop to stop


class LoopResource(Protocol):
    """What the runtime holds for an event loop until it ends (an LM's SDK clients on that loop)."""

    loop: asyncio.AbstractEventLoop

    def detach(self) -> None:
        """Stop being used: its owner makes a new one on next use."""

    async def aclose(self) -> None:
        """Close it, on its own loop."""


class Runtime:
    """The background loop, the worker threads, the default cache, the held clients, memos and history."""

    def __init__(self) -> None:
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY_SIZE)  # cleared, never replaced
        self.probed: set[tuple[str, str, str, str]] = set()  # see LM.aprobe
        self.json_schema_rejected: set[tuple[str, str]] = set()  # (base URL, model): see JSONAdapter
        self.collector = CollectorHold()  # see collector.fewer_collections
        self.probe_salt = os.urandom(16)
        self._lock = threading.Lock()  # taken only to create or drop things, never per call
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._forward_pool: ThreadPoolExecutor | None = None
        self._cache_writer: ThreadPoolExecutor | None = None
        self._cache: Cache | None = None
        self._cache_env: Path | None = None
        self._held: list[LoopResource] = []
        self._at_exit = False

    def __repr__(self) -> str:
        running = self._thread is not None and self._thread.is_alive()
        return f"Runtime(loop={'running' if running else 'stopped'}, held={len(self._held)})"

    # -- starting (lazily) -------------------------------------------------------------------------------------
    def loop(self) -> asyncio.AbstractEventLoop:
        """The background event loop, started on first use (and again after ``close()``)."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            return loop
        return self.start()

    def start(self) -> asyncio.AbstractEventLoop:
        """Start the background loop unless it runs; every other part starts on its first use."""
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=_run_forever, args=(loop,), name="dsr-event-loop", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
                if not self._at_exit:
                    atexit.register(self.close)
                    self._at_exit = True
            return self._loop

    def forward_pool(self) -> ThreadPoolExecutor:
        """Threads for synchronous ``forward`` methods, tools and callables under async code."""
        pool = self._forward_pool
        if pool is None:
            pool = self._executor("_forward_pool", FORWARD_WORKERS, "dsr-forward")
        return pool

    def cache_writer(self) -> ThreadPoolExecutor:
        """The one thread that writes cache entries to disk (the event loop never waits for the disk)."""
        writer = self._cache_writer
        if writer is None:
            writer = self._executor("_cache_writer", 1, "dsr-cache-writer")
        return writer

    def _executor(self, attribute: str, workers: int, prefix: str) -> ThreadPoolExecutor:
        with self._lock:
            pool = getattr(self, attribute)
            if pool is None:
                pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=prefix)
                setattr(self, attribute, pool)
            return pool  # type: ignore[no-any-return]

    def default_cache(self) -> Cache:
        """The process's shared cache, created on first use and again if DSR_CACHE_DIR changes."""
        env = variable("DSR_CACHE_DIR")
        cache = self._cache
        if cache is None or env != self._cache_env:
            from .cache import Cache

            cache = Cache()
            self._cache, self._cache_env = cache, env
        return cache

    def hold(self, resource: LoopResource) -> None:
        """Keep ``resource`` until its loop ends (it closes at the loop's shutdown even if its owner is gone);
        what belongs to loops that have ended is let go."""
        with self._lock:
            ended = [r for r in self._held if r.loop.is_closed()]
            self._held = [r for r in self._held if not r.loop.is_closed()]
            self._held.append(resource)
        for old in ended:
            old.detach()

    def held(self) -> tuple[LoopResource, ...]:
        """What is held now (the SDK clients of every LM on every live loop)."""
        return tuple(self._held)

    # -- resetting and closing ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Close every held client; drop the client pools, the default cache, the memos and the history; put
        the collector's thresholds back.

        For tests: the next call makes new clients and a new default cache (after the old one's writes are
        on disk). The loop and the threads keep running.
        """
        with self._lock:
            held, self._held = self._held, []
            cache, self._cache, self._cache_env = self._cache, None, None
        kept = [resource for resource in held if not _close(resource)]
        if kept:  # on loops that are not running now: they close at their loop's shutdown
            with self._lock:
                self._held.extend(kept)
        if cache is not None:
            cache.flush()
        self.probed.clear()
        self.json_schema_rejected.clear()
        self.history.clear()
        self.collector.restore()

    def close(self) -> None:
        """Close every client, finish the cache's writes, stop the loop and the threads (run at exit).

        Tasks still running on the background loop are cancelled: their callers get ``CancelledError``.
        """
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            pools = (self._forward_pool, self._cache_writer)
            self._forward_pool = self._cache_writer = None
        if loop is not None:
            if _running_loop() is loop:
                raise RuntimeError("the runtime cannot be closed from its own event loop")
            if loop.is_running():
                try:
                    asyncio.run_coroutine_threadsafe(_wind_down(), loop).result(timeout=CLOSE_TIMEOUT)
                except Exception:  # noqa: BLE001 - closing is best effort (it also runs at interpreter exit)
                    log.debug("the background loop did not wind down cleanly", exc_info=True)
                loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(CLOSE_TIMEOUT)
            if thread is None or not thread.is_alive():
                loop.close()
        self.reset()  # clients of other loops, the default cache (its writes go through the writer: first)
        forward, writer = pools
        if writer is not None:
            writer.shutdown(wait=True)
        if forward is not None:
            forward.shutdown(wait=False)


_runtime = Runtime()


def runtime() -> Runtime:
    """The process's runtime."""
    return _runtime


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _close(resource: LoopResource) -> bool:
    """Detach ``resource`` and close it on its loop; False when its loop is not running (nothing can run it)."""
    resource.detach()
    loop = resource.loop
    if loop.is_closed():
        return True
    if _running_loop() is loop:
        loop.create_task(resource.aclose())
        return True
    if not loop.is_running():
        return False
    try:
        asyncio.run_coroutine_threadsafe(resource.aclose(), loop).result(timeout=CLOSE_TIMEOUT)
    except Exception:  # noqa: BLE001 - closing is best effort
        log.debug("clients of a loop did not close cleanly", exc_info=True)
    return True


async def _wind_down() -> None:
    """Cancel the loop's other tasks, then finalize its async generators (LM clients close there)."""
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()


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
