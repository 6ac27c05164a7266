"""Per-example bookkeeping that flows through contextvars: usage of the LM calls made, and the trace.

Evaluate gives each example its own Usage so the per-example table has tokens and cache hits; optimizers
read the trace (which predictor saw which inputs and produced which outputs) to bootstrap demos.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .primitives import Usage

if TYPE_CHECKING:
    from .modules.predict import Predict

current_usage: contextvars.ContextVar[Usage | None] = contextvars.ContextVar("dsr_usage", default=None)
current_trace: contextvars.ContextVar[list[tuple[Predict, dict[str, Any], Any]] | None] = contextvars.ContextVar(
    "dsr_trace", default=None
)


@contextmanager
def track_usage() -> Iterator[Usage]:
    """``with track_usage() as usage: await program.acall(...)`` adds up every LM call made inside."""
    usage = Usage()
    token = current_usage.set(usage)
    try:
        yield usage
    finally:
        current_usage.reset(token)


@contextmanager
def trace() -> Iterator[list[tuple[Predict, dict[str, Any], Any]]]:
    """Record (predictor, inputs, prediction) for every Predict call made inside."""
    calls: list[tuple[Predict, dict[str, Any], Any]] = []
    token = current_trace.set(calls)
    try:
        yield calls
    finally:
        current_trace.reset(token)
