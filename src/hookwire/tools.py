"""Tools: typed Python functions a model may call.

``@hookwire.tool`` turns a function with type hints into a ``Tool``: its JSON schema (for the
model) comes from the signature, its description from the docstring (the first paragraph, and
an ``Args:`` section for the parameters). The model's arguments are validated and converted
with pydantic before the function runs. Sync and async functions both work::

    @hookwire.tool
    def get_order_status(order_id: str) -> str:
        \"\"\"Look up an order.

        Args:
            order_id: the order number, like ORD-1234.
        \"\"\"
        return "shipped"

Runners call tools through ``run_tool`` / ``arun_tool``, which emit ``on_tool_start`` /
``on_tool_end`` or ``on_tool_error`` plus ``on_error(stage="tool")``, and turn a failure into
the text the model sees (``"Error: ..."``) instead of crashing the run.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, get_type_hints, overload

import pydantic

from .dispatch import CallbackManager
from .errors import ConfigurationError, ToolError, ToolNotFoundError
from .events import ToolCall
from .frozen import freeze
from .ids import new_id
from .tracing import trace

__all__ = ["Tool", "arun_tool", "run_tool", "tool", "tool_output_text"]

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ARG_LINE = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _doc_parts(doc: str | None) -> tuple[str, dict[str, str]]:
    """The description and per-parameter descriptions of a Google-style docstring."""
    if not doc:
        return "", {}
    text = inspect.cleandoc(doc)
    description = " ".join(text.split("\n\n")[0].split())
    params: dict[str, str] = {}
    inside = False
    indent: int | None = None
    current: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not inside:
            inside = stripped in ("Args:", "Arguments:", "Parameters:")
            continue
        if not stripped:
            continue
        depth = len(line) - len(line.lstrip())
        if depth == 0:
            break  # the next section (Returns:, Raises:, ...)
        m = _ARG_LINE.match(line)
        if m and (indent is None or depth <= indent):
            indent = depth
            current = m.group(1).lstrip("*")
            params[current] = m.group(2).strip()
        elif current is not None:
            params[current] = (params[current] + " " + stripped).strip()
    return description, params


class Tool:
    """A function a model may call: ``name``, ``description``, ``parameters`` (JSON schema).

    Calling the ``Tool`` calls the function as written; ``invoke(arguments)`` /
    ``ainvoke(arguments)`` validate a dict of arguments (as the model sends them) first.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        nested: bool = True,
    ) -> None:
        if not callable(fn):
            raise ConfigurationError(f"@tool needs a function, not {fn!r}")
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", ""))
        if not _NAME.match(self.name):
            raise ConfigurationError(
                f"tool name {self.name!r} must be 1-64 letters, digits, '_' or '-' "
                "(pass name=... to @tool)"
            )
        doc_description, doc_params = _doc_parts(inspect.getdoc(fn))
        self.description = description or doc_description or self.name.replace("_", " ")
        self.is_async = inspect.iscoroutinefunction(fn)
        #: Whether the function runs inside the tool call's own context (so LLM calls it
        #: makes are nested under it); ``False`` for tools that open their own run.
        self.nested = nested
        self._model = self._arguments_model(fn, doc_params)
        schema = self._model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        schema.setdefault("properties", {})
        schema["additionalProperties"] = False
        self.parameters: dict[str, Any] = schema
        self.__doc__ = fn.__doc__
        self.__name__ = self.name
        self.__wrapped__ = fn

    def _arguments_model(
        self, fn: Callable[..., Any], doc_params: Mapping[str, str]
    ) -> type[pydantic.BaseModel]:
        sig = inspect.signature(fn)
        try:
            hints = get_type_hints(fn, include_extras=True)
        except Exception as exc:
            raise ConfigurationError(
                f"tool {self.name!r}: its type hints cannot be resolved ({exc}); import the "
                "types it uses at module level"
            ) from exc
        fields: dict[str, Any] = {}
        for p in sig.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise ConfigurationError(
                    f"tool {self.name!r}: *args/**kwargs cannot be described to a model; "
                    "give every parameter a name and a type"
                )
            if p.kind is p.POSITIONAL_ONLY:
                raise ConfigurationError(
                    f"tool {self.name!r}: positional-only parameter {p.name!r}; models pass "
                    "arguments by name"
                )
            annotation = hints.get(p.name, Any)
            default = ... if p.default is p.empty else p.default
            fields[p.name] = (
                annotation,
                pydantic.Field(default, description=doc_params.get(p.name) or None),
            )
        try:
            return pydantic.create_model(
                f"{self.name}_arguments",
                __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=False),
                **fields,
            )
        except Exception as exc:
            raise ConfigurationError(
                f"tool {self.name!r}: its parameters cannot be described as JSON schema ({exc}); "
                "use JSON types (str, int, float, bool, list, dict, pydantic models, Literal)"
            ) from exc

    def openai_schema(self) -> dict[str, Any]:
        """The tool as the OpenAI API takes it in ``tools=[...]``."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def validate(self, arguments: Mapping[str, Any] | str | None) -> dict[str, Any]:
        """The arguments converted to the signature's types; raises ``ToolError`` if they
        do not fit (the message is what the model is told)."""
        if arguments is None or arguments == "":
            arguments = {}
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError as exc:
                raise ToolError(
                    f"the arguments for {self.name} are not valid JSON ({exc}); send a JSON object"
                ) from exc
        if not isinstance(arguments, Mapping):
            raise ToolError(f"the arguments for {self.name} must be a JSON object")
        try:
            model = self._model.model_validate(dict(arguments))
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(x) for x in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ToolError(f"wrong arguments for {self.name}: {problems}") from exc
        return {name: getattr(model, name) for name in type(model).model_fields}

    def invoke(self, arguments: Mapping[str, Any] | str | None = None) -> Any:
        """Validate ``arguments`` and call the function (an async one is run to completion)."""
        values = self.validate(arguments)
        if self.is_async:
            return asyncio.run(self.fn(**values))
        return self.fn(**values)

    async def ainvoke(self, arguments: Mapping[str, Any] | str | None = None) -> Any:
        """Validate ``arguments`` and call the function; a sync function runs in a thread
        (with the caller's context), so it cannot block the event loop."""
        values = self.validate(arguments)
        if self.is_async:
            return await self.fn(**values)
        return await asyncio.to_thread(self.fn, **values)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a ``Tool`` of a typed function: ``@tool`` or ``@tool(name=..., description=...)``."""
    if fn is not None:
        return Tool(fn, name=name, description=description)

    def decorate(f: Callable[..., Any]) -> Tool:
        return Tool(f, name=name, description=description)

    return decorate


def as_tools(tools: Sequence[Any] | None) -> dict[str, Tool]:
    """``tools`` (``Tool`` objects or plain functions) by name; plain functions are wrapped."""
    out: dict[str, Tool] = {}
    for t in tools or ():
        obj = t if isinstance(t, Tool) else Tool(t)
        if obj.name in out:
            raise ConfigurationError(f"two tools are named {obj.name!r}; give one name=...")
        out[obj.name] = obj
    return out


def tool_output_text(value: Any) -> str:
    """What the model sees of a tool's return value: text as is, anything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump_json()
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def _error_text(error: BaseException) -> str:
    return f"Error: {type(error).__name__}: {error}"


def _find(tools: Mapping[str, Tool], call: ToolCall) -> Tool:
    found = tools.get(call.name)
    if found is None:
        names = ", ".join(sorted(tools)) or "none"
        raise ToolNotFoundError(f"there is no tool named {call.name!r}; the tools are: {names}")
    return found


def _start_kw(tools: Mapping[str, Tool], call: ToolCall, run_id: str) -> dict[str, Any]:
    """``on_tool_start``'s keywords: the ids, and the tool's description when it is known."""
    kw: dict[str, Any] = {"run_id": run_id, "tool_call_id": call.id}
    found = tools.get(call.name)
    if found is not None:
        kw["tool_description"] = found.description
    return kw


def _input_of(call: ToolCall) -> Any:
    try:
        return json.loads(call.arguments or "{}")
    except ValueError:
        return call.arguments


def _given(manager: CallbackManager, tool_input: Any) -> Any:
    # Handlers get a read-only copy of the arguments: the tool runs with the originals.
    return freeze(tool_input) if manager.listens("on_tool_start") else tool_input


def run_tool(tools: Mapping[str, Tool], call: ToolCall, manager: CallbackManager) -> str:
    """Run the tool a model asked for, with its events; returns what the model is told."""
    run_id = new_id()
    tool_input = _input_of(call)
    manager.on_tool_start(call.name, _given(manager, tool_input), **_start_kw(tools, call, run_id))
    t0 = time.perf_counter()
    try:
        found = _find(tools, call)
        if found.nested:
            with trace(f"tool:{call.name}", run_id=run_id):
                value = found.invoke(tool_input if isinstance(tool_input, dict) else call.arguments)
        else:
            value = found.invoke(tool_input if isinstance(tool_input, dict) else call.arguments)
        output = tool_output_text(value)
    except Exception as exc:
        latency = (time.perf_counter() - t0) * 1000.0
        manager.on_tool_error(
            call.name, exc, run_id=run_id, tool_call_id=call.id, latency_ms=latency
        )
        manager.on_error(exc, stage="tool", tool_name=call.name)
        return _error_text(exc)
    latency = (time.perf_counter() - t0) * 1000.0
    manager.on_tool_end(call.name, output, run_id=run_id, tool_call_id=call.id, latency_ms=latency)
    return output


async def arun_tool(tools: Mapping[str, Tool], call: ToolCall, manager: CallbackManager) -> str:
    """``run_tool`` for asyncio."""
    run_id = new_id()
    tool_input = _input_of(call)
    await manager.aon_tool_start(
        call.name, _given(manager, tool_input), **_start_kw(tools, call, run_id)
    )
    t0 = time.perf_counter()
    try:
        found = _find(tools, call)
        args = tool_input if isinstance(tool_input, dict) else call.arguments
        if found.nested:
            async with trace(f"tool:{call.name}", run_id=run_id):
                value = await found.ainvoke(args)
        else:
            value = await found.ainvoke(args)
        output = tool_output_text(value)
    except Exception as exc:
        latency = (time.perf_counter() - t0) * 1000.0
        await manager.aon_tool_error(
            call.name, exc, run_id=run_id, tool_call_id=call.id, latency_ms=latency
        )
        await manager.aon_error(exc, stage="tool", tool_name=call.name)
        return _error_text(exc)
    latency = (time.perf_counter() - t0) * 1000.0
    await manager.aon_tool_end(
        call.name, output, run_id=run_id, tool_call_id=call.id, latency_ms=latency
    )
    return output


# Used by runners to type their tool lists.
ToolLike = Tool | Callable[..., Any] | Callable[..., Awaitable[Any]]
