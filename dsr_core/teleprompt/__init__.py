"""DSPy's module path for the optimizers (``from dspy.teleprompt import MIPROv2`` becomes ``from
dsr_core.teleprompt import MIPROv2``); they live in ``dsr_core.optimizers``. ``Teleprompter`` is DSPy's
name for their base class."""

from types import ModuleType

from .._submodules import submodule
from ..optimizers import (
    COPRO,
    GEPA,
    SIMBA,
    BetterTogether,
    BootstrapFewShot,
    BootstrapFewShotWithRandomSearch,
    BootstrapFinetune,
    BootstrapRS,
    Ensemble,
    KNNFewShot,
    LabeledFewShot,
    MIPROv2,
    bootstrap_trace_data,
)
from ..optimizers.base import Optimizer as Teleprompter

__all__ = [
    "COPRO",
    "GEPA",
    "SIMBA",
    "BetterTogether",
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "BootstrapFinetune",
    "BootstrapRS",
    "Ensemble",
    "KNNFewShot",
    "LabeledFewShot",
    "MIPROv2",
    "Teleprompter",
    "bootstrap_trace_data",
]


def __getattr__(name: str) -> ModuleType:
    return submodule(__name__, name)  # ``teleprompt.gepa`` without importing it first, as in DSPy
