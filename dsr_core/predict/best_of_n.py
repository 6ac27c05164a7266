"""DSPy's ``dspy.predict.best_of_n``; the code lives in ``dsr_core.modules.refine``."""

from ..modules.refine import BestOfN

__all__ = ["BestOfN"]
