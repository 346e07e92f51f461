"""The Anthropic and LiteLLM bridges' cost: the same call with and without the bridge.

Run from the repository root::

    PYTHONPATH=src .venv/bin/python bench/bridges_sdks.py            # full run
    PYTHONPATH=src .venv/bin/python bench/bridges_sdks.py --quick    # fewer iterations

- Anthropic: ``messages.create`` (JSON) and a streamed ``messages.create`` read to its end
  (10 text deltas), answered in process by an ``httpx2.MockTransport`` (the SDK's whole stack
  runs, no socket), on a plain client against one instrumented with a hookwire handler whose
  LLM and token hooks do nothing. The SDK has no callback of its own: the target is the
  overhead, at most 50 µs per call.
- LiteLLM: ``litellm.completion(mock_response=...)`` (LiteLLM's own offline answer, its whole
  call and logging path) with a no-op ``CustomLogger`` as its only callback, against
  ``HookwireLogger([noop])``. Target: <= 1.2x LiteLLM's no-op logger. LiteLLM runs its success
  callbacks in a background thread; the figures are the calling thread's CPU time.

Each figure is a case's best round (the cases take turns), in µs per call.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

try:
    import anthropic
    import httpx2
    import litellm
    from litellm.integrations.custom_logger import CustomLogger
except ImportError:  # pragma: no cover - the test extra installs them
    sys.exit("bench/bridges_sdks.py needs anthropic and litellm: pip install -e '.[test]'")

from _handlers import HWLLMNoop
from _timing import best_of, print_ratios, quick_flag
from hookwire.integrations.anthropic import instrument
from hookwire.integrations.litellm import HookwireLogger

MODEL = "claude-haiku-4-5"
WORDS = ["Paris", "is", "the", "capital", "and", "largest", "city", "of", "France", "."]
USAGE = {
    "input_tokens": 20,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "output_tokens": 9,
}
MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": MODEL,
    "content": [{"type": "text", "text": " ".join(WORDS)}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": USAGE,
}


def _sse() -> bytes:
    def event(kind: str, **fields: Any) -> str:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **fields})}\n\n"

    start = {**MESSAGE, "content": [], "stop_reason": None, "usage": {**USAGE, "output_tokens": 1}}
    parts = [event("message_start", message=start)]
    parts.append(event("content_block_start", index=0, content_block={"type": "text", "text": ""}))
    for word in WORDS:
        parts.append(
            event("content_block_delta", index=0, delta={"type": "text_delta", "text": word + " "})
        )
    parts.append(event("content_block_stop", index=0))
    parts.append(
        event(
            "message_delta", delta={"stop_reason": "end_turn", "stop_sequence": None}, usage=USAGE
        )
    )
    parts.append(event("message_stop"))
    return "".join(parts).encode()


JSON_BODY = json.dumps(MESSAGE).encode()
SSE_BODY = _sse()


def _answer(request: httpx2.Request) -> httpx2.Response:
    if json.loads(request.content).get("stream"):
        return httpx2.Response(200, content=SSE_BODY, headers={"content-type": "text/event-stream"})
    return httpx2.Response(200, content=JSON_BODY, headers={"content-type": "application/json"})


def _client() -> anthropic.Anthropic:
    http = httpx2.Client(transport=httpx2.MockTransport(_answer))
    return anthropic.Anthropic(api_key="bench", http_client=http, max_retries=0)


MESSAGES = [{"role": "user", "content": "Capital of France?"}]


def anthropic_case(client: anthropic.Anthropic, stream: bool) -> Any:
    if not stream:
        return lambda: client.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES)

    def streamed() -> None:
        for _ in client.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES, stream=True):
            pass

    return streamed


class LiteLLMNoop(CustomLogger):  # type: ignore[misc]
    """LiteLLM: a logger whose hooks do nothing (its own no-op callback)."""

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        pass

    def log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        pass


def litellm_case(logger: Any) -> Any:
    def call() -> None:
        litellm.callbacks = [logger]
        litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, mock_response="Paris.")

    return call


def main() -> None:
    number, repeat = (5, 10) if quick_flag(__doc__) else (10, 100)
    rows = []
    for stream in (False, True):
        t = best_of(
            {
                "plain": anthropic_case(_client(), stream),
                "hookwire": anthropic_case(instrument(_client(), callbacks=[HWLLMNoop()]), stream),
            },
            number,
            repeat,
        )
        rows.append(("stream" if stream else "create", t["plain"], t["hookwire"]))
    print_ratios(
        f"Anthropic messages.create, best of {repeat} rounds of {number} (µs per call)",
        ("call", "uninstrumented", "instrumented"),
        rows,
        "overhead <= 50 µs",
    )
    for label, plain, ours in rows:
        print(f"  {label}: overhead {ours - plain:.1f} µs per call")
    t = best_of(
        {
            "noop": litellm_case(LiteLLMNoop()),
            "hookwire": litellm_case(HookwireLogger(callbacks=[HWLLMNoop()])),
        },
        number,
        repeat,
    )
    print_ratios(
        f"litellm.completion(mock_response=...), best of {repeat} rounds of {number} (µs per call)",
        ("call", "LiteLLM no-op", "hookwire bridge"),
        [("completion", t["noop"], t["hookwire"])],
        "<= 1.2x",
    )


if __name__ == "__main__":
    main()
