"""DSPy's ``dspy.adapters.types.image``; the code lives in ``dsr_core.adapters.image``."""

from ..image import Image

__all__ = ["Image"]
