"""Embeddings and EmbeddingsWithScores: DSPy's ``dspy.retrievers`` retrievers over an in-memory corpus.

The corpus is embedded once, when the retriever is made (normalized to unit length by default, so the dot
product is the cosine). A query is embedded the same way and scored against every passage (brute force, exact)
for a corpus below ``brute_force_threshold``; from that size on a FAISS IVF-PQ index, when ``faiss`` is
installed, picks ``10 * k`` candidates that are then re-ranked exactly, as DSPy does. Without faiss a corpus
that large is an ImportError naming both ways out, as in DSPy.

``save(path)`` writes DSPy's folder layout (``config.json``, ``corpus_embeddings.npy``, and ``faiss_index.bin``
when there is an index), so DSPy and dsr load each other's. The embeddings are read with numpy's
``allow_pickle=False``: a saved retriever is data, never code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..lm.embedding import _numpy
from ..primitives import Prediction

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
EMBEDDINGS_FILE = "corpus_embeddings.npy"
FAISS_FILE = "faiss_index.bin"
_CONFIG_FIELDS = ("k", "normalize", "corpus", "has_faiss_index")


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise ImportError(
            "Please `pip install faiss-cpu` or increase `brute_force_threshold` to avoid FAISS."
        ) from None
    return faiss


class Embeddings:
    """``Embeddings(corpus, embedder, k=5)``; ``retriever(query)`` is ``Prediction(passages=[...], indices=[...])``,
    the ``k`` passages most similar to the query, the most similar first.

    ``embedder`` is an ``Embedder`` (or any callable from a list of strings to a 2-D array). ``callbacks`` is
    accepted for DSPy's signature and unused (as in DSPy); ``cache`` must stay False, as DSPy requires.
    """

    def __init__(
        self,
        corpus: Sequence[str],
        embedder: Callable[..., Any],
        k: int = 5,
        callbacks: list[Any] | None = None,
        cache: bool = False,
        brute_force_threshold: int = 20_000,
        normalize: bool = True,
    ) -> None:
        if cache is not False:
            raise ValueError("Embeddings: caching is not supported for embeddings-based retrievers (cache=False)")
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"Embeddings: k must be a positive integer, got {k!r}")
        if not corpus:
            raise ValueError("Embeddings: the corpus is empty; give at least one passage")
        np = _numpy()
        self.embedder = embedder
        self.k = k
        self.corpus = list(corpus)
        self.callbacks = list(callbacks or [])
        self.normalize = normalize
        vectors = np.asarray(embedder(self.corpus), dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(self.corpus):
            raise ValueError(
                f"Embeddings: the embedder returned an array of shape {vectors.shape} for {len(self.corpus)} "
                "passages; it must return one vector per passage"
            )
        self.corpus_embeddings = self._normalize(vectors) if normalize else vectors
        self.index = self._build_faiss() if len(self.corpus) >= brute_force_threshold else None

    # -- search ------------------------------------------------------------------------------------------------
    def __call__(self, query: str) -> Prediction:
        return self.forward(query)

    def forward(self, query: str) -> Prediction:
        """The top ``k`` passages for ``query`` and their positions in the corpus."""
        passages, indices, _ = self._search(self._embed_query(self.embedder([query])))
        return Prediction(passages=passages, indices=indices)

    async def acall(self, query: str) -> Prediction:
        """``forward`` for async code: the query is embedded through the embedder's ``acall`` when it has one."""
        passages, indices, _ = self._search(await self._aembed(query))
        return Prediction(passages=passages, indices=indices)

    async def _aembed(self, query: str) -> np.ndarray:
        embed = getattr(self.embedder, "acall", None)
        vectors = await embed([query]) if embed is not None else await asyncio.to_thread(self.embedder, [query])
        return self._embed_query(vectors)

    def _embed_query(self, vectors: Any) -> np.ndarray:
        np = _numpy()
        query = np.asarray(vectors, dtype=np.float32).reshape(1, -1)
        if query.shape[1] != self.corpus_embeddings.shape[1]:
            raise ValueError(
                f"Embeddings: the query's embedding has {query.shape[1]} dimensions, the corpus's "
                f"{self.corpus_embeddings.shape[1]}; use the embedder the corpus was embedded with"
            )
        return self._normalize(query) if self.normalize else query

    def _search(self, query: np.ndarray) -> tuple[list[str], list[int], list[float]]:
        """Exact scores over the whole corpus, or over FAISS's ``10 * k`` candidates when there is an index."""
        np = _numpy()
        if self.index is None:
            candidates = None
            scores = self.corpus_embeddings @ query[0]
        else:
            candidates = self.index.search(query, self.k * 10)[1][0]
            candidates = candidates[candidates >= 0]  # FAISS pads with -1 when it finds fewer
            scores = self.corpus_embeddings[candidates] @ query[0]
        top = np.argsort(-scores, kind="stable")[: self.k]
        indices = top if candidates is None else candidates[top]
        return (
            [self.corpus[int(i)] for i in indices],
            [int(i) for i in indices],
            [float(s) for s in scores[top]],
        )

    @staticmethod
    def _normalize(embeddings: np.ndarray) -> np.ndarray:
        np = _numpy()
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        return embeddings / np.maximum(norms, 1e-10)

    def _build_faiss(self) -> Any:
        """DSPy's index: IVF-PQ, 32 bytes a vector, ``2 * sqrt(n)`` partitions, 16 of them probed."""
        np = _numpy()
        faiss = _faiss()
        nbytes = 32
        partitions = int(2 * np.sqrt(len(self.corpus)))
        dim = self.corpus_embeddings.shape[1]
        quantizer = faiss.IndexFlatL2(dim)
        index = faiss.IndexIVFPQ(quantizer, dim, partitions, nbytes, 8)
        log.info(
            "Training a %d-byte FAISS index with %d partitions, based on %d x %d-dim embeddings",
            nbytes,
            partitions,
            len(self.corpus),
            dim,
        )
        index.train(self.corpus_embeddings)
        index.add(self.corpus_embeddings)
        index.nprobe = min(16, partitions)
        return index

    # -- saving ------------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the corpus, its embeddings and the settings (and the FAISS index, if any) to folder ``path``."""
        np = _numpy()
        os.makedirs(path, exist_ok=True)
        config = {
            "k": self.k,
            "normalize": self.normalize,
            "corpus": self.corpus,
            "has_faiss_index": self.index is not None,
        }
        with open(os.path.join(path, CONFIG_FILE), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)
        np.save(os.path.join(path, EMBEDDINGS_FILE), self.corpus_embeddings, allow_pickle=False)
        if self.index is not None:
            try:
                faiss = _faiss()
            except ImportError:  # the embeddings are saved: a load searches by brute force
                log.warning("Embeddings.save: faiss is not installed, so the index is not saved")
            else:
                faiss.write_index(self.index, os.path.join(path, FAISS_FILE))

    def load(self, path: str | os.PathLike[str], embedder: Callable[..., Any]) -> Embeddings:
        """Read a folder ``save`` (dsr's or DSPy's) wrote into this retriever; ``embedder`` embeds new queries.

        Raises FileNotFoundError for a missing folder or file, ValueError for a config without DSPy's fields or
        embeddings that do not match the corpus. A saved FAISS index is used when faiss is installed; without
        it the search is brute force (exact, slower on a large corpus)."""
        np = _numpy()
        if not os.path.exists(path):
            raise FileNotFoundError(f"Save directory not found: {path}")
        config_path = os.path.join(path, CONFIG_FILE)
        embeddings_path = os.path.join(path, EMBEDDINGS_FILE)
        if not os.path.exists(config_path):
            raise FileNotFoundError(f"Config file not found: {config_path}")
        if not os.path.exists(embeddings_path):
            raise FileNotFoundError(f"Embeddings file not found: {embeddings_path}")
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
        if not isinstance(config, dict):
            raise ValueError(f"Invalid config {config_path}: a JSON {type(config).__name__}, not an object")
        for field in _CONFIG_FIELDS:
            if field not in config:
                raise ValueError(f"Invalid config: missing required field '{field}'")
        vectors = np.load(embeddings_path, allow_pickle=False)
        if vectors.ndim != 2 or len(vectors) != len(config["corpus"]):
            raise ValueError(
                f"Embeddings.load: {embeddings_path} holds an array of shape {vectors.shape}, not one row per "
                f"passage of the {len(config['corpus'])} in {config_path}"
            )
        self.k = config["k"]
        self.normalize = config["normalize"]
        self.corpus = list(config["corpus"])
        self.embedder = embedder
        self.corpus_embeddings = vectors
        self.callbacks = getattr(self, "callbacks", [])
        self.index = None
        faiss_path = os.path.join(path, FAISS_FILE)
        if config["has_faiss_index"] and os.path.exists(faiss_path):
            try:
                self.index = _faiss().read_index(faiss_path)
            except ImportError:
                log.warning("Embeddings.load: faiss is not installed; searching %s by brute force", path)
        return self

    @classmethod
    def from_saved(cls, path: str | os.PathLike[str], embedder: Callable[..., Any]) -> Embeddings:
        """A retriever from a saved folder, without embedding the corpus again."""
        instance = cls.__new__(cls)
        return instance.load(path, embedder)


class EmbeddingsWithScores(Embeddings):
    """``Embeddings`` whose predictions also carry ``scores``: the similarity of each passage, for thresholds and
    re-ranking downstream."""

    def forward(self, query: str) -> Prediction:
        passages, indices, scores = self._search(self._embed_query(self.embedder([query])))
        return Prediction(passages=passages, indices=indices, scores=scores)

    async def acall(self, query: str) -> Prediction:
        passages, indices, scores = self._search(await self._aembed(query))
        return Prediction(passages=passages, indices=indices, scores=scores)


__all__ = ["Embeddings", "EmbeddingsWithScores"]
