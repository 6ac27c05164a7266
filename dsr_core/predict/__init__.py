"""DSPy's module path for the predictors (``from dspy.predict import Predict``); they live in ``dsr_core.modules``."""

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
