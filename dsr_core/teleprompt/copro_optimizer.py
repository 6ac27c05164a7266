"""DSPy's ``dspy.teleprompt.copro_optimizer``; the code lives in ``dsr_core.optimizers.copro``."""

from ..optimizers.copro import COPRO

__all__ = ["COPRO"]
