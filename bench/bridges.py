"""The bridges' cost: each framework's work with hookwire's bridge next to its own no-op hooks
(LangChain, OpenTelemetry, LlamaIndex, the OpenAI Agents SDK).

Run from the repository root::

    PYTHONPATH=src .venv/bin/python bench/bridges.py            # full run
    PYTHONPATH=src .venv/bin/python bench/bridges.py --quick    # fewer iterations

The LlamaIndex and Agents SDK rows in CPU instructions (load does not move them), and the
Agents SDK run's hook calls alone (``agents_parts``), each case dumped as its own callgrind part (read them with ``callgrind_annotate``; needs ``gcc`` and
``valgrind/callgrind.h``, as bench/runtime_instr.py does)::

    PYTHONPATH=src valgrind --tool=callgrind --instr-atstart=no \\
        --callgrind-out-file=/tmp/cg.%p .venv/bin/python bench/bridges.py --instructions 100

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

Then, the same way, with the frameworks installed (else their rows are left out):

- LlamaIndex: ``MockLLM`` (LlamaIndex's own offline LLM) ``chat`` and ``stream_chat``, with a
  no-op event handler and a no-op span handler on the root dispatcher, against
  ``hookwire.integrations.llamaindex.instrument([noop])``;
- OpenAI Agents SDK: one trace with an agent span, a response span (usage, a tool call) and a
  function span, with a no-op ``TracingProcessor`` against ``HookwireTracingProcessor([noop])``;
- OpenTelemetry: ``HookwireSpanProcessor([noop])`` (``hookwire.integrations.otel``) against a
  ``SpanProcessor`` whose ``on_start`` / ``on_end`` do nothing, each alone on a
  ``TracerProvider``: a whole span (``start_span`` ... ``end()``, the SDK's own work included)
  and ``on_end`` alone on a finished span, for a span that is not GenAI (an HTTP server span's
  attributes) and a GenAI ``chat`` span as opentelemetry-instrumentation-openai-v2 writes it
  (its ``on_end`` builds the hookwire LLM call, prices it and dispatches ``on_llm_start`` /
  ``on_llm_end``). Target: the GenAI span's added cost <= 50 µs, a span that is not GenAI
  about the no-op's.
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
from _timing import best_of, options, print_ratios
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
    parser = options(__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument(
        "--instructions",
        type=int,
        default=0,
        metavar="N",
        help="under callgrind: N calls of each LlamaIndex and Agents SDK case, nothing timed",
    )
    args = parser.parse_args()
    if args.instructions:
        llamaindex(0, 0, args.instructions)
        openai_agents(0, 0, args.instructions)
        return
    number, repeat = (10, 20) if args.quick else (10, 400)
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
    llamaindex(number, repeat)
    openai_agents(number, repeat)


def instructions(cases: dict[str, Callable[[], None]], calls: int) -> None:
    """Each case's ``calls`` under callgrind, collected around them alone, one dump each."""
    from runtime_instr import run_cg  # only here: it imports the openai runtime's cases

    run_cg(cases, calls)


def llamaindex(number: int, repeat: int, cg_calls: int = 0) -> None:
    try:
        from llama_index.core.instrumentation import get_dispatcher
        from llama_index.core.instrumentation.event_handlers import BaseEventHandler
        from llama_index.core.instrumentation.span_handlers import SimpleSpanHandler
        from llama_index.core.llms import ChatMessage
        from llama_index.core.llms.mock import MockLLM
    except ImportError:
        print("(LlamaIndex rows left out: pip install llama-index-core)")
        return
    from hookwire.integrations.llamaindex import instrument
    from hookwire.pricing import set_price

    # MockLLM's model is "unknown": priced, as an app's model is (an unknown model's price
    # lookup is not what this measures).
    set_price("unknown", input_mtok=1, output_mtok=2)

    class Noop(BaseEventHandler):
        def handle(self, event: Any, **kwargs: Any) -> None:
            pass

    class NoopSpans(SimpleSpanHandler):
        def span_enter(self, *args: Any, **kwargs: Any) -> None:
            pass

        def span_exit(self, *args: Any, **kwargs: Any) -> None:
            pass

        def span_drop(self, *args: Any, **kwargs: Any) -> None:
            pass

    root = get_dispatcher()
    ours = instrument([HWRunNoop()])
    ours.uninstrument()
    theirs = (Noop(), NoopSpans())
    llm = MockLLM(max_tokens=8)
    messages = [ChatMessage(role="user", content="Capital of France?")]

    def case(mode: str, handlers: tuple[Any, Any]) -> Callable[[], None]:
        def call() -> None:
            # Only this case's handlers on the root dispatcher, in both cases alike.
            root.event_handlers, root.span_handlers = [handlers[0]], [handlers[1]]
            if mode == "chat":
                llm.chat(messages)
            else:
                for _ in llm.stream_chat(messages):
                    pass

        return call

    rows = []
    for mode in ("chat", "stream_chat"):
        cases = {
            f"LlamaIndex {mode}, no-op": case(mode, theirs),
            f"LlamaIndex {mode}, hookwire": case(mode, (ours._event_handler, ours._span_handler)),
        }
        if cg_calls:
            instructions(cases, cg_calls)
            continue
        t = list(best_of(cases, number, repeat).values())
        rows.append((mode, t[0], t[1]))
    root.event_handlers, root.span_handlers = [], []
    if cg_calls:
        return
    print_ratios(
        f"LlamaIndex MockLLM per call, best of {repeat} rounds of {number} (µs per call)",
        ("call", "LlamaIndex no-op", "hookwire bridge"),
        rows,
        "<= 1.2x",
    )


