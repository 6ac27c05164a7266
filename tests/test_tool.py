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
