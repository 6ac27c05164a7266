"""DSPy's ``dspy.adapters.types.history``; the code lives in ``dsr_core.adapters.history``."""

from ..history import History

__all__ = ["History"]
