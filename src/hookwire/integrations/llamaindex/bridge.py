"""The translation of LlamaIndex's instrumentation (spans and events) into hookwire hook calls,
without I/O.

LlamaIndex opens a span for every instrumented method (a query engine's ``query``, its
``_query``, a retriever's ``retrieve``, an LLM's ``chat``, a tool's ``call``, ...) and sends
typed events inside them. ``Bridge`` keeps the open spans as a tree: the spans of what the app
calls (query and chat engines, workflows and agents, tools) are shown as hookwire runs and tool
calls; every other span is hidden, and what happens inside it hangs under its nearest shown
ancestor. LLM, embedding and retrieval events become hookwire's LLM calls, embedding calls and
memory recalls of the run they happen in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

import orjson
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.chat_engine.types import BaseChatEngine
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events import embedding as embedding_events
from llama_index.core.instrumentation.events import llm as llm_events
from llama_index.core.instrumentation.events import retrieval as retrieval_events
from llama_index.core.instrumentation.events.exception import ExceptionEvent
from llama_index.core.tools.types import BaseTool
from llama_index.core.workflow import Workflow

from ...dispatch import CallbackManager, Callbacks
from ...events import EmbeddingResponse, LLMResponse, ToolCall, Usage
from ...llms.estimate import estimate_usage, prompt_bound
from ...llms.protocol import content_text
from .._common import (
    Emit,
    FailureLog,
    caused_by,
    child_base,
    end_keywords,
    field,
    price,
    to_hookwire_error,
)

__all__ = ["Bridge"]

_perf = time.perf_counter

#: The methods whose span is a run: what an app calls on an engine, a workflow or an agent.
_RUN_METHODS: Final = frozenset(
    {"query", "aquery", "chat", "achat", "stream_chat", "astream_chat", "run"}
)
_TOOL_METHODS: Final = frozenset({"call", "acall", "__call__"})
#: LlamaIndex's names of its LLM classes (``to_payload()["class_name"]``) as hookwire providers.
_PROVIDERS: Final = {
    "openai_llm": "openai",
    "OpenAI": "openai",
    "OpenAIEmbedding": "openai",
    "azure_openai_llm": "azure.ai.openai",
    "AzureOpenAI": "azure.ai.openai",
    "AzureOpenAIEmbedding": "azure.ai.openai",
    "Anthropic_LLM": "anthropic",
}
#: ``additional_kwargs`` keys passed on as ``invocation_params``.
_PARAM_KEYS: Final = ("temperature", "max_tokens", "top_p", "stop", "seed", "response_format")
_PARAM_SET: Final = frozenset(_PARAM_KEYS)


class _Span:
    """An open LlamaIndex span: its parent's id and the nearest shown span (itself, if shown)."""

    __slots__ = (
        "args",
        "base",
        "cost",
        "kind",
        "model",
        "name",
        "parent",
        "pending",
        "shown",
        "start",
        "usage",
    )

    def __init__(self, parent: str | None, shown: _Span | None, args: Mapping[str, Any]) -> None:
        self.parent = parent
        self.shown = shown
        self.args = args
        self.kind = "hidden"
        self.name = ""
        self.base: dict[str, Any] = {}
        self.start = 0.0
        # A failure inside it, told or not yet: (the error, hookwire's, stage, told).
        self.pending: tuple[BaseException, BaseException, str, bool] | None = None
        # A run's usage, cost and model, summed over the LLM calls inside it.
        self.usage: Usage | None = None
        self.cost: Decimal | None = None
        self.model: str | None = None


class _Call:
    """An open LLM or embedding call, keyed by the span its events carry."""

    __slots__ = (
        "base",
        "embedding",
        "first_token",
        "model",
        "prompt",
        "provider",
        "shown",
        "start",
        "tokens",
        "tokens_heard",
    )

    def __init__(
        self, base: dict[str, Any], shown: _Span | None, prompt: Any, embedding: bool
    ) -> None:
        self.base = base
        self.embedding = embedding
        self.shown = shown
        self.prompt = prompt
        self.start = _perf()
        self.first_token: float | None = None
        self.tokens = 0
        self.model: str | None = base.get("model")
        self.provider: str | None = base.get("provider")
        # Whether a handler hears tokens, asked once per call (as the openai bridge's streams
        # do), not on each of its tokens: the bridge sets it.
        self.tokens_heard = False


