"""DSPy's ``dspy.teleprompt.teleprompt``; the code (``Optimizer``, DSPy's ``Teleprompter``) lives in ``dsr_core.optimizers.base``."""

from ..optimizers.base import Optimizer as Teleprompter

__all__ = ["Teleprompter"]
