"""DSPy's ``dspy.primitives.example``; the code lives in ``dsr_core.primitives``."""

from . import Example

__all__ = ["Example"]
