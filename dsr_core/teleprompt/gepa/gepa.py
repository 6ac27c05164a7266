"""DSPy's ``dspy.teleprompt.gepa.gepa``; the code lives in ``dsr_core.optimizers.gepa``."""

from ...optimizers.gepa import GEPA

__all__ = ["GEPA"]
