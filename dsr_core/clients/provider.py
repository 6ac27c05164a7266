"""DSPy's ``dspy.clients.provider``; the code lives in ``dsr_core.lm.finetune``."""

from ..lm.finetune import Provider, TrainingJob

__all__ = ["Provider", "TrainingJob"]