#: ``obj[key]`` of a dict, ``obj.key`` of an object (LlamaIndex's raw answers are either).
_get = field


def _uid(span_id: str) -> str:
    """The unique part of LlamaIndex's span id (``"OpenAI.chat-<uuid4>"``)."""
    return span_id[-36:]


def _text(value: Any) -> str:
    """A query, a message, a response or a workflow's result as text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    for attr in ("query_str", "response", "content", "result", "message"):
        inner = getattr(value, attr, None)
        if inner is not None and inner is not value:
            return _text(inner)
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:
        return str(value)


#: LlamaIndex class names -> providers, found once per name (every LLM call asks).
_PROVIDER_OF: dict[str, str] = {}


def _provider(model_dict: Mapping[str, Any]) -> str | None:
    name = model_dict.get("class_name")
    if not name:
        return None
    provider = _PROVIDER_OF.get(name)
    if provider is None:
        name = str(name)
        provider = _PROVIDERS.get(name, name.removesuffix("_llm").lower())
        if len(_PROVIDER_OF) < 256:  # bounded: names made on the fly
            _PROVIDER_OF[name] = provider
    return provider


def _messages(messages: Any) -> list[dict[str, Any]]:
    out = []
    for m in messages or ():
        role = getattr(m, "role", "user")
        out.append({"role": str(getattr(role, "value", role)), "content": m.content or ""})
    return out


def _usage(response: Any) -> Usage | None:
    """The usage a response reports: its raw answer's ``usage`` (OpenAI's shape, or the
    Responses API's), else the counts LlamaIndex copies into ``additional_kwargs``."""
    raw = getattr(response, "raw", None)
    u = _get(raw, "usage") if raw is not None else None
    if u is not None:
        prompt = _get(u, "prompt_tokens") or _get(u, "input_tokens") or 0
        completion = _get(u, "completion_tokens") or _get(u, "output_tokens") or 0
        details = _get(u, "prompt_tokens_details") or _get(u, "input_tokens_details")
        out_details = _get(u, "completion_tokens_details") or _get(u, "output_tokens_details")
        return Usage(
            prompt_tokens=int(prompt),
            completion_tokens=int(completion),
            total_tokens=int(_get(u, "total_tokens") or -1),
            cached_tokens=_get(details, "cached_tokens"),
            reasoning_tokens=_get(out_details, "reasoning_tokens"),
        )
    extra = getattr(response, "additional_kwargs", None) or {}
    if extra.get("total_tokens"):
        return Usage(
            prompt_tokens=int(extra.get("prompt_tokens") or 0),
            completion_tokens=int(extra.get("completion_tokens") or 0),
            total_tokens=int(extra["total_tokens"]),
        )
    return None


def _tool_calls(response: Any) -> tuple[ToolCall, ...]:
    message = getattr(response, "message", None)
    calls = (getattr(message, "additional_kwargs", None) or {}).get("tool_calls") or ()
    out = []
    for c in calls:
        fn = _get(c, "function")
        out.append(
            ToolCall(
                id=str(_get(c, "id") or ""),
                name=str(_get(fn, "name") or ""),
                arguments=str(_get(fn, "arguments") or ""),
            )
        )
    return tuple(out)


