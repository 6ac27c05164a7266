"""Parallel and batch against the test server; then two ways of combining several answers: MultiChainComparison
and majority."""

from __future__ import annotations

import threading

import pytest

import dsr_core as dsr
from dsr_core.modules.aggregation import majority
from dsr_core.modules.multi_chain_comparison import MultiChainComparison
from dsr_core.modules.parallel import Parallel, ParallelAborted, abatch, batch


def upper(request):
    return request.reply(output=request.inputs.get("input", "").upper())


class Shout(dsr.Module):
    def __init__(self):
        self.predict = dsr.Predict("input -> output")

    async def aforward(self, input):
        return await self.predict.acall(input=input)


class Positional(dsr.Module):
    def forward(self, a, b):
        return f"{a}+{b}"


class FailingModule(dsr.Module):
    def forward(self, value: int) -> str:
        if value == 42:
            raise ValueError("test error")
        return f"success-{value}"


@pytest.fixture
def predict(server, lm):
    server.responder = upper
    dsr.configure(lm=lm)
    return dsr.Predict("input -> output")


async def test_pairs_of_every_kind_keep_their_order(predict, server):
    parallel = Parallel(num_threads=3)
    example = dsr.Example(input="from example", other="ignored").with_inputs("input")
    results = await parallel.acall(
        [
            (predict, example),
            (predict, {"input": "from dict"}),
            (Positional(), (1, 2)),
            (Shout(), {"input": "module"}),
            (parallel, [(predict, {"input": "nested"}), (lambda input: input[::-1], {"input": "abc"})]),
        ]
    )
    assert [r.output for r in results[:2]] == ["FROM EXAMPLE", "FROM DICT"]
    assert results[2] == "1+2"
    assert results[3].output == "MODULE"
    assert results[4][0].output == "NESTED" and results[4][1] == "cba"


async def test_concurrency_is_bounded_by_num_threads(predict, server):
    server.latency = 0.1
    results = await Parallel(num_threads=4).acall([(predict, {"input": str(i)}) for i in range(12)])
    assert [r.output for r in results] == [str(i) for i in range(12)]
    assert 2 <= server.stats.max_in_flight <= 4


def test_sync_call_from_a_dspy_style_forward(predict, server):
    class Program(dsr.Module):
        def __init__(self):
            self.first = dsr.Predict("input -> output")
            self.second = dsr.Predict("input -> output")
            self.parallel = Parallel(num_threads=2)

        def forward(self, input):
            return self.parallel([(self.first, input), (self.second, input), (self.first, input)])

    program = Program()
    assert [n for n, _ in program.named_predictors()] == ["first", "second"]
    output = program(dsr.Example(input="test input").with_inputs("input"))
    assert [r.output for r in output] == ["TEST INPUT"] * 3


def test_failures_are_none_and_reported(server):
    examples = [dsr.Example(value=v).with_inputs("value") for v in (1, 42, 3)]
    results, failed, exceptions = batch(FailingModule(), examples, return_failed_examples=True, provide_traceback=True)
    assert results == ["success-1", None, "success-3"]
    assert [e.inputs()["value"] for e in failed] == [42]
    assert len(exceptions) == 1 and isinstance(exceptions[0], ValueError) and str(exceptions[0]) == "test error"
    assert batch(FailingModule(), examples) == ["success-1", None, "success-3"]


async def test_too_many_failures_cancel_the_rest():
    started = []

    class Recording(dsr.Module):
        def forward(self, value):
            started.append(value)
            raise ValueError(f"bad {value}")

    parallel = Parallel(num_threads=1, max_errors=2)
    with pytest.raises(ParallelAborted, match="Execution cancelled") as info:
        await parallel.acall([(Recording(), {"value": i}) for i in range(6)])
    assert started == [0, 1]
    assert info.value.results == [None] * 6
    assert [str(e) for e in info.value.exceptions] == ["bad 0", "bad 1"]


def test_defaults_come_from_the_settings():
    assert (Parallel().num_threads, Parallel().max_errors) == (8, 10)
    with dsr.context(num_threads=3, max_errors=0):
        parallel = Parallel()
    assert (parallel.num_threads, parallel.max_errors) == (3, 0)


async def test_invalid_example_type_is_a_failure():
    results, failed, exceptions = await Parallel(return_failed_examples=True).acall([(Positional(), "text")])
    assert results == [None] and failed == ["text"]
    assert isinstance(exceptions[0], ValueError) and "Invalid example type" in str(exceptions[0])


async def test_abatch_and_usage_tracking(predict, server):
    with dsr.track_usage() as usage:
        results = await abatch(predict, [dsr.Example(input=w).with_inputs("input") for w in ("a", "b")])
    assert [r.output for r in results] == ["A", "B"]
    assert usage.lm_calls == 2
    assert all(r.usage.lm_calls == 1 for r in results)


def test_plain_functions_run_in_worker_threads():
    here = threading.get_ident()
    seen = []

    def work(x):
        seen.append(threading.get_ident())
        return x * 2

    assert Parallel()([(work, (i,)) for i in range(3)]) == [0, 2, 4]
    assert here not in seen


