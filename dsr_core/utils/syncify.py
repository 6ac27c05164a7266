"""DSPy's ``dspy.syncify``: an async-only program made callable synchronously.

A dsr module with only ``aforward`` is callable synchronously already, so ``syncify(program)`` returns it as it
is; ``in_place=False`` wraps it in a module whose ``forward`` calls it (its predictors then sit under
``program.``, as DSPy's wrapper has them).
"""

from __future__ import annotations

from typing import Any

from ..modules.module import Module


class SyncWrapper(Module):
    def __init__(self, program: Module) -> None:
        self.program = program

    def forward(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return self.program(*args, **kwargs)


def syncify(program: Module, in_place: bool = True) -> Module:
    return program if in_place else SyncWrapper(program)


__all__ = ["SyncWrapper", "syncify"]
