"""``POST /v1/messages`` of the test server: Anthropic's Messages API, a JSON ``message`` or
its server-sent events as Anthropic sends them (``message_start``, ``content_block_start``,
``ping``, ``content_block_delta``, ``content_block_stop``, ``message_delta`` with the usage,
``message_stop``), and its errors in Anthropic's shape."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from .script import Drop, Reply, ToolCallReply, Truncated, split_words, text_of, tool_calls
from .wire import Endpoint

__all__ = ["Messages", "anthropic_error_body"]

#: HTTP status -> Anthropic's error type and its usual message.
_ERRORS: Mapping[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error."),
    529: ("overloaded_error", "Overloaded"),
}

#: ``Reply.finish_reason`` (OpenAI's words, the script's default) -> Anthropic's stop reason.
_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def anthropic_error_body(status: int, message: str) -> dict[str, Any]:
    """Anthropic's error body for an HTTP ``status`` (``message``: the default one if empty)."""
    kind, default = _ERRORS.get(status, ("api_error", "Internal server error."))
    return {
        "type": "error",
        "error": {"type": kind, "message": message or default},
        "request_id": "req_hookwire_test",
    }


def _text(content: Any) -> str:
    """A message's text, a tool result's content included."""
    if isinstance(content, list):
        return " ".join(
            _text(part.get("content")) if part.get("type") == "tool_result" else text_of([part])
            for part in content
            if isinstance(part, dict)
        )
    return text_of(content)


def _default_answer(messages: Any) -> str:
    listed = [m for m in messages or [] if isinstance(m, dict)]
    if listed and listed[-1].get("role") == "user":
        content = listed[-1].get("content")
        if isinstance(content, list) and any(
            isinstance(p, dict) and p.get("type") == "tool_result" for p in content
        ):
            return "The tool returned: " + _text(content)
        return "You said: " + _text(content)
    return "Hello! How can I help you today?"


class Messages(Endpoint):
    """The Messages endpoint (one per request)."""

    #: How this endpoint's errors look (the handler's faults use it).
    error_body = staticmethod(anthropic_error_body)

    def _usage(self, output: int, override: Mapping[str, int] | None) -> dict[str, int]:
        texts = [_text(m.get("content")) for m in self.body.get("messages") or []]
        texts.append(_text(self.body.get("system")))
        prompt = max(sum(len(t.split()) for t in texts), 1)
        over = override or {}
        prompt = int(over.get("prompt_tokens", prompt))
        read = int(over.get("cached_tokens", 0))
        written = int(over.get("cache_creation_tokens", 0))
        return {
            "input_tokens": max(prompt - read - written, 0),
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": read,
            "output_tokens": int(over.get("completion_tokens", output)),
        }

    def _message(self, content: list[Any], stop: str | None, usage: dict[str, int]) -> Any:
        return {
            "id": f"msg_{self.w.next_id()}",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }

    def answer(self, item: Reply | ToolCallReply | Drop | Truncated | None, stream: bool) -> None:
        """Answer ``item`` (``None``: the default answer), as JSON or streamed."""
        if isinstance(item, ToolCallReply):
            blocks = [
                {"type": "tool_use", "id": i.replace("call_", "toolu_"), "name": n, "input": a}
                for i, n, a in tool_calls(item, self.w.next_id)
            ]
            self._tools(blocks, stream)
            return
        if isinstance(item, (Drop, Truncated)):
            reply = Reply(item.text)
        else:
            reply = item or Reply(_default_answer(self.body.get("messages")))
            self.model = reply.model or self.model
        words = split_words(reply.text)
        usage = self._usage(len(words), reply.usage)
        stop = _STOP.get(reply.finish_reason, reply.finish_reason)
        if not stream:
            if isinstance(item, (Drop, Truncated)):
                stop = "max_tokens"  # a JSON answer that says it is unfinished
            self.w.send_json(
                200, self._message([{"type": "text", "text": reply.text}], stop, usage)
            )
            return
        cut = item if isinstance(item, (Drop, Truncated)) else None
        self._start(usage)
        self._event("content_block_start", index=0, content_block={"type": "text", "text": ""})
        self._event("ping")
        for word in words[: cut.after] if cut is not None else words:
            self._delta(0, {"type": "text_delta", "text": word})
        if isinstance(cut, Drop):
            self.w.drop()  # no end: the client sees the connection break
            return
        if cut is None:
            self._event("content_block_stop", index=0)
            self._end(stop, usage)
        self.w.end_stream()

    def _tools(self, blocks: list[dict[str, Any]], stream: bool) -> None:
        pieces = [
            json.dumps(b["input"]) if not isinstance(b["input"], str) else b["input"]
            for b in blocks
        ]
        usage = self._usage(sum(len(split_words(p)) for p in pieces), None)
        for block, text in zip(blocks, pieces, strict=True):
            block["input"] = json.loads(text)
        if not stream:
            self.w.send_json(200, self._message(blocks, "tool_use", usage))
            return
        self._start(usage)
        for index, (block, text) in enumerate(zip(blocks, pieces, strict=True)):
            self._event("content_block_start", index=index, content_block={**block, "input": {}})
            # The input arrives in pieces, as the real API sends it.
            for start in range(0, len(text), 8):
                piece = {"type": "input_json_delta", "partial_json": text[start : start + 8]}
                self._delta(index, piece)
            self._event("content_block_stop", index=index)
        self._end("tool_use", usage)
        self.w.end_stream()

    def _event(self, kind: str, **fields: Any) -> None:
        self.w.event({"type": kind, **fields}, name=kind)

    def _delta(self, index: int, delta: dict[str, Any]) -> None:
        if self.w.chunk_delay:
            time.sleep(self.w.chunk_delay)
        self._event("content_block_delta", index=index, delta=delta)

    def _start(self, usage: dict[str, int]) -> None:
        self.w.start_stream()
        # message_start counts the input; the output is counted by message_delta.
        self._event("message_start", message=self._message([], None, {**usage, "output_tokens": 1}))

    def _end(self, stop: str | None, usage: dict[str, int]) -> None:
        self._event(
            "message_delta", delta={"stop_reason": stop, "stop_sequence": None}, usage=usage
        )
        self._event("message_stop")
