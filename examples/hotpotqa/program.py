"""The context_qa program with more room for HotpotQA: four of the ten passages go to the answer step."""

from __future__ import annotations

from examples.context_qa.program import ContextQA


class HotpotQA(ContextQA):
    def __init__(self, k: int = 4) -> None:
        super().__init__(k=k)
