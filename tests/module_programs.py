"""Programs built on DSPy's composite modules (Refine, Parallel, MultiChainComparison, ProgramOfThought), with the test server's
responders and the metrics that score them; tests/test_flow_modules.py runs them in the flows by import
reference (``tests.module_programs:Name``)."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter

import dsr_core as dsr

# -- Refine: an answer in one word, which the LM gives only when hinted to or shown demos ---------------------

ADVICE = "Answer with one word."


def one_word(args, pred):
    return 1.0 if len(str(pred.answer).split()) == 1 else 0.0


class Answer(dsr.Module):
    def __init__(self):
        self.answer = dsr.Predict("question -> answer")

    async def aforward(self, question):
        return await self.answer.acall(question=question)


class RefinedQA(dsr.Module):
    """Up to three attempts; after one that is not a single word, Refine asks the LM for advice."""

    def __init__(self):
        self.refine = dsr.Refine(module=Answer(), N=3, reward_fn=one_word, threshold=1.0)

    async def aforward(self, question):
        return await self.refine.acall(question=question)


def refine_responder(request):
    """The feedback call gives the advice; the program answers in one word (the question upper-cased) when
    hinted with it or shown a demo, otherwise in a sentence."""
    if "advice" in request.output_fields:
        names = json.loads(request.inputs["module_names"])  # the names inside the refined module: ["answer"]
        return request.reply(discussion="The answer was a sentence.", advice={name: ADVICE for name in names})
    question = request.inputs.get("question", "")
    if request.inputs.get("hint_") == ADVICE or request.demos:
        return request.reply(answer=question.upper())
    return request.reply(answer=f"The answer is {question.upper()}")


# -- Parallel: sub-questions answered concurrently, then joined -----------------------------------------------


class SubQuestions(dsr.Module):
    """``"a + b + c"``: each part answered by one predictor, in parallel; the answers joined with ``+``."""

    def __init__(self):
        self.answer = dsr.Predict("question -> answer")
        self.parallel = dsr.Parallel(num_threads=4)

    async def aforward(self, question):
        parts = [part.strip() for part in question.split("+")]
        results = await self.parallel.acall([(self.answer, {"question": part}) for part in parts])
        return dsr.Prediction(answer=" + ".join(r.answer for r in results))


def upper_responder(request):
    return request.reply(answer=request.inputs.get("question", "").upper())


def demo_sensitive(responder):
    """``responder``, but answering wrong (the question lower-cased) to a request that shows no demos."""

    def respond(request):
        if not request.demos:
            return request.reply(answer=request.inputs.get("question", "").lower())
        return responder(request)

    return respond


# -- MultiChainComparison: three ChainOfThought attempts, compared --------------------------------------------

M = 3


class ComparedQA(dsr.Module):
    """Three sampled ChainOfThought attempts (rollouts and seeds 0, 1, 2) and one MultiChainComparison call."""

    def __init__(self):
        self.think = dsr.ChainOfThought("question -> answer")
        self.compare = dsr.MultiChainComparison("question -> answer", M=M)

    async def aforward(self, question):
        attempts = await asyncio.gather(
            *(
                self.think.acall(question=question, config={"temperature": 1.0, "rollout_id": i, "seed": i})
                for i in range(M)
            )
        )
        return await self.compare.acall(attempts, question=question)


PREDICTION = re.compile(r"my prediction is (.*)»")


def compare_responder(request):
    """An attempt answers the question upper-cased, except the one sampled with seed 1, which answers wrong;
    the comparison call answers with the prediction most of the attempts it is shown agree on."""
    attempts = [v for k, v in sorted(request.inputs.items()) if k.startswith("reasoning_attempt_")]
    if attempts:
        votes = Counter(m.group(1) for a in attempts if (m := PREDICTION.search(a)))
        return request.reply(rationale=f"the attempts say {dict(votes)}", answer=votes.most_common(1)[0][0])
    question = request.inputs.get("question", "")
    if request.body.get("seed") == 1:
        return request.reply(reasoning=f"guess for {question}", answer="WRONG")
    return request.reply(reasoning=f"upper-case {question}", answer=question.upper())


# -- ProgramOfThought: the LM writes code that computes the answer, the sandbox runs it ------------------------


class ComputedQA(dsr.Module):
    def __init__(self):
        self.compute = dsr.ProgramOfThought("question -> answer")

    async def aforward(self, question):
        return await self.compute.acall(question=question)


def compute_responder(request):
    """Code that upper-cases the question; then the answer is the code's output (JSON, as ProgramOfThought
    passes it on)."""
    inputs = request.inputs
    if "generated_code" in request.output_fields:
        code = f"value = {inputs['question']!r}.upper()"
        return request.reply(reasoning="Upper-case it.", generated_code=f"```python\n{code}\n```")
    return request.reply(reasoning="From the output.", answer=json.loads(inputs["code_output"]))


# -- data and metric -------------------------------------------------------------------------------------------


def exact_answer(example, prediction, trace=None):
    return prediction.answer == example.answer


def write_questions(path, questions):
    """One ``{"question", "answer"}`` row per question, the answer being the question upper-cased."""
    with open(path, "w") as handle:
        for question in questions:
            handle.write(json.dumps({"question": question, "answer": question.upper()}) + "\n")
    return str(path)
