"""The OpenTelemetry GenAI semantic conventions as ``OpenTelemetryCallback`` writes them.

Attribute names, well-known values, provider names, and the JSON shapes of messages,
tool definitions and retrieval documents. Names are literals (not imported from
``opentelemetry-semantic-conventions``): the incubating module moves between releases, and the
hot path should not depend on its layout. ``tests/callbacks/test_otel_conventions.py`` checks
every name here against the conventions' text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from ..events import LLMResponse
from ..redaction import Redactor, default_redactor

__all__ = [
    "PROVIDER_NAMES",
    "REQUEST_PARAMS",
    "error_type",
    "input_messages",
    "is_agent",
    "json_dumper",
    "json_text",
    "message_parts",
    "output_messages",
    "output_type",
    "provider_name",
    "redact",
    "retrieval_documents",
    "tool_definitions",
]

#: The tracer (instrumentation scope) name of the spans ``OpenTelemetryCallback`` makes: the
#: mark ``HookwireSpanProcessor`` knows them by, so that hookwire never reads its own spans back.
TRACER_NAME: Final = "hookwire"

OPERATION: Final = "gen_ai.operation.name"

PROVIDER: Final = "gen_ai.provider.name"
REQUEST_MODEL: Final = "gen_ai.request.model"
REQUEST_STREAM: Final = "gen_ai.request.stream"
RESPONSE_MODEL: Final = "gen_ai.response.model"
RESPONSE_ID: Final = "gen_ai.response.id"
FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
OUTPUT_TYPE: Final = "gen_ai.output.type"
INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
CACHE_CREATION_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
REASONING_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
TOKEN_TYPE: Final = "gen_ai.token.type"
TTFC: Final = "gen_ai.response.time_to_first_chunk"
CONVERSATION_ID: Final = "gen_ai.conversation.id"
AGENT_NAME: Final = "gen_ai.agent.name"
WORKFLOW_NAME: Final = "gen_ai.workflow.name"
TOOL_NAME: Final = "gen_ai.tool.name"
TOOL_TYPE: Final = "gen_ai.tool.type"
TOOL_DESCRIPTION: Final = "gen_ai.tool.description"
TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
TOOL_ARGS: Final = "gen_ai.tool.call.arguments"
TOOL_RESULT: Final = "gen_ai.tool.call.result"
TOOL_DEFINITIONS: Final = "gen_ai.tool.definitions"
INPUT_MESSAGES: Final = "gen_ai.input.messages"
OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
RETRIEVAL_QUERY: Final = "gen_ai.retrieval.query.text"
RETRIEVAL_DOCUMENTS: Final = "gen_ai.retrieval.documents"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
USER_ID: Final = "user.id"
SESSION_ID: Final = "session.id"
OPENAI_API_TYPE: Final = "openai.api.type"
OPENAI_REQUEST_TIER: Final = "openai.request.service_tier"
OPENAI_RESPONSE_TIER: Final = "openai.response.service_tier"
OPENAI_FINGERPRINT: Final = "openai.response.system_fingerprint"
ERROR_TYPE: Final = "error.type"
EXCEPTION_TYPE: Final = "exception.type"
EXCEPTION_MESSAGE: Final = "exception.message"
EXCEPTION_STACKTRACE: Final = "exception.stacktrace"
#: The opt-in event that carries a call's content (``capture_content="event"`` or ``"both"``).
DETAILS_EVENT: Final = "gen_ai.client.inference.operation.details"
TTFC_METRIC: Final = "gen_ai.client.operation.time_to_first_chunk"
TPOC_METRIC: Final = "gen_ai.client.operation.time_per_output_chunk"

#: ``invocation_params`` key -> span attribute, for the request parameters the conventions name.
REQUEST_PARAMS: Final[Mapping[str, str]] = {
    "temperature": "gen_ai.request.temperature",
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "seed": "gen_ai.request.seed",
    "n": "gen_ai.request.choice.count",
    "stop": "gen_ai.request.stop_sequences",
}

#: The conventions' well-known ``gen_ai.provider.name`` values.
PROVIDER_NAMES: Final = frozenset(
    {
        "anthropic", "aws.bedrock", "azure.ai.inference", "azure.ai.openai", "cohere",
        "deepseek", "gcp.gemini", "gcp.gen_ai", "gcp.vertex_ai", "groq", "ibm.watsonx.ai",
        "mistral_ai", "openai", "perplexity", "x_ai",
    }
)  # fmt: skip

#: What clients, LangChain and hookwire's own integrations call a provider -> the conventions'
#: name. Anything else is passed through as a custom value, as the conventions allow.
_PROVIDER_ALIASES: Final[Mapping[str, str]] = {
    "azure": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "azure-openai": "azure.ai.openai",
    "azureopenai": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "azure-ai-inference": "azure.ai.inference",
    "bedrock": "aws.bedrock",
    "amazon_bedrock": "aws.bedrock",
    "aws": "aws.bedrock",
    "vertexai": "gcp.vertex_ai",
    "vertex_ai": "gcp.vertex_ai",
    "vertex": "gcp.vertex_ai",
    "google_vertexai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "google_genai": "gcp.gen_ai",
    "google": "gcp.gen_ai",
    "mistral": "mistral_ai",
    "mistralai": "mistral_ai",
    "xai": "x_ai",
    "watsonx": "ibm.watsonx.ai",
    "ibm": "ibm.watsonx.ai",
}

#: What a provider name becomes when hookwire was not told one: the conventions' fallback.
OTHER_PROVIDER: Final = "_OTHER"


def provider_name(provider: Any) -> str:
    """``provider`` (as a client or integration names it) as ``gen_ai.provider.name``."""
    if not provider or not isinstance(provider, str):
        return OTHER_PROVIDER
    if provider in PROVIDER_NAMES:
        return provider
    key = provider.strip().lower()
    return _PROVIDER_ALIASES.get(key, key)


def output_type(response_format: Any) -> str | None:
    """The ``gen_ai.output.type`` a request's ``response_format`` asks for (``None``: none)."""
    kind = response_format.get("type") if isinstance(response_format, Mapping) else response_format
    if kind in ("json_object", "json_schema", "json"):
        return "json"
    if kind == "text":
        return "text"
    if isinstance(response_format, type):  # a pydantic model given to a structured-output API
        return "json"
    return None


