"""BestOfN and Refine against the test server: attempts, rollouts, rewards, failures, feedback hints, traces."""

from __future__ import annotations

import json

import pytest

import dsr_core as dsr
from dsr_core.modules.refine import BestOfN, OfferFeedback, Refine, inspect_modules
from dsr_core.optimizers import BootstrapFewShot


class QA(dsr.Module):
    def __init__(self):
        self.answer = dsr.Predict("question -> answer")

    async def aforward(self, question):
        return await self.answer.acall(question=question)


class Flaky(dsr.Module):
    """DSPy style (a synchronous forward) that raises on its first ``failures`` calls."""

    def __init__(self, failures):
        self.predictor = dsr.Predict("question -> answer")
        self.failures = failures
        self.calls = 0

    def forward(self, question):
        self.calls += 1
        if self.calls <= self.failures:
            raise ValueError("Deliberately failing")
        return self.predictor(question=question)


def one_word(args, pred):
    return 1.0 if len(pred.answer.split()) == 1 else 0.0


def answers_in_turn(*answers):
    """A responder giving the next answer on every request (the attempts differ only by rollout id)."""
    queue = list(answers)

    def respond(request):
        return request.reply(answer=queue.pop(0) if len(queue) > 1 else queue[0])

    return respond


@pytest.fixture
def qa(server, lm):
    dsr.configure(lm=lm)
    return QA()


async def test_best_of_n_stops_at_the_first_answer_over_the_threshold(qa, server):
    server.responder = answers_in_turn("City of Brussels", "Brussels", "never asked")
    best = BestOfN(qa, N=3, reward_fn=one_word, threshold=1.0)
    assert [name for name, _ in best.named_predictors()] == ["module.answer"]
    prediction = await best.acall(question="What is the capital of Belgium?")
    assert prediction.answer == "Brussels"
    assert server.stats.requests == 2
    assert [body["temperature"] for body in server.requests] == [1.0, 1.0]
    assert qa.answer.config == {}  # the attempts ran on copies

    server.responder = answers_in_turn("something else entirely")
    again = await best.acall(question="What is the capital of Belgium?")
    assert again.answer == "Brussels" and server.stats.requests == 2  # the same rollouts, from the cache


async def test_best_of_n_returns_the_best_when_none_reaches_the_threshold(qa, server):
    server.responder = answers_in_turn("a b c", "a b", "a b c d")
    best = BestOfN(qa, N=3, reward_fn=lambda args, pred: -len(pred.answer.split()), threshold=0.0)
    prediction = await best.acall(question="q")
    assert prediction.answer == "a b"
    assert server.stats.requests == 3


def test_reward_fn_may_be_async_and_gets_the_inputs(qa, server):
    server.responder = answers_in_turn("x y", "z")
    seen = []

    async def reward(args, pred):
        seen.append(args)
        return len(pred.answer) == 1

    assert BestOfN(qa, N=2, reward_fn=reward, threshold=1.0)(question="q").answer == "z"
    assert seen == [{"question": "q"}, {"question": "q"}]


@pytest.mark.parametrize("module_class", [BestOfN, Refine])
def test_fail_count(module_class, server, lm):
    server.responder = answers_in_turn("ok")
    dsr.configure(lm=lm)

    always = Flaky(failures=99)
    with pytest.raises(ValueError, match="Deliberately failing"):  # default: N failures allowed, then the last
        module_class(always, N=3, reward_fn=lambda a, p: 1.0, threshold=0.0)(question="q")

    # each attempt runs a fresh copy of the module, so the failures follow the attempt's rollout id
    copies_calls = []
    rollout_failures = {0, 1}

    class FailsOnEarlyRollouts(dsr.Module):
        def __init__(self):
            self.predictor = dsr.Predict("question -> answer")

        def forward(self, question):
            copies_calls.append(self.predictor.config.get("rollout_id"))
            if self.predictor.config.get("rollout_id") in rollout_failures:
                raise ValueError("Deliberately failing")
            return self.predictor(question=question)

    program = module_class(FailsOnEarlyRollouts(), N=3, reward_fn=lambda a, p: 1.0, threshold=0.0, fail_count=1)
    with pytest.raises(ValueError):
        program(question="q")
    assert copies_calls == [0, 1]
    assert program.fail_count == 1

    copies_calls.clear()
    program = module_class(FailsOnEarlyRollouts(), N=3, reward_fn=lambda a, p: 1.0, threshold=0.0, fail_count=0)
    with pytest.raises(ValueError):
        program(question="q")
    assert copies_calls == [0]

    copies_calls.clear()
    program = module_class(FailsOnEarlyRollouts(), N=3, reward_fn=lambda a, p: 1.0, threshold=0.0, fail_count=2)
    assert program(question="q").answer == "ok"
    assert copies_calls == [0, 1, 2]


