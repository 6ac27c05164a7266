"""DSPy's ``dspy.teleprompt.random_search``; the code lives in ``dsr_core.optimizers.random_search``."""

from ..optimizers.random_search import BootstrapFewShotWithRandomSearch

__all__ = ["BootstrapFewShotWithRandomSearch"]