def error_type(error: Any) -> str:
    """``error.type``: the provider's error code (its HTTP status) when the error carries one,
    else the exception's qualified name; a non-exception value as its text."""
    if not isinstance(error, BaseException):
        return str(error)
    for source in (error, error.__cause__):
        code = getattr(source, "code", None)
        if isinstance(code, str) and code:
            return code
    status = getattr(error, "status_code", None)
    if isinstance(status, int):
        return str(status)
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _part(item: Any) -> dict[str, Any]:
    """One content part in the conventions' shape: text, or an image/audio/file as ``uri``
    (a link) or ``blob`` (inline base64 data)."""
    if isinstance(item, str):
        return {"type": "text", "content": item}
    if not isinstance(item, Mapping):
        return {"type": "text", "content": str(item)}
    kind = item.get("type")
    if kind == "text":
        return {"type": "text", "content": item.get("text", "")}
    for key, modality in (("image_url", "image"), ("input_audio", "audio"), ("file", "file")):
        if kind == key or key in item:
            source = item.get(key)
            url = source.get("url") if isinstance(source, Mapping) else source
            if isinstance(url, str) and url.startswith("data:") and "," in url:
                head, data = url[5:].split(",", 1)
                return {
                    "type": "blob",
                    "modality": modality,
                    "mime_type": head.split(";", 1)[0] or None,
                    "content": data,
                }
            if isinstance(url, str):
                return {"type": "uri", "modality": modality, "uri": url}
            if isinstance(source, Mapping) and "data" in source:
                fmt = source.get("format")
                return {
                    "type": "blob",
                    "modality": modality,
                    "mime_type": f"{modality}/{fmt}" if fmt else None,
                    "content": source["data"],
                }
    return {"type": str(kind) if kind else "text", "content": str(item)}


def message_parts(content: Any) -> list[dict[str, Any]]:
    """A message's content (a text, or a list of content parts) as the conventions' parts."""
    if content is None or content == "":
        return []
    if isinstance(content, list):
        return [_part(item) for item in content]
    return [_part(content if isinstance(content, (str, Mapping)) else str(content))]


def tool_definitions(tools: Any) -> list[dict[str, Any]] | None:
    """``gen_ai.tool.definitions`` of a request: its tools (schemas, or the names hookwire's
    ``invocation_params`` keep) as ``{"type": "function", "name": ...}`` objects."""
    if not isinstance(tools, (list, tuple)) or not tools:
        return None
    out: list[dict[str, Any]] = []
    for tool in tools:
        if isinstance(tool, str):
            out.append({"type": "function", "name": tool})
        elif isinstance(tool, Mapping):
            fn = tool.get("function", tool)
            entry: dict[str, Any] = {"type": tool.get("type", "function"), "name": fn.get("name")}
            for key in ("description", "parameters"):
                if fn.get(key) is not None:
                    entry[key] = fn[key]
            out.append(entry)
    return out


