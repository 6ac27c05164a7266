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


class Broken(dsr.Module):
    """A program whose constructor fails, as one does when a resource it needs is missing."""

    def __init__(self):
        raise RuntimeError("no retriever configured")


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


class WordCode(dsr.Module):
    """One predictor whose task (reverse and upper-case a word) the test server answers only with demos."""

    def __init__(self):
        self.encode = dsr.Predict("word -> code")

    async def aforward(self, word):
        return await self.encode.acall(word=word)


def code(word: str) -> str:
    return word[::-1].upper()


def learns_from_demos(request):
    """The server's rule: the right code only when shown at least two demos; otherwise the word echoed."""
    word = request.inputs.get("word", "")
    return request.reply(code=code(word) if len(request.demos) >= 2 else word)


def exact_code(example, prediction, trace=None):
    return prediction.code == example.code


def write_words(path, n, offset=0):
    import json

    with open(path, "w") as handle:
        for i in range(offset, offset + n):
            handle.write(json.dumps({"word": f"w{i}x", "code": code(f"w{i}x")}) + "\n")
    return str(path)


class CapitalAgent(dsr.Module):
    """A ReAct agent over two lookup tools (tests/test_react.py's): a program with a loop and Python tools."""

    def __init__(self) -> None:
        from tests.test_react import capital_of, city_population

        self.agent = dsr.ReAct("question -> answer", tools=[capital_of, city_population], max_iters=5)

    async def aforward(self, question: str) -> dsr.Prediction:
        return await self.agent.acall(question=question)


def reverses_when_told(request):
    """The server's rule for GEPA: the right code only when the instruction says to reverse the word; a
    reflection request gets the instruction its feedback asks for."""
    if request.output_fields == ["new_instruction"]:
        told = "must say: reverse" in request.inputs.get("examples_with_feedback", "")
        current = request.inputs.get("current_instruction", "")
        return request.reply(new_instruction=f"{current} Reverse the word, then uppercase it." if told else current)
    word = request.inputs.get("word", "")
    return request.reply(code=code(word) if "Reverse the word" in request.instructions else word)


def code_feedback(gold, pred, trace, pred_name, pred_trace):
    """A GEPA feedback metric: the score, and feedback that names what the instruction lacks."""
    right = pred.code == gold.code
    return dsr.Prediction(
        score=float(right), feedback="Correct." if right else "Wrong: the instruction must say: reverse"
    )
