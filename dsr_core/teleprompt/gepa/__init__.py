"""DSPy's ``dspy.teleprompt.gepa``; the code lives in ``dsr_core.optimizers.gepa``."""

from .gepa import GEPA

__all__ = ["GEPA"]
