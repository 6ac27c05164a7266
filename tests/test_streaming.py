"""Streaming: ``LM.astream`` against the test server's server-sent events, and ``dsr.streamify`` over real
programs (listeners on ChatAdapter's and JSONAdapter's replies, status messages, sync streaming, the cache,
errors), checked against DSPy 3.4.1's ``streamify`` on the same server."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

import dsr_core as dsr
from dsr_core.streaming import StatusMessage, StatusMessageProvider, StreamListener, StreamResponse
from dsr_core.testing.server import LMTestServer
from tests.test_dspy_compat import dspy_python  # noqa: F401

QUESTION = "Which river flows through the middle of Paris, and how long is it?"


class DraftThenAnswer(dsr.Module):
    def __init__(self) -> None:
        self.draft = dsr.Predict("question -> draft")
        self.answer = dsr.Predict("question, draft -> answer")

    def forward(self, question: str) -> dsr.Prediction:
        draft = self.draft(question=question).draft
        return self.answer(question=question, draft=draft)


def collect(stream, **inputs):
    async def run():
        return [value async for value in stream(**inputs)]

    return asyncio.run(run())


def field_runs(values):
    """(predict_name, field, joined chunk text, is_last of the run's last chunk) per listened run."""
    runs: list[list] = []
    for value in values:
        if isinstance(value, StreamResponse):
            if not runs or runs[-1][3] or runs[-1][:2] != [value.predict_name, value.signature_field_name]:
                runs.append([value.predict_name, value.signature_field_name, "", False])
            runs[-1][2] += value.chunk
            runs[-1][3] = value.is_last_chunk
    return [tuple(r) for r in runs]


# -- the LM ------------------------------------------------------------------------------------------------------
def test_the_raw_stream_assembles_the_plain_reply_and_reports_usage(server, lm):
    messages = [{"role": "user", "content": "[[ ## question ## ]]\n" + QUESTION}]

    async def run():
        chunks = [chunk async for chunk in lm.astream(messages=messages, cache=False)]
        plain = await lm.acall(messages, cache=False)
        return chunks, plain

    chunks, plain = asyncio.run(run())
    texts = [c.text for c in chunks if c.text]
    assert len(texts) > 5 and all(len(t) <= 4 for t in texts)  # the server's pieces, as they came
    assert "".join(texts) == plain.texts[0] == chunks[-1].response.texts[0]
    last = chunks[-1]
    assert all(c.response is None for c in chunks[:-1]) and not last.response.cached
    assert last.usage.prompt_tokens == plain.usage.prompt_tokens > 0
    assert last.usage.completion_tokens == plain.usage.completion_tokens > 0
    assert last.response.finish_reasons == ["stop"] and last.choices[0].delta.content == ""
    streamed_body, plain_body = server.requests[-2], server.requests[-1]
    assert streamed_body["stream"] is True and streamed_body["stream_options"] == {"include_usage": True}
    assert "stream" not in plain_body
    assert lm.history[-2]["outputs"] == plain.texts and lm.usage.lm_calls == 2


def get_weather(city: str) -> str:
    """Look up the weather in a city."""
    return "sunny"


def test_native_tool_calls_stream_as_deltas_and_are_assembled_as_a_plain_call_gives_them(server, lm):
    """The server streams a tool call's id and name, then its arguments in pieces: the streamed reply's
    outputs equal the plain call's, and a streamed Predict with native function calling parses them."""
    from dsr_core.testing.server import tool_call

    calls = [tool_call("get_weather", {"city": "Rome"}, "call_1"), tool_call("get_weather", {"city": "Oslo"}, "c2")]
    server.responder = lambda request: {"content": None, "tool_calls": calls}
    messages = [{"role": "user", "content": "Weather in Rome and Oslo?"}]
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]

    async def run():
        chunks = [chunk async for chunk in lm.astream(messages=messages, cache=False, tools=tools)]
        plain = await lm.acall(messages, cache=False, tools=tools)
        return chunks, plain

    chunks, plain = asyncio.run(run())
    assert list(chunks[-1].response) == list(plain) == [{"text": None, "tool_calls": calls}]
    assert chunks[-1].response.finish_reasons == ["tool_calls"]

    signature = "question: str, tools: list[dsr.Tool] -> answer: str, tool_calls: dsr.ToolCalls"
    predict = dsr.Predict(signature)
    adapter = dsr.ChatAdapter(use_native_function_calling=True)
    server.responder = lambda request: {"content": "[[ ## answer ## ]]\nChecking.", "tool_calls": calls[:1]}
    stream = dsr.streamify(predict, stream_listeners=[StreamListener("answer")])
    with dsr.context(lm=lm, adapter=adapter):
        values = collect(stream, question="Weather in Rome?", tools=[dsr.Tool(get_weather)])
    prediction = values[-1]
    assert [(c.name, c.args) for c in prediction.tool_calls.tool_calls] == [("get_weather", {"city": "Rome"})]
    assert (
        server.requests[-1]["stream"] is True and server.requests[-1]["tools"][0]["function"]["name"] == "get_weather"
    )


