"""DSPy's ``dspy.evaluate.evaluate``; the code lives in ``dsr_core.evaluate``."""

from . import Evaluate, EvaluationResult

__all__ = ["Evaluate", "EvaluationResult"]
