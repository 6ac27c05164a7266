"""DSPy's module path for the optimizers (``from dspy.teleprompt import MIPROv2`` becomes ``from
dsr_core.teleprompt import MIPROv2``); they live in ``dsr_core.optimizers``."""

from .optimizers import COPRO, BootstrapFewShot, BootstrapFewShotWithRandomSearch, LabeledFewShot, MIPROv2

__all__ = ["COPRO", "BootstrapFewShot", "BootstrapFewShotWithRandomSearch", "LabeledFewShot", "MIPROv2"]