class Bridge:
    """Turns LlamaIndex's spans and events into hookwire hook calls. Each method returns the
    calls to make, in order."""

    max_spans = 10_000

    def __init__(self, callbacks: Callbacks, context: Mapping[str, Any]) -> None:
        self.manager = CallbackManager.ensure(callbacks)
        self.context = dict(context)
        self.spans: dict[str, _Span] = {}
        self.calls: dict[str, _Call] = {}
        #: Logs failures of the bridge itself (the event is skipped).
        self.failed = FailureLog("the LlamaIndex bridge", "the event is skipped")
        #: The method translating each class of event (``handler_of``), filled in as classes
        #: are met; the event handler reads it directly.
        self.by_type: dict[type, Callable[[Any], list[Emit]]] = {
            llm_events.LLMChatStartEvent: self._chat_start,
            llm_events.LLMCompletionStartEvent: self._completion_start,
            llm_events.LLMChatInProgressEvent: self._token,
            llm_events.LLMCompletionInProgressEvent: self._token,
            llm_events.LLMChatEndEvent: self._llm_end,
            llm_events.LLMCompletionEndEvent: self._llm_end,
            embedding_events.EmbeddingStartEvent: self._embedding_start,
            embedding_events.EmbeddingEndEvent: self._embedding_end,
            retrieval_events.RetrievalStartEvent: self._retrieval_start,
            retrieval_events.RetrievalEndEvent: self._retrieval_end,
            ExceptionEvent: self._exception,
        }

    # -- spans ------------------------------------------------------------------------------

    def span_enter(
        self, id_: str, args: Mapping[str, Any], instance: Any, parent_id: str | None
    ) -> list[Emit]:
        """``on_run_start`` for an engine's, a workflow's or an agent's entry point,
        ``on_tool_start`` for a tool; nothing for the other spans."""
        parent = self.spans.get(parent_id) if parent_id is not None else None
        shown = parent.shown if parent is not None else None
        span = _Span(parent_id, shown, args)
        if len(self.spans) >= self.max_spans:  # an exit that never came: forget the oldest
            self.spans.pop(next(iter(self.spans)), None)
        self.spans[id_] = span
        method = id_[:-37].rpartition(".")[2]
        emits: list[Emit] = []
        if method in _RUN_METHODS and _is_runnable(instance):
            if shown is not None and shown.kind != "tool" and shown.name == type(instance).__name__:
                return emits  # the same engine's inner call (a chat's call to its query)
            kind = "agent" if _is_agent(instance) else "workflow"
            span.kind, span.name, span.shown = kind, type(instance).__name__, span
            span.base = child_base(_uid(id_), shown.base if shown else None, self.context)
            span.base["name"], span.base["kind"] = span.name, kind
            emits.append(("on_run_start", (_text(_input(args)),), span.base))
        elif method in _TOOL_METHODS and isinstance(instance, BaseTool):
            if shown is not None and shown.kind == "tool":
                return emits  # a tool calling itself (``__call__`` -> ``call``)
            span.kind, span.shown, span.start = "tool", span, _perf()
            span.name = str(getattr(instance.metadata, "name", None) or type(instance).__name__)
            span.base = child_base(_uid(id_), shown.base if shown else None, self.context)
            emits.append(("on_tool_start", (span.name, _tool_input(args)), dict(span.base)))
        return emits

    def span_exit(self, id_: str, result: Any) -> list[Emit]:
        """``on_run_end`` (with the usage and cost of the calls inside it) or ``on_tool_end``."""
        span = self.spans.pop(id_, None)
        if span is None or span.shown is not span:
            return []
        if span.kind == "tool":
            content = getattr(result, "content", result)
            kw = {**span.base, "latency_ms": (_perf() - span.start) * 1000.0}
            if getattr(result, "is_error", False):
                error = RuntimeError(_text(content))
                return self._tool_failed(span, error, kw)
            return [("on_tool_end", (span.name, _text(content)), kw)]
        kw = self._roll_up(span)
        return [("on_run_end", (_text(result),), kw)]

    def span_drop(self, id_: str, err: BaseException | None) -> list[Emit]:
        """A span ended by an exception: the failed call, tool or run, and ``on_error`` once,
        by the outermost shown span (``stage`` says where the failure began)."""
        span = self.spans.pop(id_, None)
        emits: list[Emit] = []
        error = err if err is not None else RuntimeError("the span was dropped")
        call = self.calls.pop(id_, None)
        if call is not None:
            emits.extend(self._call_failed(call, error))
        if span is None or span.shown is not span:
            return emits
        if span.kind == "tool":
            kw = {**span.base, "latency_ms": (_perf() - span.start) * 1000.0}
            return emits + self._tool_failed(span, error, kw)
        kw = self._roll_up(span)
        emits.append(("on_run_end", (None,), {**kw, "error": error}))
        pending = span.pending
        if pending is None or not caused_by(error, pending[0]):
            pending = (error, error, "run", False)
        self._report(span, pending, emits)
        return emits

    def _tool_failed(self, span: _Span, error: BaseException, kw: dict[str, Any]) -> list[Emit]:
        emits: list[Emit] = [
            ("on_tool_error", (span.name, error), kw),
            ("on_error", (error,), {**span.base, "stage": "tool"}),
        ]
        self._report(span, (error, error, "tool", True), emits)
        return emits

    def _report(
        self,
        span: _Span,
        failure: tuple[BaseException, BaseException, str, bool],
        emits: list[Emit],
    ) -> None:
        """Tell a failure once: the outermost shown span tells it, if not told yet."""
        parent = self.spans.get(span.parent) if span.parent is not None else None
        above = parent.shown if parent is not None else None
        if above is not None:
            known = above.pending
            if known is None or not caused_by(failure[0], known[0]):
                above.pending = failure
        elif not failure[3]:
            emits.append(("on_error", (failure[1],), {**span.base, "stage": failure[2]}))

    def _roll_up(self, span: _Span) -> dict[str, Any]:
        """The end keywords of a run, its sums added to the run around it."""
        kw = span.base
        if span.usage is None and span.model is None:
            return kw
        kw = {**kw, "model": span.model}
        if span.usage is not None:
            kw["usage"] = span.usage
        if span.cost is not None:
            kw["cost"] = span.cost
        parent = self.spans.get(span.parent) if span.parent is not None else None
        if parent is not None:
            _add(parent.shown, span.usage, span.cost, span.model)
        return kw

    # -- events -----------------------------------------------------------------------------

    def event(self, event: BaseEvent) -> list[Emit]:
        """The hook calls of one LlamaIndex event (none for the events hookwire has no hook
        for: queries and syntheses are the runs' spans)."""
        return self.handler_of(type(event))(event)

    def handler_of(self, cls: type) -> Callable[[Any], list[Emit]]:
        """The method that translates events of class ``cls`` (``by_type``'s entry, made on
        first use: a subclass of a known event is translated as it)."""
        handle = self.by_type.get(cls)
        if handle is None:
            handle = _no_hooks
            for known, h in list(self.by_type.items()):
                if issubclass(cls, known):
                    handle = h
                    break
            if len(self.by_type) < 256:  # bounded: classes made on the fly
                self.by_type[cls] = handle
        return handle

    def _open_call(self, event: Any, prompt: Any, hook: str) -> list[Emit]:
        span_id = event.span_id or ""
        span = self.spans.get(span_id)
        shown = span.shown if span is not None else None
        embedding = hook == "on_embedding_start"
        if span is not None and self._inside_call(span, embedding):
            return []  # one call made through another (a chat made by a completion): one call
        model_dict: Mapping[str, Any] = event.model_dict or {}
        base = child_base(
            _uid(span_id) if span_id else _uid(event.id_),
            shown.base if shown else None,
            self.context,
        )
        model = model_dict.get("model") or model_dict.get("model_name")
        provider = _provider(model_dict)
        if model:
            base["model"] = str(model)
        if provider:
            base["provider"] = provider
        call = _Call(base, shown, prompt, embedding)
        call.tokens_heard = self.manager.listens("on_llm_new_token")
        if len(self.calls) >= self.max_spans:  # a stream never read to its end: forget it
            self.calls.pop(next(iter(self.calls)), None)
        self.calls[span_id] = call
        kw = dict(base)
        if hook == "on_llm_start":
            params = {"model": base.get("model")}
            extra = getattr(event, "additional_kwargs", None) or {}
            # A call's own keyword arguments over the LLM's settings.
            merged = {**model_dict, **extra} if extra else model_dict
            # The loop (in _PARAM_KEYS' order) only when one is there: one C-level set check
            # for an LLM that has none, instead of six lookups per call.
            if not _PARAM_SET.isdisjoint(merged):
                for key in _PARAM_KEYS:
                    value = merged.get(key)
                    if value is not None:
                        params[key] = value
            tools = extra.get("tools")
            if tools:
                params["tools"] = [
                    str((t.get("function") or t).get("name", ""))
                    for t in tools
                    if isinstance(t, Mapping)
                ]
            kw["invocation_params"] = params
            kw["stream"] = "stream" in span_id.partition("-")[0]
        return [(hook, (prompt,), kw)]

    def _inside_call(self, span: _Span, embedding: bool) -> bool:
        """Whether a span above ``span`` (up to the nearest shown one) has a call open."""
        key = span.parent
        while key is not None:
            call = self.calls.get(key)
            if call is not None and call.embedding == embedding:
                return True
            above = self.spans.get(key)
            if above is None or above is span.shown:
                return False
            key = above.parent
        return False

    def _chat_start(self, event: Any) -> list[Emit]:
        prompt = (
            _messages(event.messages) if self.manager.listens("on_llm_start") else event.messages
        )
        return self._open_call(event, prompt, "on_llm_start")

    def _completion_start(self, event: Any) -> list[Emit]:
        return self._open_call(event, event.prompt, "on_llm_start")

    def _token(self, event: Any) -> list[Emit]:
        call = self.calls.get(event.span_id or "")
        if call is None:
            return []
        if call.first_token is None:
            call.first_token = _perf()
        delta = getattr(event.response, "delta", None)
        if not delta or not isinstance(delta, str):
            return []
        index = call.tokens
        call.tokens = index + 1
        if not call.tokens_heard:
            return []
        return [("on_llm_new_token", (delta,), {**call.base, "index": index, "attempt": 1})]

    def _llm_end(self, event: Any) -> list[Emit]:
        call = self.calls.pop(event.span_id or "", None)
        if call is None:
            return []
        now = _perf()
        response = event.response
        message = getattr(response, "message", None)
        content = (
            content_text(getattr(message, "content", None))
            if message is not None
            else str(getattr(response, "text", "") or "")
        )
        raw = getattr(response, "raw", None)
        calls = _tool_calls(response)
        usage = _usage(response)
        if usage is None:
            # LlamaIndex's OpenAI LLM drops the usage chunk of a stream: an estimate, never 0.
            usage = estimate_usage(prompt_bound(call.prompt), content, calls)
        model = str((_get(raw, "model") if raw is not None else None) or call.model or "") or None
        cost = price(model, usage, call.provider)
        _add(call.shown, usage, cost, model)
        if not self.manager.listens("on_llm_end"):
            return []
        finish = rid = None
        if raw is not None:  # LlamaIndex's own LLMs (MockLLM) have no raw answer
            choices = _get(raw, "choices") or ()
            finish = _get(choices[0], "finish_reason") if choices else _get(raw, "status")
            rid = _get(raw, "id")
        result = LLMResponse(
            content=content,
            usage=usage,
            model=model,
            finish_reason=str(finish) if finish else None,
            tool_calls=calls,
            provider=call.provider,
            id=str(rid) if rid else None,
            cost=cost,
        )
        kw = end_keywords(call.base, call.start, now, call.first_token)
        return [("on_llm_end", (result,), kw)]

    def _call_failed(self, call: _Call, error: BaseException) -> list[Emit]:
        stage = "embedding" if call.embedding else "llm"
        mapped = to_hookwire_error(error, provider=call.provider, model=call.model)
        kw = {**call.base, "latency_ms": (_perf() - call.start) * 1000.0, "attempts": 1}
        if call.shown is not None:
            known = call.shown.pending
            if known is None or not caused_by(error, known[0]):
                call.shown.pending = (error, mapped, stage, False)
            return [(f"on_{stage}_error", (mapped,), kw)]
        return [
            (f"on_{stage}_error", (mapped,), kw),
            ("on_error", (mapped,), {**call.base, "stage": stage}),
        ]

    def _exception(self, event: Any) -> list[Emit]:
        """A stream that failed while read (its span had returned already)."""
        call = self.calls.pop(event.span_id or "", None)
        if call is None:
            return []
        return self._call_failed(call, event.exception)

    def _embedding_start(self, event: Any) -> list[Emit]:
        span = self.spans.get(event.span_id or "")
        args = span.args if span is not None else {}
        text = args.get("query", args.get("text", args.get("texts")))
        return self._open_call(event, text, "on_embedding_start")

    def _embedding_end(self, event: Any) -> list[Emit]:
        call = self.calls.pop(event.span_id or "", None)
        if call is None:
            return []
        chunks = list(event.chunks or ())
        # LlamaIndex does not pass the provider's token count on: the input's bound.
        usage = Usage(prompt_bound(chunks), 0, estimated=True)
        cost = price(call.model, usage, call.provider)
        vectors = event.embeddings or ()
        result = EmbeddingResponse(
            model=call.model,
            usage=usage,
            count=len(vectors),
            dimensions=len(vectors[0]) if vectors else None,
            provider=call.provider,
            cost=cost,
        )
        kw = {**call.base, "latency_ms": (_perf() - call.start) * 1000.0}
        return [("on_embedding_end", (result,), kw)]

    def _retrieval_start(self, event: Any) -> list[Emit]:
        return []  # the query comes again with the results

    def _retrieval_end(self, event: Any) -> list[Emit]:
        span_id = event.span_id or ""
        span = self.spans.get(span_id)
        shown = span.shown if span is not None else None
        base = child_base(_uid(span_id or event.id_), shown.base if shown else None, self.context)
        name = span_id[:-37].rpartition(".")[0] or "retriever"
        results = [n.node.get_content() for n in event.nodes]
        scores = [n.score for n in event.nodes]
        kw = {**base, "memory": name, "scores": scores}
        return [("on_memory_recall", (_text(event.str_or_query_bundle), results), kw)]


