"""Marking a program's plain Python as graph steps, so a traced graph can run it again.

``@step`` on a module-level function (sync or async, named parameters only) changes nothing when the program
runs normally. While a program is traced, each call is recorded with its keyword inputs and its outputs; the
graph's step node then names the function by ``module:function`` and the interpreter calls it with the
step's input fields. A function returning a dict has those keys as output fields; any other return value
is one output field, named by ``output=`` (default: the function's name).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from ..imports import import_ref
from ..tracking import current_trace
from .ir import GraphError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class StepCall:
    """One call of a step while tracing; ``position`` is how many Predict calls had completed before it did."""

    function: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    position: int


_recorded: contextvars.ContextVar[list[StepCall] | None] = contextvars.ContextVar("dsr_graph_steps", default=None)
# marked functions by reference, so steps defined inside a function still run in the process that defined them
_registry: dict[str, Callable[..., Any]] = {}


@contextmanager
def record_steps() -> Iterator[list[StepCall]]:
    """Record every ``@step`` call made inside (used by tracing, next to ``dsr.trace()``)."""
    calls: list[StepCall] = []
    token = _recorded.set(calls)
    try:
        yield calls
    finally:
        _recorded.reset(token)


def function_ref(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}:{fn.__qualname__}"


def resolve_step(ref: str) -> Callable[..., Any]:
    """The function a step node names: registered in this process, else imported."""
    if ref in _registry:
        return _registry[ref]
    try:
        target = import_ref(ref)
    except (ImportError, AttributeError, ValueError) as exc:
        raise GraphError(f"step function {ref!r} cannot be imported: {type(exc).__name__}: {exc}") from None
    if not callable(target):
        raise GraphError(f"step function {ref!r} is not callable")
    return target  # type: ignore[no-any-return]


def as_outputs(value: Any, output: str) -> dict[str, Any]:
    """A step's return value as output fields (a dict is its fields; anything else is field ``output``)."""
    return dict(value) if isinstance(value, dict) else {output: value}


@overload
def step(fn: F) -> F: ...
@overload
def step(*, output: str | None = None) -> Callable[[F], F]: ...
def step(fn: Any = None, *, output: str | None = None) -> Any:
    """Mark ``fn`` as a graph step (``@step`` or ``@step(output="passages")``)."""

    def mark(func: Callable[..., Any]) -> Callable[..., Any]:
        ref = function_ref(func)
        qualname_path = func.__qualname__.split(".<locals>.")[-1]
        if "." in qualname_path:
            raise GraphError(f"@step marks module-level functions; {ref} is a method or nested in a class")
        parameters = inspect.signature(func).parameters.values()
        if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY) for p in parameters):
            raise GraphError(f"@step function {ref} must take named parameters only (no *args, **kwargs or /)")
        name = output or func.__name__
        signature = inspect.signature(func)

        def record(args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> None:
            calls = _recorded.get()
            if calls is None:
                return
            predictions = current_trace.get()
            bound = signature.bind(*args, **kwargs)
            calls.append(StepCall(ref, dict(bound.arguments), as_outputs(result, name), len(predictions or [])))

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                result = await func(*args, **kwargs)
                record(args, kwargs, result)
                return result

            wrapper: Callable[..., Any] = run_async
        else:

            @functools.wraps(func)
            def run(*args: Any, **kwargs: Any) -> Any:
                result = func(*args, **kwargs)
                record(args, kwargs, result)
                return result

            wrapper = run
        _registry[ref] = wrapper
        return wrapper

    return mark(fn) if fn is not None else mark
