"""DSPy's ``dspy.primitives.prediction``; the code lives in ``dsr_core.primitives``."""

from . import Completions, Prediction

__all__ = ["Completions", "Prediction"]
