"""DSPy's module path for the predictors (``from dspy.predict import Predict``); they live in ``dsr_core.modules``."""

from typing import Any

from .._submodules import submodule
from ..modules import (
    KNN,
    BestOfN,
    ChainOfThought,
    MultiChainComparison,
    Parallel,
    Predict,
    ReAct,
    Refine,
    majority,
)

__all__ = [
    "BestOfN",
    "ChainOfThought",
    "KNN",
    "MultiChainComparison",
    "Parallel",
    "Predict",
    "ReAct",
    "Refine",
    "majority",
]


def __getattr__(name: str) -> Any:
    if name in ("ProgramOfThought", "CodeAct"):  # imported on first use, with the interpreter protocol
        import dsr_core

        return getattr(dsr_core, name)
    return submodule(__name__, name)  # ``predict.react`` without importing it first, as in DSPy
