"""DSPy's ``dspy.retrievers``: retrieval over an embedded, in-memory corpus. DSPy's ``Retrieve`` (a retriever
configured in the settings) and ``ColBERTv2`` (a client of a ColBERT server) are not here: call your search
service in a Module's forward or a Tool."""

from types import ModuleType

from .._submodules import submodule
from .embeddings import Embeddings, EmbeddingsWithScores

__all__ = ["Embeddings", "EmbeddingsWithScores"]


def __getattr__(name: str) -> ModuleType:
    return submodule(__name__, name)  # ``retrievers.embeddings`` without importing it first, as in DSPy
