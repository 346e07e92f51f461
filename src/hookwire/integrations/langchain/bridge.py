"""The translation of LangChain's callbacks into hookwire's hook calls, without I/O.

``Bridge`` keeps the LangChain runs that are open and turns each LangChain event into the hook
calls to make, as plain ``(hook, args, keywords)`` tuples; the handlers make the calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from types import FrameType
from typing import Any, Final
from uuid import UUID

import orjson
from langchain_core import callbacks as lc_callbacks
from langchain_core.language_models import BaseChatModel, BaseLLM
from langchain_core.messages import BaseMessage

from ...context import check_request_context, hook_context
from ...dispatch import CallbackManager, Callbacks
from ...errors import BudgetExceeded, CallbackAbort
from ...events import REQUEST_CONTEXT_KEYS, LLMResponse, Usage
from ...frozen import freeze
from ...llms.openai_wire import answer_keywords
from .._common import FailureLog, caused_by, end_keywords, price, to_hookwire_error
from . import convert

__all__ = ["Bridge", "Emit", "Start"]


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

#: What LangChain passes as a streamed chain's input at its start (the real one comes at its end).
_PLACEHOLDER: Final = {"input": ""}

#: One hook call: the hook's name, its positional arguments, its keywords.
Emit = tuple[str, tuple[Any, ...], dict[str, Any]]
#: What LangChain says of every run it starts: ``run_id``, ``parent_run_id``, ``tags``,
#: ``metadata``.
Start = tuple[UUID, UUID | None, Sequence[str] | None, Mapping[str, Any] | None]
#: LangChain's description of the object that starts a run (its name and id, if given).
Serialized = Mapping[str, Any] | None


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
    prompt: Any = None  # an LLM call's messages: the bound of an estimated usage
    response_id: str | None = None
    # The failure a child reported: LangChain's exception, hookwire's, the stage where it
    # began and whether ``on_error`` already went out, so that it is reported once.
    pending: tuple[BaseException, BaseException, str, bool] | None = None
    # A streamed chain's start, held back until its real input is known (see ``chain_start``).
    deferred: dict[str, Any] | None = None

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


class Bridge:
    """Turns LangChain callbacks into hookwire hook calls (shared by the sync and async
    handlers, which differ only in how they make the calls).

    A start event takes what LangChain says of the run (``Start``) and its other keywords;
    the others take the run id. Each returns the hook calls to make, in order.
    """

    max_runs = 10_000

    def __init__(
        self,
        callbacks: Callbacks,
        context: Mapping[str, Any],
        *,
        prompts_and_parsers: bool = False,
    ) -> None:
        self.manager = CallbackManager.ensure(callbacks)
        #: Whether prompts and output parsers are runs of their own (workflow steps).
        self.prompts_and_parsers = prompts_and_parsers
        self.context = check_request_context(context)
        # Keyed by LangChain's run ids as given (UUIDs): cheaper than their text each time.
        self.runs: dict[Any, _Run] = {}
        #: Logs failures of the bridge itself (the event is skipped).
        self.failed = FailureLog("the LangChain bridge", "the event is skipped")

    # -- ids and context --------------------------------------------------------------------

    def open(
        self,
        kind: str,
        name: str,
        start: Start,
    ) -> _Run:
        """Remember a run that LangChain started, with the ids and context of its events."""
        run_id, parent_run_id, tags, metadata = start
        rid = str(run_id)
        base: dict[str, Any] = {"run_id": rid}
        if self.context:
            base.update(self.context)
        parent = None
        if parent_run_id is not None:
            parent = self.runs.get(parent_run_id)
            # A hidden run (a prompt, a parser) is no run of its own: its children hang under
            # its nearest shown ancestor.
            while parent is not None and parent.kind == "hidden":
                parent_run_id = parent.parent
                parent = self.runs.get(parent_run_id) if parent_run_id is not None else None
        if parent is not None:
            base["parent_run_id"] = parent.base["run_id"]
            trace_id, depth = parent.trace_id, parent.depth + 1
        elif parent_run_id is not None:
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
                elif not k.startswith(("ls_", "lc_", "langgraph_", "checkpoint_")):
                    # not LangChain's nor LangGraph's own bookkeeping
                    own[k] = v
            if own:
                inherited = hook_context().get("metadata")
                # read-only: a handler's edit would reach the caller's config and later runs
                base["metadata"] = freeze({**inherited, **own} if inherited else own)
        run = _Run(kind, name, base, trace_id, depth, parent_run_id)
        self._remember(run_id, run)
        return run

    def _remember(self, run_id: UUID, run: _Run) -> None:
        if len(self.runs) >= self.max_runs:
            # A run whose end never came (a framework bug or a dropped event): forget the
            # oldest rather than grow without bound.
            self.runs.pop(next(iter(self.runs)), None)
        self.runs[run_id] = run

    def close(self, run_id: UUID) -> _Run | None:
        """Forget a run that ended; ``None`` if it was not open."""
        return self.runs.pop(run_id, None)

    def _parent(self, run: _Run) -> _Run | None:
        return self.runs.get(run.parent) if run.parent is not None else None

    def _report(
        self,
        run: _Run,
        failure: tuple[BaseException, BaseException, str, bool],
        emits: list[Emit],
    ) -> None:
        """Report a failure once with ``on_error``: now if ``run`` is outermost and it was not
        told yet, else by the outermost run (through ``pending``)."""
        parent = self._parent(run)
        if parent is not None:
            known = parent.pending
            # A sibling may have told the parent of this failure already, from where it began.
            if known is None or not caused_by(failure[0], known[0]):
                parent.pending = failure
        elif not failure[3]:
            emits.append(("on_error", (failure[1],), {**run.base, "stage": failure[2]}))

    def _flush(self, run: _Run | None, value: Any, emits: list[Emit]) -> None:
        """Send the held-back starts of ``run`` and its ancestors, outermost first, with the
        input ``value`` that just became known."""
        held: list[dict[str, Any]] = []
        while run is not None and run.deferred is not None:
            held.append(run.deferred)
            run.deferred = None
            run = self._parent(run)
        if held:
            text = convert.chain_input(value)
            for kw in reversed(held):
                emits.append(("on_run_start", (text,), kw))

    # -- chains -----------------------------------------------------------------------------

    def _kind(self, serialized: Serialized, start: Start, kwargs: Mapping[str, Any]) -> str:
        """What a chain is to hookwire: ``"agent"`` (a LangGraph graph, an ``AgentExecutor``),
        ``"hidden"`` (a prompt or an output parser, unless asked for) or ``"workflow"``."""
        run_type = kwargs.get("run_type")
        meta = start[3]
        if run_type in ("prompt", "parser") or (
            meta and "langgraph_node" in meta and kwargs.get("name") == "Prompt"
        ):
            # The prebuilt ReAct agent's prompt step is a plain function named "Prompt".
            return "workflow" if self.prompts_and_parsers else "hidden"
        if meta and meta.get("ls_integration") == "langgraph" and "langgraph_node" not in meta:
            return "agent"  # a graph's own run; its nodes carry ``langgraph_node``
        if serialized:
            ids = serialized.get("id")
            if isinstance(ids, list) and ids and ids[-1] == "AgentExecutor":
                return "agent"
        return "workflow"

    def chain_start(
        self, serialized: Serialized, inputs: Any, start: Start, kwargs: Mapping[str, Any]
    ) -> list[Emit]:
        """``on_run_start`` (``kind`` ``"agent"`` or ``"workflow"``); nothing for a hidden run.

        A streamed LCEL chain starts with the placeholder ``{"input": ""}``: its start is held
        back until a run inside it starts (with the real input) or it ends (LangChain then
        passes the input)."""
        name = kwargs.get("name") or convert.name_of(serialized, kwargs, "chain")
        kind = self._kind(serialized, start, kwargs)
        emits: list[Emit] = []
        placeholder = type(inputs) is dict and inputs == _PLACEHOLDER
        if kind == "hidden":
            # Only remembered, so that what runs inside it hangs under its parent.
            parent_key = start[1]
            parent = self.runs.get(parent_key) if parent_key is not None else None
            if parent is not None and parent.kind == "hidden":
                parent_key = parent.parent
                parent = self.runs.get(parent_key) if parent_key is not None else None
            self._remember(start[0], _Run("hidden", name, {}, "", 0, parent_key))
            if not placeholder:
                self._flush(parent, inputs, emits)
            return emits
        run = self.open(kind, name, start)
        if not placeholder:
            self._flush(self._parent(run), inputs, emits)
        run.base["name"] = name
        run.base["kind"] = kind
        if placeholder:
            run.deferred = run.base
        else:
            emits.append(("on_run_start", (convert.chain_input(inputs),), run.base))
        return emits

    def _roll_up(self, run: _Run) -> None:
        """Add a finished run's usage and cost to its parent's, and name its model there."""
        parent = self._parent(run)
        if parent is None:
            return
        if run.usage is not None:
            parent.usage = run.usage if parent.usage is None else parent.usage + run.usage
        if run.cost is not None:
            parent.cost = run.cost if parent.cost is None else parent.cost + run.cost
        if run.model is not None:
            parent.model = run.model

    def chain_end(self, outputs: Any, run_id: UUID, inputs: Any = None) -> list[Emit]:
        """``on_run_end``, with the usage and cost of the LLM calls inside the run."""
        run = self.runs.pop(run_id, None)
        if run is None:
            return []
        emits: list[Emit] = []
        if run.deferred is not None:
            self._flush(run, inputs if inputs is not None else "", emits)
        if run.kind == "hidden":
            return emits
        kw = run.base
        if run.model is not None or run.usage is not None:  # an LLM call ended inside it
            kw = {**kw, "model": run.model}
            if run.usage is not None:
                kw["usage"] = run.usage
            if run.cost is not None:
                kw["cost"] = run.cost
            self._roll_up(run)
        emits.append(("on_run_end", (convert.chain_output(outputs),), kw))
        return emits

    def chain_error(self, error: BaseException, run_id: UUID) -> list[Emit]:
        """``on_run_end(None, error=...)``, and ``on_error`` if the run is outermost."""
        run = self.close(run_id)
        if run is None:
            return []
        emits: list[Emit] = []
        if run.deferred is not None:
            self._flush(run, "", emits)
        if run.kind != "hidden":
            emits.append(("on_run_end", (None,), {**run.base, "error": error}))
        self._roll_up(run)
        pending = run.pending
        if pending is None or not caused_by(error, pending[0]):
            pending = (error, error, "run", False)
        self._report(run, pending, emits)
        return emits

    # -- LLM calls --------------------------------------------------------------------------

    def chat_model_start(
        self,
        serialized: Serialized,
        messages: list[list[BaseMessage]],
        start: Start,
        kwargs: Mapping[str, Any],
    ) -> list[Emit]:
        """``on_llm_start`` with the messages as OpenAI-style dicts."""
        batch = messages[0] if messages else []
        # Converting the messages is the costly part of a start: skip it when nobody reads them.
        prompt = convert.openai_messages(batch) if self.manager.listens("on_llm_start") else batch
        return self._llm_start(serialized, prompt, start, kwargs)

    def llm_start(
        self, serialized: Serialized, prompts: list[str], start: Start, kwargs: Mapping[str, Any]
    ) -> list[Emit]:
        """``on_llm_start`` with the prompt text."""
        prompt = prompts[0] if prompts else ""
        return self._llm_start(serialized, prompt, start, kwargs)

    def _llm_start(
        self, serialized: Serialized, prompt: Any, start: Start, kwargs: Mapping[str, Any]
    ) -> list[Emit]:
        ip: Mapping[str, Any] = kwargs.get("invocation_params") or {}
        meta = start[3] or {}
        model = (
            meta.get("ls_model_name")
            or ip.get("model")
            or ip.get("model_name")
            or ip.get("model_id")
        )
        provider = meta.get("ls_provider") or ip.get("_type")
        run = self.open("llm", convert.name_of(serialized, kwargs, "llm"), start)
        run.start = _perf()
        run.prompt = prompt
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
        if ip.get("stream") or _streamed():
            kw["stream"] = True
        elif ip.get("stream") is not None:
            kw["stream"] = False
        emits: list[Emit] = []
        self._flush(self._parent(run), prompt, emits)
        emits.append(("on_llm_start", (prompt,), kw))
        return emits

    def token(
        self, token: Any, run_id: UUID, chunk: Any = None
    ) -> tuple[str, int, dict[str, Any]] | None:
        """The text, index and other keywords of a token event, or ``None`` when there is
        nothing to send.

        Tokens are the hot path of a stream: no list of emits, and the keywords every token
        of a call shares are built once, at its first token.
        """
        run = self.runs.get(run_id)
        if run is None:
            return None
        if run.first_token is None:
            # The first chunk, text or not (a tool call streams no text): the time to it.
            run.first_token = _perf()
            run.token_kw = {**run.base, "attempt": 1}
            mid = getattr(getattr(chunk, "message", None), "id", None)
            if isinstance(mid, str) and not mid.startswith(("run-", "lc_run-")):
                run.response_id = mid
        text = token if type(token) is str else convert.text_of(token)
        if not text:
            return None
        index = run.tokens
        run.tokens = index + 1
        if not self.manager.listens("on_llm_new_token"):
            return None
        return text, index, run.token_kw

    def llm_end(self, response: Any, run_id: UUID) -> list[Emit]:
        """``on_llm_end`` with an ``LLMResponse`` (none when no handler listens)."""
        run = self.runs.pop(run_id, None)
        if run is None:
            return []
        now = _perf()
        generations = getattr(response, "generations", None) or [[]]
        gen = generations[0][0] if generations and generations[0] else None
        message = getattr(gen, "message", None)
        llm_output = getattr(response, "llm_output", None)
        meta: Mapping[str, Any] = getattr(message, "response_metadata", None) or {}
        info: Mapping[str, Any] = getattr(gen, "generation_info", None) or {}
        usage = convert.usage_of(message, llm_output, run.prompt)
        model = (
            meta.get("model_name")
            or meta.get("model")
            or (llm_output or {}).get("model_name")
            or run.model
        )
        finish = meta.get("finish_reason") or meta.get("stop_reason") or info.get("finish_reason")
        rid = meta.get("id") or (llm_output or {}).get("id") or run.response_id
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
            return []  # the usage still counts for the runs around it
        result = LLMResponse(
            content=getattr(gen, "text", "") or "",
            usage=usage or Usage(),
            model=str(model) if model else None,
            finish_reason=str(finish) if finish else None,
            tool_calls=convert.tool_calls_of(message),
            provider=run.provider,
            id=str(rid) if rid else None,
            cost=cost,
        )
        kw = end_keywords(run.base, run.start, now, run.first_token)
        # How the answer was served, where the model's metadata says (ChatOpenAI's does).
        kw.update(answer_keywords(meta))
        return [("on_llm_end", (result,), kw)]

    def llm_error(self, error: BaseException, run_id: UUID, partial: Any = None) -> list[Emit]:
        """``on_llm_error`` (and ``on_error`` if outermost); a stream the caller stopped
        reading ends with ``on_llm_end(cancelled=True)`` instead."""
        if isinstance(error, (GeneratorExit, asyncio.CancelledError)):
            # The caller stopped reading the stream (or was cancelled): not a failure. Report
            # the answer so far, as the openai instrumentation does for a stream cut short.
            ended = self.llm_end(partial, run_id)
            if not ended:
                return []
            _, (response,), kw = ended[0]
            kw["cancelled"] = True
            return [("on_llm_end", (dataclasses.replace(response, finish_reason=None),), kw)]
        run = self.close(run_id)
        if run is None:
            return []
        mapped = to_hookwire_error(error, provider=run.provider, model=run.model)
        kw = {**run.base, "latency_ms": (_perf() - run.start) * 1000.0, "attempts": 1}
        emits: list[Emit] = [("on_llm_error", (mapped,), kw)]
        self._report(run, (error, mapped, "llm", False), emits)
        return emits

    def retry(self, retry_state: Any, run_id: UUID) -> list[Emit]:
        """``on_retry`` from tenacity's retry state."""
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
        self, serialized: Serialized, input_str: str, start: Start, kwargs: Mapping[str, Any]
    ) -> list[Emit]:
        """``on_tool_start`` with the tool's input as a dict."""
        name = convert.name_of(serialized, kwargs, "tool")
        run = self.open("tool", name, start)
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
        kw = dict(run.base)
        description = serialized.get("description") if serialized else None
        if isinstance(description, str) and description:
            kw["tool_description"] = description  # the start's only, as run_tool passes it
        emits: list[Emit] = []
        self._flush(self._parent(run), input_str, emits)
        emits.append(("on_tool_start", (name, dict(inputs)), kw))
        return emits

    def tool_end(self, output: Any, run_id: UUID) -> list[Emit]:
        """``on_tool_end`` with the output as text."""
        run = self.close(run_id)
        if run is None:
            return []
        content = getattr(output, "content", output)
        if not isinstance(content, str):
            content = (
                convert.text_of(content)
                if isinstance(content, list)
                else orjson.dumps(content, default=str).decode()
            )
        kw = {**run.base, "latency_ms": (_perf() - run.start) * 1000.0}
        return [("on_tool_end", (run.name, content), kw)]

    def tool_error(self, error: BaseException, run_id: UUID) -> list[Emit]:
        """``on_tool_error`` and ``on_error(stage="tool")``."""
        run = self.close(run_id)
        if run is None:
            return []
        kw = {**run.base, "latency_ms": (_perf() - run.start) * 1000.0}
        emits: list[Emit] = [
            ("on_tool_error", (run.name, error), kw),
            ("on_error", (error,), {**run.base, "stage": "tool"}),
        ]
        # Told now, as hookwire's runners tell a tool's failure; the runs around it do not
        # tell it again.
        self._report(run, (error, error, "tool", True), emits)
        return emits

    # -- retrievers -------------------------------------------------------------------------

    def retriever_start(
        self, serialized: Serialized, query: str, start: Start, kwargs: Mapping[str, Any]
    ) -> list[Emit]:
        """Nothing yet: the query is remembered until the retriever returns."""
        name = convert.name_of(serialized, kwargs, "retriever")
        run = self.open("retriever", name, start)
        run.query = query
        emits: list[Emit] = []
        self._flush(self._parent(run), query, emits)
        return emits

    def retriever_end(self, documents: Sequence[Any], run_id: UUID) -> list[Emit]:
        """``on_memory_recall(query, [page contents])``."""
        run = self.close(run_id)
        if run is None:
            return []
        results = [getattr(d, "page_content", d) for d in documents]
        return [("on_memory_recall", (run.query, results), {**run.base, "memory": run.name})]

    def retriever_error(self, error: BaseException, run_id: UUID) -> list[Emit]:
        """``on_error(stage="memory")``, once, by the outermost run."""
        run = self.close(run_id)
        if run is None:
            return []
        emits: list[Emit] = []
        self._report(run, (error, error, "memory", False), emits)
        return emits

    # -- budgets ----------------------------------------------------------------------------

    def aborted(self, abort: CallbackAbort, kw: Mapping[str, Any]) -> list[Emit]:
        """A start hook refused to go on: forget the run and say why, as runners do."""
        kind = None
        for key, run in list(self.runs.items()):
            if run.base.get("run_id") == kw.get("run_id"):
                kind = run.kind
                parent = self._parent(run)
                if parent is not None:
                    # Told here: the runs the refusal ends do not tell it again.
                    parent.pending = (abort, abort, "budget", True)
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


