"""DSPy's ``dspy.clients``; the LM clients and the Embedder live in ``dsr_core.lm``."""

from types import ModuleType

from .._submodules import submodule
from .base_lm import BaseLM, inspect_history
from .embedding import Embedder
from .lm import LM
from .provider import Provider, TrainingJob

__all__ = ["LM", "BaseLM", "Embedder", "Provider", "TrainingJob", "inspect_history"]


def __getattr__(name: str) -> ModuleType:
    return submodule(__name__, name)  # ``clients.base_lm`` without importing it first, as in DSPy
