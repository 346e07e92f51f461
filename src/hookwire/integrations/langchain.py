"""LangChain bridge: a LangChain callback handler that feeds hookwire handlers.

::

    from hookwire.callbacks import MetricsCallback
    from hookwire.integrations.langchain import HookwireCallbackHandler

    metrics = MetricsCallback()
    chain.invoke({"question": "..."}, config={"callbacks": [HookwireCallbackHandler([metrics])]})

LangChain events become hookwire events, with LangChain's run ids (as strings) and parents:

========================================  ================================================
LangChain                                 hookwire
========================================  ================================================
``on_chain_start`` / ``on_chain_end``     ``on_run_start`` / ``on_run_end`` (with the
                                          usage and cost summed over the run's LLM calls)
``on_chat_model_start``, ``on_llm_start``  ``on_llm_start`` (messages as OpenAI-style dicts)
``on_llm_new_token``                      ``on_llm_new_token`` (``attempt``, ``index``)
``on_llm_end``                            ``on_llm_end`` with an ``LLMResponse`` (usage from
                                          ``usage_metadata``, cost when priced)
``on_llm_error``                          ``on_llm_error`` (a ``hookwire.errors`` exception)
``on_retry``                              ``on_retry``
``on_tool_start`` / ``_end`` / ``_error``  ``on_tool_start`` / ``_end`` / ``_error``
``on_retriever_end``                      ``on_memory_recall(query, [page contents])``
========================================  ================================================

A failure that ends the outermost LangChain run is reported once with ``on_error`` (``stage``
``"llm"``, ``"tool"``, ``"memory"`` or ``"run"``). The request context (``user_id``,
``conversation_id``, ...) comes from ``hookwire.trace`` / ``hookwire.request_context`` around
the LangChain call, from the handler's own keywords, and from LangChain's
``config={"metadata": {...}}``, the last one winning. Inside a ``hookwire.trace`` the
outermost LangChain run is a child of the hookwire run.

A hookwire handler that raises ``CallbackAbort`` (a budget) from ``on_llm_start`` stops the
LangChain call: ``on_budget_exceeded`` and ``on_error(stage="budget")`` are emitted and the
exception reaches the caller. Any other failure, in the bridge or in a handler, is logged and
never reaches the app. Needs the ``hookwire[langchain]`` extra.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any
from uuid import UUID

try:
    from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
    from langchain_core.messages import BaseMessage, convert_to_openai_messages
except ModuleNotFoundError as exc:  # pragma: no cover - exercised only without the extra
    raise ModuleNotFoundError(
        "hookwire.integrations.langchain needs LangChain: pip install 'hookwire[langchain]'",
        name=exc.name,
    ) from exc

import orjson

from ..context import hook_context
from ..dispatch import CallbackManager, Callbacks
from ..errors import BudgetExceeded, CallbackAbort
from ..events import REQUEST_CONTEXT_KEYS, LLMResponse, ToolCall, Usage
from ._common import check_context, price, to_hookwire_error

__all__ = ["AsyncHookwireCallbackHandler", "HookwireCallbackHandler", "openai_messages"]

logger = logging.getLogger("hookwire")

_perf = time.perf_counter
_REQUEST_KEYS = frozenset(REQUEST_CONTEXT_KEYS)
#: Metadata LangChain adds for its own tracing; set aside in one set difference per run.
_LC_KEYS = frozenset(
    {
        "ls_provider",
        "ls_model_name",
        "ls_model_type",
        "ls_temperature",
        "ls_max_tokens",
        "ls_stop",
        "ls_integration",
        "ls_structured_output_format",
        "lc_versions",
    }
)

#: ``invocation_params`` keys passed on as they are (the ones the event contract names).
_PARAM_KEYS = frozenset(
    (
        "temperature",
        "max_tokens",
        "max_completion_tokens",
        "top_p",
        "top_k",
        "frequency_penalty",
        "presence_penalty",
        "seed",
        "n",
        "stop",
        "response_format",
    )
)

#: One hook call: the hook's name, its positional arguments, its keywords.
Emit = tuple[str, tuple[Any, ...], dict[str, Any]]


class _Run:
    """What the bridge remembers about an open LangChain run until it ends.

    No ``__slots__``: the fields most runs never set (tokens, usage, a pending error, ...) are
    class-level defaults, so opening a run sets only six.
    """

    start: float = 0.0  # set for LLM calls and tools, whose latency is reported
    first_token: float | None = None
    tokens: int = 0
    token_kw: dict[str, Any]
    usage: Usage | None = None
    cost: Decimal | None = None
    model: str | None = None
    provider: str | None = None
    query: str = ""
    # The error a child reported, and at which stage, so that the outermost run reports the
    # failure once with the stage where it began.
    pending: tuple[BaseException, str] | None = None

    def __init__(
        self,
        kind: str,
        name: str,
        base: dict[str, Any],
        trace_id: str,
        depth: int,
        parent: Any,
    ) -> None:
        self.kind = kind
        self.name = name
        self.base = base
        self.trace_id = trace_id
        self.depth = depth
        self.parent = parent


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for block in content:
            if isinstance(block, str):
                out.append(block)
            elif isinstance(block, Mapping) and isinstance(block.get("text"), str):
                out.append(block["text"])
        return "".join(out)
    return "" if content is None else str(content)


def _name(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any], default: str) -> str:
    name = kwargs.get("name")
    if name:
        return str(name)
    if serialized:
        if serialized.get("name"):
            return str(serialized["name"])
        ids = serialized.get("id")
        if isinstance(ids, list) and ids:
            return str(ids[-1])
    return default


def _usage(message: Any, llm_output: Mapping[str, Any] | None) -> Usage | None:
    um = getattr(message, "usage_metadata", None)
    if um:
        details_in = um.get("input_token_details") or {}
        details_out = um.get("output_token_details") or {}
        return Usage(
            prompt_tokens=int(um.get("input_tokens") or 0),
            completion_tokens=int(um.get("output_tokens") or 0),
            total_tokens=int(um.get("total_tokens") or -1),
            cached_tokens=details_in.get("cache_read"),
            reasoning_tokens=details_out.get("reasoning"),
        )
    if llm_output:
        tu = llm_output.get("token_usage") or llm_output.get("usage")
        if isinstance(tu, Mapping) and tu:
            return Usage(
                prompt_tokens=int(tu.get("prompt_tokens") or tu.get("input_tokens") or 0),
                completion_tokens=int(tu.get("completion_tokens") or tu.get("output_tokens") or 0),
                total_tokens=int(tu.get("total_tokens") or -1),
            )
    return None


def _tool_calls(message: Any) -> tuple[ToolCall, ...]:
    calls = getattr(message, "tool_calls", None)
    if not calls:
        return ()
    return tuple(
        ToolCall(
            id=str(tc.get("id") or ""),
            name=str(tc.get("name") or ""),
            arguments=orjson.dumps(tc.get("args") or {}, default=str).decode(),
        )
        for tc in calls
    )


def _output(value: Any) -> Any:
    if isinstance(value, BaseMessage):
        return _text(value.content)
    return value


def _input(value: Any) -> Any:
    """A chain's input as hookwire's runs carry it: a single text value as that text
    (``{"question": "..."}`` gives ``"..."``), a message as its text, messages as dicts, anything
    else as it is."""
    if (type(value) is dict or isinstance(value, Mapping)) and len(value) == 1:
        for only in value.values():
            if isinstance(only, str):
                return only
        return value
    if isinstance(value, BaseMessage):
        return _text(value.content)
    if isinstance(value, list) and value and isinstance(value[0], BaseMessage):
        return openai_messages(value)
    return value


_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def openai_messages(batch: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages as OpenAI-style dicts, as ``convert_to_openai_messages`` gives them.

    The common messages (text content, tool calls, tool results) are converted here, ten times
    faster; anything else goes through LangChain's own converter.
    """
    out: list[dict[str, Any]] = []
    for m in batch:
        role = _ROLES.get(m.type)
        content = m.content
        if role is None or not isinstance(content, str) or m.additional_kwargs:
            return convert_to_openai_messages(batch)
        d: dict[str, Any] = {"role": role, "content": content}
        if m.name:
            d["name"] = m.name
        if role == "assistant":
            calls = getattr(m, "tool_calls", None)
            if calls:
                d["tool_calls"] = [
                    {
                        "type": "function",
                        "id": tc["id"],
                        "function": {"name": tc["name"], "arguments": json.dumps(tc["args"])},
                    }
                    for tc in calls
                ]
        elif role == "tool":
            d["tool_call_id"] = getattr(m, "tool_call_id", None)
        out.append(d)
    return out


