"""Per-example bookkeeping that flows through contextvars: usage of the LM calls made, the trace, and the
modules a call is running inside.

Evaluate gives each example its own Usage so the per-example table has tokens and cache hits; optimizers
read the trace (which predictor saw which inputs and produced which outputs) to bootstrap demos. The trace
is DSPy's ``settings.trace``: ``with dsr.context(trace=[])`` and ``with dsr.trace()`` set the same list.
"""

from __future__ import annotations

import collections
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


# DSPy's settings.usage_tracker: the innermost ``track_usage()`` block's tracker (None outside one)
current_usage_tracker: contextvars.ContextVar[UsageTracker | None] = contextvars.ContextVar(
    "dsr_usage_tracker", default=None
)


class UsageTracker:
    """DSPy's UsageTracker: the usage entries of the LM calls made in a ``track_usage()`` block, per model.

    ``get_total_tokens()`` gives ``{model: {"prompt_tokens": ..., "completion_tokens": ..., "total_tokens": ...}}``.
    Cache hits add nothing (they are not spend), as in DSPy. dsr's flat totals of the same calls, cached ones
    counted apart, are in ``usage`` (a ``Usage``); its fields read through the tracker too (``tracker.lm_calls``).
    """

    def __init__(self) -> None:
        self.usage_data: collections.defaultdict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        self.usage = Usage()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "usage":
            raise AttributeError(name)
        return getattr(self.usage, name)

    @staticmethod
    def _flatten_usage_entry(usage_entry: dict[str, Any]) -> dict[str, Any]:
        # A provider's usage object may be a pydantic model; test by duck type so importing this module does
        # not load pydantic.
        return {k: v.model_dump() if hasattr(v, "model_dump") else v for k, v in usage_entry.items()}

    @staticmethod
    def _is_summable(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    def _merge_usage_entries(self, first: dict[str, Any] | None, second: dict[str, Any] | None) -> dict[str, Any]:
        if not first:
            return dict(second or {})
        if not second:
            return dict(first)
        result = dict(first)
        for key, value in second.items():
            current = result.get(key)
            if isinstance(value, dict) or isinstance(current, dict):
                result[key] = self._merge_usage_entries(current, value)
            elif current is None:
                if value is not None:
                    result[key] = value
            elif self._is_summable(current) and self._is_summable(value):
                result[key] = current + value
        return result

    def add_usage(self, lm: str, usage_entry: dict[str, Any]) -> None:
        """Add one call's usage entry (DSPy's: the provider's ``usage`` dict) under its model's name."""
        if len(usage_entry) > 0:
            self.usage_data[lm].append(self._flatten_usage_entry(usage_entry))

    def get_total_tokens(self) -> dict[str, dict[str, Any]]:
        """Every tracked entry added up per model."""
        totals: dict[str, dict[str, Any]] = {}
        for lm, entries in self.usage_data.items():
            total: dict[str, Any] = {}
            for entry in entries:
                total = self._merge_usage_entries(total, entry)
            totals[lm] = total
        return totals


@contextmanager
def track_usage() -> Iterator[UsageTracker]:
    """``with track_usage() as usage: await program.acall(...)`` tracks every LM call made inside (DSPy's).
    Nested, the inner block's usage is added to the outer one's when the inner block ends."""
    tracker = UsageTracker()
    parent = current_usage_tracker.get()
    outer = current_usage.get()
    token = current_usage_tracker.set(tracker)
    usage_token = current_usage.set(tracker.usage)
    try:
        yield tracker
    finally:
        current_usage.reset(usage_token)
        current_usage_tracker.reset(token)
        if parent is not None:
            for lm, entries in tracker.usage_data.items():
                parent.usage_data[lm].extend(entries)
        if outer is not None:
            outer.add(tracker.usage)


def usage_entry(usage: Usage) -> dict[str, Any]:
    """One call's usage as DSPy's tracker records it (the provider's ``usage`` fields); empty for a cache hit."""
    if usage.lm_calls and usage.cached_calls >= usage.lm_calls:
        return {}
    entry: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.cached_prompt_tokens:
        entry["prompt_tokens_details"] = {"cached_tokens": usage.cached_prompt_tokens}
    return entry


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


def record_role_usage(role: str, usage: Usage, model: str | None = None) -> None:
    """Add one call's usage to its LM role's total, when accounts by role are being kept, and to the active
    ``track_usage()`` tracker under ``model``."""
    if model is not None:
        tracker = current_usage_tracker.get()
        if tracker is not None:
            tracker.add_usage(model, usage_entry(usage))
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
