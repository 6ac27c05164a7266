"""DSPy's ``dspy.teleprompt.simba``; the code lives in ``dsr_core.optimizers.simba``."""

from ..optimizers.simba import SIMBA

__all__ = ["SIMBA"]
