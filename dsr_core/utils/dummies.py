"""DSPy's test doubles (``dspy.utils.DummyLM``, ``dummy_rm``, ``DummyVectorizer``), so a DSPy project's own tests
run on dsr unchanged.

``DummyLM`` is a ``BaseLM`` whose replies are scripted: a list of output dicts (one per call, in order), a dict
from a text the last message contains to the outputs for it, or, with ``follow_examples``, the outputs of the
demo whose inputs the current request repeats. Each reply is written in the adapter's format (ChatAdapter's
``[[ ## field ## ]]`` sections by default, a JSON object for a JSONAdapter), so the program's own parsing runs.
It goes through dsr's ``BaseLM`` path like any custom LM: history, callbacks and usage (zero tokens) included.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..lm.base import BaseLM

_FIELD_HEADER = re.compile(r"\[\[ ## (\w+) ## \]\]")
NO_MORE = "No more responses"


class DummyLM(BaseLM):
    """``DummyLM([{"answer": "red"}, {"answer": "blue"}])``, ``DummyLM({"sky": {"answer": "blue"}})`` or
    ``DummyLM([...], follow_examples=True)``; ``adapter`` picks the reply format (default ChatAdapter)."""

    def __init__(
        self,
        answers: list[dict[str, Any]] | dict[str, dict[str, Any]],
        follow_examples: bool = False,
        reasoning: bool = False,
        adapter: Any = None,
    ) -> None:
        super().__init__("dummy", "chat", 0.0, 1000, True)
        self.answers: Iterator[dict[str, Any]] | dict[str, dict[str, Any]] = (
            iter(answers) if isinstance(answers, list) else answers
        )
        self.follow_examples = follow_examples
        self.reasoning = reasoning
        if adapter is None:
            from ..adapters import ChatAdapter

            adapter = ChatAdapter()
        self.adapter = adapter

    # -- DSPy's BaseLM contract ----------------------------------------------------------------------------------
    def forward(self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any) -> Any:
        messages = messages if messages is not None else [{"role": "user", "content": prompt or ""}]
        choices = []
        for index in range(int(kwargs.get("n") or 1)):
            message: dict[str, Any] = {"role": "assistant", "content": self._reply(messages)}
            if self.reasoning:
                message["reasoning_content"] = "Some reasoning"
            choices.append({"index": index, "message": message, "finish_reason": "stop"})
        usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        return {"id": None, "object": "chat.completion", "model": "dummy", "choices": choices, "usage": usage}

    async def aforward(
        self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> Any:
        return self.forward(prompt=prompt, messages=messages, **kwargs)  # scripted: nothing to wait for

    def get_convo(self, index: int) -> tuple[Any, Any]:
        """The messages and the outputs of the ``index``-th call in the history."""
        return self.history[index]["messages"], self.history[index]["outputs"]

    # -- the scripted replies ------------------------------------------------------------------------------------
    def _reply(self, messages: list[dict[str, Any]]) -> str:
        if self.follow_examples:
            return self._use_example(messages) or ""
        if isinstance(self.answers, dict):
            last = _text(messages[-1])
            return next((self._format_answer_fields(v) for k, v in self.answers.items() if k in last), NO_MORE)
        return self._format_answer_fields(next(self.answers, {"answer": NO_MORE}))

    def _use_example(self, messages: list[dict[str, Any]]) -> str | None:
        """The assistant turn of the demo whose user turn holds the current request's first input section."""
        headers: Counter[str] = Counter()
        for message in messages:
            if match := _FIELD_HEADER.match(_text(message)):
                headers[match.group(0)] += 1
        if not headers:
            return None
        most = max(headers.values())
        output_headers = [header for header, count in headers.items() if count != most]
        final_input = _text(messages[-1]).split("\n\n")[0]
        for asked, answered in zip(reversed(messages[:-1]), reversed(messages), strict=False):
            if any(h in _text(answered) for h in output_headers) and final_input in _text(asked):
                return _text(answered)
        return None

    def _format_answer_fields(self, values: dict[str, Any]) -> str:
        """The reply an LM following the adapter's format would write with these output values."""
        from ..adapters import JSONAdapter
        from ..adapters.types import jsonable

        if isinstance(self.adapter, JSONAdapter):
            return json.dumps({name: jsonable(value) for name, value in values.items()}, ensure_ascii=False)
        return self.adapter.format_field_with_value(values)


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts: their text
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


def dummy_rm(passages: Sequence[str] = ()) -> Callable[..., list[Any]]:
    """A retriever over ``passages`` by n-gram vectors, as DSPy's: ``rm(query, k=2)`` gives the k nearest."""
    from ..dsp.utils import dotdict

    if not passages:

        def empty(query: str, *, k: int, **kwargs: Any) -> list[Any]:
            raise ValueError("No passages defined")

        return empty
    vectorizer = DummyVectorizer(max(map(len, passages)) + 100)
    vectors = vectorizer(list(passages))

    def nearest(query: str, *, k: int, **kwargs: Any) -> list[Any]:
        assert k <= len(passages)
        scores = vectors @ vectorizer([query])[0]
        return [dotdict(long_text=passages[i]) for i in (-scores).argsort()[:k]]

    return nearest


class DummyVectorizer:
    """Hashed character n-gram counts, normalized: DSPy's stand-in for an embedding model."""

    def __init__(self, max_length: int = 100, n_gram: int = 2) -> None:
        self.max_length = max_length
        self.n_gram = n_gram
        self.P = 10**9 + 7
        random.seed(123)  # DSPy's: the same coefficients, so the same vectors
        self.coeffs = [random.randrange(1, self.P) for _ in range(n_gram)]

    def _hash(self, gram: str) -> int:
        value = 1
        for coeff, char in zip(self.coeffs, gram, strict=False):
            value = (value * coeff + ord(char)) % self.P
        return value % self.max_length

    def __call__(self, texts: list[str]) -> Any:
        import numpy as np

        rows = []
        for text in texts:
            row = [0] * self.max_length
            for start in range(len(text) - self.n_gram + 1):
                row[self._hash(text[start : start + self.n_gram])] += 1
            rows.append(row)
        matrix = np.array(rows, dtype=np.float32)
        matrix -= matrix.mean(axis=1, keepdims=True)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True) + 1e-10
        return matrix


__all__ = ["DummyLM", "DummyVectorizer", "dummy_rm"]
