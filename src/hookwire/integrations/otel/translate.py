"""What a finished GenAI span says, read into hookwire's terms, without I/O.

A span's attributes follow the OpenTelemetry GenAI semantic conventions
(``gen_ai.operation.name``, ``gen_ai.usage.*``, ...; names in
``hookwire.callbacks.otel_conventions``) or OpenInference's (``openinference.span.kind``,
``llm.*``; names in ``.openinference``), and often both. Each reader takes the attribute
mapping and returns plain values; none raises on a value of an unexpected type (an
instrumentation may write anything), it takes it as absent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Final

import orjson

from ...callbacks import otel_conventions as c
from ...errors import (
    AuthenticationError,
    BadRequestError,
    HookwireError,
    LLMError,
    LLMTimeoutError,
    RateLimitError,
    ServerError,
    ToolError,
)
from ...events import EmbeddingResponse, LLMResponse, ToolCall, Usage, utcnow
from ...llms.estimate import UNKNOWN_USAGE, prompt_bound, with_estimate
from .._common import price
from . import openinference as oi

__all__ = [
    "EMBEDDING",
    "LLM",
    "RETRIEVAL",
    "RUN",
    "TOOL",
    "category",
    "conversation_id",
    "embedding",
    "error",
    "event_messages",
    "invocation_params",
    "is_agent",
    "llm_response",
    "model",
    "prompt",
    "provider",
    "retrieval",
    "run_input",
    "run_output",
    "run_usage",
    "tool",
    "usage",
]

#: Names hookwire reads from other instrumentations' spans but does not write itself (the
#: names it writes, and reads too, are ``hookwire.callbacks.otel_conventions``'s).
#: ``gen_ai.system`` is what ``gen_ai.provider.name`` was called before; the aggregated usage
#: is pydantic-ai's total on an agent run's span.
SYSTEM: Final = "gen_ai.system"
SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
EMBEDDING_DIMENSIONS: Final = "gen_ai.embeddings.dimension.count"
AGGREGATED_INPUT_TOKENS: Final = "gen_ai.aggregated_usage.input_tokens"
AGGREGATED_OUTPUT_TOKENS: Final = "gen_ai.aggregated_usage.output_tokens"

RUN: Final = "run"
LLM: Final = "llm"
EMBEDDING: Final = "embedding"
TOOL: Final = "tool"
RETRIEVAL: Final = "retrieval"

#: ``gen_ai.operation.name`` -> what hookwire makes of the span. ``create_agent`` and
#: operations hookwire has no event for are left alone.
OPERATIONS: Final[Mapping[str, str]] = {
    "chat": LLM,
    "text_completion": LLM,
    "generate_content": LLM,
    # Semantic Kernel's names (its diagnostics predate the conventions' operation names).
    "chat.completions": LLM,
    "chat.streaming_completions": LLM,
    "text.completions": LLM,
    "text.streaming_completions": LLM,
    "embeddings": EMBEDDING,
    "execute_tool": TOOL,
    "invoke_agent": RUN,
    "invoke_workflow": RUN,
    "retrieval": RETRIEVAL,
}
#: ``openinference.span.kind`` -> the same. RERANKER, GUARDRAIL, EVALUATOR, PROMPT and UNKNOWN
#: spans are left alone.
KINDS: Final[Mapping[str, str]] = {
    "LLM": LLM,
    "EMBEDDING": EMBEDDING,
    "TOOL": TOOL,
    "AGENT": RUN,
    "CHAIN": RUN,
    "RETRIEVER": RETRIEVAL,
}
#: Span attribute -> ``invocation_params`` key (the inverse of the callback's table).
_PARAMS: Final[Mapping[str, str]] = {
    attr: key for key, attr in c.REQUEST_PARAMS.items() if key != "max_completion_tokens"
}


def category(attrs: Mapping[str, Any]) -> str | None:
    """``RUN``, ``LLM``, ``EMBEDDING``, ``TOOL``, ``RETRIEVAL``, or ``None`` (not a span
    hookwire reports). The GenAI operation wins over OpenInference's kind."""
    op = attrs.get(c.OPERATION)
    if type(op) is str and op in OPERATIONS:
        return OPERATIONS[op]
    kind = attrs.get(oi.SPAN_KIND)
    if type(kind) is str:
        return KINDS.get(kind.upper())
    return None


