"""``LocalLLM``: an offline, deterministic model for demos, examples and tests.

It needs no network and no weights: it answers from rules, streams its answer word by word,
reports usage (one token a word), asks for a tool when it is offered tools and the prompt
names one, and can be told to fail transiently a number of times, so retries can be shown.

How it answers the last message:

1. after a tool result: ``"<tool name> says: <result>"``;
2. when it is offered tools and the last user message contains a tool's name, or every word
   of it (``order_status``: "order" and "status"), it calls that tool, filling the arguments
   from the message (see ``LocalLLM.tool_arguments``);
3. the first of ``rules`` (``(regex, answer)`` pairs, tried in order, case-insensitive)
   that matches the last user message; ``answer`` may use ``{0}``, ``{1}``... for the
   regex's groups, ``{memory}`` for the most relevant thing memory recalled (the user's
   words of a stored exchange) and ``{memories}`` for all of it;
4. a greeting for a greeting; else ``"You said: <message>"`` (with what memory recalled,
   when the run put it in a system message starting ``"Relevant memory:"``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from ..dispatch import Callbacks
from ..errors import (
    ConfigurationError,
    LLMConnectionError,
    LLMTimeoutError,
    RateLimitError,
    ServerError,
    StreamInterrupted,
    TransientLLMError,
)
from ..events import LLMResponse, ToolCall, Usage
from .engine import BaseLLM
from .protocol import LLMRequest, StreamEnd, content_text
from .retry import RetryPolicy

__all__ = ["LocalLLM"]

_WORDS = re.compile(r"\s*\S+\s*|\s+")
_GREETING = re.compile(r"^\s*(hello|hi|hey|good (morning|afternoon|evening)|привет)\b", re.I)
_ID = re.compile(r"\b(?:[A-Z]{2,}-?\d+|#?\d{3,})\b")
_INT = re.compile(r"-?\d+")
_NUM = re.compile(r"-?\d+(?:\.\d+)?")
MEMORY_PREFIX = "Relevant memory:"

_FAILURES: dict[str, Callable[[], TransientLLMError]] = {
    "rate_limit": lambda: RateLimitError(
        "local model: simulated rate limit (HTTP 429)", retry_after=0.0, status_code=429
    ),
    "server": lambda: ServerError(
        "local model: simulated server error (HTTP 500)", status_code=500
    ),
    "timeout": lambda: LLMTimeoutError("local model: simulated timeout"),
    "connection": lambda: LLMConnectionError("local model: simulated dropped connection"),
    "stream": lambda: LLMConnectionError("local model: simulated connection drop mid-stream"),
}


def _text(content: Any) -> str:
    # Spaces between a message's parts: the model counts and matches words.
    return content_text(content, " ")


class LocalLLM(BaseLLM):
    """A deterministic offline model (see the module docstring for how it answers).

    ``LocalLLM(model="local-echo", *, rules=(), fail_times=0, failure="rate_limit",
    token_delay=0.0, callbacks=None, max_retries=2, retry=None)``: ``fail_times`` makes the
    next that many attempts fail with ``failure`` (``"rate_limit"``, ``"server"``,
    ``"timeout"``, ``"connection"``, or ``"stream"``: a streamed answer that breaks after two
    tokens); ``fail(n, kind)`` arms more failures later. ``token_delay`` sleeps between
    streamed tokens, to make streaming visible.
    """

    provider = "local"

    def __init__(
        self,
        model: str = "local-echo",
        *,
        rules: Iterable[tuple[str, str]] = (),
        fail_times: int = 0,
        failure: str = "rate_limit",
        token_delay: float = 0.0,
        callbacks: Callbacks = None,
        max_retries: int = 2,
        retry: RetryPolicy | None = None,
        **defaults: Any,
    ) -> None:
        super().__init__(
            model=model, callbacks=callbacks, max_retries=max_retries, retry=retry, **defaults
        )
        self.rules = [(re.compile(p, re.I), a) for p, a in rules]
        self.token_delay = token_delay
        self._failures: list[str] = []
        self.calls = 0
        self._ids = itertools.count(1)
        self.fail(fail_times, failure)

    def fail(self, times: int, kind: str = "rate_limit") -> LocalLLM:
        """Make the next ``times`` attempts fail with ``kind``; returns the model."""
        if kind not in _FAILURES:
            raise ConfigurationError(
                f"unknown failure {kind!r}; use one of {', '.join(sorted(_FAILURES))}"
            )
        if not isinstance(times, int) or times < 0:
            raise ConfigurationError(f"fail times must be an int >= 0, not {times!r}")
        self._failures.extend([kind] * times)
        return self

    # -- answering ------------------------------------------------------------------------------

    @staticmethod
    def tool_arguments(schema: Mapping[str, Any], message: str) -> dict[str, Any]:
        """Arguments for a tool from a user message, by JSON-schema type: strings get an id
        (``ORD-123``, ``#12345``) or a quoted text or the whole message; integers and numbers
        the first number; booleans ``False``; only required parameters are filled."""
        params = schema.get("parameters") or {}
        props: Mapping[str, Any] = params.get("properties") or {}
        required = params.get("required") or list(props)
        quoted = re.search(r"[\"'“«]([^\"'”»]+)[\"'”»]", message)
        out: dict[str, Any] = {}
        for name in required:
            kind = (props.get(name) or {}).get("type", "string")
            if kind == "integer":
                m = _INT.search(message)
                out[name] = int(m.group()) if m else 0
            elif kind == "number":
                m = _NUM.search(message)
                out[name] = float(m.group()) if m else 0.0
            elif kind == "boolean":
                out[name] = False
            elif kind == "array":
                out[name] = []
            elif kind == "object":
                out[name] = {}
            else:
                m = _ID.search(message)
                out[name] = m.group() if m else (quoted.group(1) if quoted else message.strip())
        return out

    def _pick_tool(self, request: LLMRequest, message: str) -> ToolCall | None:
        if not request.tools:
            return None
        said = set(re.findall(r"\w+", message.lower()))
        lowered = message.lower()
        for schema in request.tools:
            fn = schema.get("function") or {}
            name = str(fn.get("name", ""))
            words = [w for w in re.split(r"[_\-\s]+", name.lower()) if w]
            if name.lower() in lowered or (words and all(w in said for w in words)):
                args = self.tool_arguments(fn, message)
                return ToolCall(
                    id=f"call_local_{next(self._ids)}", name=name, arguments=json.dumps(args)
                )
        return None

    def answer(self, request: LLMRequest) -> tuple[str, tuple[ToolCall, ...]]:
        """The text (or tool calls) this model gives to ``request``."""
        messages = request.messages
        last = messages[-1]
        if last.get("role") == "tool":
            name = last.get("name") or self._tool_name(messages, last.get("tool_call_id"))
            return f"{name} says: {_text(last.get('content'))}", ()
        user = next(
            (_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
        )
        memory = [
            item.strip()
            for m in messages
            if m.get("role") == "system" and _text(m.get("content")).startswith(MEMORY_PREFIX)
            for item in _text(m.get("content"))[len(MEMORY_PREFIX) :].split(" | ")
            if item.strip()
        ]
        recalled = "; ".join(memory)
        # The most relevant memory, as the user said it (runs store "User: ...\nAssistant: ...").
        first = memory[0].splitlines()[0].removeprefix("User:").strip() if memory else "nothing"
        call = self._pick_tool(request, user)
        if call is not None:
            return "", (call,)
        for pattern, reply in self.rules:
            m = pattern.search(user)
            if m:
                return reply.format(*m.groups(), memory=first, memories=recalled or "nothing"), ()
        if _GREETING.search(user):
            return "Hello! How can I help you today?", ()
        if recalled:
            return f"You said: {user} (I remember: {recalled})", ()
        return f"You said: {user}", ()

    @staticmethod
    def _tool_name(messages: Sequence[Mapping[str, Any]], call_id: Any) -> str:
        for m in reversed(messages):
            for c in m.get("tool_calls") or ():
                if c.get("id") == call_id:
                    return str((c.get("function") or {}).get("name", "tool"))
        return "tool"

    def _usage(self, request: LLMRequest, completion: int) -> Usage:
        prompt = sum(len(_text(m.get("content")).split()) for m in request.messages)
        return Usage(prompt_tokens=max(prompt, 1), completion_tokens=completion)

    def _next_failure(self) -> str | None:
        self.calls += 1
        return self._failures.pop(0) if self._failures else None

    def _response(self, request: LLMRequest, text: str, calls: tuple[ToolCall, ...]) -> LLMResponse:
        completion = (
            len(_WORDS.findall(text)) if text else sum(len(c.arguments.split()) for c in calls)
        )
        return LLMResponse(
            content=text,
            usage=self._usage(request, completion),
            model=request.model,
            finish_reason="tool_calls" if calls else "stop",
            tool_calls=calls,
            provider=self.provider,
            id=f"local-{next(self._ids)}",
        )

    # -- the provider's part ----------------------------------------------------------------------

    def _complete(self, request: LLMRequest) -> LLMResponse:
        failure = self._next_failure()
        if failure is not None:
            raise _FAILURES[failure]()
        text, calls = self.answer(request)
        return self._response(request, text, calls)

    def _pieces(self, request: LLMRequest) -> tuple[list[str], StreamEnd, TransientLLMError | None]:
        failure = self._next_failure()
        text, calls = self.answer(request)
        words = _WORDS.findall(text)
        if failure is not None and failure != "stream":
            return [], StreamEnd(None), _FAILURES[failure]()
        if failure == "stream":
            return (
                words[:2],
                StreamEnd(None),
                StreamInterrupted(
                    "local model: simulated connection drop mid-stream", partial="".join(words[:2])
                ),
            )
        usage = self._usage(request, len(words) if text else 1)
        end = StreamEnd(
            "tool_calls" if calls else "stop",
            usage,
            request.model,
            f"local-{next(self._ids)}",
            calls,
        )
        return words, end, None

    def _stream(self, request: LLMRequest) -> Iterator[str | StreamEnd]:
        words, end, error = self._pieces(request)
        for w in words:
            if self.token_delay:
                time.sleep(self.token_delay)
            yield w
        if error is not None:
            raise error
        yield end

    async def _acomplete(self, request: LLMRequest) -> LLMResponse:
        return self._complete(request)

    async def _astream(self, request: LLMRequest) -> AsyncIterator[str | StreamEnd]:
        words, end, error = self._pieces(request)
        for w in words:
            if self.token_delay:
                await asyncio.sleep(self.token_delay)
            yield w
        if error is not None:
            raise error
        yield end
