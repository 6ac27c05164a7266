"""Calling a metric on one example and reading what it returns (a score, feedback), and telling a
transient failure from a final one."""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from typing import Any

from ..errors import ContextWindowExceededError, LMError
from ..modules.module import Module

Metric = Callable[..., Any]


def is_transient(exc: BaseException) -> bool:
    """Did this fail for an infrastructure reason that a later attempt may not meet (the endpoint down or
    refusing, timeouts, rate limits, broken connections), rather than because of the program, the data or
    the metric? Such a failure is never final: it is not replayed from persisted results."""
    if isinstance(exc, ContextWindowExceededError):
        return False  # the request itself is too long: the same request fails again
    return isinstance(exc, (LMError, OSError, TimeoutError))


def _metric_arity(metric: Metric) -> int:
    """How many of ``(example, prediction, trace, pred_name, pred_trace)`` the metric takes: its positional
    parameters, or 5 for a GEPA feedback metric (known by a ``pred_name`` parameter). Computed once per
    evaluation, not per example: ``inspect.signature`` costs more than a cached LM call."""
    try:
        parameters = inspect.signature(metric).parameters
    except (TypeError, ValueError):
        return 2
    if "pred_name" in parameters:
        return 5
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters.values())


def takes_predictor(metric: Metric) -> bool:
    """Is this a GEPA feedback metric, ``metric(gold, pred, trace, pred_name, pred_trace)``? Known by a
    ``pred_name`` parameter or by five positional parameters (DSPy's GEPAFeedbackMetric)."""
    return not isinstance(metric, Module) and _metric_arity(metric) >= 5


async def call_metric(
    metric: Metric,
    example: Any,
    prediction: Any,
    trace: Any = None,
    *,
    arity: int | None = None,
    pred_name: str | None = None,
    pred_trace: Any = None,
) -> Any:
    """The metric's value for one example: ``metric(example, prediction[, trace])``, awaited if it is async;
    a metric that is a Module (an LM judge such as SemanticF1) runs on the caller's event loop. A GEPA
    feedback metric gets ``pred_name`` and ``pred_trace`` too (None: feedback for the whole program)."""
    if isinstance(metric, Module):
        value = await (metric.acall(example, prediction) if trace is None else metric.acall(example, prediction, trace))
    else:
        arity = _metric_arity(metric) if arity is None else arity
        if arity >= 5:
            value = metric(example, prediction, trace, pred_name, pred_trace)
        elif arity >= 3:
            value = metric(example, prediction, trace)
        else:
            value = metric(example, prediction)
    if inspect.isawaitable(value):
        value = await value
    return value


def _as_score(value: Any) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    score = getattr(value, "score", None)  # dspy.Prediction(score=..., feedback=...) style
    if isinstance(score, (int, float, bool)):
        return float(score)
    raise TypeError(f"a metric must return a number or bool, got {type(value).__name__}")


def metric_feedback(value: Any) -> str | None:
    """The text feedback of a metric's value (DSPy's ``Prediction(score=..., feedback=...)``), if it has one."""
    feedback = getattr(value, "feedback", None)
    return None if feedback is None else str(feedback)


def metric_name(metric: Metric) -> str:
    """The metric's name as DSPy writes it in tables and saved files: a function's name, else its class name."""
    return metric.__name__ if isinstance(metric, types.FunctionType) else type(metric).__name__
