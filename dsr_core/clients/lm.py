"""DSPy's ``dspy.clients.lm``; the code lives in ``dsr_core.lm.client``."""

from ..lm.client import LM

__all__ = ["LM"]
