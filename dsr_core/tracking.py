"""Per-example bookkeeping that flows through contextvars: usage of the LM calls made, the trace, and the
modules a call is running inside.

Evaluate gives each example its own Usage so the per-example table has tokens and cache hits; optimizers
read the trace (which predictor saw which inputs and produced which outputs) to bootstrap demos. The trace
is DSPy's ``settings.trace``: ``with dsr.context(trace=[])`` and ``with dsr.trace()`` set the same list.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .primitives import Usage

if TYPE_CHECKING:
    from .modules.module import Module
    from .modules.predict import Predict

current_usage: contextvars.ContextVar[Usage | None] = contextvars.ContextVar("dsr_usage", default=None)
# LM usage by the role of the LM that made the calls (LM.role: task, prompt, judge), for accounts split by role
current_role_usage: contextvars.ContextVar[dict[str, Usage] | None] = contextvars.ContextVar(
    "dsr_role_usage", default=None
)
current_trace: contextvars.ContextVar[list[tuple[Predict, dict[str, Any], Any]] | None] = contextvars.ContextVar(
    "dsr_trace", default=None
)
# the modules the current call runs inside, outermost first (DSPy's settings.caller_modules): LM calls made
# inside are recorded in each one's history
current_callers: contextvars.ContextVar[tuple[Module, ...]] = contextvars.ContextVar("dsr_callers", default=())


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
def track_usage_by_role() -> Iterator[dict[str, Usage]]:
    """``with track_usage_by_role() as roles: ...``: every LM call made inside, added up per LM role. Nested,
    the inner accounts are added to the outer ones when the inner block ends."""
    roles: dict[str, Usage] = {}
    outer = current_role_usage.get()
    token = current_role_usage.set(roles)
    try:
        yield roles
    finally:
        current_role_usage.reset(token)
        if outer is not None:
            for role, usage in roles.items():
                total = outer.get(role)
                if total is None:
                    total = outer[role] = Usage()
                total.add(usage)


def record_role_usage(role: str, usage: Usage) -> None:
    """Add one call's usage to its LM role's total, when accounts by role are being kept."""
    roles = current_role_usage.get()
    if roles is not None:
        total = roles.get(role)
        if total is None:
            total = roles[role] = Usage()
        total.add(usage)


@contextmanager
def trace() -> Iterator[list[tuple[Predict, dict[str, Any], Any]]]:
    """Record (predictor, inputs, prediction) for every Predict call made inside."""
    calls: list[tuple[Predict, dict[str, Any], Any]] = []
    token = current_trace.set(calls)
    try:
        yield calls
    finally:
        current_trace.reset(token)


def record_trace(predictor: Predict, inputs: dict[str, Any], prediction: Any) -> None:
    """Append one call to the active trace, if any, keeping at most ``settings.max_trace_size`` entries
    (the oldest go first; 0 records nothing), as DSPy's Predict does."""
    calls = current_trace.get()
    if calls is None:
        return
    from . import settings as _settings

    limit = _settings.get("max_trace_size")
    if limit is not None and limit <= 0:
        return
    if limit is not None and len(calls) >= limit:
        del calls[: len(calls) - limit + 1]
    calls.append((predictor, inputs, prediction))
