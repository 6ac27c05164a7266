"""Predict as DSPy 3.x programs call it: input checks and warnings, per-call config, n completions."""

import logging
from typing import Optional

import pytest

import dsr_core as dsr
from dsr_core.adapters import History, Image
from dsr_core.primitives import Completions


class Answer(dsr.Signature):
    """Answer the question."""

    question: str = dsr.InputField()
    context: Optional[str] = dsr.InputField()  # noqa: UP045 - the spelling DSPy programs use
    style: str = dsr.InputField(default="plain")
    answer: str = dsr.OutputField()


def echo_inputs(request):
    return request.reply(answer="|".join(f"{k}={v}" for k, v in request.inputs.items()))


async def test_optional_inputs_may_be_omitted_and_defaults_fill_in(server, lm, caplog):
    server.responder = echo_inputs
    with caplog.at_level(logging.WARNING, logger="dsr_core.modules.predict"):
        pred = await dsr.Predict(Answer, lm=lm).acall(question="q")
    assert pred.answer == "question=q|style=plain"  # no context section at all, the default style sent
    assert "Not all input fields were provided to module. Present: ['question', 'style']. Missing: ['context']." in (
        caplog.text
    )
    with pytest.raises(dsr.DsrError, match=r"missing input field\(s\) \['question'\]"):
        await dsr.Predict(Answer, lm=lm).acall(context="c")


async def test_extra_inputs_and_type_mismatches_are_warned_about(server, lm, caplog):
    server.responder = echo_inputs
    sig = dsr.Signature("question: str, count: int -> answer")
    with caplog.at_level(logging.WARNING, logger="dsr_core.modules.predict"):
        pred = await dsr.Predict(sig, lm=lm).acall(question="q", count="three", bogus=1)
    assert pred.answer == "question=q|count=three"  # the extra keyword is not sent
    assert "Input contains fields not in signature. These fields will be ignored: ['bogus']." in caplog.text
    assert "Type mismatch for field 'count': expected int based on given Signature" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dsr_core.modules.predict"):
        await dsr.Predict("question, passages -> answer", lm=lm).acall(question="q", passages=["a", "b"])
    assert "Type mismatch" not in caplog.text  # untyped fields, and lists of passages for str fields, pass


async def test_n_completions_behave_like_dspys(server, lm):
    server.responder = lambda r: [r.reply(answer=f"a{i}") for i in range(3)]
    pred = await dsr.Predict("question -> answer", lm=lm).acall(question="q", config={"n": 3})
    assert isinstance(pred.completions, Completions)
    assert len(pred.completions) == 3 and pred.completions.answer == ["a0", "a1", "a2"]
    assert pred.completions["answer"][2] == "a2" and pred.completions[1].answer == "a1"
    assert [c.answer for c in pred.completions] == ["a0", "a1", "a2"]
    assert pred.answer == "a0"
    body = server.requests[-1]
    assert body["n"] == 3 and body["temperature"] == 0.7  # DSPy raises a near-zero temperature for n > 1
    await dsr.Predict("question -> answer", lm=lm).acall(question="q", config={"n": 2, "temperature": 1.0})
    assert server.requests[-1]["temperature"] == 1.0


async def test_per_call_config_and_signature_pass_through(server, lm):
    server.responder = lambda r: r.reply(**{name: "x" for name in r.output_fields})
    predict = dsr.Predict("question -> answer", lm=lm, top_p=0.5)
    await predict.acall(question="q", config={"seed": 7, "max_tokens": 12})
    body = server.requests[-1]
    assert body["top_p"] == 0.5 and body["seed"] == 7 and body["max_tokens"] == 12
    pred = await predict.acall(question="q", signature=dsr.Signature("question -> answer, note"))
    assert pred.note == "x" and predict.signature.signature == "question -> answer"
    predict.update_config(temperature=0.2)
    assert predict.get_config() == {"top_p": 0.5, "temperature": 0.2}


def test_positional_object_call(server, lm):
    class Inputs:
        def __init__(self, question):
            self.question = question

    server.responder = echo_inputs
    predict = dsr.Predict("question -> answer", lm=lm)
    assert predict(Inputs("q")).answer == "question=q"
    with pytest.raises(dsr.DsrError, match="either positional or keyword"):
        predict(Inputs("q"), question="q")


