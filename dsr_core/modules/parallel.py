"""Parallel: run (module, example) pairs concurrently, DSPy's ``dspy.Parallel``, on asyncio.

dsr modules run as tasks on the event loop (``acall``), at most ``num_threads`` at a time; a plain callable
(a function, or an object without ``acall``) runs in a worker thread. Results come back in the order of the
pairs, ``None`` for a pair that raised. ``batch`` is ``Module.batch``'s behaviour for any module.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import traceback
import warnings
from collections.abc import Sequence
from typing import Any

from .. import settings as _settings
from .._async import is_async_callable
from ..errors import DsrError
from ..primitives import Example
from ..runtime import runtime
from .module import Module

log = logging.getLogger(__name__)

DEFAULT_NUM_THREADS = 8  # DSPy's defaults, when the settings do not say
DEFAULT_MAX_ERRORS = 10


class ParallelAborted(DsrError):
    """More than ``max_errors`` pairs failed; the pairs not started were cancelled.

    ``results`` has what finished (``None`` elsewhere), ``failed_examples`` and ``exceptions`` the failures.
    """

    def __init__(
        self, message: str, results: list[Any], failed_examples: list[Any], exceptions: list[BaseException]
    ) -> None:
        super().__init__(message)
        self.results = results
        self.failed_examples = failed_examples
        self.exceptions = exceptions


class Parallel(Module):
    """``Parallel(num_threads=8)([(predict, example), (other, {"question": ...}), ...])``.

    An example is an ``Example`` (its inputs become keywords; with ``access_examples=False`` it is passed
    whole), a dict (keywords), a tuple (positional arguments) or, for a nested Parallel, a list of pairs.
    Errors are logged (with the traceback when ``provide_traceback``); once ``max_errors`` pairs have failed
    the rest are cancelled and ``ParallelAborted`` is raised. ``return_failed_examples=True`` returns
    ``(results, failed_examples, exceptions)``.
    """

    def __init__(
        self,
        num_threads: int | None = None,
        max_errors: int | None = None,
        access_examples: bool = True,
        return_failed_examples: bool = False,
        provide_traceback: bool | None = None,
        disable_progress_bar: bool = False,
        timeout: int = 120,
        straggler_limit: int = 3,
    ) -> None:
        if timeout != 120 or straggler_limit != 3:  # DSPy's defaults, accepted silently
            warnings.warn(
                "Parallel: timeout= and straggler_limit= have no meaning in dsr (pairs are asyncio tasks, not "
                "threads to resubmit; bound a call with the LM's timeout or asyncio.timeout)",
                stacklevel=2,
            )
        self.timeout = timeout
        self.straggler_limit = straggler_limit
        self.num_threads = num_threads or _setting("num_threads", DEFAULT_NUM_THREADS)
        self.max_errors = _setting("max_errors", DEFAULT_MAX_ERRORS) if max_errors is None else max_errors
        self.access_examples = access_examples
        self.return_failed_examples = return_failed_examples
        self.provide_traceback = provide_traceback
        self.disable_progress_bar = disable_progress_bar
        self.failed_examples: list[Any] = []
        self.exceptions: list[BaseException] = []

    def __repr__(self) -> str:
        return f"Parallel(num_threads={self.num_threads}, max_errors={self.max_errors})"

    def forward(self, exec_pairs: Sequence[tuple[Any, Any]], num_threads: int | None = None) -> Any:  # type: ignore[override]
        from .._async import run_sync

        return run_sync(self.aforward(exec_pairs, num_threads=num_threads))

    async def aforward(self, exec_pairs: Sequence[tuple[Any, Any]], num_threads: int | None = None) -> Any:  # type: ignore[override]
        pairs = list(exec_pairs)
        limit = max(1, num_threads if num_threads is not None else self.num_threads)
        results: list[Any] = [None] * len(pairs)
        failures: dict[int, BaseException] = {}
        cancel = asyncio.Event()
        semaphore = asyncio.Semaphore(limit)

        async def one(index: int) -> None:
            async with semaphore:
                if cancel.is_set():
                    return
                module, example = pairs[index]
                try:
                    results[index] = await self._process_pair(module, example)
                except Exception as exc:  # noqa: BLE001 - a failing pair is reported, not raised (up to max_errors)
                    failures[index] = exc
                    if len(failures) >= self.max_errors:
                        cancel.set()
                    provide_traceback = self.provide_traceback
                    if provide_traceback is None:
                        provide_traceback = _setting("provide_traceback", False)
                    if provide_traceback:
                        details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                        log.error("Error for %r: %s\n%s", example, exc, details)
                    else:
                        log.error("Error for %r: %s. Set `provide_traceback=True` for traceback.", example, exc)

        await asyncio.gather(*(one(i) for i in range(len(pairs))))
        failed_examples = [pairs[i][1] for i in sorted(failures)]
        exceptions = [failures[i] for i in sorted(failures)]
        self.failed_examples, self.exceptions = failed_examples, exceptions
        if cancel.is_set():
            raise ParallelAborted(
                f"Execution cancelled due to errors or interruption: {len(failures)} of {len(pairs)} failed "
                f"(max_errors={self.max_errors}); first: {type(exceptions[0]).__name__}: {exceptions[0]}",
                results,
                failed_examples,
                exceptions,
            )
        if self.return_failed_examples:
            return results, failed_examples, exceptions
        return results

    async def _process_pair(self, module: Any, example: Any) -> Any:
        if isinstance(example, Example):
            if self.access_examples:
                return await _invoke(module, (), example.inputs().to_dict())
            return await _invoke(module, (example,), {})
        if isinstance(example, dict):
            return await _invoke(module, (), example)
        if isinstance(example, list) and isinstance(module, Parallel):
            return await module.acall(example)
        if isinstance(example, tuple):
            return await _invoke(module, example, {})
        raise ValueError(
            f"Invalid example type: {type(example)}, only supported types are Example, dict, list and tuple"
        )


def _setting(name: str, default: Any) -> Any:
    """``dsr.settings`` value ``name`` (``dsr.configure(num_threads=...)``), or DSPy's default."""
    try:
        value = _settings.get(name)
    except (KeyError, TypeError):
        return default
    return default if value is None else value


