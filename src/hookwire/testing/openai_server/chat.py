"""``POST /v1/chat/completions`` of the test server: ``chat.completion`` JSON, or its
``chat.completion.chunk`` events."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .script import (
    Drop,
    Reply,
    ToolCallReply,
    Truncated,
    counts,
    split_words,
    text_of,
    tool_calls,
    words_in,
)
from .wire import Endpoint

__all__ = ["ChatCompletions", "default_answer"]


def default_answer(messages: Any) -> str:
    """The answer with no script: the last user message echoed (or a tool's result)."""
    listed = [m for m in messages or [] if isinstance(m, dict)]
    if listed and listed[-1].get("role") == "tool":
        return "The tool returned: " + text_of(listed[-1].get("content"))
    for m in reversed(listed):
        if m.get("role") == "user":
            return "You said: " + text_of(m.get("content"))
    return "Hello! How can I help you today?"


def _usage(body: Mapping[str, Any], completion: int, override: Mapping[str, int] | None) -> Any:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    prompt = words_in([text_of(m.get("content")) for m in messages])
    prompt, completion, cached, reasoning = counts(prompt, completion, override)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0},
    }


def _choice(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


class ChatCompletions(Endpoint):
    """The chat completions endpoint (one per request)."""

    def answer(self, item: Reply | ToolCallReply | Drop | Truncated | None, stream: bool) -> None:
        """Answer ``item`` (``None``: the default answer), as JSON or streamed."""
        if isinstance(item, ToolCallReply):
            calls = [
                {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                for i, n, a in tool_calls(item, self.w.next_id)
            ]
            if stream:
                self._stream_tools(calls)
            else:
                self._json(None, calls, "tool_calls", None)
        elif isinstance(item, (Drop, Truncated)):
            if stream:
                self._stream_cut(item)
            else:
                self._json(item.text, None, None, None)
        else:
            reply = item or Reply(default_answer(self.body.get("messages")))
            self.model = reply.model or self.model
            if stream:
                self._stream_text(reply)
            else:
                self._json(reply.text, None, reply.finish_reason, reply.usage)

    def _json(
        self,
        text: str | None,
        calls: list[dict[str, Any]] | None,
        finish_reason: str | None,
        usage: Mapping[str, int] | None,
    ) -> None:
        completion = (
            len(split_words(text))
            if text
            else sum(len(split_words(c["function"]["arguments"])) for c in calls or [])
        )
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        self.w.send_json(
            200,
            {
                "id": f"chatcmpl-{self.w.next_id()}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": finish_reason,
                    }
                ],
                "usage": _usage(self.body, completion, usage),
                "service_tier": "default",
                "system_fingerprint": "fp_hookwire_test",
            },
        )

    def _frame(self, cid: str, choices: list[Any], usage: bool) -> dict[str, Any]:
        frame: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": "fp_hookwire_test",
            "choices": choices,
        }
        if usage:
            frame["usage"] = None
        return frame

    def _usage_chunk(self, cid: str, completion: int, override: Mapping[str, int] | None) -> None:
        if self.usage:
            frame = self._frame(cid, [], False)
            frame["usage"] = _usage(self.body, completion, override)
            self.w.event(frame)

    def _stream_text(self, reply: Reply) -> None:
        w = self.w
        cid = f"chatcmpl-{w.next_id()}"
        words = split_words(reply.text)
        w.start_stream()
        first = {"role": "assistant", "content": "", "refusal": None}
        w.event(self._frame(cid, [_choice(first, None)], self.usage))
        for word in words:
            if w.chunk_delay:
                time.sleep(w.chunk_delay)
            w.event(self._frame(cid, [_choice({"content": word}, None)], self.usage))
        w.event(self._frame(cid, [_choice({}, reply.finish_reason)], self.usage))
        self._usage_chunk(cid, len(words), reply.usage)
        w.chunk(b"data: [DONE]\n\n")
        w.end_stream()

    def _stream_tools(self, calls: list[dict[str, Any]]) -> None:
        w = self.w
        cid = f"chatcmpl-{w.next_id()}"
        w.start_stream()
        pieces = 0
        for index, call in enumerate(calls):
            head = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            delta: dict[str, Any] = {"tool_calls": [head]}
            if index == 0:
                delta = {"role": "assistant", "content": None, "tool_calls": [head]}
            w.event(self._frame(cid, [_choice(delta, None)], self.usage))
            # Arguments arrive in pieces, as the real API sends them.
            args = call["function"]["arguments"]
            for start in range(0, len(args), 8):
                pieces += 1
                part = {"index": index, "function": {"arguments": args[start : start + 8]}}
                w.event(self._frame(cid, [_choice({"tool_calls": [part]}, None)], self.usage))
        w.event(self._frame(cid, [_choice({}, "tool_calls")], self.usage))
        self._usage_chunk(cid, pieces, None)
        w.chunk(b"data: [DONE]\n\n")
        w.end_stream()

    def _stream_cut(self, item: Drop | Truncated) -> None:
        w = self.w
        cid = f"chatcmpl-{w.next_id()}"
        w.start_stream()
        w.event(self._frame(cid, [_choice({"role": "assistant", "content": ""}, None)], False))
        for word in split_words(item.text)[: item.after]:
            w.event(self._frame(cid, [_choice({"content": word}, None)], False))
        if isinstance(item, Drop):
            w.drop()  # no terminating chunk: the client sees the connection break
        else:
            w.end_stream()
