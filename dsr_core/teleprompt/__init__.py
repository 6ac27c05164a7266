"""DSPy's module path for the optimizers (``from dspy.teleprompt import MIPROv2`` becomes ``from
dsr_core.teleprompt import MIPROv2``); they live in ``dsr_core.optimizers``. ``Teleprompter`` is DSPy's
name for their base class."""

from ..optimizers import (
    COPRO,
    GEPA,
    SIMBA,
    BootstrapFewShot,
    BootstrapFewShotWithRandomSearch,
    BootstrapRS,
    Ensemble,
    KNNFewShot,
    LabeledFewShot,
    MIPROv2,
)
from ..optimizers.base import Optimizer as Teleprompter

__all__ = [
    "COPRO",
    "GEPA",
    "SIMBA",
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "BootstrapRS",
    "Ensemble",
    "KNNFewShot",
    "LabeledFewShot",
    "MIPROv2",
    "Teleprompter",
]
