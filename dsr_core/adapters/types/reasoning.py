"""DSPy's ``dspy.adapters.types.reasoning``; the code lives in ``dsr_core.adapters.reasoning``."""

from ..reasoning import Reasoning

__all__ = ["Reasoning"]
