"""DSPy's ``dspy.teleprompt.bootstrap``; the code lives in ``dsr_core.optimizers.bootstrap``."""

from ..optimizers.bootstrap import BootstrapFewShot

__all__ = ["BootstrapFewShot"]
