"""DSPy's ``dspy.adapters.types.audio``; the code lives in ``dsr_core.adapters.audio``."""

from ..audio import Audio

__all__ = ["Audio"]