async def test_history_and_images_reach_the_endpoint(server, lm):
    class Chat(dsr.Signature):
        history: History = dsr.InputField()
        image: Image = dsr.InputField()
        question: str = dsr.InputField()
        answer: str = dsr.OutputField()

    server.responder = lambda r: r.reply(answer="a cat")
    history = History(messages=[{"question": "hello?", "answer": "hi"}])
    pred = await dsr.Predict(Chat, lm=lm).acall(
        history=history, image=Image("https://example.com/cat.png"), question="what is it?"
    )
    assert pred.answer == "a cat"
    messages = server.requests[-1]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1]["content"] == (  # DSPy 3.4.1 keeps the output reminder on every earlier request
        "[[ ## question ## ]]\nhello?\n\nRespond with the corresponding output fields, starting with the field "
        "`[[ ## answer ## ]]`, and then ending with the marker for `[[ ## completed ## ]]`."
    )
    assert messages[2]["content"] == "[[ ## answer ## ]]\nhi\n\n[[ ## completed ## ]]\n"
    assert {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}} in messages[3]["content"]


async def test_constraint_violations_fail_the_parse(server, lm):
    class Rated(dsr.Signature):
        text: str = dsr.InputField()
        rating: int = dsr.OutputField(ge=1, le=5)

    server.responder = lambda r: r.reply(rating=9)
    with pytest.raises(dsr.AdapterParseError, match="less than or equal to: 5"):
        await dsr.Predict(Rated, lm=lm).acall(text="t")
    assert len(server.requests) == 2  # the chat reply and the JSONAdapter fallback were both rejected
    server.responder = lambda r: r.reply(rating=4)
    assert (await dsr.Predict(Rated, lm=lm).acall(text="another")).rating == 4


def test_prediction_numbers_and_completions_from_dicts():
    pred = dsr.Prediction.from_completions({"answer": ["x", "y"], "score": [0.5, 0.1]})
    assert pred.answer == "x" and len(pred.completions) == 2 and pred.completions.score == [0.5, 0.1]
    assert float(pred) == 0.5 and pred + 1 == 1.5 and 1 + pred == 1.5 and pred / 2 == 0.25
    assert pred > 0.4 and pred <= 0.5 and not pred < 0.5
    assert sum([pred, pred]) == 1.0
    with pytest.raises(ValueError, match="score"):
        float(dsr.Prediction(answer="x"))
    assert pred.completions == [{"answer": "x", "score": 0.5}, {"answer": "y", "score": 0.1}]
    with pytest.raises(IndexError):
        pred.completions[2]


async def test_the_bundled_model_defaults_to_json_adapter_and_others_to_chat(server):
    server.responder = lambda r: r.reply(answer="ok")
    for model in ("smollm2-135m-instruct", "openai/smollm2-135m-instruct", "test-model", "smollm2-1.7b-instruct"):
        lm = dsr.LM(model, api_base=server.url)
        assert (await dsr.Predict("question -> answer", lm=lm).acall(question=model)).answer == "ok"
    formats = [b.get("response_format", {}).get("type") for b in server.requests]
    assert formats == ["json_schema", "json_schema", None, None]


async def test_an_adapter_given_for_the_bundled_model_is_used(server):
    server.responder = lambda r: r.reply(answer="ok")
    lm = dsr.LM("smollm2-135m-instruct", api_base=server.url)
    await dsr.Predict("question -> answer", lm=lm, adapter=dsr.ChatAdapter()).acall(question="predictor's")
    await dsr.Predict("question -> answer", lm=lm).acall(question="call's", adapter=dsr.ChatAdapter())
    with dsr.context(adapter=dsr.ChatAdapter()):
        await dsr.Predict("question -> answer", lm=lm).acall(question="setting's")
    dsr.configure(lm=lm)
    await dsr.Predict("question -> answer").acall(question="configured lm")
    assert [b.get("response_format", {}).get("type") for b in server.requests] == [None, None, None, "json_schema"]
