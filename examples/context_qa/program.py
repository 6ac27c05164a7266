"""A two-step program over provided passages, shaped like a HotpotQA pipeline: rewrite, retrieve, answer.

1. ``rewrite`` turns the question into a short search query.
2. A word-overlap ranking (plain Python, no model) keeps the ``k`` passages that share the most words with
   the query and the question.
3. ``answer`` answers from those passages only.

Both predictors are optimized together: a bootstrapped demo keeps the query and the answer of a run whose
final answer was right. ``context`` is a list of passages, or HotpotQA's ``{"title": [...], "sentences":
[[...], ...]}`` (the HotpotQA recipe in examples/hotpotqa runs this same program).
"""

from __future__ import annotations

import re
from typing import Any

import dsr_core as dsr

_WORD = re.compile(r"[a-z0-9]+")
_STOP = {"a", "an", "the", "of", "in", "on", "at", "to", "for", "by", "is", "was", "what", "which", "who", "when",
         "where", "did", "does", "do", "and", "or", "that", "with", "from", "as", "how", "it"}  # fmt: skip


class RewriteQuery(dsr.Signature):
    """Write a short search query with the key names and words needed to find the answer."""

    question: str = dsr.InputField()
    query: str = dsr.OutputField(desc="a few keywords")


class AnswerFromContext(dsr.Signature):
    """Answer the question with a short phrase taken from the context."""

    context: list[str] = dsr.InputField(desc="passages that may contain the answer")
    question: str = dsr.InputField()
    answer: str = dsr.OutputField(desc="a few words, usually copied from the context")


def passages(context: Any) -> list[str]:
    """A list of passages from a list of strings or from HotpotQA's title/sentences mapping."""
    if isinstance(context, dict):
        return [
            f"{title} | {''.join(sentences)}"
            for title, sentences in zip(context["title"], context["sentences"], strict=True)
        ]
    return [str(p) for p in context]


def words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def top_passages(query: str, candidates: list[str], k: int) -> list[str]:
    """The ``k`` passages sharing the most words with ``query``, in their original order on ties."""
    wanted = words(query)
    ranked = sorted(range(len(candidates)), key=lambda i: -len(wanted & words(candidates[i])))
    return [candidates[i] for i in sorted(ranked[:k])]


class ContextQA(dsr.Module):
    def __init__(self, k: int = 2) -> None:
        self.k = k
        # the bundled 135M model keeps to JSON (constrained by the schema) far better than to the chat format
        self.rewrite = dsr.Predict(RewriteQuery, adapter=dsr.JSONAdapter())
        self.answer = dsr.Predict(AnswerFromContext, adapter=dsr.JSONAdapter())

    async def aforward(self, question: str, context: Any) -> dsr.Prediction:
        query = (await self.rewrite.acall(question=question)).query
        found = top_passages(f"{query} {question}", passages(context), self.k)
        prediction = await self.answer.acall(context=found, question=question)
        return dsr.Prediction(query=query, answer=prediction.answer)
