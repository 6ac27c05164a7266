"""DSPy's ``dspy.teleprompt.vanilla``; the code lives in ``dsr_core.optimizers.bootstrap``."""

from ..optimizers.bootstrap import LabeledFewShot

__all__ = ["LabeledFewShot"]
