"""Tool and ToolCalls: what DSPy's tests/adapters/test_tool.py asks of them."""

from __future__ import annotations

import asyncio
import copy
import threading
from typing import Any

import pytest
from pydantic import BaseModel

from dsr_core.adapters.tool import Tool, ToolCalls


def dummy_function(x: int, y: str = "hello") -> str:
    """A dummy function for testing.

    Args:
        x: An integer parameter
        y: A string parameter
    """
    return f"{y} {x}"


class DummyModel(BaseModel):
    field1: str = "hello"
    field2: int


def dummy_with_pydantic(model: DummyModel) -> str:
    """A dummy function that accepts a Pydantic model."""
    return f"{model.field1} {model.field2}"


class Note(BaseModel):
    content: str
    author: str


def with_notes(priority: int, notes: list[Note] | None = None) -> int:
    """Count the notes."""
    return len(notes or [])


async def async_dummy_function(x: int, y: str = "hello") -> str:
    """An async dummy function for testing."""
    await asyncio.sleep(0)
    return f"{y} {x}"


def test_tool_reads_name_description_and_argument_schemas():
    tool = Tool(dummy_function)
    assert tool.name == "dummy_function"
    assert "A dummy function for testing" in tool.desc
    assert tool.args == {"x": {"type": "integer"}, "y": {"type": "string", "default": "hello"}}
    assert tool.arg_types == {"x": int, "y": str}


def test_given_values_are_kept():
    tool = Tool(name="test_tool", desc="A test tool", args={"param1": {"type": "string"}}, func=lambda param1: param1)
    assert (tool.name, tool.desc, tool.args) == ("test_tool", "A test tool", {"param1": {"type": "string"}})
    assert tool(param1="x") == "x"


def test_tool_str_is_dspys_prompt_text():
    def add(x: int, y: int = 0) -> int:
        """Add two integers."""
        return x + y

    assert str(Tool(add)) == (
        "add, whose description is <desc>Add two integers.</desc>. "
        "It takes arguments {'x': {'type': 'integer'}, 'y': {'type': 'integer', 'default': 0}}."
    )

    def undocumented(q):
        return q

    assert str(Tool(undocumented)) == "undocumented. It takes arguments {'q': {}}."


def test_callable_object_and_arg_desc():
    class Adder:
        def __call__(self, a: int, b: int) -> int:
            """Add two numbers."""
            return a + b

    tool = Tool(Adder(), arg_desc={"a": "The first number"})
    assert tool.name == "Adder"
    assert tool.desc == "Add two numbers."
    assert tool.args == {"a": {"type": "integer", "description": "The first number"}, "b": {"type": "integer"}}
    assert tool(a=1, b=2) == 3


def test_pydantic_arguments_are_schemas_and_parsed_from_dicts():
    tool = Tool(dummy_with_pydantic)
    assert tool.args["model"]["type"] == "object"
    assert tool.args["model"]["properties"]["field1"]["default"] == "hello"
    assert tool(model={"field1": "a", "field2": 1}) == "a 1"
    assert tool(model=DummyModel(field1="b", field2=2)) == "b 2"

    nested = Tool(with_notes)
    assert "$defs" not in str(nested.args)
    assert nested.args["notes"]["anyOf"][0]["items"]["properties"]["author"]["type"] == "string"
    assert nested(priority=1, notes=[{"content": "c", "author": "a"}]) == 1

    def nested_lists(x: list[list[DummyModel]]):
        return x

    assert Tool(nested_lists)(x=[[{"field1": "h", "field2": 1}]]) == [[DummyModel(field1="h", field2=1)]]


def test_invalid_arguments_raise_value_error():
    tool = Tool(dummy_function)
    with pytest.raises(ValueError, match="Arg x is invalid"):
        tool(x="not an integer", y="hello")
    with pytest.raises(ValueError, match="Arg z is not in the tool's args"):
        tool(x=1, z=2)


