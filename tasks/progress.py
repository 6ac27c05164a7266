"""Progress sinks: how tasks running in this process report rows to a live display.

The registry lives in its own module and tasks reach it as ``progress.lookup(...)``: Dask pickles a task's
function by value together with the globals it names, and a module is pickled by reference, so the live
display (locks, a terminal) never travels to a worker. Tasks on other machines simply find no sink.
"""

from __future__ import annotations

from typing import Protocol

from dsr_core.evaluate import EvaluationRow


class ProgressSink(Protocol):
    def on_start(self, total: int) -> None: ...
    def on_row(self, row: EvaluationRow) -> None: ...


_sinks: dict[str, ProgressSink] = {}


def register(key: str, sink: ProgressSink) -> None:
    _sinks[key] = sink


def unregister(key: str) -> None:
    _sinks.pop(key, None)


def lookup(key: str | None) -> ProgressSink | None:
    return _sinks.get(key) if key else None


def notify_start(key: str | None, total: int) -> None:
    sink = lookup(key)
    if sink is not None:
        sink.on_start(total)
