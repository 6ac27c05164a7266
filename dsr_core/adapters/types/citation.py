"""DSPy's ``dspy.adapters.types.citation``; the code lives in ``dsr_core.adapters.citation``."""

from ..citation import Citations

__all__ = ["Citations"]
