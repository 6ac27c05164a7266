"""Running model-written Python: the interpreter protocol and the Deno/Pyodide sandbox (``PythonInterpreter``)."""

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
    "PythonInterpreter",
    "resolve_interpreter_factory",
]
