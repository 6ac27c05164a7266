"""Modules: programs and the predictors inside them."""

from .aggregation import majority
from .chain_of_thought import ChainOfThought
from .knn import KNN
from .module import Module, Parameter
from .multi_chain_comparison import MultiChainComparison
from .parallel import Parallel, ParallelAborted
from .predict import Predict
from .react import ReAct
from .refine import BestOfN, Refine

__all__ = [
    "BestOfN",
    "ChainOfThought",
    "KNN",
    "Module",
    "MultiChainComparison",
    "Parallel",
    "ParallelAborted",
    "Parameter",
    "Predict",
    "ReAct",
    "Refine",
    "majority",
]
