"""DSPy's ``dspy.clients``; the LM clients and the Embedder live in ``dsr_core.lm``."""

from .base_lm import BaseLM, inspect_history
from .embedding import Embedder
from .lm import LM

__all__ = ["LM", "BaseLM", "Embedder", "inspect_history"]
