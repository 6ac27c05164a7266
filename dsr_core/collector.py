"""Fewer garbage-collector passes while many calls are in flight.

CPython runs a young-generation pass of its cycle collector every 700 net allocations of container objects.
With hundreds of LM calls in flight, each pass walks thousands of live objects (coroutines, futures, the HTTP
client's requests and responses) and frees next to nothing: the garbage of the request path is freed by
reference counting as it goes. Measured on a 4,000-example evaluation at 256 calls in flight
(bench/RESULTS.md): about a fifth of the event loop's CPU went to the collector, and the resident set was
the same with it switched off.

``fewer_collections()`` raises the first threshold to ``DSR_GC_THRESHOLD`` (default 50,000; ``0`` leaves the
collector alone) while it is held. Holders are counted across threads and loops: the first saves the
thresholds, the last puts them back, unless something else changed them meanwhile (then that change stays).
The collector still runs, only less often; the older generations keep their own thresholds. The count lives on
the runtime (``runtime().collector``), whose ``reset()`` and ``close()`` put the thresholds back.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .environment import variable


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Hold the raised threshold for the ``with`` block (nests, and overlaps across threads)."""
    threshold: int = variable("DSR_GC_THRESHOLD")
    if not threshold:
        yield
        return
    from .runtime import runtime  # runtime.py imports this module

    hold = runtime().collector
    generation = hold.hold(threshold)
    try:
        yield
    finally:
        hold.release(generation)


class CollectorHold:
    """Who holds the raised threshold now, and the thresholds to put back when the last one lets go."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._generation = 0  # a restore() starts a new one: holders from before it no longer count
        self._saved: tuple[int, ...] | None = None  # the thresholds before the first holder raised them
        self._ours: tuple[int, ...] | None = None  # what the first holder set them to

    @property
    def holders(self) -> int:
        return self._holders

    def hold(self, threshold: int) -> int:
        """Count one more holder (the first raises the threshold); returns what to pass to ``release``."""
        with self._lock:
            self._holders += 1
            if self._holders == 1:
                current = gc.get_threshold()
                if current[0] < threshold:
                    self._saved, self._ours = current, (threshold, *current[1:])
                    gc.set_threshold(*self._ours)
            return self._generation

    def release(self, generation: int) -> None:
        """One holder less (the last puts the thresholds back); a holder from before a ``restore()`` is ignored."""
        with self._lock:
            if generation != self._generation:
                return
            self._holders -= 1
            if self._holders == 0:
                self._put_back()

    def restore(self) -> None:
        """Put the thresholds back now and forget every holder (the runtime's reset and close)."""
        with self._lock:
            self._generation += 1
            self._holders = 0
            self._put_back()

    def _put_back(self) -> None:
        if self._saved is not None:
            if gc.get_threshold() == self._ours:  # else something else changed them meanwhile: that stays
                gc.set_threshold(*self._saved)
            self._saved = self._ours = None