def test_untyped_arguments_and_kwargs():
    def foo(x=100):
        return x

    assert Tool(foo).args == {"x": {"default": 100}}
    assert Tool(foo)(x="anything") == "anything"

    def fn(x: int, **kwargs: Any):
        return kwargs

    assert Tool(fn)(x=1, y=2, z=3) == {"y": 2, "z": 3}


async def test_async_tools_are_awaited_and_sync_tools_run_off_the_loop():
    tool = Tool(async_dummy_function)
    assert tool.args["y"] == {"type": "string", "default": "hello"}
    assert await tool.acall(x=42, y="hello") == "hello 42"
    results = await asyncio.gather(*(tool.acall(x=i, y=f"h{i}") for i in range(5)))
    assert results == [f"h{i} {i}" for i in range(5)]
    with pytest.raises(ValueError):
        await tool.acall(x="not an integer")

    loop_thread = threading.get_ident()
    seen = []

    def where() -> str:
        seen.append(threading.get_ident())
        return "done"

    assert await Tool(where).acall() == "done"
    assert seen and seen[0] != loop_thread


def test_async_tool_called_synchronously_needs_the_setting():
    import dsr_core as dsr

    tool = Tool(async_dummy_function)
    with pytest.raises(ValueError, match="use `acall` instead"):
        tool(x=1, y="hi")
    with dsr.context(allow_tool_async_sync_conversion=True):
        assert tool(x=1, y="hi") == "hi 1"


def test_deepcopy_shares_the_function():
    tool = Tool(dummy_function)
    clone = copy.deepcopy(tool)
    assert clone.func is tool.func and clone.args == tool.args and clone.args is not tool.args


def test_tool_calls_accept_dspys_and_openais_shapes_and_format_as_dspy():
    calls = [{"name": "search", "args": {"query": "hello"}}, {"name": "get_time", "args": {}}]
    expected = {"tool_calls": calls}  # DSPy 3.4.1 writes name/args, not OpenAI's function/arguments
    assert ToolCalls.from_dict_list(calls).format() == expected
    assert ToolCalls.model_validate(calls).format() == expected
    assert ToolCalls.model_validate({"tool_calls": calls}).format() == expected
    openai = [
        {"type": "function", "function": {"name": "search", "arguments": '{"query": "hello"}'}},
        {"type": "function", "function": {"name": "get_time", "arguments": {}}},
    ]
    assert ToolCalls.model_validate({"tool_calls": openai}).format() == expected  # a reply may use either form
    assert ToolCalls.model_validate(openai).format() == expected
    assert ToolCalls.model_validate(openai[0]).format() == {"tool_calls": calls[:1]}
    assert ToolCalls.model_validate({"name": "get_time", "arguments": {}}).format() == {"tool_calls": calls[1:]}
    single = ToolCalls.model_validate(calls[0])
    assert [c.name for c in single.tool_calls] == ["search"]
    assert ToolCalls(tool_calls=[ToolCalls.ToolCall(name="x", args={})]).tool_calls[0].args == {}
    with pytest.raises(ValueError):
        ToolCalls.model_validate({"foo": "bar"})
    with pytest.raises(ValueError):
        ToolCalls.model_validate([{"foo": "bar"}])