def test_a_streamed_reply_is_cached_and_a_cache_hit_comes_as_one_chunk(server, lm):
    async def run():
        first = [chunk async for chunk in lm.astream("a question worth caching")]
        plain = await lm.acall("a question worth caching")
        again = [chunk async for chunk in lm.astream("a question worth caching")]
        return first, plain, again

    first, plain, again = asyncio.run(run())
    assert len(first) > 2 and plain.cached and plain.texts == first[-1].response.texts
    assert len(again) == 1 and again[0].response.cached and again[0].text == plain.texts[0]
    assert len(server.requests) == 1
    assert [entry["cached"] for entry in lm.history] == [False, True, True]


def test_the_stream_holds_the_in_flight_limit_until_it_ends(server, lm):
    seen = []

    async def run():
        async for _chunk in lm.astream("hold the slot", cache=False):
            seen.append((lm.in_flight, server.stats.in_flight))
        return lm.in_flight

    assert asyncio.run(run()) == 0
    assert all(mine == 1 for mine, _ in seen[:-1])


def test_a_stream_error_is_dsr_s_lm_error(server, lm):
    server.inject("stream_cut")  # half the reply, then the connection breaks
    with pytest.raises(dsr.LMConnectionError, match="broke off after its first text"):
        asyncio.run(_drain(lm.astream("[[ ## question ## ]]\na long enough question to be cut half way")))
    server.inject("401")
    with pytest.raises(dsr.LMAuthenticationError):
        asyncio.run(_drain(lm.astream("rejected", cache=False)))
    server.inject("500")  # before any text: retried like a plain call
    chunks = asyncio.run(_drain(lm.astream("retried", cache=False)))
    assert chunks[-1].response.texts[0] and server.stats.faults_served == 3


async def _drain(stream):
    return [chunk async for chunk in stream]


# -- streamify ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "adapter", [dsr.ChatAdapter(), dsr.JSONAdapter(), dsr.XMLAdapter()], ids=["chat", "json", "xml"]
)
def test_streamify_streams_the_listened_field_then_the_prediction(server, lm, adapter):
    dsr.configure(lm=lm, adapter=adapter)
    program = DraftThenAnswer()
    stream = dsr.streamify(program, stream_listeners=[StreamListener("answer")])
    values = collect(stream, question=QUESTION)
    prediction = values[-1]
    assert isinstance(prediction, dsr.Prediction) and prediction.answer == QUESTION
    chunks = values[:-1]
    assert len(chunks) > 5 and all(isinstance(c, StreamResponse) for c in chunks)
    assert {(c.predict_name, c.signature_field_name) for c in chunks} == {("answer", "answer")}
    assert [c.is_last_chunk for c in chunks] == [False] * (len(chunks) - 1) + [True]
    joined = "".join(c.chunk for c in chunks)
    # DSPy's JSON listener hands out the value as written, its quotes included
    assert (json.loads(joined) if adapter.name == "JSONAdapter" else joined) == prediction.answer
    draft_body, answer_body = server.requests
    assert "stream" not in draft_body and answer_body["stream"] is True  # only the listened predictor streams


