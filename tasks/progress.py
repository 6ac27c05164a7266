"""Progress sinks: how tasks running in this process report rows to a live display.

The sinks live in the process's ``TaskRegistry`` (``tasks.registry``) and tasks reach them as
``progress.lookup(...)``: Dask pickles a task's function by value together with the globals it names, and a
module is pickled by reference, so the live display (locks, a terminal) never travels to a worker. Tasks on
other machines simply find no sink.
"""

from __future__ import annotations

from typing import Any, Protocol

from dsr_core.evaluate import EvaluationRow

from .registry import registry


class ProgressSink(Protocol):
    def on_start(self, total: int) -> None: ...
    def on_row(self, row: EvaluationRow) -> None: ...


class StepSink(Protocol):
    """What the optimize flow reports after every step (phase, trials, best score, LM calls, tokens)."""

    def on_step(self, info: dict[str, Any]) -> None: ...


def register(key: str, sink: ProgressSink | StepSink) -> None:
    registry.register_sink(key, sink)


def unregister(key: str) -> None:
    registry.unregister_sink(key)


def lookup(key: str | None) -> ProgressSink | None:
    """The row sink registered under ``key``, if any."""
    sink = registry.sink(key)
    return sink if hasattr(sink, "on_row") else None


def notify_start(key: str | None, total: int) -> None:
    sink = lookup(key)
    if sink is not None:
        sink.on_start(total)


def notify_step(key: str | None, info: dict[str, Any]) -> None:
    sink = registry.sink(key)
    if sink is not None and hasattr(sink, "on_step"):
        sink.on_step(info)