def test_tool_calls_prompt_text_is_dspys():
    import dsr_core as dsr

    assert ToolCalls.description() == (
        "Tool calls must be a JSON object with `tool_calls`, a list of calls. Each call must include `name` and "
        '`args`. Example: {"tool_calls": [{"name": "search", "args": {"query": "cats"}}]}'
    )
    signature = dsr.Signature({"question": dsr.InputField(), "calls": (ToolCalls, dsr.OutputField())})
    demo = {"question": "w?", "calls": ToolCalls.from_dict_list([{"name": "get_weather", "args": {"city": "Paris"}}])}
    messages = dsr.ChatAdapter().format(signature, [demo], {"question": "q"})
    schema = (
        '{"type": "object", "$defs": {"ToolCall": {"type": "object", "properties": {"args": {"type": "object", '
        '"additionalProperties": true, "title": "Args"}, "name": {"type": "string", "title": "Name"}}, '
        '"required": ["name", "args"], "title": "ToolCall"}}, "properties": {"tool_calls": {"type": "array", '
        '"items": {"$ref": "#/$defs/ToolCall"}, "title": "Tool Calls"}}, "required": ["tool_calls"], '
        '"title": "ToolCalls"}'
    )
    assert (
        f"{{calls}}        # note: the value you produce must adhere to the JSON schema: {schema}\n"
        in (messages[0]["content"])
    )
    assert messages[2]["content"] == (
        '[[ ## calls ## ]]\n{"tool_calls": [{"name": "get_weather", "args": {"city": "Paris"}}]}\n\n'
        "[[ ## completed ## ]]\n"
    )


def test_tool_call_execute():
    call = ToolCalls.ToolCall(name="dummy_function", args={"x": 3})
    assert call.execute({"dummy_function": dummy_function}) == "hello 3"
    assert call.execute([Tool(dummy_function)]) == "hello 3"
    assert call.execute() == "hello 3"  # found among the caller's names
    with pytest.raises(ValueError, match="not found"):
        ToolCalls.ToolCall(name="missing", args={}).execute({})
    with pytest.raises(RuntimeError, match="Error executing tool"):
        ToolCalls.ToolCall(name="dummy_function", args={"nope": 1}).execute({"dummy_function": dummy_function})


def test_tool_calls_as_an_output_field(server, lm):
    import dsr_core as dsr

    server.responder = lambda r: r.reply(calls={"tool_calls": [{"name": "search", "args": {"query": "q"}}]})
    predict = dsr.Predict(dsr.Signature({"request": dsr.InputField(), "calls": (ToolCalls, dsr.OutputField())}))
    calls = predict(request="find q", lm=lm).calls
    assert isinstance(calls, ToolCalls) and calls.tool_calls[0].args == {"query": "q"}
    assert ToolCalls.model_validate(calls.format()) == calls  # the formatted value reads back
    assert ToolCalls.description() in server.requests[-1]["messages"][0]["content"]


# -- native function calling (DSPy's Adapter._call_preprocess / _call_postprocess) ----------------------------


def get_weather(city: str, unit: str = "C") -> str:
    """Look up the weather in a city."""
    return f"sunny in {city} ({unit})"


def tool_signature(with_thought: bool = False) -> Any:
    import dsr_core as dsr

    fields: dict[str, Any] = {"question": dsr.InputField(), "tools": (list[Tool], dsr.InputField())}
    if with_thought:
        fields["thought"] = dsr.OutputField()
    fields["tool_calls"] = (ToolCalls, dsr.OutputField())
    return dsr.Signature(fields, "Pick the tools to call.")


def calling_model(request):
    """Calls get_weather natively when the request offers tools; otherwise answers in the prompt's format."""
    from dsr_core.testing.server import tool_call

    if request.tools:
        return {"content": None, "tool_calls": [tool_call("get_weather", {"city": "Rome"}, "call_7")]}
    return request.reply(tool_calls={"tool_calls": [{"name": "get_weather", "args": {"city": "Oslo"}}]})


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Look up the weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "default": "C"}},
            "required": ["city"],  # an argument with a default is optional
        },
    },
}


def test_native_function_calling_sends_tools_and_reads_the_tool_calls(server, lm):
    import dsr_core as dsr

    server.responder = calling_model
    predict = dsr.Predict(tool_signature())
    with dsr.context(adapter=dsr.ChatAdapter(use_native_function_calling=True)):
        calls = predict(question="Weather in Rome?", tools=[Tool(get_weather)], lm=lm).tool_calls
    body = server.requests[-1]
    assert body["tools"] == [WEATHER_TOOL] == [Tool(get_weather).format_as_litellm_function_call()]
    assert "tool_choice" not in body and "parallel_tool_calls" not in body
    # the tools and the ToolCalls field leave the prompt, as DSPy's delete() leaves them out
    system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
    assert "`tools`" not in system and "`tool_calls`" not in system and "get_weather" not in user
    assert user == (
        "[[ ## question ## ]]\nWeather in Rome?\n\nRespond with the corresponding output fields, starting with the "
        "field , and then ending with the marker for `[[ ## completed ## ]]`."
    )
    assert calls.tool_calls == [ToolCalls.ToolCall(id="call_7", name="get_weather", args={"city": "Rome"})]
    assert calls.tool_calls[0].execute([Tool(get_weather)]) == "sunny in Rome (C)"