def test_without_listeners_every_call_streams_raw_chunks(server, lm):
    dsr.configure(lm=lm)
    values = collect(dsr.streamify(DraftThenAnswer()), question=QUESTION)
    assert isinstance(values[-1], dsr.Prediction)
    chunks = values[:-1]
    assert len({c.predict_id for c in chunks}) == 2 and all(c.adapter == "ChatAdapter" for c in chunks)
    for predict_id in {c.predict_id for c in chunks}:
        mine = [c for c in chunks if c.predict_id == predict_id]
        assert len(mine) > 2 and "".join(c.text for c in mine) == mine[-1].response.texts[0]
    assert [b.get("stream") for b in server.requests] == [True, True]

    async def sse():
        return [line async for line in dsr.streaming.streaming_response(dsr.streamify(DraftThenAnswer())(question="x"))]

    lines = asyncio.run(sse())
    assert lines[-1] == "data: [DONE]\n\n" and json.loads(lines[-2][6:]) == {"prediction": {"answer": "x"}}
    assert "chunk" in json.loads(lines[0][6:])


def test_status_messages_come_from_the_provider(server, lm):
    class Provider(StatusMessageProvider):
        def module_start_status_message(self, instance, inputs):
            return f"start {type(instance).__name__}"

        def lm_start_status_message(self, instance, inputs):
            return "calling the LM"

        def lm_end_status_message(self, outputs):
            return f"LM said {len(outputs)} thing(s)"

    dsr.configure(lm=lm)
    stream = dsr.streamify(
        DraftThenAnswer(),
        status_message_provider=Provider(),
        stream_listeners=[StreamListener("answer")],
        include_final_prediction_in_output_stream=False,
    )
    values = collect(stream, question=QUESTION)
    statuses = [v.message for v in values if isinstance(v, StatusMessage)]
    assert statuses == [
        "start DraftThenAnswer",
        "start Predict",
        "calling the LM",
        "LM said 1 thing(s)",
        "start Predict",
        "calling the LM",
        "LM said 1 thing(s)",
    ]
    assert not any(isinstance(v, dsr.Prediction) for v in values)  # left out: the listener streamed
    assert "".join(v.chunk for v in values if isinstance(v, StreamResponse)) == QUESTION
    assert dsr.settings.callbacks == []  # the status callback was the streamed call's only


def test_sync_streaming_and_an_async_program(server, lm):
    dsr.configure(lm=lm)
    program = DraftThenAnswer()
    stream = dsr.streamify(program, stream_listeners=[StreamListener("answer")], async_streaming=False)
    values = list(stream(question=QUESTION))
    assert isinstance(values[-1], dsr.Prediction)
    assert field_runs(values) == [("answer", "answer", QUESTION, True)]

    predict = dsr.Predict("question -> answer")
    stream = dsr.streamify(predict, stream_listeners=[StreamListener("answer")], is_async_program=True)
    values = collect(stream, question="an async program's question")
    assert field_runs(values) == [("self", "answer", "an async program's question", True)]


def test_a_cached_call_yields_just_the_prediction(server, lm):
    dsr.configure(lm=lm)
    stream = dsr.streamify(DraftThenAnswer(), stream_listeners=[StreamListener("answer")])
    first = collect(stream, question=QUESTION)
    again = collect(stream, question=QUESTION)
    assert field_runs(first) == [("answer", "answer", QUESTION, True)]
    assert len(again) == 1 and again[0].answer == QUESTION  # the cache hit is one piece: nothing to stream
    assert len(server.requests) == 2


