"""``LocalInterpreter``: DSPy's persistent local CPython worker, for code you trust (it is no sandbox).

The host side is ``PythonInterpreter``'s (the same protocol, tools, ``SUBMIT``, timeout and errors); the
worker (``local_worker.py``) is a plain ``python -I`` process instead of Deno and Pyodide: it starts in a
fraction of a second and has every package of this environment, and it has the files, environment variables,
network and processes of the user running it. As DSPy's: what the code printed comes back without its
trailing newlines, and an exception reads ``Type: message``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .sandbox import DEFAULT_TIMEOUT, PythonInterpreter

WORKER = Path(__file__).with_name("local_worker.py")


class LocalInterpreter(PythonInterpreter):
    """``LocalInterpreter(tools=None, output_fields=None, *, execution_timeout=120.0, callbacks=None)``."""

    execution_instructions = (
        "Code runs as Python in a persistent local subprocess. State, imports, functions, and JSON-compatible "
        "variables persist for this session. Host tools and SUBMIT are available as global functions. All threads "
        "must finish before each code execution returns; use context-managed executors for parallel work."
    )

    def __init__(
        self,
        tools: dict[str, Callable[..., Any]] | None = None,
        output_fields: list[dict[str, Any]] | None = None,
        *,
        execution_timeout: float | None = DEFAULT_TIMEOUT,
        callbacks: list[Any] | None = None,
    ) -> None:
        if execution_timeout is not None and execution_timeout <= 0:
            raise ValueError("execution_timeout must be positive or None")
        super().__init__(tools=tools, output_fields=output_fields, callbacks=callbacks, timeout=execution_timeout)

    def _command(self) -> list[str]:
        return [sys.executable, "-I", str(WORKER)]

    @staticmethod
    def _error_text(error: dict[str, Any]) -> str:
        return f"{error.get('type')}: {error.get('message')}"

    def __repr__(self) -> str:
        return super().__repr__().replace("PythonInterpreter", "LocalInterpreter", 1)


__all__ = ["LocalInterpreter"]
