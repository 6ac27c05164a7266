"""DSPy's ``dspy.adapters.types.document``; the code lives in ``dsr_core.adapters.document``."""

from ..document import Document

__all__ = ["Document"]
