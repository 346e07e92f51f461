"""``POST /v1/embeddings`` of the test server: deterministic vectors, as floats or base64."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Mapping
from typing import Any

from .script import Drop, Reply, ToolCallReply, Truncated, counts, error_body
from .wire import Endpoint

__all__ = ["Embeddings"]


def _inputs(body: Mapping[str, Any]) -> list[Any]:
    given = body.get("input")
    if isinstance(given, str) or (
        isinstance(given, list) and given and all(isinstance(t, int) for t in given)
    ):
        return [given]
    return list(given) if isinstance(given, list) else []


def _tokens(one: Any) -> int:
    return len(one.split()) if isinstance(one, str) else len(one) if isinstance(one, list) else 0


def vector(text: Any, dimensions: int) -> list[float]:
    """The server's embedding of ``text``: the same text always gives the same unit vector."""
    seed = hashlib.sha256(repr(text).encode()).digest()
    raw = [(seed[i % len(seed)] - 127.5) / 127.5 for i in range(dimensions)]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    return [x / norm for x in raw]


class Embeddings(Endpoint):
    """The embeddings endpoint (one per request). A ``Reply`` only sets ``usage`` and
    ``model``; ``Truncated`` answers a body cut in the middle."""

    def answer(self, item: Reply | ToolCallReply | Drop | Truncated | None, stream: bool) -> None:
        """Answer ``item`` with one vector per input."""
        if isinstance(item, ToolCallReply):
            self.refuse_tools("/v1/embeddings")
            return
        inputs = _inputs(self.body)
        if not inputs:
            self.w.send_json(400, error_body(400, "'input' is required: a string or a list"))
            return
        dimensions = int(self.body.get("dimensions") or 8)
        as_base64 = self.body.get("encoding_format") == "base64"
        data = []
        for index, one in enumerate(inputs):
            v = vector(one, dimensions)
            encoded: Any = v
            if as_base64:
                encoded = base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        override = item.usage if isinstance(item, Reply) else None
        prompt, _, _, _ = counts(sum(_tokens(one) for one in inputs), 0, override)
        model = (item.model if isinstance(item, Reply) else None) or self.model
        payload = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        }
        if isinstance(item, (Truncated, Drop)):
            text = json.dumps(payload).encode()
            self.w.send_raw(200, text[: len(text) // 2], "application/json")
            return
        self.w.send_json(200, payload)