def test_tool_calls_stay_in_the_prompt_without_native_function_calling(server, lm):
    import dsr_core as dsr

    server.responder = calling_model
    predict = dsr.Predict(tool_signature())
    # ChatAdapter's default is off, as DSPy's: tools passed as request options are dropped too
    with dsr.context(adapter=dsr.ChatAdapter()):
        config = {"tools": [WEATHER_TOOL], "tool_choice": "auto", "parallel_tool_calls": True}
        calls = predict(question="Weather in Oslo?", tools=[Tool(get_weather)], lm=lm, config=config).tool_calls
    body = server.requests[-1]
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(body)
    assert "[[ ## tools ## ]]" in body["messages"][-1]["content"]
    assert calls.tool_calls[0].args == {"city": "Oslo"} and calls.tool_calls[0].id is None
    # an LM that does not take tools gets the prompt form even when the adapter asks for native calls
    lm.supports_function_calling = False
    with dsr.context(adapter=dsr.ChatAdapter(use_native_function_calling=True)):
        calls = predict(question="Weather in Oslo?", tools=[Tool(get_weather)], lm=lm, config=config).tool_calls
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(server.requests[-1])
    assert calls.tool_calls[0].args == {"city": "Oslo"}


def test_json_adapter_calls_tools_natively_by_default(server, lm):
    import dsr_core as dsr

    server.responder = calling_model
    assert dsr.JSONAdapter().use_native_function_calling and not dsr.ChatAdapter().use_native_function_calling
    predict = dsr.Predict(tool_signature())
    with dsr.context(adapter=dsr.JSONAdapter()):
        calls = predict(question="Weather in Rome?", tools=[Tool(get_weather)], lm=lm).tool_calls
    body = server.requests[-1]
    assert body["tools"] == [WEATHER_TOOL] and calls.tool_calls[0].name == "get_weather"
    # as DSPy's: the structured-output schema leaves the natively answered ToolCalls field out
    assert body["response_format"]["json_schema"]["schema"]["properties"] == {}
    assert body["messages"][-1]["content"].endswith("Respond with a JSON object in the following order of fields: .")
    with dsr.context(adapter=dsr.JSONAdapter(use_native_function_calling=False)):
        calls = predict(question="Weather in Oslo?", tools=[Tool(get_weather)], lm=lm).tool_calls
    body = server.requests[-1]
    assert "tools" not in body and body["response_format"] == {"type": "json_object"}
    assert calls.tool_calls[0].args == {"city": "Oslo"}


def test_native_tool_calls_with_other_outputs_and_parallel_calls(server, lm):
    import dsr_core as dsr
    from dsr_core.testing.server import tool_call

    def respond(request):
        calls = [tool_call("get_weather", {"city": c}, f"call_{c}") for c in ("Rome", "Oslo")]
        return {"content": request.reply(thought="Both cities."), "tool_calls": calls}

    server.responder = respond
    adapter = dsr.ChatAdapter(use_native_function_calling=True, parallel_tool_calls=True)
    with dsr.context(adapter=adapter):
        pred = dsr.Predict(tool_signature(with_thought=True))(
            question="Rome and Oslo?", tools=[Tool(get_weather)], lm=lm
        )
    body = server.requests[-1]
    assert body["parallel_tool_calls"] is True and body["tool_choice"] == "auto"  # DSPy sets tool_choice then
    assert "`[[ ## thought ## ]]`" in body["messages"][-1]["content"]
    assert pred.thought == "Both cities."
    assert [(c.id, c.args["city"]) for c in pred.tool_calls.tool_calls] == [
        ("call_Rome", "Rome"),
        ("call_Oslo", "Oslo"),
    ]

    # a text that does not parse beside the calls is dropped, as DSPy drops it: the outputs it lacks are None
    server.responder = lambda r: {"content": "no sections here", "tool_calls": [tool_call("get_weather", {})]}
    with dsr.context(adapter=adapter):
        pred = dsr.Predict(tool_signature(with_thought=True))(question="?", tools=[Tool(get_weather)], lm=lm)
    assert pred.thought is None and pred.tool_calls.tool_calls[0].args == {}


