"""DSPy's ``dspy.predict.refine``; the code lives in ``dsr_core.modules.refine``."""

from ..modules.refine import OfferFeedback, Refine

__all__ = ["OfferFeedback", "Refine"]
