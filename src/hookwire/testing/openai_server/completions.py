"""``POST /v1/completions`` of the test server: the legacy ``text_completion``, JSON or
streamed."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .script import Drop, Reply, ToolCallReply, Truncated, counts, split_words, words_in
from .wire import Endpoint

__all__ = ["Completions"]


def _prompts(body: Mapping[str, Any]) -> list[str]:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list):
        return [p for p in prompt if isinstance(p, str)]
    return []


class Completions(Endpoint):
    """The legacy completions endpoint (one per request)."""

    def answer(self, item: Reply | ToolCallReply | Drop | Truncated | None, stream: bool) -> None:
        """Answer ``item`` (``None``: the prompt echoed), as JSON or streamed."""
        if isinstance(item, ToolCallReply):
            self.refuse_tools("/v1/completions")
            return
        if isinstance(item, (Drop, Truncated)):
            reply = Reply(item.text, finish_reason="")
        else:
            prompts = _prompts(self.body)
            reply = item or Reply("You said: " + (prompts[0] if prompts else ""))
        self.model = reply.model or self.model
        cut = item if isinstance(item, (Drop, Truncated)) else None
        if stream:
            self._stream(reply, cut)
        else:
            self._json(reply)

    def _usage(self, completion: int, override: Mapping[str, int] | None) -> dict[str, Any]:
        prompt, completion, _, _ = counts(words_in(_prompts(self.body)), completion, override)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _frame(self, cid: str, choices: list[Any]) -> dict[str, Any]:
        return {
            "id": cid,
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": choices,
        }

    def _json(self, reply: Reply) -> None:
        cid = f"cmpl-{self.w.next_id()}"
        choice = {
            "text": reply.text,
            "index": 0,
            "logprobs": None,
            "finish_reason": reply.finish_reason or None,
        }
        frame = self._frame(cid, [choice])
        frame["usage"] = self._usage(len(split_words(reply.text)), reply.usage)
        self.w.send_json(200, frame)

    def _stream(self, reply: Reply, cut: Drop | Truncated | None) -> None:
        w = self.w
        cid = f"cmpl-{w.next_id()}"
        words = split_words(reply.text)
        if cut is not None:
            words = words[: cut.after]
        w.start_stream()
        for word in words:
            if w.chunk_delay:
                time.sleep(w.chunk_delay)
            choice = {"text": word, "index": 0, "logprobs": None, "finish_reason": None}
            w.event(self._frame(cid, [choice]))
        if isinstance(cut, Drop):
            w.drop()
            return
        if cut is None:
            end = {"text": "", "index": 0, "logprobs": None, "finish_reason": reply.finish_reason}
            w.event(self._frame(cid, [end]))
            if self.usage:
                frame = self._frame(cid, [])
                frame["usage"] = self._usage(len(words), reply.usage)
                w.event(frame)
            w.chunk(b"data: [DONE]\n\n")
        w.end_stream()
