"""The context_qa program with more room for HotpotQA: four of the ten passages go to the answer step."""

from __future__ import annotations

from typing import Any

from dsr_core.graph import step
from examples.context_qa.program import ContextQA, passages, top_passages


@step(output="passages")
def retrieve_four(query: str, question: str, context: Any) -> list[str]:
    """The 4 passages of ``context`` sharing the most words with the query and the question."""
    return top_passages(f"{query} {question}", passages(context), 4)


class HotpotQA(ContextQA):
    retrieve = staticmethod(retrieve_four)