async def test_trace_reports_the_best_attempt_as_calls_of_the_modules_own_predictors(qa, server):
    server.responder = answers_in_turn("two words", "one")
    best = BestOfN(qa, N=3, reward_fn=one_word, threshold=1.0)
    with dsr.trace() as calls:
        await best.acall(question="q")
    assert len(calls) == 1
    predictor, inputs, output = calls[0]
    assert predictor is qa.answer and inputs == {"question": "q"} and output.answer == "one"


def test_bootstrap_through_best_of_n_gives_the_inner_predictor_demos(server, lm):
    server.responder = lambda r: r.reply(answer=r.inputs["question"].upper())
    dsr.configure(lm=lm)
    trainset = [dsr.Example(question=f"q{i}", answer=f"Q{i}").with_inputs("question") for i in range(4)]
    program = BestOfN(QA(), N=2, reward_fn=lambda a, p: 1.0, threshold=1.0)
    compiled = BootstrapFewShot(
        metric=lambda e, p, t=None: p.answer == e.answer, max_bootstrapped_demos=2, max_labeled_demos=0
    ).compile(program, trainset)
    demos = [{k: v for k, v in d.items() if k != "augmented"} for d in compiled.module.answer.demos]
    assert demos == [{"question": "q0", "answer": "Q0"}, {"question": "q1", "answer": "Q1"}]
    state = json.loads(json.dumps(compiled.dump_state()))
    fresh = BestOfN(QA(), N=2, reward_fn=lambda a, p: 1.0, threshold=1.0).load_state(state)
    assert fresh.module.answer.demos == compiled.module.answer.demos


def refine_responder(request):
    """The program answers in one word only when hinted to; the feedback call gives that advice."""
    if "advice" in request.output_fields:
        return request.reply(discussion="The answer was too long.", advice={"answer": "Answer with one word."})
    if request.inputs.get("hint_") == "Answer with one word.":
        return request.reply(answer="Brussels")
    return request.reply(answer="The City of Brussels")


async def test_refine_passes_the_feedback_as_a_hint(qa, server):
    server.responder = refine_responder
    refine = Refine(qa, N=3, reward_fn=one_word, threshold=1.0)
    assert [name for name, _ in refine.named_predictors()] == ["module.answer"]
    prediction = await refine.acall(question="What is the capital of Belgium?")
    assert prediction.answer == "Brussels"
    first, feedback, second = server.requests
    assert prediction.usage.lm_calls == 3  # the module's spend: both attempts and the feedback call
    assert "hint_" not in first["messages"][0]["content"]

    system, user = feedback["messages"][0]["content"], feedback["messages"][1]["content"]
    assert OfferFeedback.instructions.splitlines()[0] in system
    assert "`advice` (dict[str, str])" in system
    assert "[[ ## program_code ## ]]\nclass QA(dsr.Module):" in user
    assert '[[ ## program_inputs ## ]]\n{\n  "question": "What is the capital of Belgium?"\n}' in user
    assert '"module_name": "answer"' in user and '"answer": "The City of Brussels"' in user
    assert "[[ ## target_threshold ## ]]\n1.0" in user and "[[ ## reward_value ## ]]\n0.0" in user
    assert '[[ ## module_names ## ]]\n[\n  "answer"\n]' in user
    assert "[[ ## reward_code ## ]]\ndef one_word(args, pred):" in user
    assert "[[ ## modules_defn ## ]]\n" + inspect_modules(qa) in user
    assert feedback["temperature"] == 0.0  # the feedback call samples as the LM is configured

    system, user = second["messages"][0]["content"], second["messages"][1]["content"]
    assert "`hint_` (str): A hint to the module from an earlier run" in system
    assert "[[ ## hint_ ## ]]\nAnswer with one word." in user
    assert second["temperature"] == 1.0


async def test_refine_gives_na_to_predictors_without_advice(server, lm):
    def respond(request):
        if "advice" in request.output_fields:
            return request.reply(discussion="d", advice={"somebody_else": "do better"})
        return request.reply(answer=f"hint was {request.inputs.get('hint_', 'absent')}")

    server.responder = respond
    dsr.configure(lm=lm)
    refine = Refine(QA(), N=2, reward_fn=lambda a, p: 0.0, threshold=1.0)
    await refine.acall(question="q")
    assert "[[ ## hint_ ## ]]\nN/A" in server.requests[2]["messages"][-1]["content"]
    assert len(server.requests) == 3  # attempt, feedback, attempt (no feedback after the last attempt)


def test_inspect_modules_is_dspys_layout():
    line = "-" * 80
    assert inspect_modules(QA()) == (
        line + "\nModule answer\n\tInput Fields:\n\t\t1. `question` (str):\n\tOutput Fields:\n\t\t1. `answer` (str):\n"
        "\tOriginal Instructions: \n\t\tGiven the fields `question`, produce the fields `answer`.\n" + line
    )
