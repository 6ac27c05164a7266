"""DSPy's ``dspy.teleprompt.mipro_optimizer_v2``; the code lives in ``dsr_core.optimizers.mipro``."""

from ..optimizers.mipro import MIPROv2

__all__ = ["MIPROv2"]
