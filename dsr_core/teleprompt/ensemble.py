"""DSPy's ``dspy.teleprompt.ensemble``; the code lives in ``dsr_core.optimizers.ensemble``."""

from ..optimizers.ensemble import Ensemble

__all__ = ["Ensemble"]