def openai_agents(number: int, repeat: int, cg_calls: int = 0) -> None:
    try:
        from agents.tracing import (
            TracingProcessor,
            agent_span,
            function_span,
            response_span,
            set_trace_processors,
            trace,
        )
        from openai.types.responses import Response
    except ImportError:
        print("(Agents SDK rows left out: pip install openai-agents)")
        return
    from hookwire.integrations.openai_agents import HookwireTracingProcessor

    class Noop(TracingProcessor):
        def on_trace_start(self, trace: Any) -> None:
            pass

        def on_trace_end(self, trace: Any) -> None:
            pass

        def on_span_start(self, span: Any) -> None:
            pass

        def on_span_end(self, span: Any) -> None:
            pass

        def shutdown(self) -> None:
            pass

        def force_flush(self) -> None:
            pass

    response = Response.model_validate(
        {
            "id": "resp_1",
            "created_at": 0,
            "model": "gpt-4o",
            "object": "response",
            "output": [
                {
                    "type": "function_call",
                    "call_id": "call_1",
                    "name": "mul",
                    "arguments": '{"a": 2, "b": 3}',
                    "id": "fc_1",
                    "status": "completed",
                }
            ],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": 20,
                "output_tokens": 9,
                "total_tokens": 29,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            },
        }
    )

    def case(processor: Any) -> Callable[[], None]:
        def call() -> None:
            set_trace_processors([processor])
            with trace("bench"), agent_span(name="calc"):
                with response_span() as span:
                    span.span_data.response = response
                    span.span_data.input = [{"role": "user", "content": "2 times 3?"}]
                with function_span("mul", input='{"a": 2, "b": 3}', output="6"):
                    pass

        return call

    cases = {
        "Agents SDK run, no-op": case(Noop()),
        "Agents SDK run, hookwire": case(HookwireTracingProcessor([HWRunNoop()])),
    }
    if cg_calls:
        instructions({**cases, **agents_parts(case)}, cg_calls)
        set_trace_processors([])
        return
    t = best_of(cases, number, repeat)
    set_trace_processors([])
    print_ratios(
        f"Agents SDK trace per run, best of {repeat} rounds of {number} (µs per run)",
        ("run", "Agents SDK no-op", "hookwire bridge"),
        [("agent, response, tool", *t.values())],
        "<= 1.2x",
    )


def agents_parts(case: Callable[[Any], Callable[[], None]]) -> dict[str, Callable[[], None]]:
    """Where the Agents SDK bridge's instructions go: the run's hook calls, recorded once, then
    made again through a manager alone (``dispatch``) and straight to the no-op handler's
    methods with the keywords it received (``handlers``). The bridge's translation is the
    hookwire case less ``dispatch``; ``handlers`` is what any hook call costs a handler that
    takes ``**kwargs``, whatever the manager does."""
    from hookwire import BaseCallback, CallbackManager
    from hookwire.integrations.openai_agents import HookwireTracingProcessor

    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    class Recorder(BaseCallback):
        def _keep(self, hook: str, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
            calls.append((hook, args, kw))

        def on_run_start(self, input: Any, **kwargs: Any) -> None:
            self._keep("on_run_start", (input,), kwargs)

        def on_run_end(self, output: Any, **kwargs: Any) -> None:
            self._keep("on_run_end", (output,), kwargs)

        def on_llm_start(self, prompt: Any, **kwargs: Any) -> None:
            self._keep("on_llm_start", (prompt,), kwargs)

        def on_llm_end(self, response: Any, **kwargs: Any) -> None:
            self._keep("on_llm_end", (response,), kwargs)

    case(HookwireTracingProcessor([Recorder()]))()
    manager, noop = CallbackManager([HWRunNoop()]), HWRunNoop()
    # The manager is given the bridge's keywords: the ones it adds itself are left out.
    through = [
        (getattr(manager, h), a, {k: v for k, v in kw.items() if k != "timestamp"})
        for h, a, kw in calls
    ]
    direct = [(getattr(noop, h), a, kw) for h, a, kw in calls]

    def replay(made: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]]) -> None:
        for fn, args, kw in made:
            fn(*args, **kw)

    return {
        f"Agents SDK run's {len(calls)} hook calls, dispatch": lambda: replay(through),
        f"Agents SDK run's {len(calls)} hook calls, handlers": lambda: replay(direct),
    }


if __name__ == "__main__":
    main()
