"""DSPy's ``dspy.teleprompt.bettertogether``; the code lives in ``dsr_core.optimizers.bootstrap_finetune``."""

from ..optimizers.bootstrap_finetune import BetterTogether

__all__ = ["BetterTogether"]
