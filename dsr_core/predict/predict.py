"""DSPy's ``dspy.predict.predict``; the code lives in ``dsr_core.modules.predict``."""

from ..modules.predict import Predict

__all__ = ["Predict"]