def _no_hooks(event: Any) -> list[Emit]:
    """An event hookwire has no hook for (queries and syntheses are the runs' spans)."""
    return []


def _add(shown: _Span | None, usage: Usage | None, cost: Decimal | None, model: str | None) -> None:
    """Count a call's usage and cost in the run it is in (a tool passes it on to its own)."""
    if shown is None or shown.kind == "tool":
        return
    if usage is not None:
        shown.usage = usage if shown.usage is None else shown.usage + usage
    if cost is not None:
        shown.cost = cost if shown.cost is None else shown.cost + cost
    shown.model = model or shown.model


#: Whether a class's ``query`` / ``chat`` / ``run`` span is a run, by class: the classes are
#: ABCs, and an LLM's ``chat`` asks on every call.
_RUNNABLE: dict[type, bool] = {}


def _is_runnable(instance: Any) -> bool:
    cls = type(instance)
    known = _RUNNABLE.get(cls)
    if known is None:
        known = isinstance(instance, (BaseQueryEngine, BaseChatEngine, Workflow))
        if len(_RUNNABLE) < 1024:  # bounded: classes made on the fly
            _RUNNABLE[cls] = known
    return known


def _is_agent(instance: Any) -> bool:
    # By name, not by class: the agent classes have moved between LlamaIndex's modules.
    return any(c.__name__ in ("BaseWorkflowAgent", "AgentWorkflow") for c in type(instance).__mro__)


_INPUT_KEYS: Final = ("str_or_query_bundle", "message", "user_msg", "query", "input")


def _input(args: Mapping[str, Any]) -> Any:
    """What a run was asked: its query or message, also inside a workflow's start event."""
    for key in _INPUT_KEYS:
        if args.get(key) is not None:
            return args[key]
    kwargs = args.get("kwargs")
    if isinstance(kwargs, Mapping):
        return _input(kwargs)
    event = args.get("start_event")
    if event is not None:
        for key in _INPUT_KEYS:
            try:
                value = getattr(event, key, None)
            except Exception:  # a workflow event's own attribute lookup
                value = None
            if value is not None:
                return value
    return None


def _tool_input(args: Mapping[str, Any]) -> dict[str, Any]:
    kwargs = args.get("kwargs")
    if isinstance(kwargs, Mapping) and kwargs:
        return dict(kwargs)
    positional: Sequence[Any] = args.get("args") or ()
    if "input" in args:
        positional = (args["input"],)
    if len(positional) == 1 and isinstance(positional[0], Mapping):
        return dict(positional[0])
    return {"input": positional[0]} if len(positional) == 1 else {"args": list(positional)}
