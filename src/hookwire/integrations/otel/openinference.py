"""OpenInference's span attributes (Arize Phoenix's conventions), as ``HookwireSpanProcessor``
reads them.

OpenInference flattens lists into numbered keys (``llm.input_messages.0.message.role``); the
readers here turn them back into lists. The names are literals, as in
``hookwire.callbacks.otel_conventions``: the processor should not need
``openinference-semantic-conventions`` installed to read spans that other packages wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "embedding_texts",
    "indexed",
    "input_messages",
    "output_message",
    "retrieval_documents",
]

SPAN_KIND: Final = "openinference.span.kind"
MODEL_NAME: Final = "llm.model_name"
EMBEDDING_MODEL_NAME: Final = "embedding.model_name"
PROVIDER: Final = "llm.provider"
SYSTEM: Final = "llm.system"
PROMPT_TOKENS: Final = "llm.token_count.prompt"
COMPLETION_TOKENS: Final = "llm.token_count.completion"
TOTAL_TOKENS: Final = "llm.token_count.total"
CACHE_READ_TOKENS: Final = "llm.token_count.prompt_details.cache_read"
REASONING_TOKENS: Final = "llm.token_count.completion_details.reasoning"
INVOCATION_PARAMETERS: Final = "llm.invocation_parameters"
INPUT_VALUE: Final = "input.value"
OUTPUT_VALUE: Final = "output.value"
OUTPUT_MIME_TYPE: Final = "output.mime_type"
TOOL_NAME: Final = "tool.name"
TOOL_CALL_ID: Final = "tool_call.id"
SESSION_ID: Final = "session.id"
USER_ID: Final = "user.id"

_INPUT_MESSAGES: Final = "llm.input_messages."
_OUTPUT_MESSAGES: Final = "llm.output_messages."
_EMBEDDINGS: Final = "embedding.embeddings."
_DOCUMENTS: Final = "retrieval.documents."


def indexed(attrs: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    """The numbered entries under ``prefix`` (``"llm.input_messages."``) in index order, each
    a dict of the rest of its keys (``{"message.role": "user", "message.content": "hi"}``).

    A scan of the span's keys: numbering may start anywhere (the Responses API's instrumentation
    starts its input at 1) and may have gaps."""
    found: dict[int, dict[str, Any]] = {}
    n = len(prefix)
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        index, _, rest = key[n:].partition(".")
        if not index.isdigit() or not rest:
            continue
        found.setdefault(int(index), {})[rest] = value
    return [found[i] for i in sorted(found)]


def _content(entry: Mapping[str, Any]) -> str | None:
    """A message's text: ``message.content``, else its text parts joined."""
    content = entry.get("message.content")
    if isinstance(content, str):
        return content
    texts = [
        value
        for key, value in sorted(entry.items())
        if key.startswith("message.contents.")
        and key.endswith(".message_content.text")
        and isinstance(value, str)
    ]
    return "".join(texts) if texts else None


def input_messages(attrs: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """``llm.input_messages.*`` as OpenAI-style message dicts (``None``: none on the span)."""
    entries = indexed(attrs, _INPUT_MESSAGES)
    if not entries:
        return None
    out: list[dict[str, Any]] = []
    for entry in entries:
        message: dict[str, Any] = {"role": str(entry.get("message.role") or "user")}
        message["content"] = _content(entry)
        call_id = entry.get("message.tool_call_id")
        if call_id is not None:
            message["tool_call_id"] = call_id
        out.append(message)
    return out


def output_message(attrs: Mapping[str, Any]) -> tuple[str | None, list[tuple[str, str, str]]]:
    """The first ``llm.output_messages`` entry: its text and its tool calls as
    ``(id, name, arguments)`` (``(None, [])``: none on the span)."""
    entries = indexed(attrs, _OUTPUT_MESSAGES)
    if not entries:
        return None, []
    entry = entries[0]
    calls = indexed(entry, "message.tool_calls.")
    tools = [
        (
            str(call.get("tool_call.id") or ""),
            str(call.get("tool_call.function.name") or ""),
            str(call.get("tool_call.function.arguments") or "{}"),
        )
        for call in calls
    ]
    return _content(entry), tools


def embedding_texts(attrs: Mapping[str, Any]) -> tuple[list[str], int | None]:
    """The texts of ``embedding.embeddings.*`` and the dimension of its first vector."""
    entries = indexed(attrs, _EMBEDDINGS)
    texts = [e["embedding.text"] for e in entries if isinstance(e.get("embedding.text"), str)]
    dims: int | None = None
    if entries:
        vector = entries[0].get("embedding.vector")
        if isinstance(vector, (list, tuple)):
            dims = len(vector)
    return texts, dims


def retrieval_documents(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``retrieval.documents.*`` as ``{"id", "content", "score"}`` dicts (what is there)."""
    out: list[dict[str, Any]] = []
    for entry in indexed(attrs, _DOCUMENTS):
        doc: dict[str, Any] = {}
        for key, name in (
            ("document.id", "id"),
            ("document.content", "content"),
            ("document.score", "score"),
        ):
            if key in entry:
                doc[name] = entry[key]
        out.append(doc)
    return out
