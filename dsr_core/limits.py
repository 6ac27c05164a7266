"""Client-side limits for LM calls: requests in flight, requests per minute, tokens per minute.

Both limiters work across threads and event loops of one process (several Prefect tasks in a thread
pool share one LM and therefore one budget). Their critical sections are a few arithmetic operations
under an uncontended ``threading.Lock``; nobody ever waits while holding it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections import deque
from collections.abc import AsyncIterator


class InFlightLimiter:
    """At most ``limit`` holders at once, FIFO, usable from any event loop in any thread."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {limit}")
        self.limit = limit
        self._count = 0
        self._lock = threading.Lock()
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    @property
    def in_flight(self) -> int:
        return self._count

    async def acquire(self) -> None:
        with self._lock:
            if self._count < self.limit and not self._waiters:
                self._count += 1
                return
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, future))
        try:
            await future
        except asyncio.CancelledError:
            with self._lock:
                try:
                    self._waiters.remove((loop, future))
                    granted = False
                except ValueError:
                    granted = True  # the slot was handed to us while we were being cancelled
            if granted:
                self.release()
            raise

    def release(self) -> None:
        with self._lock:
            if not self._waiters:
                self._count -= 1
                return
            loop, future = self._waiters.popleft()  # hand the slot over; the count stays
        if loop.is_closed():
            self.release()
            return
        loop.call_soon_threadsafe(self._grant, future)

    def _grant(self, future: asyncio.Future[None]) -> None:
        if future.cancelled():
            self.release()
        else:
            future.set_result(None)

    async def __aenter__(self) -> InFlightLimiter:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class RateLimiter:
    """A generic cell-rate limiter: ``rate`` units per minute with a burst of one second's worth.

    ``reserve(cost)`` books ``cost`` units and returns how long the caller must wait before starting;
    ``refund(delta)`` corrects an estimate once the real cost is known (tokens are only known afterwards).
    """

    def __init__(self, per_minute: float) -> None:
        if per_minute <= 0:
            raise ValueError(f"a rate limit must be > 0 per minute, got {per_minute}")
        self.per_minute = per_minute
        self._interval = 60.0 / per_minute  # seconds per unit
        self._tolerance = max(1.0, per_minute / 60.0) * self._interval  # burst: one second's worth, >= 1 unit
        self._tat = 0.0  # theoretical arrival time of the next unit
        self._lock = threading.Lock()

    def reserve(self, cost: float = 1.0) -> float:
        with self._lock:
            now = time.monotonic()
            tat = max(self._tat, now)
            self._tat = tat + cost * self._interval
        return max(0.0, tat + cost * self._interval - self._tolerance - now)

    def refund(self, units: float) -> None:
        """Give back ``units`` (negative to charge more) after an estimate was corrected."""
        with self._lock:
            self._tat -= units * self._interval

    async def wait(self, cost: float = 1.0) -> None:
        delay = self.reserve(cost)
        if delay > 0:
            await asyncio.sleep(delay)


# Programs running on examples, at most so many at once across every work item of one LocalRunner.run (DSPy's
# num_threads is the optimizer's total): set by the runner, acquired per example by Evaluate's pool, bootstraps
# and traces. None: each evaluation keeps its own concurrency.
example_slots: contextvars.ContextVar[asyncio.Semaphore | None] = contextvars.ContextVar(
    "dsr_example_slots", default=None
)


@contextlib.asynccontextmanager
async def example_slot() -> AsyncIterator[None]:
    """Hold one of the shared example slots while a program runs on one example (when slots are shared)."""
    slots = example_slots.get()
    if slots is None:
        yield
        return
    async with slots:
        yield