def is_agent(attrs: Mapping[str, Any]) -> bool:
    """Whether a run's span is an agent's (else it is a workflow or chain)."""
    return attrs.get(c.OPERATION) == "invoke_agent" or attrs.get(oi.SPAN_KIND) == "AGENT"


def _text(attrs: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = attrs.get(key)
        if type(value) is str and value:
            return value
    return None


def _count(attrs: Mapping[str, Any], *keys: str) -> int | None:
    """The first of ``keys`` that holds a token count (a non-negative whole number)."""
    for key in keys:
        value = attrs.get(key)
        if type(value) is int and value >= 0:
            return value
        if type(value) is float and value >= 0 and value.is_integer():
            return int(value)
    return None


def _json(value: Any) -> Any:
    """A JSON attribute's value (``None`` when it is not JSON text)."""
    if type(value) is not str or not value:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None


def provider(attrs: Mapping[str, Any]) -> str | None:
    """The provider, as the span names it (``gen_ai.provider.name``, the older
    ``gen_ai.system``, OpenInference's ``llm.provider`` / ``llm.system``)."""
    return _text(attrs, c.PROVIDER, SYSTEM, oi.PROVIDER, oi.SYSTEM)


def model(attrs: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``(requested model, model that answered)``; either may stand in for the other."""
    requested = _text(attrs, c.REQUEST_MODEL, oi.MODEL_NAME, oi.EMBEDDING_MODEL_NAME)
    answered = _text(attrs, c.RESPONSE_MODEL, oi.MODEL_NAME, oi.EMBEDDING_MODEL_NAME)
    return requested or answered, answered or requested


def conversation_id(attrs: Mapping[str, Any]) -> str | None:
    """``gen_ai.conversation.id``, else OpenInference's ``session.id``."""
    return _text(attrs, c.CONVERSATION_ID, oi.SESSION_ID)


def usage(attrs: Mapping[str, Any]) -> Usage | None:
    """One call's usage (``None``: the span has no token counts)."""
    prompt_tokens = _count(attrs, c.INPUT_TOKENS, oi.PROMPT_TOKENS, "gen_ai.usage.prompt_tokens")
    completion = _count(
        attrs, c.OUTPUT_TOKENS, oi.COMPLETION_TOKENS, "gen_ai.usage.completion_tokens"
    )
    if prompt_tokens is None and completion is None:
        return None
    total = _count(attrs, oi.TOTAL_TOKENS)
    prompt_tokens = prompt_tokens or 0
    completion = completion or 0
    return Usage(
        prompt_tokens,
        completion,
        total if total is not None and total >= prompt_tokens + completion else -1,
        cached_tokens=_count(attrs, c.CACHE_READ_TOKENS, oi.CACHE_READ_TOKENS),
        reasoning_tokens=_count(attrs, c.REASONING_TOKENS, oi.REASONING_TOKENS),
    )


def run_usage(attrs: Mapping[str, Any]) -> Usage | None:
    """The usage a run's span states for the whole run (pydantic-ai writes it), if any."""
    prompt_tokens = _count(attrs, AGGREGATED_INPUT_TOKENS, c.INPUT_TOKENS)
    completion = _count(attrs, AGGREGATED_OUTPUT_TOKENS, c.OUTPUT_TOKENS)
    if prompt_tokens is None and completion is None:
        return None
    return Usage(prompt_tokens or 0, completion or 0)


def _message(entry: Any) -> dict[str, Any] | None:
    """A conventions message (``{"role", "parts": [...]}``) as an OpenAI-style dict."""
    if not isinstance(entry, Mapping):
        return None
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    message: dict[str, Any] = {"role": str(entry.get("role") or "user")}
    for part in entry.get("parts") or ():
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("content"), str):
            texts.append(part["content"])
        elif kind == "tool_call":
            args = part.get("arguments")
            calls.append(
                {
                    "id": str(part.get("id") or ""),
                    "type": "function",
                    "function": {
                        "name": str(part.get("name") or ""),
                        "arguments": args if isinstance(args, str) else _dumps(args),
                    },
                }
            )
        elif kind == "tool_call_response":
            message["role"] = "tool"
            message["tool_call_id"] = part.get("id")
            result = part.get("response", part.get("result"))
            texts.append(result if isinstance(result, str) else _dumps(result))
    message["content"] = "".join(texts) if texts else None
    if calls:
        message["tool_calls"] = calls
    if entry.get("finish_reason") is not None:
        message["finish_reason"] = str(entry["finish_reason"])
    return message


def _dumps(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _messages(value: Any, finish: bool = True) -> list[dict[str, Any]] | None:
    """A JSON list of conventions messages as OpenAI-style dicts (``finish=False``: without
    the ``finish_reason`` a history's assistant messages carry, which is no message field)."""
    decoded = _json(value)
    if not isinstance(decoded, list):
        return None
    out = [m for m in map(_message, decoded) if m is not None]
    if not finish:
        for m in out:
            m.pop("finish_reason", None)
    return out or None


#: The span events of the conventions' first message format (Semantic Kernel writes them):
#: event name -> the role of its message.
_MESSAGE_EVENTS: Final[Mapping[str, str]] = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
_CHOICE_EVENT: Final = "gen_ai.choice"
_EVENT_CONTENT: Final = "gen_ai.event.content"


def _event_body(event: Any) -> Mapping[str, Any]:
    """A message event's body: its ``gen_ai.event.content`` JSON, else its attributes."""
    attrs = getattr(event, "attributes", None) or {}
    body = _json(attrs.get(_EVENT_CONTENT))
    return body if isinstance(body, Mapping) else attrs


def event_messages(events: Sequence[Any]) -> tuple[list[dict[str, Any]] | None, Any, Any]:
    """``(input messages, answer text, finish reason)`` from message span events."""
    messages: list[dict[str, Any]] = []
    answer: Any = None
    finish: Any = None
    for event in events:
        name = getattr(event, "name", None)
        if name == _CHOICE_EVENT:
            body = _event_body(event)
            message = body.get("message")
            source = message if isinstance(message, Mapping) else body
            if isinstance(source.get("content"), str):
                answer = source["content"]
            if isinstance(body.get("finish_reason"), str):
                finish = body["finish_reason"]
        elif type(name) is str and name in _MESSAGE_EVENTS:
            body = _event_body(event)
            content = body.get("content")
            messages.append(
                {
                    "role": str(body.get("role") or _MESSAGE_EVENTS[name]),
                    "content": content if isinstance(content, str) else None,
                }
            )
    return messages or None, answer, finish


def prompt(attrs: Mapping[str, Any], events: Sequence[Any] = ()) -> Any:
    """An LLM call's prompt: its messages (OpenAI-style dicts, the system instructions first),
    from the ``gen_ai.input.messages`` attribute, OpenInference's ``llm.input_messages``, or
    message events, else OpenInference's ``input.value`` text; ``None`` when the span carries
    no content."""
    messages = _messages(attrs.get(c.INPUT_MESSAGES), finish=False)
    if messages is None and oi.SPAN_KIND in attrs:
        messages = oi.input_messages(attrs)
    if messages is None and events:
        messages = event_messages(events)[0]
    if messages is not None:
        instructions = _json(attrs.get(SYSTEM_INSTRUCTIONS))
        if isinstance(instructions, list):
            system = _message({"role": "system", "parts": instructions})
            if system is not None and system["content"]:
                messages.insert(0, system)
        return messages
    return _text(attrs, oi.INPUT_VALUE)


def invocation_params(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The request's parameters: ``gen_ai.request.*`` attributes, else OpenInference's
    ``llm.invocation_parameters`` JSON, with the model."""
    params: dict[str, Any] = {}
    decoded = _json(attrs.get(oi.INVOCATION_PARAMETERS))
    if isinstance(decoded, dict):
        params.update(decoded)
    for attr, key in _PARAMS.items():
        value = attrs.get(attr)
        if value is not None:
            params[key] = list(value) if isinstance(value, tuple) else value
    requested, _ = model(attrs)
    if requested is not None:
        params["model"] = requested
    return params


def llm_response(
    attrs: Mapping[str, Any],
    call_usage: Usage | None,
    ended_ns: int | None = None,
    events: Sequence[Any] = (),
) -> LLMResponse:
    """An LLM call's ``LLMResponse``: its text and tool calls (when the span carries them),
    usage, model, finish reason, id and cost from hookwire's prices; ``created_at`` is when
    the span ended (``ended_ns``, nanoseconds since the epoch), else now."""
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    finish: str | None = None
    out = _messages(attrs.get(c.OUTPUT_MESSAGES))
    if out:
        first = out[0]
        content = first.get("content")
        finish = first.get("finish_reason")
        tool_calls = tuple(
            ToolCall(tc["id"], tc["function"]["name"], tc["function"]["arguments"])
            for tc in first.get("tool_calls", ())
        )
    elif oi.SPAN_KIND in attrs:  # OpenInference's numbered keys, scanned only on its spans
        content, calls = oi.output_message(attrs)
        tool_calls = tuple(ToolCall(*call) for call in calls)
        finish = _text(attrs, "llm.finish_reason")
    elif events:
        _, content, finish = event_messages(events)
    if finish is None:
        reasons = attrs.get(c.FINISH_REASONS)
        if isinstance(reasons, (tuple, list)) and reasons and isinstance(reasons[0], str):
            finish = reasons[0]
    _, answered = model(attrs)
    name = provider(attrs)
    response = LLMResponse(
        content or "",
        usage=call_usage if call_usage is not None else UNKNOWN_USAGE,
        model=answered,
        finish_reason=finish,
        tool_calls=tool_calls,
        provider=name,
        id=_text(attrs, c.RESPONSE_ID),
        cost=price(answered, call_usage, name) if call_usage is not None else None,
        created_at=_utc(ended_ns) if ended_ns else utcnow(),
    )
    if call_usage is None:
        # A span without token counts: unknown, estimated from what it shows, never 0.
        response = with_estimate(response, answered, name, prompt(attrs, events), None)
    return response


def _utc(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)


def embedding(attrs: Mapping[str, Any], call_usage: Usage | None) -> tuple[Any, EmbeddingResponse]:
    """An embedding call's input (the texts, when the span carries them) and response."""
    texts, dims = oi.embedding_texts(attrs)
    dimensions = _count(attrs, EMBEDDING_DIMENSIONS)
    _, answered = model(attrs)
    name = provider(attrs)
    # A span without token counts: the input's bound, estimated (and priced), never 0.
    used = call_usage if call_usage is not None else Usage(prompt_bound(texts), 0, estimated=True)
    response = EmbeddingResponse(
        model=answered,
        usage=used,
        count=len(texts),
        dimensions=dimensions if dimensions is not None else dims,
        provider=name,
        cost=price(answered, used, name),
    )
    return (texts or _text(attrs, oi.INPUT_VALUE)), response


def tool(attrs: Mapping[str, Any], span_name: str) -> tuple[str, Any, Any, str | None]:
    """A tool call's ``(name, input, output, call id)``."""
    name = _text(attrs, c.TOOL_NAME, oi.TOOL_NAME)
    if name is None:
        name = span_name.removeprefix("execute_tool ").strip() or span_name
    return (
        name,
        attrs.get(c.TOOL_ARGS, attrs.get(oi.INPUT_VALUE)),
        attrs.get(c.TOOL_RESULT, attrs.get(oi.OUTPUT_VALUE)),
        _text(attrs, c.TOOL_CALL_ID, oi.TOOL_CALL_ID),
    )


def retrieval(attrs: Mapping[str, Any]) -> tuple[Any, list[Any]]:
    """A retrieval's ``(query, results)``: the documents' contents where the span has them,
    else the documents as ``{"id", "score"}`` objects."""
    query = _text(attrs, c.RETRIEVAL_QUERY, oi.INPUT_VALUE)
    docs = _json(attrs.get(c.RETRIEVAL_DOCUMENTS))
    if not isinstance(docs, list):
        docs = oi.retrieval_documents(attrs)
    results = [
        d["content"] if isinstance(d, Mapping) and isinstance(d.get("content"), str) else d
        for d in docs
    ]
    return query, results


def run_input(attrs: Mapping[str, Any]) -> Any:
    """A run's input: OpenInference's ``input.value``, else the last user message's text."""
    value = _text(attrs, oi.INPUT_VALUE)
    if value is not None:
        return value
    messages = _messages(attrs.get(c.INPUT_MESSAGES))
    if messages:
        users = [m for m in messages if m["role"] == "user" and m["content"]]
        return users[-1]["content"] if users else None
    return None


def run_output(attrs: Mapping[str, Any]) -> Any:
    """A run's output: OpenInference's ``output.value``, pydantic-ai's ``final_result``, else
    the last output message's text."""
    value = _text(attrs, oi.OUTPUT_VALUE, "final_result")
    if value is not None:
        return value
    messages = _messages(attrs.get(c.OUTPUT_MESSAGES))
    if messages:
        return messages[-1]["content"]
    return None


def _llm_error_class(etype: str) -> type[LLMError]:
    """The ``LLMError`` subclass for an ``error.type`` (an HTTP status, or a code or class)."""
    lowered = etype.lower()
    if etype == "429" or "ratelimit" in lowered.replace("_", ""):
        return RateLimitError
    if "timeout" in lowered:
        return LLMTimeoutError
    if etype in ("401", "403") or "authentication" in lowered:
        return AuthenticationError
    if etype.isascii() and etype.isdigit() and etype.startswith("4"):
        return BadRequestError
    if etype.isascii() and etype.isdigit() and etype.startswith("5"):
        return ServerError
    return LLMError


def error(
    kind: str,
    attrs: Mapping[str, Any],
    description: str | None,
    events: Sequence[Any],
    *,
    provider_name: str | None = None,
    model_name: str | None = None,
) -> Exception:
    """The ``hookwire.errors`` exception a failed span stands for: an ``LLMError`` subclass
    for a model or embedding call (chosen from ``error.type``: ``429`` is a ``RateLimitError``,
    a ``5xx`` a ``ServerError``, ...), a ``ToolError`` for a tool, a ``HookwireError`` for a
    run. Its message names the span's error type and description (or its
    ``exception`` event's message), redacted as hookwire redacts errors."""
    etype = _text(attrs, c.ERROR_TYPE)
    message = description
    for event in events:
        if getattr(event, "name", None) == "exception":
            event_attrs = getattr(event, "attributes", None) or {}
            etype = etype or _text(event_attrs, c.EXCEPTION_TYPE)
            message = message or _text(event_attrs, c.EXCEPTION_MESSAGE)
            break
    text = c.redact(f"{etype or 'error'}: {message or 'the span ended with an error status'}")
    if kind == TOOL:
        return ToolError(text)
    if kind not in (LLM, EMBEDDING):
        return HookwireError(text)
    cls = _llm_error_class(etype or "")
    status = (
        int(etype) if etype and etype.isascii() and etype.isdigit() and len(etype) == 3 else None
    )
    return cls(text, status_code=status, provider=provider_name, model=model_name)
