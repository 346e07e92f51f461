"""The bridges' cost: the LangChain bridge next to a plain LangChain handler, and the
OpenTelemetry span processor next to a no-op span processor.

Run from the repository root::

    PYTHONPATH=src .venv/bin/python bench/bridges.py            # full run
    PYTHONPATH=src .venv/bin/python bench/bridges.py --quick    # fewer iterations

The same LCEL chain (``ChatPromptTemplate | GenericFakeChatModel | StrOutputParser``) runs
with, as its only callback:

- ``LangChain no-op``: a ``BaseCallbackHandler`` whose chain, chat-model and token hooks do
  nothing;
- ``hookwire bridge``: ``HookwireCallbackHandler([noop])``, where ``noop`` is a hookwire
  handler whose run, LLM and token hooks do nothing; every LangChain event is turned into a
  hookwire event (ids, parents, messages as dicts, ``LLMResponse`` with usage) and dispatched.

``invoke`` is one chain run (4 LangChain runs, of which the prompt and the parser are no
hookwire runs; 1 LLM call); ``stream`` adds 9 streamed tokens. The
cases take turns, round after round, and each figure is a case's best round, in microseconds
per chain call. The target (issue 7) is the bridge <= 1.2x the LangChain no-op handler.

``HookwireSpanProcessor([noop])`` (``hookwire.integrations.otel``) against a ``SpanProcessor``
whose ``on_start`` / ``on_end`` do nothing, each alone on a ``TracerProvider``: a whole span
(``start_span`` ... ``end()``, the SDK's own work included) and ``on_end`` alone on a finished
span, for a span that is not GenAI (an HTTP server span's attributes) and a GenAI ``chat`` span
as opentelemetry-instrumentation-openai-v2 writes it (its ``on_end`` builds the hookwire LLM
call, prices it and dispatches ``on_llm_start`` / ``on_llm_end``). Target: the GenAI span's
added cost <= 50 µs, a span that is not GenAI about the no-op's.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from typing import Any

try:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
except ImportError:  # pragma: no cover - the bench extra installs it
    sys.exit("bench/bridges.py needs langchain-core: pip install -e '.[bench]'")

from _handlers import HWRunNoop, LCChainNoop
from _timing import best_of, print_ratios, quick_flag
from hookwire.integrations.langchain import HookwireCallbackHandler

try:
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

    from hookwire.integrations.otel import HookwireSpanProcessor
except ImportError:  # pragma: no cover - the otel extra installs it
    sys.exit("bench/bridges.py needs the OpenTelemetry SDK: pip install -e '.[otel,bench]'")

ANSWER = AIMessage(
    content="Paris is the capital and largest city of France.",
    usage_metadata={"input_tokens": 20, "output_tokens": 9, "total_tokens": 29},
    response_metadata={"model_name": "gpt-4o", "finish_reason": "stop"},
)


def chain() -> Any:
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")])
    model = GenericFakeChatModel(messages=itertools.repeat(ANSWER))
    return prompt | model | StrOutputParser()


def case(mode: str, handler: Any) -> Callable[[], None]:
    c = chain()
    config = {"callbacks": [handler]}
    inputs = {"q": "Capital of France?"}
    if mode == "invoke":
        return lambda: c.invoke(inputs, config=config)  # type: ignore[no-any-return]

    def stream() -> None:
        for _ in c.stream(inputs, config=config):
            pass

    return stream


class NoopProcessor(SpanProcessor):
    """The OpenTelemetry side: a span processor that does nothing."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        pass


HTTP_SPAN = {
    "http.request.method": "GET",
    "http.route": "/orders/{id}",
    "url.path": "/orders/42",
    "http.response.status_code": 200,
    "server.address": "shop.example",
}
CHAT_SPAN = {
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.provider.name": "openai",
    "server.address": "api.openai.com",
    "gen_ai.response.finish_reasons": ("stop",),
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.response.id": "chatcmpl-1",
    "gen_ai.usage.input_tokens": 20,
    "gen_ai.usage.output_tokens": 9,
}


def span_cases(processor: SpanProcessor, attrs: dict[str, Any]) -> tuple[Any, Any]:
    """A whole span through a provider with ``processor`` alone, and ``on_end`` alone."""
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("bench")

    def whole() -> None:
        tracer.start_span("span", attributes=attrs).end()

    finished = tracer.start_span("span", attributes=attrs)
    finished.end()
    return whole, lambda: processor.on_end(finished)


def span_processor_rows(number: int, repeat: int) -> None:
    rows = []
    for label, attrs in (("not GenAI", HTTP_SPAN), ("GenAI chat", CHAT_SPAN)):
        otel_whole, otel_end = span_cases(NoopProcessor(), attrs)
        hw_whole, hw_end = span_cases(HookwireSpanProcessor([HWRunNoop()]), attrs)
        t = best_of(
            {"ow": otel_whole, "hw": hw_whole, "oe": otel_end, "he": hw_end}, number, repeat
        )
        rows.append((f"{label}, whole span", t["ow"], t["hw"]))
        rows.append((f"{label}, on_end alone", t["oe"], t["he"]))
    print_ratios(
        f"OpenTelemetry span per span, best of {repeat} rounds of {number} (µs per span)",
        ("span", "no-op processor", "hookwire proc."),
        rows,
        "GenAI +<= 50 µs",
    )
    for label, theirs, mine in rows:
        print(f"  {label}: hookwire adds {mine - theirs:.2f} µs")


def main() -> None:
    number, repeat = (10, 20) if quick_flag(__doc__) else (10, 400)
    span_processor_rows(number * 10, repeat)

    rows = []
    for mode in ("invoke", "stream"):
        t = best_of(
            {
                "langchain": case(mode, LCChainNoop()),
                "hookwire": case(mode, HookwireCallbackHandler([HWRunNoop()])),
            },
            number,
            repeat,
        )
        rows.append((mode, t["langchain"], t["hookwire"]))

    print_ratios(
        f"LangChain chain per call, best of {repeat} rounds of {number} (µs per call)",
        ("chain", "LangChain no-op", "hookwire bridge"),
        rows,
        "<= 1.2x",
    )


if __name__ == "__main__":
    main()
