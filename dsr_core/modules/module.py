"""Module: the base of every program. Async first; the synchronous call works everywhere.

Write ``async def aforward(self, **inputs)`` for full concurrency, or a plain ``def forward`` as in DSPy:
``await program.acall(...)`` then runs ``forward`` in a worker thread, and ``program(...)`` calls it
directly. Sub-modules and predictors are found by walking attributes with DSPy's rules, so names match
DSPy's: ``named_sub_modules()`` starts at ``"self"``; ``named_predictors()`` gives ``"rewrite"``,
``"answer.predict"``, and ``"self"`` for a bare Predict.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import functools
import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import settings as _settings
from .._async import run_sync
from ..callback import active_callbacks, observed
from ..runtime import runtime
from ..tracking import current_callers, current_usage_tracker, track_usage

if TYPE_CHECKING:
    from ..primitives import Example, Prediction
    from .predict import Predict

log = logging.getLogger(__name__)

# attributes every module has that hold no sub-modules (never walked)
_BOOKKEEPING = frozenset({"callbacks", "history"})


class Parameter:
    """Marks what an optimizer tunes and a program file saves (DSPy's ``Parameter``); Predict is one."""


def _is_parameter(value: Any) -> bool:
    from .predict import Predict

    return isinstance(value, (Parameter, Predict))


class _ModuleMeta(type):
    """Gives every instance ``callbacks`` and ``history``, also when ``__init__`` never calls ``super()``."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        obj = cls.__new__(cls)
        if isinstance(obj, cls):
            obj.__dict__.setdefault("callbacks", [])
            obj.__dict__.setdefault("history", [])
            obj.__dict__.setdefault("_compiled", False)
            cls.__init__(obj, *args, **kwargs)
        return obj


class Module(metaclass=_ModuleMeta):
    """Base class for programs. Subclass it and define ``forward`` or ``aforward``.

    ``callbacks=[...]`` (DSPy's ``BaseCallback`` instances) see every call of this module; ``history``
    holds the LM calls made inside its calls (at most ``settings.max_history_size``).
    """

    callbacks: list[Any]
    history: list[dict[str, Any]]

    def __init__(self, callbacks: list[Any] | None = None) -> None:
        self.callbacks = list(callbacks or [])
        self._compiled = False
        self.history = []

    def forward(self, **kwargs: Any) -> Prediction:
        if type(self).aforward is Module.aforward:
            raise NotImplementedError(f"{type(self).__name__} must define forward() or aforward()")
        return run_sync(self.aforward(**kwargs))

    async def aforward(self, **kwargs: Any) -> Prediction:
        if type(self).forward is Module.forward:
            raise NotImplementedError(f"{type(self).__name__} must define forward() or aforward()")
        ctx = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(runtime().forward_pool(), functools.partial(ctx.run, self.forward, **kwargs))

    def __call__(self, *args: Any, **kwargs: Any) -> Prediction:
        callbacks = active_callbacks(self)
        if callbacks:
            with observed(callbacks, "module", self, {"args": args, "kwargs": kwargs}) as call:
                call.outputs = self._call(args, kwargs)
            return call.outputs
        return self._call(args, kwargs)

    def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Prediction:
        if _settings.get("track_usage") and current_usage_tracker.get() is None:
            with track_usage() as tracker:  # DSPy's: the outermost module call's prediction carries its usage
                output = self._call_forward(args, kwargs)
            _set_lm_usage(output, tracker.get_total_tokens())
            return output
        return self._call_forward(args, kwargs)

    def _call_forward(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Prediction:
        token = current_callers.set((*current_callers.get(), self))
        try:
            if type(self).forward is not Module.forward:
                return self.forward(*args, **kwargs)
            return run_sync(self.aforward(*args, **kwargs))
        finally:
            current_callers.reset(token)

    async def acall(self, *args: Any, **kwargs: Any) -> Prediction:
        callbacks = active_callbacks(self)
        if callbacks:
            with observed(callbacks, "module", self, {"args": args, "kwargs": kwargs}) as call:
                call.outputs = await self._acall(args, kwargs)
            return call.outputs
        return await self._acall(args, kwargs)

    async def _acall(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Prediction:
        if _settings.get("track_usage") and current_usage_tracker.get() is None:
            with track_usage() as tracker:
                output = await self._acall_forward(args, kwargs)
            _set_lm_usage(output, tracker.get_total_tokens())
            return output
        return await self._acall_forward(args, kwargs)

    async def _acall_forward(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Prediction:
        token = current_callers.set((*current_callers.get(), self))
        try:
            return await self.aforward(*args, **kwargs)
        finally:
            current_callers.reset(token)

    # -- structure ---------------------------------------------------------------------------------------------
    def named_parameters(self) -> list[tuple[str, Any]]:
        """The parameters (predictors) by DSPy's names: attributes, items of lists/tuples/dicts held in
        attributes (one level), and parameters of sub-modules, dotted; ``"self"`` when this module is one.
        A sub-module marked compiled (``_compiled = True``) is frozen: its parameters are left out."""
        visited: set[int] = set()
        named: list[tuple[str, Any]] = []

        def add(name: str, value: Any) -> None:
            if _is_parameter(value):
                if id(value) not in visited:
                    visited.add(id(value))
                    named.append((name, value))
            elif isinstance(value, Module):
                if not getattr(value, "_compiled", False):
                    for sub_name, param in value.named_parameters():
                        add(f"{name}.{sub_name}", param)

        if _is_parameter(self):
            add("self", self)
        for name, value in self.__dict__.items():
            if name in _BOOKKEEPING:
                continue
            if _is_parameter(value) or isinstance(value, Module):
                add(name, value)
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    add(f"{name}[{i}]", item)
            elif isinstance(value, dict):
                for key, item in value.items():
                    add(f"{name}['{key}']", item)
        return named

    def parameters(self) -> list[Any]:
        return [param for _, param in self.named_parameters()]

    def named_sub_modules(self, type_: type | None = None, skip_compiled: bool = False) -> Iterator[tuple[str, Module]]:
        """Every module reachable from this one, itself first as ``"self"``, breadth first (DSPy's order and
        names: ``self.answer.predict``, ``self.layers[0]``, ``self.tools[key]``); each module once."""
        wanted = type_ or Module
        queue: deque[tuple[str, Any]] = deque([("self", self)])
        seen = {id(self)}

        def push(name: str, item: Any) -> None:
            if id(item) not in seen:
                seen.add(id(item))
                queue.append((name, item))

        while queue:
            name, item = queue.popleft()
            if isinstance(item, wanted):
                yield name, item
            if isinstance(item, Module):
                if skip_compiled and getattr(item, "_compiled", False):
                    continue
                for attr, value in item.__dict__.items():
                    if attr not in _BOOKKEEPING:
                        push(f"{name}.{attr}", value)
            elif isinstance(item, (list, tuple)):
                for i, value in enumerate(item):
                    push(f"{name}[{i}]", value)
            elif isinstance(item, dict):
                for key, value in item.items():
                    push(f"{name}[{key}]", value)

    def named_predictors(self) -> list[tuple[str, Predict]]:
        """Every Predict by DSPy's name (the keys of a saved program file)."""
        from .predict import Predict

        return [(name, p) for name, p in self.named_parameters() if isinstance(p, Predict)]

    def predictors(self) -> list[Predict]:
        return [p for _, p in self.named_predictors()]

    def map_named_predictors(self, func: Callable[[Predict], Any]) -> Module:
        """Replace every predictor with ``func(predictor)``; returns self."""
        for name, predictor in self.named_predictors():
            _set_by_name(self, name, func(predictor))
        return self

    def set_lm(self, lm: Any) -> None:
        for predictor in self.predictors():
            predictor.lm = lm

    def get_lm(self) -> Any:
        """The one LM every predictor uses; ValueError when they use different ones."""
        return self._shared("lm", "LMs", "LM")

    def set_adapter(self, adapter: Any) -> None:
        for predictor in self.predictors():
            predictor.adapter = adapter

    def get_adapter(self) -> Any:
        """The one adapter every predictor uses; ValueError when they use different ones."""
        return self._shared("adapter", "adapters", "adapter")

    def _shared(self, attribute: str, plural: str, singular: str) -> Any:
        values = {id(v): v for v in (getattr(p, attribute) for p in self.predictors())}
        if len(values) == 1:
            return next(iter(values.values()))
        raise ValueError(f"Multiple {plural} are being used in the module. There's no unique {singular} to return.")

    def inspect_history(self, n: int = 1) -> str:
        """Print (and return) the last ``n`` LM calls made inside this module's calls."""
        from ..lm import format_history

        text = format_history(list(self.history)[-n:])
        print(text)  # noqa: T201 - this method exists to print
        return text

    # -- copies ------------------------------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("history", None)
        state.pop("callbacks", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("history", [])
        self.__dict__.setdefault("callbacks", [])

    def deepcopy(self) -> Module:
        """A deep copy that shares LM clients (they are connections, not state).

        Attributes that cannot be deep-copied (locks, clients, open files) are shared with the original,
        as in DSPy; sub-modules and predictors are always copied."""
        try:
            return copy.deepcopy(self)
        except Exception:  # noqa: BLE001 - some attribute refuses deepcopy: copy attribute by attribute
            pass
        new = self.__class__.__new__(self.__class__)
        memo: dict[int, Any] = {id(self): new}
        for attr, value in self.__dict__.items():
            if attr == "history":
                new.__dict__[attr] = []
            elif attr == "callbacks":
                new.__dict__[attr] = list(value)
            else:
                new.__dict__[attr] = _copy_value(value, memo)
        return new

    def reset_copy(self) -> Module:
        """A deep copy with every parameter reset (predictors lose their demos)."""
        program = self.deepcopy()
        for param in program.parameters():
            reset = getattr(param, "reset", None)
            if callable(reset):
                reset()
            else:
                param.demos = []
        return program

    # -- running many ------------------------------------------------------------------------------------------
    def batch(
        self,
        examples: Sequence[Example],
        num_threads: int | None = None,
        max_errors: int | None = None,
        return_failed_examples: bool = False,
        provide_traceback: bool | None = None,
        disable_progress_bar: bool = False,
        timeout: int = 120,
        straggler_limit: int = 3,
    ) -> Any:
        """Run the program on every example's inputs concurrently; results in the examples' order.

        A failed example gives ``None`` in the results; ``max_errors`` failures (default
        ``settings.max_errors``) raise ``ParallelAborted``. With ``return_failed_examples=True``, returns ``(results,
        failed_examples, exceptions)``. ``num_threads`` (default ``settings.num_threads``) bounds the
        examples in flight. ``disable_progress_bar``, ``timeout`` and ``straggler_limit`` are accepted
        for DSPy compatibility; dsr runs the examples as asyncio tasks and shows no progress bar.
        """
        return run_sync(
            self.abatch(
                examples,
                num_threads=num_threads,
                max_errors=max_errors,
                return_failed_examples=return_failed_examples,
                provide_traceback=provide_traceback,
            )
        )

    async def abatch(
        self,
        examples: Sequence[Example],
        num_threads: int | None = None,
        max_errors: int | None = None,
        return_failed_examples: bool = False,
        provide_traceback: bool | None = None,
    ) -> Any:
        """Async ``batch``: DSPy's ``Module.batch`` is a ``Parallel`` over the examples, and so is this."""
        from .parallel import abatch

        return await abatch(
            self,
            examples,
            num_threads=num_threads,
            max_errors=max_errors,
            return_failed_examples=return_failed_examples,
            provide_traceback=provide_traceback,
        )

    # -- state -------------------------------------------------------------------------------------------------
    def dump_state(self) -> dict[str, Any]:
        """The program state: one entry per predictor by name, plus ``metadata`` (see dsr_core.state)."""
        from ..state import dump_program_state

        return dump_program_state(self)

    def load_state(self, state: dict[str, Any], *, allow_unsafe_lm_state: bool = False) -> Module:
        """Load a state from ``dump_state``, a dsr file or a DSPy 3.x file (a bare Predict's flat one too)."""
        from ..state import load_program_state

        load_program_state(self, state, allow_unsafe_lm_state=allow_unsafe_lm_state)
        return self

    def save(self, path: str | Path, save_program: bool = False, modules_to_serialize: list[Any] | None = None) -> None:
        """Write the program's state as JSON (never pickle): instructions, fields, demos, LM settings.

        The file is DSPy's layout, so DSPy 3.x loads it with ``program.load(path)``.
        """
        from .. import state

        state.save_program(self, path, whole_program=save_program)

    def load(self, path: str | Path, allow_pickle: bool = False, allow_unsafe_lm_state: bool = False) -> Module:
        """Load a JSON state saved by dsr or DSPy 3.x into this program (pickle files are refused)."""
        from ..state import load_program

        load_program(path, self, allow_pickle=allow_pickle, allow_unsafe_lm_state=allow_unsafe_lm_state)
        return self

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={p!r}" for n, p in self.named_predictors())
        return f"{type(self).__name__}({inner})"


def _set_lm_usage(output: Any, tokens: dict[str, Any]) -> None:
    """Attach a module call's usage to its prediction (or to the first item of a (prediction, ...) tuple, as
    DSPy does for optimizers that patch forward); anything else is left alone."""
    from ..primitives import Prediction

    if isinstance(output, tuple) and output:
        output = output[0]
    if isinstance(output, Prediction):
        output.set_lm_usage(tokens)
    else:
        log.warning("track_usage: %s returned no Prediction to attach LM usage to", type(output).__name__)


def _copy_value(value: Any, memo: dict[int, Any]) -> Any:
    """Deep copy ``value``; a module attribute by attribute; what cannot be copied is shared."""
    if isinstance(value, Module):
        if id(value) not in memo:
            memo[id(value)] = value.deepcopy()
        return memo[id(value)]
    if isinstance(value, list):
        return [_copy_value(v, memo) for v in value]
    if isinstance(value, tuple):
        return tuple(_copy_value(v, memo) for v in value)
    if isinstance(value, dict):
        return {k: _copy_value(v, memo) for k, v in value.items()}
    try:
        return copy.deepcopy(value, memo)
    except Exception:  # noqa: BLE001 - locks, clients, sockets: shared, as DSPy does
        try:
            return copy.copy(value)
        except Exception:  # noqa: BLE001
            return value


def _set_by_name(obj: Any, name: str, value: Any) -> None:
    """Set the attribute a dotted DSPy name points at (``answer.predict``, ``layers[0]``, ``d['k']``)."""
    if name == "self":
        raise ValueError("map_named_predictors cannot replace the module itself (a bare Predict)")
    import re

    parts = re.findall(r"\.?([A-Za-z_]\w*)|\[(\d+)\]|\['([^']*)'\]", name)
    target = obj
    steps: list[tuple[str, Any]] = []
    for attr, index, key in parts:
        if attr:
            steps.append(("attr", attr))
        elif index:
            steps.append(("item", int(index)))
        else:
            steps.append(("item", key))
    for kind, step in steps[:-1]:
        target = getattr(target, step) if kind == "attr" else target[step]
    kind, step = steps[-1]
    if kind == "attr":
        setattr(target, step, value)
    else:
        target[step] = value
