import json
from pathlib import Path

import pydantic
import pytest

import dsr_core as dsr
from dsr_core.adapters.json_adapter import repair_json

FIXTURES = Path(__file__).parent / "fixtures"


class Item(pydantic.BaseModel):
    name: str
    qty: int


def test_prompts_match_dspy_exactly():
    """Messages recorded from DSPy 3.4.1's ChatAdapter/JSONAdapter; a migrated program sends the same text."""
    cases = json.loads((FIXTURES / "dspy_prompts.json").read_text())
    assert len(cases) >= 10
    for case in cases:
        sig = dsr.Signature(case["signature"], case.get("instructions"))
        if case.get("cot"):
            sig = dsr.ChainOfThought(sig).predict.signature
        adapter = dsr.ChatAdapter() if case["adapter"] == "chat" else dsr.JSONAdapter()
        assert adapter.format(sig, case["demos"], case["inputs"]) == case["messages"], case["signature"]


def test_chat_parse_typed_outputs():
    sig = dsr.Signature(
        "q -> n: int, ok: bool, tags: list[str], label: Literal['a', 'b'], item: Item", custom_types={"Item": Item}
    )
    reply = (
        "[[ ## n ## ]]\n 42 \n\n[[ ## ok ## ]]\nTrue\n\n[[ ## tags ## ]]\n['x', 'y']\n\n"
        '[[ ## label ## ]]\n\'b\'\n\n[[ ## item ## ]]\n{"name": "bolt", "qty": 3}\n\n[[ ## completed ## ]]'
    )
    out = dsr.ChatAdapter().parse(sig, reply)
    assert out == {"n": 42, "ok": True, "tags": ["x", "y"], "label": "b", "item": Item(name="bolt", qty=3)}


def test_chat_parse_errors_carry_raw_text_and_field():
    sig = dsr.Signature("q -> n: int, note")
    with pytest.raises(dsr.AdapterParseError) as info:
        dsr.ChatAdapter().parse(sig, "[[ ## n ## ]]\nforty-two\n\n[[ ## note ## ]]\nhi")
    assert info.value.field == "n" and "forty-two" in info.value.raw and "expects int" in str(info.value)
    with pytest.raises(dsr.AdapterParseError) as info:
        dsr.ChatAdapter().parse(sig, "[[ ## n ## ]]\n3")
    assert info.value.field == "note" and "lacks output field" in str(info.value)


def test_optional_output_may_be_missing():
    sig = dsr.Signature("q -> a, extra: Optional[int]")
    assert dsr.ChatAdapter().parse(sig, "[[ ## a ## ]]\nhi\n\n[[ ## completed ## ]]") == {"a": "hi", "extra": None}


@pytest.mark.parametrize(
    "text",
    [
        '```json\n{"answer": "x", "n": 2}\n```',
        'Sure! Here it is: {"answer": "x", "n": 2} Hope that helps.',
        '{"answer": "x", "n": 2,}',
        '{"answer": "x", "n": 2',
        "{'answer': 'x', 'n': 2}",
    ],
)
def test_json_adapter_repairs_near_json(text):
    sig = dsr.Signature("q -> answer, n: int")
    assert dsr.JSONAdapter().parse(sig, text) == {"answer": "x", "n": 2}
    assert isinstance(repair_json(text), dict)


def test_json_adapter_rejects_non_objects():
    with pytest.raises(dsr.AdapterParseError, match="not a JSON object"):
        dsr.JSONAdapter().parse(dsr.Signature("q -> a"), "[1, 2, 3]")


async def test_chat_falls_back_to_json_adapter(server, lm):
    server.inject("unparseable", 1)
    server.responder = lambda r: r.reply(answer="from json") if r.json_mode else r.reply(answer="chat")
    pred = await dsr.Predict("question -> answer", lm=lm).acall(question="q")
    assert pred.answer == "from json"
    assert pred.usage.lm_calls == 2  # the failed chat call and the JSON call are both accounted
    first, second = server.requests
    assert "response_format" not in first
    assert second["response_format"]["type"] == "json_schema"


async def test_parse_failure_after_fallback_raises_with_raw(server, lm):
    server.responder = lambda r: "no structure at all"
    with pytest.raises(dsr.AdapterParseError) as info:
        await dsr.Predict("question -> answer", lm=lm).acall(question="q")
    assert info.value.raw == "no structure at all"
    assert "JSONAdapter fallback failed too" in str(info.value)


async def test_json_adapter_downgrades_to_json_object_when_schema_rejected(server, lm):
    server.inject("400", 1, message="response_format json_schema is not supported")
    server.responder = lambda r: r.reply(answer="ok")
    pred = await dsr.Predict("question -> answer", lm=lm, adapter=dsr.JSONAdapter()).acall(question="q")
    assert pred.answer == "ok"
    assert [b["response_format"]["type"] for b in server.requests] == ["json_schema", "json_object"]
    await dsr.Predict("question -> answer", lm=lm, adapter=dsr.JSONAdapter()).acall(question="q2")
    assert server.requests[-1]["response_format"]["type"] == "json_object"  # remembered per LM
