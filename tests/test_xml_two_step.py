"""XMLAdapter and TwoStepAdapter on the test server (their prompts are compared with DSPy's in test_dspy_compat)."""

from __future__ import annotations

import pydantic
import pytest

import dsr_core as dsr


class Person(pydantic.BaseModel):
    name: str
    age: int


class Find(dsr.Signature):
    """Find the people."""

    question: str = dsr.InputField()
    names: list[str] = dsr.OutputField()
    oldest: Person = dsr.OutputField()
    count: int = dsr.OutputField()
    note: str | None = dsr.OutputField()
    mood: str = dsr.OutputField(default="calm")


def test_xml_reads_nested_elements_json_and_defaults():
    adapter = dsr.XMLAdapter()
    nested = (
        "<names><item>Ann</item><item>Bo</item></names><oldest><name>Ann</name><age>71</age></oldest><count>2</count>"
    )
    assert adapter.parse(Find, nested) == {
        "names": ["Ann", "Bo"],
        "oldest": Person(name="Ann", age=71),
        "count": 2,
        "note": None,  # Optional, left out
        "mood": "calm",  # the declared default
    }
    as_json = '<names>["Cy"]</names>\n<oldest>{"name": "Cy", "age": 5}</oldest>\n<count>\n1\n</count><note></note>'
    assert adapter.parse(Find, as_json) == {
        "names": ["Cy"],
        "oldest": Person(name="Cy", age=5),
        "count": 1,
        "note": None,
        "mood": "calm",
    }
    with pytest.raises(dsr.AdapterParseError, match="'count' expects int") as error:
        adapter.parse(Find, "<names /><oldest><name>A</name><age>1</age></oldest><count>many</count>")
    assert error.value.field == "count"
    with pytest.raises(dsr.AdapterParseError, match="oldest"):
        adapter.parse(Find, "<names /><count>1</count>")


def test_xml_reads_a_reply_that_is_not_well_formed_by_its_tags():
    """DSPy gives up on a bare & or < (and pays a JSON-format call); dsr reads the elements by their tags."""
    sig = dsr.Signature("question -> company, formula")
    reply = "<company>\nAT&T\n</company>\n<formula>x < 3 &amp; y</formula>"
    assert dsr.XMLAdapter().parse(sig, reply) == {"company": "AT&T", "formula": "x < 3 & y"}
    with pytest.raises(dsr.AdapterParseError, match="formula"):
        dsr.XMLAdapter().parse(sig, "<company>AT&T</company>")


async def test_xml_predict_round_trip_and_fallback(server, lm):
    server.responder = lambda r: r.reply(answer="Paris & Lyon", count=2)
    predict = dsr.Predict("question -> answer, count: int", lm=lm)
    with dsr.context(adapter=dsr.XMLAdapter()):
        pred = await predict.acall(question="Two French cities?")
    assert (pred.answer, pred.count) == ("Paris & Lyon", 2)
    request = server.requests[-1]["messages"]
    assert "<question>\nTwo French cities?\n</question>" in request[-1]["content"]
    assert len(server.requests) == 1

    server.responder = lambda r: '{"answer": "Nice", "count": 1}' if r.json_mode else "no tags at all"
    with dsr.context(adapter=dsr.XMLAdapter()):
        pred = await predict.acall(question="One city?")
    assert (pred.answer, pred.count) == ("Nice", 1)  # ChatAdapter's JSON fallback, inherited
    assert len(server.requests) == 3
    assert pred.usage.lm_calls == 2


async def test_two_step_asks_freely_then_extracts_with_the_second_lm(server, lm):
    def responder(request):
        if request.system.startswith("You are a helpful assistant"):
            return "Lima is the capital; about 10 million people live there."
        assert request.inputs["text"].startswith("Lima is the capital")
        return request.reply(city="Lima", population=10000000)

    server.responder = responder
    extractor = dsr.LM("small-model", api_base=server.url)
    predict = dsr.Predict("country -> city, population: int", lm=lm)
    with dsr.context(adapter=dsr.TwoStepAdapter(extractor)):
        pred = await predict.acall(country="Peru")
    assert (pred.city, pred.population) == ("Lima", 10000000)
    first, second = server.requests
    assert first["model"] == "test-model" and second["model"] == "small-model"
    assert first["messages"][-1]["content"] == "country: Peru"
    assert "Your job is to extract the fields from the text verbatim" in second["messages"][0]["content"]
    assert pred.usage.lm_calls == 2  # the extraction is part of the prediction's cost

    with dsr.context(adapter=dsr.TwoStepAdapter(extractor)):
        preds = await dsr.Predict("country -> city, population: int", lm=lm, n=3, temperature=0.7).acall(country="Peru")
    assert [c.city for c in preds.completions] == ["Lima"] * 3
    # one main call with n=3; each choice's extraction is the request already made above, so the cache answers it
    assert len(server.requests) == 3
    assert preds.usage.lm_calls == 4 and preds.usage.cached_calls == 3


async def test_two_step_extraction_failure_names_the_step_and_keeps_the_reply(server, lm):
    server.responder = lambda r: "free text" if r.system.startswith("You are") else "still no fields"
    adapter = dsr.TwoStepAdapter(dsr.LM("small-model", api_base=server.url, retry_backoff=(0.01, 0.02)))
    # the extraction's ChatAdapter falls back to JSON, which fails as well
    with pytest.raises(dsr.AdapterParseError, match="TwoStepAdapter: the extraction model could not read") as error:
        with dsr.context(adapter=adapter):
            await dsr.Predict("question -> answer: int", lm=lm).acall(question="q")
    assert error.value.raw == "free text"


def test_two_step_wants_an_lm():
    with pytest.raises(ValueError, match="extraction_model must be an instance of dsr.BaseLM"):
        dsr.TwoStepAdapter("gpt-4o-mini")


def test_dspys_adapter_module_paths():
    from dsr_core.adapters.chat_adapter import ChatAdapter
    from dsr_core.adapters.two_step_adapter import TwoStepAdapter
    from dsr_core.adapters.xml_adapter import XMLAdapter

    assert (ChatAdapter, XMLAdapter, TwoStepAdapter) == (dsr.ChatAdapter, dsr.XMLAdapter, dsr.TwoStepAdapter)
    assert issubclass(XMLAdapter, ChatAdapter)
