"""Optimizers as ask/tell state machines (see base.py); ``compile`` runs one in process."""

from .base import (
    BootstrapWork,
    EvaluateOutcome,
    EvaluateWork,
    GenerateOutcome,
    GenerateWork,
    LocalRunner,
    Optimizer,
    OptimizerState,
    TraceCall,
    TraceOutcome,
    TraceWork,
    TrialRecord,
    WorkKey,
    merge_evaluations,
)
from .bootstrap import BootstrapFewShot, BootstrapState, LabeledFewShot
from .bootstrap_finetune import BetterTogether, BootstrapFinetune, bootstrap_trace_data
from .copro import COPRO, CoproState
from .ensemble import Ensemble
from .gepa import GEPA, GepaState
from .knn_fewshot import KNNFewShot
from .mipro import MiproState, MIPROv2
from .random_search import BootstrapFewShotWithRandomSearch, RandomSearchState
from .simba import SIMBA, SimbaState
from .structural import StructuralOptimizer, StructuralState

BootstrapRS = BootstrapFewShotWithRandomSearch  # DSPy's alias

__all__ = [
    "BetterTogether",
    "COPRO",
    "CoproState",
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "BootstrapFinetune",
    "BootstrapRS",
    "BootstrapState",
    "BootstrapWork",
    "EvaluateOutcome",
    "EvaluateWork",
    "Ensemble",
    "GenerateOutcome",
    "GEPA",
    "GenerateWork",
    "GepaState",
    "KNNFewShot",
    "LabeledFewShot",
    "LocalRunner",
    "MIPROv2",
    "MiproState",
    "Optimizer",
    "OptimizerState",
    "RandomSearchState",
    "SIMBA",
    "SimbaState",
    "StructuralOptimizer",
    "StructuralState",
    "TraceCall",
    "TraceOutcome",
    "TraceWork",
    "TrialRecord",
    "WorkKey",
    "bootstrap_trace_data",
    "merge_evaluations",
]
