"""DSPy's ``dspy.primitives.code_interpreter``; the code lives in ``dsr_core.interpreter.protocol``."""

from ..interpreter.protocol import (
    SIMPLE_TYPES,
    CodeExecutionError,
    CodeInterpreter,
    CodeInterpreterError,
    FinalOutput,
    resolve_interpreter_factory,
)

__all__ = [
    "SIMPLE_TYPES",
    "CodeExecutionError",
    "CodeInterpreter",
    "CodeInterpreterError",
    "FinalOutput",
    "resolve_interpreter_factory",
]
