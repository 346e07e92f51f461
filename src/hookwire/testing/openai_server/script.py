"""What the test server is told to answer: the script items, and what every endpoint shares
about a request (its words, its default answer, the API's error bodies)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

__all__ = [
    "ERROR_MESSAGES",
    "SCRIPT_TYPES",
    "Drop",
    "ErrorReply",
    "Malformed",
    "Raw",
    "Reply",
    "ScriptItem",
    "ToolCallReply",
    "Truncated",
    "counts",
    "error_body",
    "fmt_seconds",
    "split_words",
    "text_of",
    "tool_calls",
    "words_in",
]

_WORDS = re.compile(r"\s*\S+\s*|\s+")


def split_words(text: str) -> list[str]:
    """How the server cuts an answer into stream chunks: words with their trailing spaces."""
    return _WORDS.findall(text)


@dataclass(frozen=True)
class Reply:
    """A text answer. ``usage`` overrides the computed token counts (``prompt_tokens``,
    ``completion_tokens``, and ``cached_tokens`` / ``reasoning_tokens`` for the details;
    ``cache_creation_tokens`` for Anthropic's cache writes);
    ``delay`` waits that many seconds before answering."""

    text: str
    finish_reason: str = "stop"
    model: str | None = None
    usage: Mapping[str, int] | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class ToolCallReply:
    """The model asks to call tool ``name`` with ``arguments`` (a dict, or JSON text).

    ``more`` adds further calls in the same answer, as ``(name, arguments)`` pairs.
    """

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None
    more: Sequence[tuple[str, Mapping[str, Any] | str]] = ()
    delay: float = 0.0


@dataclass(frozen=True)
class ErrorReply:
    """An HTTP error with the API's error body; ``retry_after`` adds a ``Retry-After``."""

    status: int
    message: str = ""
    retry_after: float | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class Malformed:
    """HTTP 200 with a body (or, when streaming, a data line) that is not JSON."""

    body: str = "{this is not json"
    delay: float = 0.0


@dataclass(frozen=True)
class Drop:
    """Close the connection without finishing: after ``after`` content chunks of a stream of
    ``text``, or at once (no response at all) for a non-streamed call."""

    after: int = 2
    text: str = "This answer will be cut off before it is finished."
    delay: float = 0.0


@dataclass(frozen=True)
class Truncated:
    """A stream that ends cleanly after ``after`` content chunks, with no end event (no
    ``finish_reason`` nor ``[DONE]``; no ``response.completed``): a proxy cutting the body
    short. Non-streamed calls get a body that says the answer is unfinished."""

    after: int = 2
    text: str = "This answer stops in the middle of a sentence and never finishes."
    delay: float = 0.0


@dataclass(frozen=True)
class Raw:
    """HTTP 200 with exactly ``body``: the SSE text when the request streams, else the JSON.
    ``hold``: seconds a stream's body is kept open after ``body`` before it ends."""

    body: str
    delay: float = 0.0
    hold: float = 0.0


#: Anything ``OpenAIServer.script`` accepts.
ScriptItem: TypeAlias = (
    str | Reply | ToolCallReply | ErrorReply | Malformed | Drop | Truncated | Raw
)
SCRIPT_TYPES = (str, Reply, ToolCallReply, ErrorReply, Malformed, Drop, Truncated, Raw)

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    422: ("invalid_request_error", None),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}

ERROR_MESSAGES = {
    400: "Invalid request.",
    401: "Incorrect API key provided.",
    403: "Forbidden.",
    404: "The model does not exist or you do not have access to it.",
    429: "Rate limit reached. Please try again later.",
    500: "The server had an error while processing your request.",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
}


def error_body(status: int, message: str) -> dict[str, Any]:
    """The API's error body for an HTTP ``status``."""
    kind, code = _ERROR_TYPES.get(status, ("server_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def fmt_seconds(value: float) -> str:
    """A ``Retry-After`` value: whole seconds without a decimal point."""
    return str(int(value)) if float(value).is_integer() else str(value)


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or a list of parts with ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def words_in(texts: Sequence[str]) -> int:
    """Prompt tokens of some texts: their words, at least 1."""
    return max(sum(len(t.split()) for t in texts), 1)


def counts(
    prompt: int, completion: int, override: Mapping[str, int] | None
) -> tuple[int, int, int, int]:
    """(prompt, completion, cached, reasoning) tokens, with a ``Reply.usage`` override."""
    if not override:
        return prompt, completion, 0, 0
    return (
        int(override.get("prompt_tokens", prompt)),
        int(override.get("completion_tokens", completion)),
        int(override.get("cached_tokens", 0)),
        int(override.get("reasoning_tokens", 0)),
    )


def tool_calls(item: ToolCallReply, next_id: Callable[[], str]) -> list[tuple[str, str, str]]:
    """(call id, name, JSON arguments) of each call ``item`` asks for."""
    out = []
    for i, (name, arguments) in enumerate(((item.name, item.arguments), *item.more)):
        args = arguments if isinstance(arguments, str) else json.dumps(dict(arguments))
        call_id = item.id if (i == 0 and item.id) else f"call_{next_id()}"
        out.append((call_id, name, args))
    return out
