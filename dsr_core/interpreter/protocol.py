"""What every code interpreter is (DSPy's ``CodeInterpreter`` protocol), its errors, and which one a module gets.

A module that runs model-written code (``ProgramOfThought``, ``CodeAct``) takes an ``interpreter_factory``: a
zero-argument callable that makes one interpreter per forward pass, which the module shuts down afterwards.
The module's own factory wins, then ``dsr.configure(interpreter_factory=...)``, then ``PythonInterpreter``
(Deno and Pyodide). A caller-owned interpreter can be passed as the module call's first positional argument.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from ..errors import DsrError

# Annotations a tool's or an output's parameter may carry into the sandbox's function signatures.
SIMPLE_TYPES = (str, int, float, bool, list, dict, type(None))


class CodeInterpreterError(DsrError, RuntimeError):
    """The interpreter itself failed (it did not start, its process died, it broke the protocol): the session
    is over and a new interpreter is needed. Code that merely raised is a ``CodeExecutionError``."""


class CodeExecutionError(CodeInterpreterError):
    """The submitted code (or a tool it called) raised; the interpreter is healthy and keeps its state."""


class FinalOutput:
    """What ``execute`` returns when the code called ``SUBMIT(...)``: the submitted values, and the end of the
    code's run."""

    def __init__(self, output: Any) -> None:
        self.output = output

    def __repr__(self) -> str:
        return f"FinalOutput({self.output!r})"

    def __eq__(self, other: object) -> bool:
        return self.output == other.output if isinstance(other, FinalOutput) else NotImplemented


@runtime_checkable
class CodeInterpreter(Protocol):
    """``start()`` (idempotent; ``execute`` starts lazily), ``execute(code, variables=None)`` (state persists
    between calls: the variables a call defines are there in the next), ``shutdown()``, and ``tools``: the
    host functions the code may call by name."""

    @property
    def tools(self) -> dict[str, Callable[..., Any]]: ...

    def start(self) -> None: ...

    def execute(self, code: str, variables: dict[str, Any] | None = None) -> Any: ...

    def shutdown(self) -> None: ...


def validate_interpreter_factory(factory: Any, name: str = "interpreter_factory") -> None:
    """A factory is a callable that makes interpreters, not an interpreter (whose owner would be unclear)."""
    if not isinstance(factory, type) and isinstance(factory, CodeInterpreter):
        raise TypeError(
            f"{name} received an interpreter, not a factory of interpreters: pass a zero-argument callable that "
            "makes one (e.g. `lambda: PythonInterpreter(...)`), or pass this interpreter as the call's first "
            "positional argument to use it for one call"
        )
    if not callable(factory):
        raise TypeError(
            f"{name} must be a zero-argument callable that makes a CodeInterpreter, not {type(factory).__name__}"
        )


def resolve_interpreter_factory(factory: Callable[[], Any] | None = None) -> Callable[[], Any]:
    """The module's factory, else the ``interpreter_factory`` setting, else ``PythonInterpreter``. Resolved
    when an interpreter is made, so ``dsr.context(interpreter_factory=...)`` scopes as expected."""
    from .. import settings
    from .sandbox import PythonInterpreter

    if factory is not None and factory is not PythonInterpreter:
        return factory
    configured = settings.get("interpreter_factory")
    if configured is None:
        return PythonInterpreter
    validate_interpreter_factory(configured, name="the interpreter_factory setting")
    return configured  # type: ignore[no-any-return]


def create_interpreter(factory: Callable[[], Any] | None) -> CodeInterpreter:
    interpreter = resolve_interpreter_factory(factory)()
    if not isinstance(interpreter, CodeInterpreter):
        raise TypeError(f"interpreter_factory must return a CodeInterpreter, not {type(interpreter).__name__}")
    return interpreter


def validate_interpreter(interpreter: Any) -> None:
    if not isinstance(interpreter, CodeInterpreter):
        raise TypeError(f"interpreter must implement CodeInterpreter, not {type(interpreter).__name__}")
