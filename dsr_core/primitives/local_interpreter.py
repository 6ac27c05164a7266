"""DSPy's ``dspy.primitives.local_interpreter``; the code lives in ``dsr_core.interpreter.local``."""

from ..interpreter.local import LocalInterpreter

__all__ = ["LocalInterpreter"]
