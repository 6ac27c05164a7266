"""DSPy's module path for the predictors (``from dspy.predict import Predict``); they live in ``dsr_core.modules``."""

from .modules import ChainOfThought, Predict

__all__ = ["ChainOfThought", "Predict"]
