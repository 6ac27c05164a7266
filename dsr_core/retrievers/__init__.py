"""DSPy's ``dspy.retrievers``: ``Embeddings``/``EmbeddingsWithScores`` (retrieval over an embedded, in-memory
corpus) and ``Retrieve`` (a program's retriever step, asking the retriever in the ``rm`` setting, such as a
``dsr_core.dsp.colbertv2.ColBERTv2`` client of a ColBERTv2 server)."""

from types import ModuleType

from .._submodules import submodule
from .embeddings import Embeddings, EmbeddingsWithScores
from .retrieve import Retrieve

__all__ = ["Embeddings", "EmbeddingsWithScores", "Retrieve"]


def __getattr__(name: str) -> ModuleType:
    return submodule(__name__, name)  # ``retrievers.embeddings`` without importing it first, as in DSPy
