"""DSPy's ``dspy.adapters.types.code``; the code lives in ``dsr_core.adapters.code``."""

from ..code import Code

__all__ = ["Code"]
