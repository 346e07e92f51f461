"""``POST /v1/responses`` of the test server: a ``response`` object, or its stream of typed
events (``response.created`` ... ``response.output_text.delta`` ... ``response.completed``)
as the real API sends them."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from . import script
from .script import Drop, Reply, ToolCallReply, Truncated
from .wire import Endpoint, Wire

__all__ = ["Responses"]


def _items(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    given = body.get("input")
    if isinstance(given, str):
        return [{"role": "user", "content": given}]
    return [i for i in given or [] if isinstance(i, dict)]


def _default_answer(body: Mapping[str, Any]) -> str:
    items = _items(body)
    if items and items[-1].get("type") == "function_call_output":
        return "The tool returned: " + str(items[-1].get("output", ""))
    for item in reversed(items):
        if item.get("role") == "user":
            return "You said: " + script.text_of(item.get("content"))
    return "Hello! How can I help you today?"


def _prompt_tokens(body: Mapping[str, Any]) -> int:
    texts = [script.text_of(i.get("content")) or str(i.get("output", "")) for i in _items(body)]
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        texts.append(instructions)
    return script.words_in(texts)


class Responses(Endpoint):
    """The Responses API endpoint (one per request)."""

    def __init__(self, w: Wire, body: dict[str, Any], model: str, include_usage: bool) -> None:
        super().__init__(w, body, model, include_usage)
        self.seq = 0
        self.rid = f"resp_{w.next_id()}"
        self.created = int(time.time())

    def answer(self, item: Reply | ToolCallReply | Drop | Truncated | None, stream: bool) -> None:
        """Answer ``item`` (``None``: the default answer), as JSON or streamed."""
        if isinstance(item, ToolCallReply):
            calls = [
                {
                    "id": f"fc_{self.w.next_id()}",
                    "type": "function_call",
                    "status": "completed",
                    "call_id": i,
                    "name": n,
                    "arguments": a,
                }
                for i, n, a in script.tool_calls(item, self.w.next_id)
            ]
            tokens = sum(len(script.split_words(c["arguments"])) for c in calls)
            if stream:
                self._stream(calls, tokens, None, None)
            else:
                self.w.send_json(200, self._response("completed", calls, tokens, None))
            return
        if isinstance(item, (Drop, Truncated)):
            cut: Drop | Truncated | None = item
            reply = Reply(item.text)
        else:
            cut = None
            reply = item or Reply(_default_answer(self.body))
        self.model = reply.model or self.model
        words = script.split_words(reply.text)
        usage = reply.usage
        output: list[dict[str, Any]] = []
        if usage and usage.get("reasoning_tokens"):
            output.append({"id": f"rs_{self.w.next_id()}", "type": "reasoning", "summary": []})
        output.append(self._message(reply.text))
        if stream:
            self._stream(output, len(words), usage, cut)
        elif cut is not None:
            self.w.send_json(200, self._response("incomplete", output, len(words), usage))
        else:
            self.w.send_json(200, self._response("completed", output, len(words), usage))

    def _message(self, text: str) -> dict[str, Any]:
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        return {
            "id": f"msg_{self.w.next_id()}",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [part],
        }

    def _response(
        self,
        status: str,
        output: list[dict[str, Any]],
        completion: int,
        override: Mapping[str, int] | None,
    ) -> dict[str, Any]:
        body = self.body
        usage: dict[str, Any] | None = None
        if status != "in_progress":
            prompt, completion, cached, reasoning = script.counts(
                _prompt_tokens(body), completion, override
            )
            usage = {
                "input_tokens": prompt,
                "input_tokens_details": {"cached_tokens": cached},
                "output_tokens": completion,
                "output_tokens_details": {"reasoning_tokens": reasoning},
                "total_tokens": prompt + completion,
            }
        return {
            "id": self.rid,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "error": None,
            "incomplete_details": (
                {"reason": "max_output_tokens"} if status == "incomplete" else None
            ),
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": self.model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "default",
            "store": True,
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": usage,
            "user": None,
            "metadata": {},
        }

    def _event(self, kind: str, **fields: Any) -> None:
        self.w.event({"type": kind, "sequence_number": self.seq, **fields}, kind)
        self.seq += 1

    def _stream(
        self,
        output: list[dict[str, Any]],
        completion: int,
        override: Mapping[str, int] | None,
        cut: Drop | Truncated | None,
    ) -> None:
        w = self.w
        w.start_stream()
        self._event("response.created", response=self._response("in_progress", [], 0, None))
        self._event("response.in_progress", response=self._response("in_progress", [], 0, None))
        for index, item in enumerate(output):
            if item["type"] == "message":
                if not self._stream_message(index, item, cut):
                    return
            elif item["type"] == "function_call":
                self._stream_call(index, item)
            else:
                self._event("response.output_item.added", output_index=index, item=item)
                self._event("response.output_item.done", output_index=index, item=item)
        self._event(
            "response.completed",
            response=self._response("completed", output, completion, override),
        )
        w.end_stream()

    def _stream_message(
        self, index: int, item: dict[str, Any], cut: Drop | Truncated | None
    ) -> bool:
        w = self.w
        part = item["content"][0]
        ids = {"item_id": item["id"], "output_index": index}
        self._event(
            "response.output_item.added",
            output_index=index,
            item={**item, "status": "in_progress", "content": []},
        )
        empty = {"type": "output_text", "text": "", "annotations": []}
        self._event("response.content_part.added", **ids, content_index=0, part=empty)
        words = script.split_words(part["text"])
        for word in words[: cut.after] if cut is not None else words:
            if w.chunk_delay:
                time.sleep(w.chunk_delay)
            self._event(
                "response.output_text.delta", **ids, content_index=0, delta=word, logprobs=[]
            )
        if isinstance(cut, Drop):
            w.drop()  # no end events: the client sees the connection break
            return False
        if cut is not None:
            w.end_stream()  # the body ends cleanly, without response.completed
            return False
        self._event(
            "response.output_text.done", **ids, content_index=0, text=part["text"], logprobs=[]
        )
        self._event("response.content_part.done", **ids, content_index=0, part=part)
        self._event("response.output_item.done", output_index=index, item=item)
        return True

    def _stream_call(self, index: int, item: dict[str, Any]) -> None:
        self._event(
            "response.output_item.added",
            output_index=index,
            item={**item, "status": "in_progress", "arguments": ""},
        )
        args = item["arguments"]
        for start in range(0, len(args), 8):
            self._event(
                "response.function_call_arguments.delta",
                item_id=item["id"],
                output_index=index,
                delta=args[start : start + 8],
            )
        self._event(
            "response.function_call_arguments.done",
            item_id=item["id"],
            output_index=index,
            arguments=args,
        )
        self._event("response.output_item.done", output_index=index, item=item)
