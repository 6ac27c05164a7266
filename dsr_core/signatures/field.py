"""DSPy's ``dspy.signatures.field``; the code lives in ``dsr_core.signatures``."""

from . import InputField, OutputField

__all__ = ["InputField", "OutputField"]
