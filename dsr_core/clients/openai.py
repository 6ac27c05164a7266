"""DSPy's ``dspy.clients.openai``; the code lives in ``dsr_core.lm.finetune``."""

from ..lm.finetune import OpenAIProvider, TrainingJobOpenAI

__all__ = ["OpenAIProvider", "TrainingJobOpenAI"]
