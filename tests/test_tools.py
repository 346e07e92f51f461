"""Tools: schemas from typed signatures, validation, and the tool events."""

from __future__ import annotations

from typing import Any, Literal

import pydantic
import pytest

import hookwire
from hookwire import CallbackManager, ToolCall
from hookwire.errors import ConfigurationError, ToolError, ToolNotFoundError
from hookwire.testing import RecordingCallback
from hookwire.tools import Tool, arun_tool, as_tools, run_tool, tool_output_text


@hookwire.tool
def search(query: str, limit: int = 5, exact: bool = False) -> list[str]:
    """Search the knowledge base.

    Longer explanation that is not part of the description.

    Args:
        query: what to look for,
            in plain words.
        limit: how many results.

    Returns:
        The matches.
    """
    return [query] * min(limit, 2)


class Address(pydantic.BaseModel):
    city: str
    zip: str | None = None


@hookwire.tool(name="ship", description="Ship an order.")
async def ship_order(
    order_id: str, address: Address, speed: Literal["slow", "fast"] = "slow"
) -> dict[str, str]:
    return {"order": order_id, "city": address.city, "speed": speed}


def test_schema_from_signature_and_docstring() -> None:
    schema = search.openai_schema()
    fn = schema["function"]
    assert schema["type"] == "function"
    assert fn["name"] == "search"
    assert fn["description"] == "Search the knowledge base."
    params = fn["parameters"]
    assert params["type"] == "object"
    assert params["required"] == ["query"]
    assert params["additionalProperties"] is False
    assert params["properties"]["query"] == {
        "type": "string",
        "description": "what to look for, in plain words.",
    }
    assert params["properties"]["limit"]["type"] == "integer"
    assert params["properties"]["limit"]["default"] == 5
    assert params["properties"]["exact"]["type"] == "boolean"


def test_named_tool_with_model_and_literal() -> None:
    assert ship_order.name == "ship"
    assert ship_order.description == "Ship an order."
    props = ship_order.parameters["properties"]
    assert props["speed"]["enum"] == ["slow", "fast"]
    assert "$defs" in ship_order.parameters or "properties" in props["address"]


def test_the_tool_still_calls_the_function() -> None:
    assert search("x", limit=1) == ["x"]
    assert search.invoke('{"query": "y", "limit": "2"}') == ["y", "y"]


def test_validation_errors_name_the_argument() -> None:
    with pytest.raises(ToolError, match="query"):
        search.invoke({})
    with pytest.raises(ToolError, match="limit"):
        search.invoke({"query": "q", "limit": "many"})
    with pytest.raises(ToolError, match="not valid JSON"):
        search.invoke("{oops")
    with pytest.raises(ToolError, match="JSON object"):
        search.invoke("[1]")
    with pytest.raises(ToolError, match="unknown"):
        search.invoke({"query": "q", "unknown": 1})


def test_bad_tool_definitions() -> None:
    def star(*args: int) -> None: ...

    def pos(a: int, /) -> None: ...

    with pytest.raises(ConfigurationError, match=r"\*args"):
        Tool(star)
    with pytest.raises(ConfigurationError, match="positional-only"):
        Tool(pos)
    with pytest.raises(ConfigurationError, match="name"):
        Tool(lambda: None, name="has spaces")
    with pytest.raises(ConfigurationError, match="function"):
        Tool(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="two tools"):
        as_tools([search, search])


def test_plain_functions_become_tools() -> None:
    def double(n: int) -> int:
        return n * 2

    tools = as_tools([double])
    assert tools["double"].invoke({"n": 4}) == 8
    assert tools["double"].description == "double"


def test_output_text() -> None:
    assert tool_output_text("plain") == "plain"
    assert tool_output_text({"a": 1}) == '{"a": 1}'
    assert tool_output_text(Address(city="Oslo")) == '{"city":"Oslo","zip":null}'
    assert tool_output_text(object).startswith('"<class')


def test_run_tool_events_and_errors() -> None:
    rec = RecordingCallback()
    manager = CallbackManager([rec])

    @hookwire.tool
    def explode(n: int) -> str:
        raise RuntimeError(f"exploded {n}")

    tools = as_tools([search, explode])
    out = run_tool(tools, ToolCall("c1", "search", '{"query": "q", "limit": 1}'), manager)
    assert out == '["q"]'
    assert rec.hooks() == ["on_tool_start", "on_tool_end"]
    start, end = rec.calls
    assert start["tool_input"] == {"query": "q", "limit": 1}
    assert start["tool_call_id"] == "c1"
    assert end["run_id"] == start["run_id"]
    assert end["latency_ms"] >= 0
    rec.clear()
    out = run_tool(tools, ToolCall("c2", "explode", '{"n": 3}'), manager)
    assert out == "Error: RuntimeError: exploded 3"
    assert rec.hooks() == ["on_tool_start", "on_tool_error", "on_error"]
    assert rec.of("error")[0]["stage"] == "tool"
    rec.clear()
    out = run_tool(tools, ToolCall("c3", "nope", "{}"), manager)
    assert "no tool named 'nope'" in out
    assert isinstance(rec.of("tool_error")[0]["error"], ToolNotFoundError)
    rec.clear()
    out = run_tool(tools, ToolCall("c4", "search", "not json"), manager)
    assert out.startswith("Error: ToolError")
    assert rec.of("tool_start")[0]["tool_input"] == "not json"


async def test_arun_tool_async_and_sync_functions() -> None:
    rec = RecordingCallback()
    manager = CallbackManager([rec])
    tools = as_tools([search, ship_order])
    out = await arun_tool(
        tools,
        ToolCall("c1", "ship", '{"order_id": "A1", "address": {"city": "Oslo"}, "speed": "fast"}'),
        manager,
    )
    assert out == '{"order": "A1", "city": "Oslo", "speed": "fast"}'
    out = await arun_tool(tools, ToolCall("c2", "search", '{"query": "z"}'), manager)
    assert out == '["z", "z"]'
    out = await arun_tool(
        tools, ToolCall("c3", "ship", '{"order_id": "A1", "address": {}}'), manager
    )
    assert "address.city" in out
    assert rec.hooks().count("on_tool_error") == 1


def test_sync_invoke_of_an_async_tool() -> None:
    assert ship_order.invoke({"order_id": "B", "address": {"city": "Rome"}}) == {
        "order": "B",
        "city": "Rome",
        "speed": "slow",
    }


async def test_a_handler_cannot_change_the_arguments_a_tool_runs_with() -> None:
    got: list[Any] = []

    @hookwire.tool
    def echo(items: list[int]) -> str:
        got.append(items)
        return "ok"

    class Editor(hookwire.BaseCallback):
        def on_tool_start(self, tool_name: str, tool_input: Any, **kw: Any) -> None:
            with pytest.raises(TypeError, match="read-only"):
                tool_input["items"].append(666)

    tools = as_tools([echo])
    manager = CallbackManager([Editor()])
    call = ToolCall("c1", "echo", '{"items": [1, 2]}')
    assert run_tool(tools, call, manager) == "ok"
    assert await arun_tool(tools, call, manager) == "ok"
    assert got == [[1, 2], [1, 2]]
    assert manager.stats()["errors_total"] == 0