def test_an_lm_error_during_the_stream_surfaces_as_dsr_s_error(server, lm):
    dsr.configure(lm=lm)
    server.inject("stream_cut", match=lambda request: bool(request.body.get("stream")))
    stream = dsr.streamify(DraftThenAnswer(), stream_listeners=[StreamListener("answer")])
    with pytest.raises(dsr.LMConnectionError):
        collect(stream, question=QUESTION)
    with pytest.raises(dsr.LMConnectionError):  # synchronously too
        server.inject("stream_cut", match=lambda request: bool(request.body.get("stream")))
        list(
            dsr.streamify(DraftThenAnswer(), stream_listeners=[StreamListener("answer")], async_streaming=False)(
                question=QUESTION + " again"
            )
        )


def test_a_listener_must_find_its_predictor():
    with pytest.raises(ValueError, match="not a field of any predictor"):
        dsr.streamify(DraftThenAnswer(), stream_listeners=[StreamListener("nowhere")])
    program = DraftThenAnswer()
    program.answer = dsr.Predict("question -> draft")
    with pytest.raises(ValueError, match="not unique"):
        dsr.streamify(program, stream_listeners=[StreamListener("draft")])


# -- DSPy ------------------------------------------------------------------------------------------------------
DSPY_STREAM = r"""
import asyncio, json, logging, sys
import dspy

logging.disable(logging.WARNING)
job = json.load(sys.stdin)


class DraftThenAnswer(dspy.Module):
    def __init__(self):
        super().__init__()
        self.draft = dspy.Predict("question -> draft")
        self.answer = dspy.Predict("question, draft -> answer")

    def forward(self, question):
        draft = self.draft(question=question).draft
        return self.answer(question=question, draft=draft)


lm = dspy.LM("openai/test-model", api_base=job["url"], api_key="not-needed", cache=False)
results = {}
for name in ("ChatAdapter", "JSONAdapter"):
    dspy.configure(lm=lm, adapter=getattr(dspy, name)())
    stream = dspy.streamify(DraftThenAnswer(), stream_listeners=[dspy.streaming.StreamListener("answer")])

    async def run():
        out = []
        async for value in stream(question=job["question"]):
            if isinstance(value, dspy.streaming.StreamResponse):
                out.append(["chunk", value.predict_name, value.signature_field_name, value.chunk, value.is_last_chunk])
            elif isinstance(value, dspy.Prediction):
                out.append(["prediction", value.answer])
        return out

    results[name] = asyncio.run(run())
print(json.dumps(results))
"""


def json_aware_echo(request):
    """The echo responder, answering in JSON whenever the prompt asks for it (DSPy sends no response_format
    for a model LiteLLM does not know)."""
    first = next(iter(request.inputs.values()), "")
    values = {name: first for name in request.output_fields}
    if request.json_mode or "Respond with a JSON object" in request.last_user:
        return json.dumps(values)
    return request.reply(**values)


def test_streamify_yields_what_dspy_s_yields(dspy_python):  # noqa: F811
    with LMTestServer(json_aware_echo) as server:
        run = subprocess.run(
            [str(dspy_python), "-c", DSPY_STREAM],
            input=json.dumps({"url": server.url, "question": QUESTION}),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        theirs = json.loads(run.stdout)
        lm = dsr.LM("test-model", api_base=server.url, cache=False, timeout=5.0)
        for name, adapter in (("ChatAdapter", dsr.ChatAdapter()), ("JSONAdapter", dsr.JSONAdapter())):
            with dsr.context(lm=lm, adapter=adapter):
                ours = collect(
                    dsr.streamify(DraftThenAnswer(), stream_listeners=[StreamListener("answer")]), question=QUESTION
                )
            dspy_chunks = [StreamResponse(*v[1:]) for v in theirs[name] if v[0] == "chunk"]
            assert field_runs(ours) == field_runs(dspy_chunks), name
            assert [c for c in ours if isinstance(c, StreamResponse)] == dspy_chunks, name  # piece by piece
            assert [v[1] for v in theirs[name] if v[0] == "prediction"] == [ours[-1].answer], name
