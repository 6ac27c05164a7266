"""Running model-written Python: the interpreter protocol, the Deno/Pyodide sandbox (``PythonInterpreter``) and
a plain local worker for trusted code (``LocalInterpreter``)."""

from .local import LocalInterpreter
from .protocol import (
    CodeExecutionError,
    CodeInterpreter,
    CodeInterpreterError,
    FinalOutput,
    resolve_interpreter_factory,
)
from .sandbox import PythonInterpreter

__all__ = [
    "CodeExecutionError",
    "CodeInterpreter",
    "CodeInterpreterError",
    "FinalOutput",
    "LocalInterpreter",
    "PythonInterpreter",
    "resolve_interpreter_factory",
]