#: The ids of the code of LangChain's ``stream`` / ``astream``, whose calls stream whatever the
#: model's ``invocation_params`` say (ids: hashing a code object hashes all of it).
_STREAM_CODE: Final = frozenset(
    id(f.__code__)
    for f in (BaseChatModel.stream, BaseChatModel.astream, BaseLLM.stream, BaseLLM.astream)
)


#: The ids of the code of LangChain's callback managers' ``on_chat_model_start``, whose
#: handlers say whether the model will stream an ``invoke`` (LangGraph's
#: ``stream_mode="messages"`` adds a streaming handler).
_MANAGER_CODE: Final = frozenset(
    id(f.__code__)
    for f in (
        lc_callbacks.CallbackManager.on_chat_model_start,
        lc_callbacks.AsyncCallbackManager.on_chat_model_start,
    )
)


def _streamed() -> bool:
    """Whether the LLM call starting now streams although its ``invocation_params`` do not
    say so: made by LangChain's ``stream``/``astream``, or with a streaming handler among its
    callbacks (LangChain then streams an ``invoke``). LangChain's start callback says neither,
    so the few frames above it are looked at."""
    frame: FrameType | None = sys._getframe(2)
    for _ in range(10):
        if frame is None:
            return False
        code = id(frame.f_code)
        if code in _STREAM_CODE:
            return True
        if code in _MANAGER_CODE:
            handlers = getattr(frame.f_locals.get("self"), "handlers", None) or ()
            # what LangChain's ``_StreamingCallbackHandler`` protocol asks for
            if any(hasattr(h, "tap_output_iter") for h in handlers):
                return True
        frame = frame.f_back
    return False
