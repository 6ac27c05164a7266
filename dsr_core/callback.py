"""Callbacks, DSPy's: subclass ``BaseCallback``, implement the handlers you need, and register instances
with ``configure(callbacks=[...])`` (every call) or ``callbacks=[...]`` on one module or LM.

``with_callbacks`` wraps a method (sync or async) so the start handler sees its arguments and the end
handler its result or exception; the handler pair is chosen from the instance (an LM, an adapter's
``format`` or ``parse``, a tool, an evaluation, anything else is a module). A handler that raises is
logged and ignored: a callback never breaks the call it observes.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from . import settings as _settings

log = logging.getLogger(__name__)

# the call id of the innermost call running with callbacks (a handler's parent call)
ACTIVE_CALL_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("dsr_active_call_id", default=None)

F = TypeVar("F", bound=Callable[..., Any])


class BaseCallback:
    """Handlers called before and after LM, module, adapter, tool and evaluation calls; all do nothing.

    ``call_id`` pairs a start with its end; ``inputs`` maps argument names to values (without ``self``);
    ``outputs`` is the call's result (None when it raised) and ``exception`` what it raised (or None).
    """

    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """A module's ``__call__`` or ``acall`` starts."""

    def on_module_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """A module's call ended."""

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """An LM's ``__call__`` or ``acall`` starts."""

    def on_lm_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """An LM call ended; ``outputs`` is its list of completions."""

    def on_adapter_format_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """An adapter's ``format`` starts."""

    def on_adapter_format_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """An adapter's ``format`` ended; ``outputs`` is the list of messages."""

    def on_adapter_parse_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """An adapter's ``parse`` starts."""

    def on_adapter_parse_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """An adapter's ``parse`` ended; ``outputs`` is the dict of output fields."""

    def on_tool_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """A tool call starts."""

    def on_tool_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """A tool call ended."""

    def on_evaluate_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """An evaluation starts."""

    def on_evaluate_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """An evaluation ended."""


def active_callbacks(instance: Any) -> list[Any]:
    """The callbacks for a call on ``instance``: the configured ones, then the instance's own."""
    configured = _settings.get("callbacks") or ()
    own = getattr(instance, "callbacks", None) or ()
    if not configured and not own:
        return []
    return [*configured, *own]


def _kind(instance: Any, method: str) -> str:
    """Which handler pair a call on ``instance`` goes to (``lm``, ``adapter_format``, ``module``, ...)."""
    from .lm.base import BaseLM

    if isinstance(instance, BaseLM):
        return "lm"
    names = {cls.__name__ for cls in type(instance).__mro__}
    if "Evaluate" in names:
        return "evaluate"
    if "Adapter" in names:
        if method in ("format", "parse"):
            return f"adapter_{method}"
        raise ValueError(f"callbacks are supported on an adapter's format and parse, not {method!r}")
    if "Tool" in names:
        return "tool"
    return "module"


def _handler(callback: Any, kind: str, edge: str) -> Callable[..., Any] | None:
    return getattr(callback, f"on_{kind}_{edge}", None)


def _inputs(fn: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        inputs = inspect.getcallargs(fn, instance, *args, **kwargs)
    except TypeError:
        inputs = {"args": args, **kwargs}
    if "self" in inputs:
        inputs.pop("self")
    elif "instance" in inputs:
        inputs.pop("instance")
    return inputs


class Observed:
    """One observed call: set ``outputs`` to what the end handlers should see (default: nothing)."""

    __slots__ = ("outputs",)

    def __init__(self) -> None:
        self.outputs: Any = None


@contextlib.contextmanager
def observed(callbacks: list[Any], kind: str, instance: Any, inputs: dict[str, Any]) -> Iterator[Observed]:
    """Run the start handlers, make this call the active one, and run the end handlers with what the block
    set as ``outputs`` (or with the exception it raised), whatever happens."""
    call_id = uuid.uuid4().hex
    for callback in callbacks:
        _run_handler(callback, kind, "start", call_id=call_id, instance=instance, inputs=inputs)
    token = ACTIVE_CALL_ID.set(call_id)
    call = Observed()
    exception: BaseException | None = None
    try:
        yield call
    except BaseException as exc:
        exception = exc
        raise
    finally:
        try:
            ACTIVE_CALL_ID.reset(token)
        except ValueError:  # reset from another context (a generator finished elsewhere): set it back instead
            ACTIVE_CALL_ID.set(token.old_value if token.old_value is not contextvars.Token.MISSING else None)
        outputs = None if exception is not None else call.outputs
        for callback in callbacks:
            _run_handler(callback, kind, "end", call_id=call_id, outputs=outputs, exception=exception)


def _run_handler(callback: Any, kind: str, edge: str, **arguments: Any) -> None:
    handler = _handler(callback, kind, edge)
    if handler is None:
        return
    try:
        handler(**arguments)
    except Exception as exc:  # noqa: BLE001 - a callback must not break the call it observes
        log.warning("callback %r failed in on_%s_%s: %s", callback, kind, edge, exc)


def with_callbacks(fn: F) -> F:
    """Decorate an instance method (sync or async) so registered callbacks see each call, as DSPy's does."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(instance: Any, *args: Any, **kwargs: Any) -> Any:
            callbacks = active_callbacks(instance)
            if not callbacks:
                return await fn(instance, *args, **kwargs)
            with observed(
                callbacks, _kind(instance, fn.__name__), instance, _inputs(fn, instance, args, kwargs)
            ) as call:
                call.outputs = await fn(instance, *args, **kwargs)
            return call.outputs

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def sync_wrapper(instance: Any, *args: Any, **kwargs: Any) -> Any:
        callbacks = active_callbacks(instance)
        if not callbacks:
            return fn(instance, *args, **kwargs)
        with observed(callbacks, _kind(instance, fn.__name__), instance, _inputs(fn, instance, args, kwargs)) as call:
            call.outputs = fn(instance, *args, **kwargs)
        return call.outputs

    return sync_wrapper  # type: ignore[return-value]


# (instance id, method name) of the adapter calls being observed in this context: an override that calls
# ``super().format(...)`` reaches a wrapped method again, and that inner call is not reported a second time
_OBSERVING: contextvars.ContextVar[frozenset[tuple[int, str]]] = contextvars.ContextVar(
    "dsr_observing", default=frozenset()
)


def with_callbacks_once(fn: F) -> F:
    """``with_callbacks`` for an adapter's sync ``format`` and ``parse``: one call on an instance is reported
    once, however many wrapped methods of its class hierarchy it passes through."""
    wrapped = with_callbacks(fn)

    @functools.wraps(fn)
    def once_wrapper(instance: Any, *args: Any, **kwargs: Any) -> Any:
        key = (id(instance), fn.__name__)
        active = _OBSERVING.get()
        if key in active:
            return fn(instance, *args, **kwargs)
        token = _OBSERVING.set(active | {key})
        try:
            return wrapped(instance, *args, **kwargs)
        finally:
            _OBSERVING.reset(token)

    once_wrapper.__dsr_callbacks__ = True  # type: ignore[attr-defined]
    return once_wrapper  # type: ignore[return-value]


__all__ = ["ACTIVE_CALL_ID", "BaseCallback", "with_callbacks"]
