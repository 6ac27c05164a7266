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
The collector still runs, only less often; the older generations keep their own thresholds.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .environment import variable

_lock = threading.Lock()
_holders = 0
_saved: tuple[int, ...] | None = None  # the thresholds before the first holder raised them
_ours: tuple[int, ...] | None = None  # what the first holder set them to


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Hold the raised threshold for the ``with`` block (nests, and overlaps across threads)."""
    threshold: int = variable("DSR_GC_THRESHOLD")
    if not threshold:
        yield
        return
    _hold(threshold)
    try:
        yield
    finally:
        _release()


def _hold(threshold: int) -> None:
    global _holders, _saved, _ours
    with _lock:
        _holders += 1
        if _holders == 1:
            current = gc.get_threshold()
            if current[0] < threshold:
                _saved, _ours = current, (threshold, *current[1:])
                gc.set_threshold(*_ours)


def _release() -> None:
    global _holders, _saved, _ours
    with _lock:
        _holders -= 1
        if _holders == 0 and _saved is not None:
            if gc.get_threshold() == _ours:
                gc.set_threshold(*_saved)
            _saved = _ours = None
