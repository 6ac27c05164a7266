"""DSPy's ``dspy.clients``; the LM clients live in ``dsr_core.lm``."""

from .base_lm import BaseLM, inspect_history
from .lm import LM

__all__ = ["LM", "BaseLM", "inspect_history"]
