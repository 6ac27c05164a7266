"""Programs, metrics and responders that flow tests refer to by import reference."""

from __future__ import annotations

import os

import dsr_core as dsr


class QA(dsr.Module):
    def __init__(self):
        self.answer = dsr.Predict("question -> answer")

    async def aforward(self, question):
        if os.environ.get("DSR_TEST_CRASH_ON") == question:
            raise KeyboardInterrupt("simulated worker crash")  # not an Exception: it takes the task down
        return await self.answer.acall(question=question)


class RewriteThenAnswer(dsr.Module):
    """A two-step program: rewrite the question into a query, then answer from it with reasoning."""

    def __init__(self):
        self.rewrite = dsr.Predict("question -> query")
        self.answer = dsr.ChainOfThought("question, context: list[str] -> answer")

    async def aforward(self, question):
        query = (await self.rewrite.acall(question=question)).query
        return await self.answer.acall(question=question, context=[query])


def make_qa():
    return QA()


def upper_answer(request):
    """The server's rule: answer = the question upper-cased."""
    return request.reply(answer=request.inputs.get("question", "").upper())


def exact_upper(example, prediction, trace=None):
    return prediction.answer == example.answer


def write_dataset(path, n, *, wrong_every=0):
    import json

    with open(path, "w") as handle:
        for i in range(n):
            answer = f"Q{i}" if not (wrong_every and i % wrong_every == 0) else "nope"
            handle.write(json.dumps({"question": f"q{i}", "answer": answer}) + "\n")
    return str(path)
