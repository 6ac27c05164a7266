import asyncio
import copy

import pytest

import dsr_core as dsr
from tests.programs import RewriteThenAnswer


class SyncProgram(dsr.Module):
    """DSPy style: a plain synchronous forward."""

    def __init__(self):
        self.predict = dsr.Predict("question -> answer")

    def forward(self, question):
        return self.predict(question=question)


def rule_responder(request):
    values = {}
    for name in request.output_fields:
        values[name] = {"query": "Q:" + request.inputs.get("question", ""), "reasoning": "think"}.get(
            name, request.inputs.get("context", "none")
        )
    return request.reply(**values)


def test_named_predictors_use_dspy_dotted_names():
    program = RewriteThenAnswer()
    assert [n for n, _ in program.named_predictors()] == ["rewrite", "answer.predict"]
    assert dsr.Predict("q -> a").named_predictors()[0][0] == "self"


async def test_multi_step_program_async(server, lm):
    server.responder = rule_responder
    dsr.configure(lm=lm)
    pred = await RewriteThenAnswer().acall(question="why")
    assert pred.reasoning == "think"
    assert pred.answer == '["Q:why"]'  # a list[str] input is rendered as JSON (as DSPy does) and echoed
    assert server.stats.requests == 2


def test_sync_call_outside_and_inside_running_loop(server, lm):
    server.responder = lambda r: r.reply(answer="ok")
    program = SyncProgram()
    program.set_lm(lm)
    assert program(question="a").answer == "ok"

    async def inside():
        return program(question="b").answer  # blocking call from within a running loop still works

    assert asyncio.run(inside()) == "ok"


async def test_sync_forward_program_runs_concurrently_under_acall(server, lm):
    server.latency = 0.2
    program = SyncProgram()
    program.set_lm(lm)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(program.acall(question=str(i)) for i in range(10)))
    assert loop.time() - started < 1.0  # 10 x 0.2 s sequentially would be 2 s
    assert server.stats.max_in_flight > 1


async def test_per_call_overrides(server, lm):
    other = dsr.LM("other-model", api_base=server.url)
    predict = dsr.Predict("question -> answer", lm=lm, temperature=0.3)
    server.responder = lambda r: r.reply(answer=r.model)
    assert (await predict.acall(question="q")).answer == "test-model"
    assert server.requests[-1]["temperature"] == 0.3
    assert (await predict.acall(question="q", lm=other)).answer == "other-model"
    await predict.acall(question="q2", config={"temperature": 0.9, "max_tokens": 7})
    assert server.requests[-1]["temperature"] == 0.9 and server.requests[-1]["max_tokens"] == 7
    demo = {"question": "demo q", "answer": "demo a"}
    await predict.acall(question="q3", demos=[demo])
    assert any("demo a" in m["content"] for m in server.requests[-1]["messages"] if m["role"] == "assistant")
    assert predict.demos == []


async def test_missing_input_and_missing_lm_errors(server, lm):
    with pytest.raises(dsr.DsrError, match="missing input field"):
        await dsr.Predict("question, context -> answer", lm=lm).acall(question="q")
    with pytest.raises(dsr.DsrError, match="no LM"):
        await dsr.Predict("question -> answer").acall(question="q")


def test_deepcopy_shares_lm_and_copies_demos(lm):
    program = RewriteThenAnswer()
    program.set_lm(lm)
    program.rewrite.demos = [{"question": "x", "query": "y"}]
    clone = program.deepcopy()
    clone.rewrite.demos.append({"question": "z", "query": "w"})
    assert len(program.rewrite.demos) == 1
    assert clone.rewrite.lm is lm
    assert program.reset_copy().rewrite.demos == []
    assert copy.deepcopy(program).answer.predict.signature == program.answer.predict.signature


async def test_prediction_usage_and_trace(server, lm):
    server.responder = rule_responder
    program = RewriteThenAnswer()
    program.set_lm(lm)
    with dsr.track_usage() as usage, dsr.trace() as calls:
        await program.acall(question="q")
    assert usage.lm_calls == 2 and usage.prompt_tokens > 0
    assert [type(p).__name__ for p, _, _ in calls] == ["Predict", "Predict"]
    assert calls[0][1] == {"question": "q"} and calls[0][2].query == "Q:q"


def test_shared_loop_survives_a_keyboard_interrupt_inside_a_task(server, lm):
    """A BaseException raised inside a child task reaches the caller; the shared loop keeps serving."""

    class Interrupting(dsr.Module):
        async def aforward(self, question):
            raise KeyboardInterrupt("from inside the loop")

    dev = [dsr.Example(question=str(i)).with_inputs("question") for i in range(4)]
    with pytest.raises(KeyboardInterrupt):
        dsr.Evaluate(dev, lambda e, p: 1.0, concurrency=2)(Interrupting())
    server.responder = lambda r: r.reply(answer="still alive")
    assert dsr.Predict("question -> answer", lm=lm)(question="q").answer == "still alive"


def test_example_and_prediction_behave_like_dspys():
    ex = dsr.Example(question="q", answer="a", extra=1).with_inputs("question")
    assert ex.inputs().to_dict() == {"question": "q"} and ex.labels().to_dict() == {"answer": "a", "extra": 1}
    assert ex.without("extra").to_dict() == {"question": "q", "answer": "a"}
    assert ex.copy(answer="b").answer == "b" and ex.answer == "a"
    with pytest.raises(ValueError, match="with_inputs"):
        dsr.Example(q=1).inputs()
    pred = dsr.Prediction.from_completions([{"a": 1}, {"a": 2}], dsr.Usage(3, 4, 1, 0))
    clone = copy.deepcopy(pred)
    assert clone.a == 1 and clone.completions == [{"a": 1}, {"a": 2}] and clone.usage.total_tokens == 7


def test_dspy_names_and_module_paths():
    """Programs written for DSPy find the optimizers where DSPy keeps them, after `import dsr_core as dspy`."""
    import dsr_core as dspy
    from dsr_core.evaluate import Evaluate, answer_exact_match
    from dsr_core.optimizers import MIPROv2
    from dsr_core.predict import ChainOfThought, Predict
    from dsr_core.teleprompt import BootstrapFewShot, BootstrapFewShotWithRandomSearch

    assert dspy.MIPROv2 is MIPROv2 and dspy.BootstrapFewShot is BootstrapFewShot
    assert dspy.BootstrapFewShotWithRandomSearch is BootstrapFewShotWithRandomSearch
    assert dspy.Predict is Predict and dspy.ChainOfThought is ChainOfThought and dspy.Evaluate is Evaluate
    assert answer_exact_match is dspy.answer_exact_match
    assert {"MIPROv2", "COPRO", "LabeledFewShot"} <= set(dspy.__all__)
