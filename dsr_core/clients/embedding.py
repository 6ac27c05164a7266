"""DSPy's ``dspy.clients.embedding``; the code lives in ``dsr_core.lm.embedding``."""

from ..lm.embedding import Embedder

__all__ = ["Embedder"]
