"""Optimizers as ask/tell state machines (see base.py); ``compile`` runs one in process."""

from .base import BootstrapWork, EvaluateOutcome, EvaluateWork, LocalRunner, OptimizerState
from .bootstrap import BootstrapFewShot, BootstrapState, LabeledFewShot, Optimizer
from .copro import COPRO, CoproState
from .random_search import BootstrapFewShotWithRandomSearch, RandomSearchState

__all__ = [
    "COPRO",
    "CoproState",
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "BootstrapState",
    "BootstrapWork",
    "EvaluateOutcome",
    "EvaluateWork",
    "LabeledFewShot",
    "LocalRunner",
    "Optimizer",
    "OptimizerState",
    "RandomSearchState",
]