async def _invoke(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``await module.acall(...)`` for dsr modules and coroutine functions; a worker thread for the rest."""
    if isinstance(module, Module):
        sync_only = type(module).aforward is Module.aforward and type(module).forward is not Module.forward
        if not (args and sync_only):  # Module.aforward passes keywords only to a synchronous forward
            return await module.acall(*args, **kwargs)
    else:
        acall = getattr(module, "acall", None)
        if acall is not None and inspect.iscoroutinefunction(acall):
            return await acall(*args, **kwargs)
        if is_async_callable(module):
            return await module(*args, **kwargs)
    ctx = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(runtime().forward_pool(), functools.partial(ctx.run, module, *args, **kwargs))
    if inspect.isawaitable(result):
        result = await result
    return result


async def abatch(
    module: Any,
    examples: Sequence[Any],
    num_threads: int | None = None,
    max_errors: int | None = None,
    return_failed_examples: bool = False,
    provide_traceback: bool | None = None,
    disable_progress_bar: bool = False,
) -> Any:
    """Run ``module`` on every example concurrently (``Module.batch``'s semantics, async)."""
    parallel = Parallel(
        num_threads=num_threads,
        max_errors=max_errors,
        return_failed_examples=return_failed_examples,
        provide_traceback=provide_traceback,
        disable_progress_bar=disable_progress_bar,
    )
    return await parallel.acall([(module, example) for example in examples])


def batch(
    module: Any,
    examples: Sequence[Any],
    num_threads: int | None = None,
    max_errors: int | None = None,
    return_failed_examples: bool = False,
    provide_traceback: bool | None = None,
    disable_progress_bar: bool = False,
) -> Any:
    """Synchronous ``abatch``: the results in order (``None`` for failures), or with ``return_failed_examples``
    the tuple ``(results, failed_examples, exceptions)``."""
    from .._async import run_sync

    return run_sync(
        abatch(
            module,
            examples,
            num_threads=num_threads,
            max_errors=max_errors,
            return_failed_examples=return_failed_examples,
            provide_traceback=provide_traceback,
            disable_progress_bar=disable_progress_bar,
        )
    )


__all__ = ["Parallel", "ParallelAborted", "abatch", "batch"]
