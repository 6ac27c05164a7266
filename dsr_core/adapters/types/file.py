"""DSPy's ``dspy.adapters.types.file``; the code lives in ``dsr_core.adapters.file``."""

from ..file import File

__all__ = ["File"]