class _Bridge:
    """Turns LangChain callbacks into hookwire hook calls (shared by the sync and async
    handlers, which differ only in how they dispatch)."""

    max_runs = 10_000

    def __init__(self, callbacks: Callbacks, context: Mapping[str, Any]) -> None:
        self.manager = CallbackManager.ensure(callbacks)
        self.context = check_context(context)
        # Keyed by LangChain's run ids as given (UUIDs): cheaper than their text each time.
        self.runs: dict[Any, _Run] = {}
        self._failed_once: set[str] = set()

    # -- ids and context --------------------------------------------------------------------

    def open(
        self,
        kind: str,
        name: str,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
    ) -> _Run:
        rid = str(run_id)
        base: dict[str, Any] = {"run_id": rid}
        if self.context:
            base.update(self.context)
        if parent_run_id is not None:
            parent = self.runs.get(parent_run_id)
            if parent is not None:
                base["parent_run_id"] = parent.base["run_id"]
                trace_id, depth = parent.trace_id, parent.depth + 1
            else:
                pid = base["parent_run_id"] = str(parent_run_id)
                ctx = hook_context()
                trace_id, depth = ctx.get("trace_id") or pid, ctx.get("depth", 0) + 1
        else:
            # The outermost LangChain run: a child of the enclosing hookwire run, if any (the
            # manager fills in parent_run_id from the context).
            ctx = hook_context()
            trace_id, depth = ctx.get("trace_id") or rid, ctx.get("depth", 0)
        base["trace_id"] = trace_id
        if depth:
            base["depth"] = depth
        if tags:
            base["tags"] = tuple(tags)
        rest = metadata.keys() - _LC_KEYS if metadata else None
        if rest:
            own: dict[str, Any] = {}
            for k in rest:
                v = metadata[k]  # type: ignore[index]
                if k in _REQUEST_KEYS:
                    if v is not None:
                        base[k] = v
                elif not k.startswith(("ls_", "lc_")):  # LangChain's own bookkeeping
                    own[k] = v
            if own:
                inherited = hook_context().get("metadata")
                base["metadata"] = {**inherited, **own} if inherited else own
        run = _Run(kind, name, base, trace_id, depth, parent_run_id)
        if len(self.runs) >= self.max_runs:
            # A run whose end never came (a framework bug or a dropped event): forget the
            # oldest rather than grow without bound.
            self.runs.pop(next(iter(self.runs)), None)
        self.runs[run_id] = run
        return run

    def close(self, run_id: UUID) -> _Run | None:
        return self.runs.pop(run_id, None)

    def failed(self, where: str, exc: BaseException) -> None:
        """Log a failure of the bridge itself, with its traceback the first time."""
        if where not in self._failed_once:
            self._failed_once.add(where)
            logger.error(
                "hookwire: the LangChain bridge failed in %s (the event is skipped)",
                where,
                exc_info=exc,
            )
        else:
            logger.debug("hookwire: the LangChain bridge failed in %s: %r", where, exc)

    def _error_emits(self, run: _Run, error: BaseException, stage: str) -> list[Emit]:
        """``on_error`` once for a failure: now if ``run`` is outermost, else left to the
        outermost run (through ``pending``)."""
        parent = self.runs.get(run.parent) if run.parent is not None else None
        if parent is not None:
            parent.pending = (error, stage)
            return []
        return [("on_error", (error,), {**run.base, "stage": stage})]

    # -- chains -----------------------------------------------------------------------------

    def chain_start(
        self,
        serialized: Mapping[str, Any] | None,
        inputs: Any,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> tuple[Any, dict[str, Any]]:
        """The payload and keywords of ``on_run_start`` (chains are the most frequent event:
        one emit, no list)."""
        name = kwargs.get("name") or _name(serialized, kwargs, "chain")
        run = self.open("chain", name, run_id, parent_run_id, tags, metadata)
        run.base["name"] = name
        return _input(inputs), run.base

    def _roll_up(self, run: _Run) -> None:
        """Add a finished run's usage and cost to its parent's, and name its model there."""
        parent = self.runs.get(run.parent) if run.parent is not None else None
        if parent is None:
            return
        if run.usage is not None:
            parent.usage = run.usage if parent.usage is None else parent.usage + run.usage
        if run.cost is not None:
            parent.cost = run.cost if parent.cost is None else parent.cost + run.cost
        if run.model is not None:
            parent.model = run.model

    def chain_end(self, outputs: Any, run_id: UUID) -> tuple[Any, dict[str, Any]] | None:
        """The payload and keywords of ``on_run_end``, or ``None`` for an unknown run."""
        run = self.runs.pop(run_id, None)
        if run is None:
            return None
        kw = run.base
        if run.model is not None or run.usage is not None:  # an LLM call ended inside it
            kw = {**kw, "model": run.model}
            if run.usage is not None:
                kw["usage"] = run.usage
            if run.cost is not None:
                kw["cost"] = run.cost
            self._roll_up(run)
        return _output(outputs), kw

    def chain_error(self, error: BaseException, run_id: UUID) -> list[Emit]:
        run = self.close(run_id)
        if run is None:
            return []
        emits: list[Emit] = [("on_run_end", (None,), {**run.base, "error": error})]
        self._roll_up(run)
        pending = run.pending
        if pending is not None and pending[0] is error:
            if pending[1] == "tool":
                return emits  # on_error(stage="tool") already went out with the tool's error
            stage = pending[1]
        else:
            stage = "run"
        emits.extend(self._error_emits(run, error, stage))
        return emits

    # -- LLM calls --------------------------------------------------------------------------

    def llm_start(
        self,
        serialized: Mapping[str, Any] | None,
        prompt: Any,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> tuple[Any, dict[str, Any]]:
        """The payload and keywords of ``on_llm_start``."""
        ip: Mapping[str, Any] = kwargs.get("invocation_params") or {}
        meta = metadata or {}
        model = (
            meta.get("ls_model_name")
            or ip.get("model")
            or ip.get("model_name")
            or ip.get("model_id")
        )
        provider = meta.get("ls_provider") or ip.get("_type")
        name = _name(serialized, kwargs, "llm")
        run = self.open("llm", name, run_id, parent_run_id, tags, metadata)
        run.start = _perf()
        run.model = str(model) if model else None
        run.provider = str(provider) if provider else None
        if run.model:
            run.base["model"] = run.model
        if run.provider:
            run.base["provider"] = run.provider
        params: dict[str, Any] = {}
        if run.model:
            params["model"] = run.model
        for key, value in ip.items():
            if value is not None and key in _PARAM_KEYS:
                params[key] = value
        options = kwargs.get("options")
        if isinstance(options, Mapping) and options.get("stop") and "stop" not in params:
            params["stop"] = options["stop"]
        tools = ip.get("tools")
        if tools:
            names = []
            for t in tools:
                if isinstance(t, Mapping):
                    fn = t.get("function")
                    names.append(str((fn or t).get("name", "")))
            params["tools"] = names
        kw = {**run.base, "invocation_params": params}
        if ip.get("stream") is not None:
            kw["stream"] = bool(ip["stream"])
        return prompt, kw

    def chat_model_start(
        self,
        serialized: Mapping[str, Any] | None,
        messages: list[list[BaseMessage]],
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> tuple[Any, dict[str, Any]]:
        batch = messages[0] if messages else []
        # Converting the messages is the costly part of a start: skip it when nobody reads them.
        prompt = openai_messages(batch) if self.manager.listens("on_llm_start") else batch
        return self.llm_start(serialized, prompt, run_id, parent_run_id, tags, metadata, kwargs)

    def token(self, token: Any, run_id: UUID) -> tuple[str, int, dict[str, Any]] | None:
        """The text, index and other keywords of a token event, or ``None`` when there is
        nothing to send.

        Tokens are the hot path of a stream: no list of emits, and the keywords every token
        of a call shares are built once, at its first token.
        """
        run = self.runs.get(run_id)
        if run is None:
            return None
        text = token if type(token) is str else _text(token)
        if not text:
            return None
        index = run.tokens
        run.tokens = index + 1
        if index == 0:
            run.first_token = _perf()
            run.token_kw = {**run.base, "attempt": 1}
        if not self.manager.listens("on_llm_new_token"):
            return None
        return text, index, run.token_kw

    def llm_end(self, response: Any, run_id: UUID) -> tuple[LLMResponse, dict[str, Any]] | None:
        """The payload and keywords of ``on_llm_end``, or ``None`` when there is none to send."""
        run = self.runs.pop(run_id, None)
        if run is None:
            return None
        now = _perf()
        generations = getattr(response, "generations", None) or [[]]
        gen = generations[0][0] if generations and generations[0] else None
        message = getattr(gen, "message", None)
        llm_output = getattr(response, "llm_output", None)
        meta: Mapping[str, Any] = getattr(message, "response_metadata", None) or {}
        info: Mapping[str, Any] = getattr(gen, "generation_info", None) or {}
        usage = _usage(message, llm_output)
        model = (
            meta.get("model_name")
            or meta.get("model")
            or (llm_output or {}).get("model_name")
            or run.model
        )
        finish = meta.get("finish_reason") or meta.get("stop_reason") or info.get("finish_reason")
        rid = meta.get("id")
        if rid is None:
            mid = getattr(message, "id", None)
            if isinstance(mid, str) and not mid.startswith(("run-", "lc_run-")):
                rid = mid
        cost = price(str(model) if model else None, usage, run.provider) if usage else None
        run.usage = usage
        run.cost = cost
        run.model = str(model) if model else run.model
        self._roll_up(run)
        if not self.manager.listens("on_llm_end"):
            return None  # the usage still counts for the runs around it
        result = LLMResponse(
            content=getattr(gen, "text", "") or "",
            usage=usage or Usage(),
            model=str(model) if model else None,
            finish_reason=str(finish) if finish else None,
            tool_calls=_tool_calls(message),
            provider=run.provider,
            id=str(rid) if rid else None,
            cost=cost,
        )
        kw = {
            **run.base,
            "latency_ms": (now - run.start) * 1000.0,
            "attempts": 1,
            "stream": run.tokens > 0,
        }
        if run.first_token is not None:
            kw["ttft_ms"] = (run.first_token - run.start) * 1000.0
        return result, kw

    def llm_error(self, error: BaseException, run_id: UUID, partial: Any = None) -> list[Emit]:
        if isinstance(error, (GeneratorExit, asyncio.CancelledError)):
            # The caller stopped reading the stream (or was cancelled): not a failure. Report
            # the answer so far, as the openai instrumentation does for a stream cut short.
            ended = self.llm_end(partial, run_id)
            if ended is None:
                return []
            response, kw = ended
            kw["cancelled"] = True
            return [("on_llm_end", (dataclasses.replace(response, finish_reason=None),), kw)]
        run = self.close(run_id)
        if run is None:
            return []
        mapped = to_hookwire_error(error, provider=run.provider, model=run.model)
        kw = {**run.base, "latency_ms": (_perf() - run.start) * 1000.0, "attempts": 1}
        emits: list[Emit] = [("on_llm_error", (mapped,), kw)]
        parent = self.runs.get(run.parent) if run.parent is not None else None
        if parent is not None:
            parent.pending = (error, "llm")
        else:
            emits.append(("on_error", (mapped,), {**run.base, "stage": "llm"}))
        return emits

    def retry(self, retry_state: Any, run_id: UUID) -> list[Emit]:
        run = self.runs.get(run_id)
        base = run.base if run is not None else {"run_id": str(run_id)}
        attempt = int(getattr(retry_state, "attempt_number", 0) or 0)
        outcome = getattr(retry_state, "outcome", None)
        error: BaseException | None = None
        if outcome is not None and getattr(outcome, "failed", False):
            error = outcome.exception()
        stop = getattr(getattr(retry_state, "retry_object", None), "stop", None)
        max_attempts = int(getattr(stop, "max_attempt_number", 0) or 0)
        kw = dict(base)
        sleep = getattr(getattr(retry_state, "next_action", None), "sleep", None)
        if sleep is not None:
            kw["delay"] = float(sleep)
        mapped = to_hookwire_error(error) if error is not None else RuntimeError("retry")
        return [("on_retry", (attempt, max_attempts, mapped), kw)]

    # -- tools ------------------------------------------------------------------------------

    def tool_start(
        self,
        serialized: Mapping[str, Any] | None,
        input_str: str,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> list[Emit]:
        name = _name(serialized, kwargs, "tool")
        run = self.open("tool", name, run_id, parent_run_id, tags, metadata)
        run.start = _perf()
        inputs = kwargs.get("inputs")
        if not isinstance(inputs, Mapping):
            try:
                parsed = orjson.loads(input_str)
            except (orjson.JSONDecodeError, TypeError):
                parsed = None
            inputs = parsed if isinstance(parsed, dict) else {"input": input_str}
        call_id = kwargs.get("tool_call_id")
        if call_id:
            run.base["tool_call_id"] = str(call_id)
        return [("on_tool_start", (name, dict(inputs)), dict(run.base))]

    def tool_end(self, output: Any, run_id: UUID) -> list[Emit]:
        run = self.close(run_id)
        if run is None:
            return []
        content = getattr(output, "content", output)
        if not isinstance(content, str):
            content = (
                _text(content)
                if isinstance(content, list)
                else orjson.dumps(content, default=str).decode()
            )
        kw = {**run.base, "latency_ms": (_perf() - run.start) * 1000.0}
        return [("on_tool_end", (run.name, content), kw)]

    def tool_error(self, error: BaseException, run_id: UUID) -> list[Emit]:
        run = self.close(run_id)
        if run is None:
            return []
        kw = {**run.base, "latency_ms": (_perf() - run.start) * 1000.0}
        emits: list[Emit] = [
            ("on_tool_error", (run.name, error), kw),
            ("on_error", (error,), {**run.base, "stage": "tool"}),
        ]
        parent = self.runs.get(run.parent) if run.parent is not None else None
        if parent is not None:
            parent.pending = (error, "tool")
        return emits

    # -- retrievers -------------------------------------------------------------------------

    def retriever_start(
        self,
        serialized: Mapping[str, Any] | None,
        query: str,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> list[Emit]:
        name = _name(serialized, kwargs, "retriever")
        run = self.open("retriever", name, run_id, parent_run_id, tags, metadata)
        run.query = query
        return []

    def retriever_end(self, documents: Sequence[Any], run_id: UUID) -> list[Emit]:
        run = self.close(run_id)
        if run is None:
            return []
        results = [getattr(d, "page_content", d) for d in documents]
        return [("on_memory_recall", (run.query, results), {**run.base, "memory": run.name})]

    def retriever_error(self, error: BaseException, run_id: UUID) -> list[Emit]:
        run = self.close(run_id)
        if run is None:
            return []
        return self._error_emits(run, error, "memory")

    # -- budgets ----------------------------------------------------------------------------

    def aborted(self, abort: CallbackAbort, kw: Mapping[str, Any]) -> list[Emit]:
        """A start hook refused to go on: forget the run and say why, as runners do."""
        kind = None
        for key, run in list(self.runs.items()):
            if run.base.get("run_id") == kw.get("run_id"):
                kind = run.kind
                del self.runs[key]
        base = {k: v for k, v in kw.items() if k not in ("invocation_params", "name")}
        emits: list[Emit] = []
        if kind == "llm":
            # As hookwire's own clients do: the call ends as failed, then the refusal is told.
            emits.append(("on_llm_error", (abort,), {**base, "attempts": 0}))
        if isinstance(abort, BudgetExceeded):
            emits.append(("on_budget_exceeded", (abort,), base))
        emits.append(("on_error", (abort,), {**base, "stage": "budget"}))
        return emits


class HookwireCallbackHandler(BaseCallbackHandler):
    """A LangChain callback handler that sends LangChain's events to hookwire handlers.

    ``callbacks`` is a list of hookwire handlers (or a ``CallbackManager``);
    ``**context`` sets request context for every event (``user_id``, ``org_id``,
    ``conversation_id``, ``correlation_id``, ``request_id``, ``agent``). Pass it where
    LangChain takes callbacks: ``config={"callbacks": [handler]}``, or a model's
    ``callbacks=[handler]``.

    It runs inline (``run_inline = True``), also from LangChain's async code, so events keep
    their order and contextvars; hookwire handlers that do I/O still run in the background.
    With async hookwire handlers in async LangChain code, prefer
    ``AsyncHookwireCallbackHandler``.
    """

    run_inline = True
    # Only deliberate exceptions escape hookwire's dispatch (a budget's ``CallbackAbort``, or
    # a handler marked ``raise_error``); LangChain must let those through to the caller.
    raise_error = True

    def __init__(self, callbacks: Callbacks = None, **context: Any) -> None:
        super().__init__()
        self._bridge = _Bridge(callbacks, context)

    @property
    def manager(self) -> CallbackManager:
        """The hookwire ``CallbackManager`` the events go to."""
        return self._bridge.manager

    def _send(self, emits: list[Emit]) -> None:
        manager = self._bridge.manager
        for hook, args, kw in emits:
            getattr(manager, hook)(*args, **kw)

    def _emit(self, where: str, make: Callable[..., list[Emit]], *args: Any) -> None:
        try:
            emits = make(*args)
        except Exception as exc:
            self._bridge.failed(where, exc)
            return
        manager = self._bridge.manager
        for hook, args, kw in emits:
            try:
                getattr(manager, hook)(*args, **kw)
            except CallbackAbort as abort:
                for h, a, k in self._bridge.aborted(abort, kw):
                    getattr(manager, h)(*a, **k)
                raise

    # LangChain's signatures, kept as LangChain declares them.

    def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A chain began: ``on_run_start``."""
        bridge = self._bridge
        try:
            payload, kw = bridge.chain_start(
                serialized, inputs, run_id, parent_run_id, tags, metadata, kwargs
            )
        except Exception as exc:
            bridge.failed("on_chain_start", exc)
            return
        try:
            bridge.manager.on_run_start(payload, **kw)
        except CallbackAbort as abort:
            self._send(bridge.aborted(abort, kw))
            raise

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A chain returned: ``on_run_end``."""
        bridge = self._bridge
        try:
            event = bridge.chain_end(outputs, run_id)
        except Exception as exc:
            bridge.failed("on_chain_end", exc)
            return
        if event is not None:
            bridge.manager.on_run_end(event[0], **event[1])

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """A chain raised: ``on_run_end(None, error=...)``, and ``on_error`` if outermost."""
        self._emit("on_chain_error", self._bridge.chain_error, error, run_id)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A chat model call began: ``on_llm_start`` with the messages as dicts."""
        bridge = self._bridge
        try:
            prompt, kw = bridge.chat_model_start(
                serialized, messages, run_id, parent_run_id, tags, metadata, kwargs
            )
        except Exception as exc:
            bridge.failed("on_chat_model_start", exc)
            return
        try:
            bridge.manager.on_llm_start(prompt, **kw)
        except CallbackAbort as abort:
            self._send(bridge.aborted(abort, kw))
            raise

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A text LLM call began: ``on_llm_start`` with the prompt text."""
        bridge = self._bridge
        try:
            prompt, kw = bridge.llm_start(
                serialized,
                prompts[0] if prompts else "",
                run_id,
                parent_run_id,
                tags,
                metadata,
                kwargs,
            )
        except Exception as exc:
            bridge.failed("on_llm_start", exc)
            return
        try:
            bridge.manager.on_llm_start(prompt, **kw)
        except CallbackAbort as abort:
            self._send(bridge.aborted(abort, kw))
            raise

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A streamed token: ``on_llm_new_token``."""
        # The bridge's token() inlined: this runs once per token of every stream.
        bridge = self._bridge
        try:
            run = bridge.runs.get(run_id)
            if run is None:
                return
            text = token if type(token) is str else _text(token)
            if not text:
                return
            index = run.tokens
            run.tokens = index + 1
            if index == 0:
                run.first_token = _perf()
                run.token_kw = {**run.base, "attempt": 1}
            manager = bridge.manager
            if not manager.listens("on_llm_new_token"):
                return
        except Exception as exc:
            bridge.failed("on_llm_new_token", exc)
            return
        manager.on_llm_new_token(text, index=index, **run.token_kw)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """The call returned: ``on_llm_end`` with an ``LLMResponse``."""
        bridge = self._bridge
        try:
            event = bridge.llm_end(response, run_id)
        except Exception as exc:
            bridge.failed("on_llm_end", exc)
            return
        if event is not None:
            bridge.manager.on_llm_end(event[0], **event[1])

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """The call failed: ``on_llm_error``."""
        self._emit("on_llm_error", self._bridge.llm_error, error, run_id, kwargs.get("response"))

    def on_retry(self, retry_state: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A call will be retried: ``on_retry``."""
        self._emit("on_retry", self._bridge.retry, retry_state, run_id)

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A tool began: ``on_tool_start``."""
        kwargs["inputs"] = inputs
        self._emit(
            "on_tool_start",
            self._bridge.tool_start,
            serialized,
            input_str,
            run_id,
            parent_run_id,
            tags,
            metadata,
            kwargs,
        )

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A tool returned: ``on_tool_end``."""
        self._emit("on_tool_end", self._bridge.tool_end, output, run_id)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """A tool raised: ``on_tool_error`` and ``on_error(stage="tool")``."""
        self._emit("on_tool_error", self._bridge.tool_error, error, run_id)

    def on_retriever_start(
        self,
        serialized: dict[str, Any],
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A retriever began (remembered until it returns)."""
        self._emit(
            "on_retriever_start",
            self._bridge.retriever_start,
            serialized,
            query,
            run_id,
            parent_run_id,
            tags,
            metadata,
            kwargs,
        )

    def on_retriever_end(self, documents: Sequence[Any], *, run_id: UUID, **kwargs: Any) -> None:
        """A retriever returned: ``on_memory_recall(query, [page contents])``."""
        self._emit("on_retriever_end", self._bridge.retriever_end, documents, run_id)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """A retriever raised: ``on_error(stage="memory")`` (once, by the outermost run)."""
        self._emit("on_retriever_error", self._bridge.retriever_error, error, run_id)


class AsyncHookwireCallbackHandler(AsyncCallbackHandler):
    """The async twin of ``HookwireCallbackHandler``: hookwire handlers are awaited
    (``aon_*``) on the app's event loop. Use it in async LangChain code whose hookwire
    handlers are ``AsyncBaseCallback`` subclasses; it takes the same arguments."""

    raise_error = True

    def __init__(self, callbacks: Callbacks = None, **context: Any) -> None:
        super().__init__()
        self._bridge = _Bridge(callbacks, context)

    @property
    def manager(self) -> CallbackManager:
        """The hookwire ``CallbackManager`` the events go to."""
        return self._bridge.manager

    async def _send(self, emits: list[Emit]) -> None:
        manager = self._bridge.manager
        for hook, args, kw in emits:
            await getattr(manager, "a" + hook)(*args, **kw)

    async def _emit(self, where: str, make: Callable[..., list[Emit]], *args: Any) -> None:
        try:
            emits = make(*args)
        except Exception as exc:
            self._bridge.failed(where, exc)
            return
        manager = self._bridge.manager
        for hook, args, kw in emits:
            try:
                await getattr(manager, "a" + hook)(*args, **kw)
            except CallbackAbort as abort:
                for h, a, k in self._bridge.aborted(abort, kw):
                    fn: Callable[..., Awaitable[Any]] = getattr(manager, "a" + h)
                    await fn(*a, **k)
                raise

    async def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A chain began: ``on_run_start``."""
        bridge = self._bridge
        try:
            payload, kw = bridge.chain_start(
                serialized, inputs, run_id, parent_run_id, tags, metadata, kwargs
            )
        except Exception as exc:
            bridge.failed("on_chain_start", exc)
            return
        try:
            await bridge.manager.aon_run_start(payload, **kw)
        except CallbackAbort as abort:
            await self._send(bridge.aborted(abort, kw))
            raise

    async def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A chain returned: ``on_run_end``."""
        bridge = self._bridge
        try:
            event = bridge.chain_end(outputs, run_id)
        except Exception as exc:
            bridge.failed("on_chain_end", exc)
            return
        if event is not None:
            await bridge.manager.aon_run_end(event[0], **event[1])

    async def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """A chain raised."""
        await self._emit("on_chain_error", self._bridge.chain_error, error, run_id)

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A chat model call began."""
        bridge = self._bridge
        try:
            prompt, kw = bridge.chat_model_start(
                serialized, messages, run_id, parent_run_id, tags, metadata, kwargs
            )
        except Exception as exc:
            bridge.failed("on_chat_model_start", exc)
            return
        try:
            await bridge.manager.aon_llm_start(prompt, **kw)
        except CallbackAbort as abort:
            await self._send(bridge.aborted(abort, kw))
            raise

    async def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A text LLM call began."""
        bridge = self._bridge
        try:
            prompt, kw = bridge.llm_start(
                serialized,
                prompts[0] if prompts else "",
                run_id,
                parent_run_id,
                tags,
                metadata,
                kwargs,
            )
        except Exception as exc:
            bridge.failed("on_llm_start", exc)
            return
        try:
            await bridge.manager.aon_llm_start(prompt, **kw)
        except CallbackAbort as abort:
            await self._send(bridge.aborted(abort, kw))
            raise

    async def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A streamed token."""
        try:
            event = self._bridge.token(token, run_id)
        except Exception as exc:
            self._bridge.failed("on_llm_new_token", exc)
            return
        if event is not None:
            await self._bridge.manager.aon_llm_new_token(event[0], index=event[1], **event[2])

    async def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """The call returned."""
        bridge = self._bridge
        try:
            event = bridge.llm_end(response, run_id)
        except Exception as exc:
            bridge.failed("on_llm_end", exc)
            return
        if event is not None:
            await bridge.manager.aon_llm_end(event[0], **event[1])

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """The call failed."""
        await self._emit(
            "on_llm_error", self._bridge.llm_error, error, run_id, kwargs.get("response")
        )

    async def on_retry(self, retry_state: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A call will be retried."""
        await self._emit("on_retry", self._bridge.retry, retry_state, run_id)

    async def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A tool began."""
        kwargs["inputs"] = inputs
        await self._emit(
            "on_tool_start",
            self._bridge.tool_start,
            serialized,
            input_str,
            run_id,
            parent_run_id,
            tags,
            metadata,
            kwargs,
        )

    async def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A tool returned."""
        await self._emit("on_tool_end", self._bridge.tool_end, output, run_id)

    async def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """A tool raised."""
        await self._emit("on_tool_error", self._bridge.tool_error, error, run_id)

    async def on_retriever_start(
        self,
        serialized: dict[str, Any],
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A retriever began."""
        await self._emit(
            "on_retriever_start",
            self._bridge.retriever_start,
            serialized,
            query,
            run_id,
            parent_run_id,
            tags,
            metadata,
            kwargs,
        )

    async def on_retriever_end(
        self, documents: Sequence[Any], *, run_id: UUID, **kwargs: Any
    ) -> None:
        """A retriever returned: ``on_memory_recall``."""
        await self._emit("on_retriever_end", self._bridge.retriever_end, documents, run_id)

    async def on_retriever_error(
        self, error: BaseException, *, run_id: UUID, **kwargs: Any
    ) -> None:
        """A retriever raised."""
        await self._emit("on_retriever_error", self._bridge.retriever_error, error, run_id)
