"""Module: the base of every program. Async first; the synchronous call works everywhere.

Write ``async def aforward(self, **inputs)`` for full concurrency, or a plain ``def forward`` as in DSPy:
``await program.acall(...)`` then runs ``forward`` in a worker thread, and ``program(...)`` calls it
directly. Sub-modules are found by walking attributes, so ``named_predictors()`` gives DSPy's dotted names.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import functools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._async import run_sync

if TYPE_CHECKING:
    from ..primitives import Prediction
    from .predict import Predict

_sync_forward_pool: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """Threads for synchronous ``forward`` methods under async evaluation (the default pool has ~6 here)."""
    global _sync_forward_pool
    if _sync_forward_pool is None:
        _sync_forward_pool = ThreadPoolExecutor(max_workers=256, thread_name_prefix="dsr-forward")
    return _sync_forward_pool


class Module:
    """Base class for programs. Subclass it and define ``forward`` or ``aforward``."""

    def forward(self, **kwargs: Any) -> Prediction:
        if type(self).aforward is Module.aforward:
            raise NotImplementedError(f"{type(self).__name__} must define forward() or aforward()")
        return run_sync(self.aforward(**kwargs))

    async def aforward(self, **kwargs: Any) -> Prediction:
        if type(self).forward is Module.forward:
            raise NotImplementedError(f"{type(self).__name__} must define forward() or aforward()")
        ctx = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_pool(), functools.partial(ctx.run, self.forward, **kwargs))

    def __call__(self, *args: Any, **kwargs: Any) -> Prediction:
        if type(self).forward is not Module.forward:
            return self.forward(*args, **kwargs)
        return run_sync(self.aforward(*args, **kwargs))

    async def acall(self, *args: Any, **kwargs: Any) -> Prediction:
        return await self.aforward(*args, **kwargs)

    # -- structure ---------------------------------------------------------------------------------------------
    def named_sub_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """Every module reachable from this one (itself included), depth first, by dotted name."""
        seen: set[int] = set()

        def walk(name: str, obj: Any) -> Iterator[tuple[str, Module]]:
            if isinstance(obj, Module):
                if id(obj) in seen:
                    return
                seen.add(id(obj))
                yield name, obj
                for attr, value in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    yield from walk(f"{name}.{attr}" if name else attr, value)
            elif isinstance(obj, (list, tuple)):
                for i, value in enumerate(obj):
                    yield from walk(f"{name}[{i}]", value)
            elif isinstance(obj, dict):
                for key, value in obj.items():
                    yield from walk(f"{name}['{key}']", value)

        yield from walk(prefix, self)

    def named_predictors(self) -> list[tuple[str, Predict]]:
        from .predict import Predict

        return [(name or "self", m) for name, m in self.named_sub_modules() if isinstance(m, Predict)]

    def predictors(self) -> list[Predict]:
        return [p for _, p in self.named_predictors()]

    def set_lm(self, lm: Any) -> None:
        for predictor in self.predictors():
            predictor.lm = lm

    def deepcopy(self) -> Module:
        """A deep copy that shares LM clients (they are connections, not state)."""
        return copy.deepcopy(self)

    def reset_copy(self) -> Module:
        """A deep copy with every predictor's demos cleared."""
        program = self.deepcopy()
        for predictor in program.predictors():
            predictor.demos = []
        return program

    # -- state -------------------------------------------------------------------------------------------------
    def dump_state(self) -> dict[str, Any]:
        from ..state import dump_program_state

        return dump_program_state(self)

    def load_state(self, state: dict[str, Any]) -> Module:
        from ..state import load_program_state

        load_program_state(self, state)
        return self

    def save(self, path: str | Path) -> None:
        """Write the program's state as JSON (never pickle): instructions, fields, demos, LM settings."""
        from ..state import save_program

        save_program(self, path)

    def load(self, path: str | Path) -> Module:
        from ..state import load_program

        load_program(path, self)
        return self

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={p!r}" for n, p in self.named_predictors())
        return f"{type(self).__name__}({inner})"