# -- combining several answers ---------------------------------------------------------------------------------


class BasicQA(dsr.Signature):
    """Answer questions with short factoid answers."""

    question: str = dsr.InputField()
    answer: str = dsr.OutputField(desc="often between 1 and 5 words")


COMPLETIONS = [
    dsr.Prediction(rationale="I recall that during clear days, the sky often appears this color.", answer="blue"),
    dsr.Prediction(
        rationale="Based on common knowledge, I believe the sky is typically seen as this color.", answer="green"
    ),
    dsr.Prediction(
        reasoning="From images and depictions in media, the sky is frequently this hue.\nMore.", answer="blue"
    ),
]


async def test_multi_chain_comparison_prompt_and_answer(server, lm):
    server.responder = lambda r: r.reply(rationale="my rationale", answer="blue")
    compare = MultiChainComparison(BasicQA)
    compare.set_lm(lm)
    assert [n for n, _ in compare.named_predictors()] == ["predict"]
    signature = compare.predict.signature
    assert list(signature.input_fields) == ["question", *(f"reasoning_attempt_{i}" for i in (1, 2, 3))]
    assert list(signature.output_fields) == ["rationale", "answer"]
    assert signature.fields["reasoning_attempt_1"].prefix == "Student Attempt #1:"

    prediction = await compare.acall(COMPLETIONS, question="What is the color of the sky?")
    assert (prediction.rationale, prediction.answer) == ("my rationale", "blue")
    body = server.requests[-1]
    assert body["temperature"] == 0.7
    user = body["messages"][-1]["content"]
    assert (
        "[[ ## reasoning_attempt_1 ## ]]\n«I'm trying to I recall that during clear days, the sky often appears this "
        "color. I'm not sure but my prediction is blue»"
    ) in user
    assert "«I'm trying to From images and depictions in media, the sky is frequently this hue. I'm not sure" in user
    assert "`reasoning_attempt_2` (str): ${reasoning attempt}" in body["messages"][0]["content"]
    assert compare(COMPLETIONS, question="What is the color of the sky?").answer == "blue"  # synchronously


def test_multi_chain_comparison_checks_its_attempts(server, lm):
    server.responder = lambda r: r.reply(rationale="holistic", answer="blue")
    compare = MultiChainComparison(BasicQA, M=1)
    compare.set_lm(lm)
    assert compare([dsr.Prediction(answer="blue")], question="q").answer == "blue"  # no rationale is fine
    with pytest.raises(KeyError):
        compare([dsr.Prediction(rationale="a guess")], question="q")
    with pytest.raises(ValueError, match="doesn't match the expected number M"):
        compare(COMPLETIONS, question="q")


async def test_majority_over_sampled_completions(server, lm):
    server.responder = lambda r: [r.reply(answer=a) for a in ("2", "The 3.", "3", "three")]
    predict = dsr.Predict("question -> answer", lm=lm)
    sampled = await predict.acall(question="1 + 1?", config={"n": 4})
    assert [c["answer"] for c in sampled.completions] == ["2", "The 3.", "3", "three"]
    voted = majority(sampled)
    assert voted.answer == "The 3." and voted.completions == [{"answer": "The 3."}]  # "the 3." normalizes to "3"
    assert majority(sampled, normalize=None).answer == "2"  # no normalizing: four different values, the first wins


def test_majority_field_ties_and_lists():
    rows = [{"answer": "2", "other": "1"}, {"answer": "2", "other": "1"}, {"answer": "3", "other": "2"}]
    assert majority(rows).other == "1"  # the last field by default
    assert majority(rows, field="answer").answer == "2"
    assert majority([{"answer": "2"}, {"answer": "3"}, {"answer": "4"}]).answer == "2"  # a tie: the first
    assert majority([{"answer": "!"}, {"answer": "x"}, {"answer": "X"}]).answer == "x"  # "!" normalizes to nothing
    assert majority(dsr.Prediction.from_completions([{"a": "q"}, {"a": "r"}, {"a": "r"}])).a == "r"


def test_majority_uses_the_signatures_last_output_field(server, lm):
    server.responder = lambda r: [r.reply(reasoning="r", answer=a) for a in ("x", "y", "y")]
    predict = dsr.ChainOfThought("question -> answer", lm=lm)
    sampled = predict(question="q", config={"n": 3})
    assert majority(sampled).answer == "y"
    assert majority(sampled.completions).answer == "y"


async def test_dspy_timeout_and_straggler_limit_are_accepted_with_a_warning(predict, server):
    import inspect
    import warnings

    assert list(inspect.signature(Parallel.__init__).parameters)[-2:] == ["timeout", "straggler_limit"]  # DSPy 3.4.1's
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Parallel(num_threads=2, timeout=120, straggler_limit=3)  # DSPy's defaults: no warning
    with pytest.warns(UserWarning, match="timeout= and straggler_limit= have no meaning in dsr"):
        parallel = Parallel(num_threads=2, timeout=5, straggler_limit=1)
    results = await parallel.acall([(predict, {"input": "a"}), (predict, {"input": "b"})])
    assert [r.output for r in results] == ["A", "B"]
