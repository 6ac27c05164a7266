"""Ensemble: DSPy's ``Ensemble(reduce_fn=..., size=..., deterministic=False).compile(programs)``.

The compiled module runs every program (or ``size`` of them drawn at random) on the same inputs,
concurrently under ``acall``, and returns ``reduce_fn(outputs)`` (``dsr.majority`` is the usual one), or the
list of outputs without one. It needs no trainset or metric, so it is no ask/tell machine.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from typing import Any

from ..modules.module import Module


class EnsembledProgram(Module):
    def __init__(self, programs: Sequence[Any], size: int | None, reduce_fn: Callable[..., Any] | None) -> None:
        self.programs = list(programs)
        self.size = size
        self.reduce_fn = reduce_fn

    def _chosen(self) -> list[Any]:
        return random.sample(self.programs, self.size) if self.size else self.programs

    def _reduce(self, outputs: list[Any]) -> Any:
        return self.reduce_fn(outputs) if self.reduce_fn else outputs

    def forward(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return self._reduce([program(*args, **kwargs) for program in self._chosen()])

    async def aforward(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        async def one(program: Any) -> Any:
            if isinstance(program, Module):
                return await program.acall(*args, **kwargs)
            return await asyncio.to_thread(program, *args, **kwargs)

        return self._reduce(list(await asyncio.gather(*(one(p) for p in self._chosen()))))


class Ensemble:
    """DSPy's teleprompter: ``Ensemble(reduce_fn=dsr.majority).compile([program_a, program_b, ...])``."""

    def __init__(
        self, *, reduce_fn: Callable[..., Any] | None = None, size: int | None = None, deterministic: bool = False
    ) -> None:
        if deterministic:  # DSPy asserts the same: example hashing is a TODO there
            raise NotImplementedError("Ensemble: deterministic=True is not implemented (nor in DSPy)")
        self.reduce_fn = reduce_fn
        self.size = size
        self.deterministic = deterministic

    def compile(self, programs: Sequence[Any]) -> EnsembledProgram:
        return EnsembledProgram(programs, self.size, self.reduce_fn)


__all__ = ["Ensemble", "EnsembledProgram"]