def test_native_function_calling_needs_a_tools_input(lm):
    import dsr_core as dsr

    signature = dsr.Signature({"question": dsr.InputField(), "tool_calls": (ToolCalls, dsr.OutputField())})
    with dsr.context(adapter=dsr.ChatAdapter(use_native_function_calling=True)):
        with pytest.raises(ValueError, match="did not provide any tools as the input"):
            dsr.Predict(signature)(question="?", lm=lm)


def test_lm_returns_tool_calls_and_caches_them(server):
    import dsr_core as dsr
    from dsr_core.cache import entry_problem

    server.responder = calling_model
    lm = dsr.LM("test-model", api_base=server.url)
    messages = [{"role": "user", "content": "Weather in Rome?"}]
    first = lm(messages=messages, tools=[WEATHER_TOOL])
    # DSPy's outputs: a dict with the text (None: the message had no content) and the provider's tool calls
    expected = [
        {
            "text": None,
            "tool_calls": [
                {
                    "id": "call_7",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                }
            ],
        }
    ]
    assert first == expected and len(server.requests) == 1
    first[0]["tool_calls"].clear()  # a caller editing its outputs does not edit the cache
    again = lm(messages=messages, tools=[WEATHER_TOOL])
    assert again == expected and len(server.requests) == 1  # from the cache
    # BaseLM's contract path: the completion dict carries the calls on the message
    completion = lm.forward(messages=messages, tools=[WEATHER_TOOL])
    assert completion["choices"][0]["message"]["tool_calls"] == expected[0]["tool_calls"]
    assert lm(messages=messages) == [
        '[[ ## tool_calls ## ]]\n{"tool_calls": [{"name": "get_weather", "args": {"city": "Oslo"}}]}\n\n[[ ## completed ## ]]'
    ]
    # the cache entry format: tool_calls, one item per text, each null or a list of objects
    entry = {"texts": ["", "x"], "tool_calls": [[{"id": "c"}], None]}
    assert entry_problem(entry) is None
    assert entry_problem({**entry, "tool_calls": [None]}) == "'tool_calls' is not a list with one item per text"
    assert entry_problem({**entry, "tool_calls": [[1], None]}) is not None
    assert entry_problem({**entry, "tool_calls": ["call", None]}) is not None


def test_a_custom_lm_with_function_calling_gets_the_tools(server):
    import dsr_core as dsr

    class ToolLM(dsr.BaseLM):
        supports_function_calling = True

        def __init__(self) -> None:
            super().__init__("tool-lm")
            self.seen: list[Any] = []

        def forward(self, prompt=None, messages=None, **kwargs):
            self.seen.append(kwargs.get("tools"))
            call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Lima"}}}
            return {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [call]}}]}

    lm = ToolLM()
    with dsr.context(adapter=dsr.ChatAdapter(use_native_function_calling=True)):
        calls = dsr.Predict(tool_signature())(question="Lima?", tools=[Tool(get_weather)], lm=lm).tool_calls
    assert lm.seen == [[WEATHER_TOOL]]
    assert calls.tool_calls == [ToolCalls.ToolCall(id="c1", name="get_weather", args={"city": "Lima"})]