def retrieval_documents(results: Any) -> list[dict[str, Any]]:
    """What a memory recall or retriever gave, as ``gen_ai.retrieval.documents``: objects with
    ``id`` and ``score`` (and ``content``, which the caller adds only with content capture).

    A result that is a mapping keeps its ``id`` and ``score``; a plain text gets its rank as
    ``id`` and no score (hookwire's memories rank by relevance without a score)."""
    out: list[dict[str, Any]] = []
    for rank, item in enumerate(results or ()):
        if isinstance(item, Mapping):
            doc: dict[str, Any] = {"id": str(item.get("id", rank))}
            score = item.get("score")
            if isinstance(score, (int, float)):
                doc["score"] = float(score)
            content = item.get("content", item.get("page_content"))
        else:
            doc = {"id": str(getattr(item, "id", None) or rank)}
            score = getattr(item, "score", None)
            if isinstance(score, (int, float)):
                doc["score"] = float(score)
            content = item if isinstance(item, str) else getattr(item, "page_content", None)
        if content is not None:
            doc["content"] = content
        out.append(doc)
    return out


def json_text(value: Any) -> str:
    """``value`` as JSON text, its secrets redacted (what FileLog would write of it)."""
    return _redact_json(orjson.dumps(value, default=str)).decode()


_json_text: Final = json_text


def input_messages(prompt: Any, dump: Callable[[Any], str] | None = None) -> str:
    """``prompt`` (a text or a list of chat messages) as ``gen_ai.input.messages`` JSON;
    ``dump`` turns it into text (``json_text`` by default: a handler's own adds its mask)."""
    json_text = dump or _json_text
    if not isinstance(prompt, (list, tuple)):
        return json_text([{"role": "user", "parts": message_parts(prompt)}])
    out: list[dict[str, Any]] = []
    for m in prompt:
        if not isinstance(m, Mapping):
            out.append({"role": "user", "parts": message_parts(str(m))})
            continue
        role = m.get("role", "user")
        if role == "tool":
            parts = [
                {
                    "type": "tool_call_response",
                    "id": m.get("tool_call_id"),
                    "response": m.get("content"),
                }
            ]
        else:
            parts = message_parts(m.get("content"))
            for tc in m.get("tool_calls") or ():
                fn = tc.get("function", tc) if isinstance(tc, Mapping) else {}
                parts.append(
                    {
                        "type": "tool_call",
                        "id": tc.get("id") if isinstance(tc, Mapping) else None,
                        "name": fn.get("name"),
                        "arguments": fn.get("arguments"),
                    }
                )
        out.append({"role": role, "parts": parts})
    return json_text(out)


def output_messages(response: LLMResponse, dump: Callable[[Any], str] | None = None) -> str:
    """``response`` as ``gen_ai.output.messages`` JSON (``dump``: as for ``input_messages``)."""
    json_text = dump or _json_text
    parts = message_parts(response.content)
    for tc in response.tool_calls:
        parts.append({"type": "tool_call", "id": tc.id, "name": tc.name, "arguments": tc.arguments})
    message: dict[str, Any] = {"role": "assistant", "parts": parts}
    # A stream cut short has no finish reason: none is made up.
    if response.finish_reason:
        message["finish_reason"] = response.finish_reason
    return json_text([message])


#: ``on_run_start``'s ``kind`` values that are agents (LangChain's agents, LangGraph graphs).
_AGENT_KINDS: Final = frozenset({"agent", "graph"})


def is_agent(name: str, kw: Mapping[str, Any]) -> bool:
    """Whether a run is an agent's: its ``kind`` says so, or (no kind given) it is the run
    of the agent the request context names (``hookwire.agents`` sets ``agent=``)."""
    kind = kw.get("kind")
    if kind is not None:
        return kind in _AGENT_KINDS
    agent = kw.get("agent")
    return agent is not None and agent == name


def json_dumper(mask: Callable[[str], str] | None) -> Callable[[Any], str]:
    """``json_text``, or with ``mask`` a function that also masks every string of the value."""
    if mask is None:
        return json_text
    walker = Redactor(mask)

    def dump(value: Any) -> str:
        return json_text(walker.walk(orjson.loads(orjson.dumps(value, default=str))))

    return dump


# Secrets never reach the tracing backend: errors, and content when it is captured, go through
# FileLog's redactor (hookwire.redaction).
redact: Final = default_redactor().text
_redact_json: Final = default_redactor().json_bytes
