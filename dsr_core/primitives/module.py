"""DSPy's ``dspy.primitives.module``; the code lives in ``dsr_core.modules.module``."""

from ..modules.module import Module

__all__ = ["Module"]
