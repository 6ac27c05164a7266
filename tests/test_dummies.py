"""DSPy's test doubles on dsr: DummyLM's three modes, its adapter formats, and dummy_rm, so a DSPy project's own
tests (which use them everywhere) run unchanged. The replies and the retrieved passages are compared with DSPy
3.4.1's DummyLM and dummy_rm for the same scripts."""

from __future__ import annotations

import asyncio
import json
import subprocess

import dsr_core as dsr
from dsr_core.utils import DummyLM, DummyVectorizer, dummy_rm
from tests.test_dspy_compat import dspy_python  # noqa: F401 - the fixture: DSPy 3.4.1's interpreter


def test_a_list_answers_call_after_call_then_says_no_more():
    lm = DummyLM([{"answer": "red"}, {"answer": "blue"}])
    predict = dsr.Predict("question -> answer", lm=lm)
    assert [predict(question="Sky?").answer for _ in range(3)] == ["red", "blue", "No more responses"]
    messages, outputs = lm.get_convo(0)
    assert messages[-1]["content"].startswith("[[ ## question ## ]]\nSky?")
    assert outputs == ["[[ ## answer ## ]]\nred"]
    assert len(lm.history) == 3


def test_a_dict_answers_the_prompt_that_contains_its_key():
    lm = DummyLM({"sky": {"answer": "blue"}, "grass": {"answer": "green"}})
    with dsr.context(lm=lm):
        predict = dsr.Predict("question -> answer")
        assert predict(question="What colour is grass?").answer == "green"
        assert predict(question="And the sky?").answer == "blue"


def test_follow_examples_answers_from_the_matching_demo():
    lm = DummyLM([{"answer": "unused"}], follow_examples=True)
    predict = dsr.Predict("question -> answer", lm=lm)
    predict.demos = [
        dsr.Example(question="What color is the sky?", answer="blue"),
        dsr.Example(question="What color is grass?", answer="green"),
    ]
    assert predict(question="What color is grass?").answer == "green"


def test_typed_outputs_chain_of_thought_json_and_async():
    cot = dsr.ChainOfThought("question -> answer: int", lm=DummyLM([{"reasoning": "2 and 2", "answer": 4}]))
    assert cot(question="2 + 2?").answer == 4
    json_lm = DummyLM([{"answer": "Paris", "confidence": 0.9}], adapter=dsr.JSONAdapter())
    with dsr.context(adapter=dsr.JSONAdapter()):
        prediction = dsr.Predict("question -> answer, confidence: float", lm=json_lm)(question="Capital?")
    assert (prediction.answer, prediction.confidence) == ("Paris", 0.9)
    assert json.loads(json_lm.get_convo(0)[1][0]) == {"answer": "Paris", "confidence": 0.9}
    async_lm = DummyLM([{"answer": "a"}, {"answer": "b"}])
    predict = dsr.Predict("question -> answer", lm=async_lm)

    async def both():
        return [(await predict.acall(question=q)).answer for q in ("1", "2")]

    assert asyncio.run(both()) == ["a", "b"]


def test_an_optimizer_compiles_against_it():
    train = [dsr.Example(question=f"q{i}", answer=f"a{i}").with_inputs("question") for i in range(3)]
    lm = DummyLM({f"q{i}": {"answer": f"a{i}"} for i in range(3)})
    with dsr.context(lm=lm):
        compiled = dsr.BootstrapFewShot(metric=dsr.answer_exact_match, max_labeled_demos=0).compile(
            dsr.Predict("question -> answer"), trainset=train
        )
    assert [d["answer"] for d in compiled.demos] == ["a0", "a1", "a2"]


DSPY_SIDE = r"""
import json, sys
import dspy
from dspy.utils import DummyLM, dummy_rm

script = json.load(sys.stdin)
lm = DummyLM(script["answers"])
predict = dspy.Predict("question -> answer, count: int")
with dspy.context(lm=lm):
    outputs = [dict(predict(question=q)) for q in script["questions"]]
rm = dummy_rm(script["passages"])
print(json.dumps({
    "outputs": outputs,
    "replies": [entry["outputs"] for entry in lm.history],
    "retrieved": [[p.long_text for p in rm(q, k=2)] for q in script["queries"]],
}))
"""

SCRIPT = {
    "answers": [{"answer": "red", "count": 1}, {"answer": "two\nlines", "count": 2}],
    "questions": ["Sky?", "Grass?"],
    "passages": ["the sky is blue", "grass is green", "the sun is yellow", "snow is white"],
    "queries": ["what color is the sky", "is snow white", "green grass"],
}


def test_dummy_lm_and_dummy_rm_answer_as_dspys_do(dspy_python):  # noqa: F811
    run = subprocess.run(
        [str(dspy_python), "-c", DSPY_SIDE], input=json.dumps(SCRIPT), capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    expected = json.loads(run.stdout.splitlines()[-1])
    lm = DummyLM(list(SCRIPT["answers"]))
    predict = dsr.Predict("question -> answer, count: int")
    with dsr.context(lm=lm):
        outputs = [dict(predict(question=q)) for q in SCRIPT["questions"]]
    rm = dummy_rm(SCRIPT["passages"])
    assert outputs == expected["outputs"] == [{"answer": "red", "count": 1}, {"answer": "two\nlines", "count": 2}]
    assert [entry["outputs"] for entry in lm.history] == expected["replies"]
    assert [[p.long_text for p in rm(q, k=2)] for q in SCRIPT["queries"]] == expected["retrieved"]
    assert DummyVectorizer(50)(["ab"]).shape == (1, 50)
