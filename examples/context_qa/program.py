"""A two-step program over provided passages, shaped like a HotpotQA pipeline: rewrite, retrieve, answer.

1. ``rewrite`` turns the question into a short search query.
2. ``retrieve``, a word-overlap ranking (plain Python, no model), keeps the 2 passages that share the most
   words with the query and the question.
3. ``answer`` answers from those passages only.

``retrieve`` is a module-level function marked with ``@step``, so the program can be drawn as the graph
rewrite -> retrieve -> answer and the graph can run it again (``dsr program graph``, the Structural
optimizer). A subclass keeps another number of passages by setting its own step as ``retrieve``.

Both predictors are optimized together: a bootstrapped demo keeps the query and the answer of a run whose
final answer was right. ``context`` is a list of passages, or HotpotQA's ``{"title": [...], "sentences":
[[...], ...]}`` (the HotpotQA recipe in examples/hotpotqa runs this same program).
"""

from __future__ import annotations

import re
from typing import Any

import dsr_core as dsr
from dsr_core.graph import step

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


def kept_passages(query: str, question: str, context: Any, k: int = 2) -> list[str]:
    """The ``k`` passages of ``context`` sharing the most words with the query and the question."""
    return top_passages(f"{query} {question}", passages(context), k)


@step(output="passages")
def retrieve(query: str, question: str, context: Any) -> list[str]:
    """The 2 passages of ``context`` sharing the most words with the query and the question."""
    return kept_passages(query, question, context, 2)


class ContextQA(dsr.Module):
    retrieve = staticmethod(retrieve)  # a graph step: a marked module-level function, not a method

    def __init__(self) -> None:
        # the bundled 135M model keeps to JSON (constrained by the schema) far better than to the chat format
        self.rewrite = dsr.Predict(RewriteQuery, adapter=dsr.JSONAdapter())
        self.answer = dsr.Predict(AnswerFromContext, adapter=dsr.JSONAdapter())

    async def aforward(self, question: str, context: Any) -> dsr.Prediction:
        query = (await self.rewrite.acall(question=question)).query
        found = self.retrieve(query=query, question=question, context=context)
        prediction = await self.answer.acall(context=found, question=question)
        return dsr.Prediction(query=query, answer=prediction.answer)


def answer_feedback(
    gold: Any, pred: Any, trace: Any = None, pred_name: str | None = None, pred_trace: Any = None
) -> dsr.Prediction:
    """Exact match on ``answer`` (the score), with feedback for GEPA's reflection: the expected answer, and
    whether the query kept the passage holding it (a ``rewrite`` failure) or the answer step missed it
    although it was there (an ``answer`` failure)."""
    expected, given = str(gold.answer), str(pred.answer)
    score = dsr.metrics.exact_match_score(given, expected)
    if score:
        return dsr.Prediction(score=score, feedback=f"Correct: the answer {expected!r} matches.")
    kept = kept_passages(str(pred.query), str(gold.question), gold.context)
    found = any(dsr.normalize_text(expected) in dsr.normalize_text(p) for p in kept)
    if pred_name == "rewrite":
        where = (
            "the passages this query kept do contain it, so the query was good enough"
            if found
            else f"the query {pred.query!r} did not keep the passage that contains it: name the person in the "
            "question and the fact asked for"
        )
    else:
        where = (
            "it appears word for word in the passages given, so copy that phrase and nothing else"
            if found
            else "it does not appear in the passages given (the query missed the right passage)"
        )
    return dsr.Prediction(score=score, feedback=f"Wrong: answered {given!r}, expected {expected!r}; {where}.")
