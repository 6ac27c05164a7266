"""DSPy's ``dspy.primitives.python_interpreter``; the code lives in ``dsr_core.interpreter.sandbox``."""

from ..interpreter.protocol import CodeExecutionError, CodeInterpreterError, FinalOutput
from ..interpreter.sandbox import PythonInterpreter

__all__ = ["CodeExecutionError", "CodeInterpreterError", "FinalOutput", "PythonInterpreter"]
