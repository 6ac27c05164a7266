import pytest

import dsr_core as dsr
from dsr_core.metrics import exact_match_score, f1_score


def test_exact_match_normalization_and_gold_lists():
    assert exact_match_score("The  Eiffel Tower!", "eiffel tower") == 1.0
    assert exact_match_score("Paris", ["London", "paris"]) == 1.0
    assert exact_match_score("Paris, France", "Paris") == 0.0
    ex = dsr.Example(question="q", answer="Blue").with_inputs("question")
    assert dsr.exact_match(ex, dsr.Prediction(answer="blue.")) == 1.0
    assert dsr.ExactMatch("label")(dsr.Example(label="x"), dsr.Prediction(label="X")) == 1.0


def test_f1():
    assert f1_score("the cat sat", "cat sat down") == pytest.approx(0.8)
    assert f1_score("", "") == 1.0 and f1_score("x", "") == 0.0
    with pytest.raises(dsr.DsrError, match="no field 'answer'"):
        dsr.f1(dsr.Example(question="q"), dsr.Prediction(answer="x"))


async def test_llm_judge_uses_its_own_lm(server):
    program_lm = dsr.LM("program-model", api_base=server.url)
    judge_lm = dsr.LM("judge-model", api_base=server.url)

    def responder(request):
        if request.model == "judge-model":
            good = "Paris" in request.inputs["response"]
            return request.reply(score="1.0" if good else "0.0")
        return request.reply(answer="Paris" if "France" in request.inputs["question"] else "Rome")

    server.responder = responder
    judge = dsr.LLMJudge("The answer names the right capital city.", lm=judge_lm)
    dev = [
        dsr.Example(question="Capital of France?", answer="Paris").with_inputs("question"),
        dsr.Example(question="Capital of Spain?", answer="Madrid").with_inputs("question"),
    ]
    result = await dsr.Evaluate(dev, judge).acall(dsr.Predict("question -> answer", lm=program_lm))
    assert [r.score for r in result.rows] == [1.0, 0.0]
    judged = [b for b in server.requests if b["model"] == "judge-model"]
    assert len(judged) == 2 and "right capital city" in judged[0]["messages"][-1]["content"]


async def test_llm_judge_with_custom_signature(server):
    judge_lm = dsr.LM("judge", api_base=server.url)
    server.responder = lambda r: r.reply(faithful="True")
    judge = dsr.LLMJudge("question, answer -> faithful: bool", lm=judge_lm)
    ex = dsr.Example(question="q", answer="gold").with_inputs("question")
    assert await judge(ex, dsr.Prediction(answer="a")) == 1.0
    with pytest.raises(dsr.DsrError, match="no float/int/bool output"):
        dsr.LLMJudge("question -> verdict")
