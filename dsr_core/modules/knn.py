"""KNN: DSPy's ``dspy.predict.knn.KNN``, the training examples nearest to some inputs by embedding.

Each training example is embedded once, when the KNN is made, as DSPy writes it: ``"key: value"`` for each of
its input fields, joined by ``" | "``; a call embeds its keyword inputs the same way and returns the ``k``
examples of highest dot product with them, the nearest first. It is no Module (it holds no parameters and
makes no LM call); ``KNNFewShot`` uses it to pick each call's demos.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from ..primitives import Example


def example_text(example: Example, index: int | None = None) -> str:
    """DSPy's text for a training example: its input fields as ``"key: value"``, joined by ``" | "``."""
    keys = example.input_keys
    if keys is None:
        where = f"training example {index}" if index is not None else "the example"
        raise ValueError(f"KNN: {where} has no input keys; mark them with .with_inputs('question', ...)")
    return " | ".join(f"{key}: {value}" for key, value in example.items() if key in keys)


def inputs_text(inputs: dict[str, Any]) -> str:
    """DSPy's text for a call's inputs: every keyword as ``"key: value"``, joined by ``" | "``."""
    return " | ".join(f"{key}: {value}" for key, value in inputs.items())


class KNN:
    """``KNN(k, trainset, vectorizer)``; ``knn(question=...)`` is the ``k`` nearest training examples, nearest first.

    ``vectorizer`` is an ``Embedder`` (or any callable from a list of strings to one vector per string).
    ``await knn.acall(...)`` embeds the query through the vectorizer's ``acall`` when it has one.
    """

    def __init__(self, k: int, trainset: Sequence[Example], vectorizer: Callable[..., Any]) -> None:
        from ..lm.embedding import _numpy

        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"KNN: k must be a positive integer, got {k!r}")
        if not trainset:
            raise ValueError("KNN: the trainset is empty; it needs at least one example to find neighbours in")
        np = _numpy()
        self.k = k
        self.trainset = list(trainset)
        self.embedding = vectorizer
        texts = [example_text(example, i) for i, example in enumerate(self.trainset)]
        vectors = np.asarray(vectorizer(texts), dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise ValueError(
                f"KNN: the vectorizer returned an array of shape {vectors.shape} for {len(texts)} training "
                "examples; it must return one vector per text"
            )
        self.trainset_vectors = vectors

    def _nearest(self, query: Any) -> list[Example]:
        from ..lm.embedding import _numpy

        np = _numpy()
        vector = np.asarray(query, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.trainset_vectors.shape[1]:
            raise ValueError(
                f"KNN: the query's embedding has {vector.shape[0]} dimensions, the training examples' "
                f"{self.trainset_vectors.shape[1]}; embed both with the same vectorizer"
            )
        scores = self.trainset_vectors @ vector
        order = scores.argsort()[-self.k :][::-1]  # DSPy's: the k highest, the highest first
        return [self.trainset[int(i)] for i in order]

    def __call__(self, **kwargs: Any) -> list[Example]:
        return self._nearest(self.embedding([inputs_text(kwargs)]))

    async def acall(self, **kwargs: Any) -> list[Example]:
        texts = [inputs_text(kwargs)]
        embed = getattr(self.embedding, "acall", None)
        query = await embed(texts) if embed is not None else await asyncio.to_thread(self.embedding, texts)
        return self._nearest(query)


__all__ = ["KNN", "example_text", "inputs_text"]
