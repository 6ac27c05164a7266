"""Tools from elsewhere: an MCP server's tools over real stdio, and LangChain tools, as DSPy converts them."""

from __future__ import annotations

import sys
import textwrap

import pytest

import dsr_core as dsr

MCP_SERVER = textwrap.dedent(
    '''
    from typing import TypedDict

    from mcp.server.mcpserver import MCPServer

    server = MCPServer("cities")


    class Population(TypedDict):
        city: str
        year: int
        people: int


    @server.tool()
    def capital_of(country: str) -> str:
        """Look up the capital city of a country."""
        return {"Peru": "Lima", "Chile": "Santiago"}[country]


    @server.tool()
    def population(city: str, year: int = 2020) -> Population:
        """The number of people living in a city."""
        return {"city": city, "year": year, "people": {"Lima": 10092000}.get(city, 0)}


    @server.tool()
    def fails(reason: str) -> str:
        """Always fails."""
        raise ValueError(reason)


    server.run("stdio")
    '''
)


@pytest.fixture
def mcp_server_script(tmp_path):
    path = tmp_path / "cities_server.py"
    path.write_text(MCP_SERVER)
    return path


async def test_mcp_tools_are_called_through_the_session(mcp_server_script):
    import mcp

    async with mcp.Client(mcp.StdioServerParameters(command=sys.executable, args=[str(mcp_server_script)])) as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        capital = dsr.Tool.from_mcp_tool(client, listed["capital_of"])
        assert (capital.name, capital.desc) == ("capital_of", "Look up the capital city of a country.")
        assert capital.args["country"]["type"] == "string" and capital.arg_types == {"country": str}
        assert capital.arg_desc == {"country": "No description provided. (Required)"}
        assert await capital.acall(country="Peru") == "Lima"

        people = dsr.Tool.from_mcp_tool(client, listed["population"])
        assert people.arg_types == {"city": str, "year": int}
        assert people.arg_desc["year"] == "No description provided."  # has a default: not required
        assert '"people": 10092000' in await people.acall(city="Lima")  # text mode: the text content
        structured = dsr.Tool.from_mcp_tool(client, listed["population"], result_mode="structured")
        assert await structured.acall(city="Lima", year=2024) == {"city": "Lima", "year": 2024, "people": 10092000}

        failing = dsr.Tool.from_mcp_tool(client, listed["fails"])
        with pytest.raises(RuntimeError, match="Failed to call a MCP tool: Error executing tool fails"):
            await failing.acall(reason="no such luck")
        with pytest.raises(ValueError, match="Unsupported MCP result mode"):
            dsr.Tool.from_mcp_tool(client, listed["fails"], result_mode="binary")


async def test_react_calls_an_mcp_tool(mcp_server_script, server, lm):
    import mcp

    def responder(request):
        if "next_tool_name" in request.output_fields:
            if "observation_0" in request.inputs:
                return request.reply(next_thought="Done.", next_tool_name="finish", next_tool_args={})
            return request.reply(next_thought="Ask.", next_tool_name="capital_of", next_tool_args={"country": "Chile"})
        return request.reply(reasoning="The tool said so.", answer=request.inputs.get("trajectory", "")[-200:])

    server.responder = responder
    async with mcp.Client(mcp.StdioServerParameters(command=sys.executable, args=[str(mcp_server_script)])) as client:
        tools = [dsr.Tool.from_mcp_tool(client, tool) for tool in (await client.list_tools()).tools]
        agent = dsr.ReAct("question -> answer", tools=tools, max_iters=3)
        with dsr.context(lm=lm):
            prediction = await agent.acall(question="What is the capital of Chile?")
    assert prediction.trajectory["observation_0"] == "Santiago"
    assert (
        "capital_of, whose description is <desc>Look up the capital city"
        in server.requests[0]["messages"][0]["content"]
    )


async def test_langchain_tools_keep_their_schema_and_run_with_ainvoke():
    from langchain_core.tools import tool

    @tool
    def add(x: int, y: int = 1) -> int:
        """Add two numbers together."""
        return x + y

    @tool
    def broken(text: str) -> str:
        """Always fails."""
        raise ValueError("not today")

    converted = dsr.Tool.from_langchain(add)
    assert (converted.name, converted.desc) == ("add", "Add two numbers together.")
    assert converted.arg_types == {"x": int, "y": int}
    assert converted.args["x"]["type"] == "integer" and converted.args["y"]["default"] == 1
    assert converted.arg_desc == {"x": "No description provided. (Required)", "y": "No description provided."}
    assert await converted.acall(x=2, y=3) == 5
    assert await converted.acall(x=2) == 3
    with pytest.raises(RuntimeError, match="Failed to call LangChain tool broken: not today"):
        await dsr.Tool.from_langchain(broken).acall(text="x")
