"""Typed, immutable records of what happens in an LLM application.

Handlers usually receive an event as a hook call (``on_llm_end(response, **kwargs)``); a
handler that overrides ``on_event`` receives the same event as one of the records below. The
record is only built when some handler asks for it, so the hook path pays nothing for it.

``HOOKS`` maps each hook name to its ``HookSpec``: its record type, positional arguments,
whether it starts or ends a run and which arguments carry content. It is the one place a hook
is declared: the base callbacks' methods, the dispatcher, the log schema, ``FileLogCallback``
and ``OpenTelemetryCallback`` are derived from it. ``declare_hook`` adds a hook of your own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import types
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, ClassVar, Final

from .errors import ConfigurationError
from .slots import FACTORY as _FACTORY
from .slots import slot_setters

__all__ = [
    "CONTEXT_KEYS",
    "HOOKS",
    "REQUEST_CONTEXT_KEYS",
    "BudgetExceededEvent",
    "EmbeddingEndEvent",
    "EmbeddingErrorEvent",
    "EmbeddingResponse",
    "EmbeddingStartEvent",
    "ErrorEvent",
    "Event",
    "HookListener",
    "HookSpec",
    "LLMEndEvent",
    "LLMErrorEvent",
    "LLMNewTokenEvent",
    "LLMResponse",
    "LLMStartEvent",
    "MemoryRecallEvent",
    "MemoryStoreEvent",
    "RetryEvent",
    "RunEndEvent",
    "RunStartEvent",
    "ToolCall",
    "ToolEndEvent",
    "ToolErrorEvent",
    "ToolStartEvent",
    "Usage",
    "declare_hook",
    "event_from_call",
    "hook_methods",
    "on_hook_declared",
    "remove_hook",
    "slot_setters",
    "utcnow",
]

#: Keys of the request context: who and what a call is for. Set with ``hookwire.trace`` or
#: ``hookwire.request_context``; every hook inside receives those that have a value.
REQUEST_CONTEXT_KEYS: tuple[str, ...] = (
    "correlation_id",
    "request_id",
    "user_id",
    "org_id",
    "conversation_id",
    "agent",
)

#: Every keyword a hook may receive besides its own payload, in documentation order.
CONTEXT_KEYS: tuple[str, ...] = (
    "run_id",
    "timestamp",
    "parent_run_id",
    "trace_id",
    "depth",
    "model",
    "provider",
    "tags",
    "metadata",
    *REQUEST_CONTEXT_KEYS,
)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one LLM call (or a sum of calls).

    ``total_tokens`` defaults to prompt + completion. ``cached_tokens`` (prompt tokens served
    from the provider's cache) and ``reasoning_tokens`` (completion tokens spent on hidden
    reasoning) are ``None`` when the provider did not say.

    ``cache_creation_tokens`` are prompt tokens written to the provider's prompt cache on this
    call (Anthropic's ``cache_creation_input_tokens``, priced at the cache-write rate); like
    ``cached_tokens`` (cache reads) they are counted in ``prompt_tokens`` too, and ``None``
    when the provider did not say.

    ``estimated`` is ``True`` when the provider sent no counts at all (a stream without its
    usage chunk, one the caller stopped early): ``prompt_tokens`` and ``completion_tokens``
    are then hookwire's upper bound (``hookwire.llms.estimate``), not the provider's figures,
    and ``known`` is ``False``. The ledger books such a call as of unknown cost with that
    estimate, budgets charge the estimate, and spans leave ``gen_ai.usage.*`` out. Adding an
    estimated usage to another gives an estimated sum.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = -1
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    estimated: bool = False
    # Last, so that the positional order of the fields before it is kept.
    cache_creation_tokens: int | None = None

    # Written out (a dataclass keeps the ``__init__`` its class defines) because the one
    # generated for a frozen class looks ``object.__setattr__`` up for every field: about three
    # times the cost of setting the slots through their descriptors, on every LLM call. The
    # same parameters, defaults and result; tests/test_events.py checks them against the fields.
    def __init__(
        self,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        total_tokens: int = -1,
        cached_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        estimated: bool = False,
        cache_creation_tokens: int | None = None,
    ) -> None:
        _usage_prompt(self, prompt_tokens)
        _usage_completion(self, completion_tokens)
        _usage_total(self, total_tokens)
        _usage_cached(self, cached_tokens)
        _usage_reasoning(self, reasoning_tokens)
        _usage_estimated(self, estimated)
        _usage_creation(self, cache_creation_tokens)
        if total_tokens < 0:
            _usage_total(self, prompt_tokens + completion_tokens)

    def __post_init__(self) -> None:
        # Run by the generated __init__ of a dataclass subclass (this class's own does the same).
        if self.total_tokens < 0:
            object.__setattr__(self, "total_tokens", self.prompt_tokens + self.completion_tokens)

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented

        def _opt(a: int | None, b: int | None) -> int | None:
            return None if a is None and b is None else (a or 0) + (b or 0)

        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            cached_tokens=_opt(self.cached_tokens, other.cached_tokens),
            reasoning_tokens=_opt(self.reasoning_tokens, other.reasoning_tokens),
            estimated=self.estimated or other.estimated,
            cache_creation_tokens=_opt(self.cache_creation_tokens, other.cache_creation_tokens),
        )

    @property
    def known(self) -> bool:
        """Whether the counts are the provider's (``False``: an estimate, see ``estimated``)."""
        return not self.estimated

    def to_dict(self) -> dict[str, int]:
        """The counts as a dict, leaving out the ones that are unknown (``estimated: 1`` when
        the counts are an estimate)."""
        out = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cached_tokens is not None:
            out["cached_tokens"] = self.cached_tokens
        if self.reasoning_tokens is not None:
            out["reasoning_tokens"] = self.reasoning_tokens
        if self.cache_creation_tokens is not None:
            out["cache_creation_tokens"] = self.cache_creation_tokens
        if self.estimated:
            out["estimated"] = 1
        return out


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A model's request to call a tool: ``arguments`` is the JSON text the model wrote."""

    id: str
    name: str
    arguments: str = "{}"


(
    _usage_prompt,
    _usage_completion,
    _usage_total,
    _usage_cached,
    _usage_reasoning,
    _usage_estimated,
    _usage_creation,
) = slot_setters(
    Usage,
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "estimated",
    "cache_creation_tokens",
)


def utcnow() -> datetime:
    """The current time, timezone-aware (UTC): what a record's ``created_at`` defaults to."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class LLMResponse:
    """What an LLM call returned.

    ``created_at`` is a timezone-aware UTC datetime. ``cost`` is the call's price in
    ``currency`` when hookwire knows the model's price, else ``None`` (never 0 for unknown).
    """

    content: str
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    finish_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    provider: str | None = None
    id: str | None = None
    cost: Decimal | None = None
    currency: str = "USD"

    # Written out for the same reason as Usage's (built once per LLM call).
    def __init__(
        self,
        content: str,
        usage: Usage = _FACTORY,
        model: str | None = None,
        created_at: datetime = _FACTORY,
        finish_reason: str | None = None,
        tool_calls: tuple[ToolCall, ...] = (),
        provider: str | None = None,
        id: str | None = None,
        cost: Decimal | None = None,
        currency: str = "USD",
    ) -> None:
        _resp_content(self, content)
        _resp_usage(self, Usage() if usage is _FACTORY else usage)
        _resp_model(self, model)
        _resp_created_at(self, utcnow() if created_at is _FACTORY else created_at)
        _resp_finish_reason(self, finish_reason)
        _resp_tool_calls(self, tool_calls)
        _resp_provider(self, provider)
        _resp_id(self, id)
        _resp_cost(self, cost)
        _resp_currency(self, currency)

    def __str__(self) -> str:
        return self.content

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the response."""
        return {
            "content": self.content,
            "usage": self.usage.to_dict(),
            "model": self.model,
            "created_at": self.created_at.isoformat(),
            "finish_reason": self.finish_reason,
            "tool_calls": [dataclasses.asdict(t) for t in self.tool_calls],
            "provider": self.provider,
            "id": self.id,
            "cost": None if self.cost is None else str(self.cost),
            "currency": self.currency,
        }


(
    _resp_content,
    _resp_usage,
    _resp_model,
    _resp_created_at,
    _resp_finish_reason,
    _resp_tool_calls,
    _resp_provider,
    _resp_id,
    _resp_cost,
    _resp_currency,
) = slot_setters(
    LLMResponse,
    "content",
    "usage",
    "model",
    "created_at",
    "finish_reason",
    "tool_calls",
    "provider",
    "id",
    "cost",
    "currency",
)


@dataclass(frozen=True, slots=True)
class EmbeddingResponse:
    """What an embedding call returned: ``count`` vectors of ``dimensions`` numbers each.

    ``usage.prompt_tokens`` are the input's tokens (embeddings have no completion tokens);
    ``cost`` is priced as ``LLMResponse.cost`` is (``None`` when the price is unknown). The
    vectors themselves are not kept: handlers account, log and trace the call, not its data.
    """

    model: str | None = None
    usage: Usage = field(default_factory=Usage)
    count: int = 0
    dimensions: int | None = None
    provider: str | None = None
    cost: Decimal | None = None
    currency: str = "USD"
    created_at: datetime = field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the response."""
        return {
            "model": self.model,
            "usage": self.usage.to_dict(),
            "count": self.count,
            "dimensions": self.dimensions,
            "provider": self.provider,
            "cost": None if self.cost is None else str(self.cost),
            "currency": self.currency,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Fields every event carries. ``extra`` holds keywords that have no field of their own."""

    name: ClassVar[str] = "event"
    hook: ClassVar[str] = "on_event"

    run_id: str
    timestamp: float
    parent_run_id: str | None = None
    trace_id: str | None = None
    depth: int | None = None
    model: str | None = None
    provider: str | None = None
    tags: tuple[str, ...] | None = None
    metadata: Mapping[str, Any] | None = None
    correlation_id: str | None = None
    request_id: str | None = None
    user_id: str | None = None
    org_id: str | None = None
    conversation_id: str | None = None
    agent: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The event's own fields (its hook's arguments), by name."""
        return {n: getattr(self, n) for n in HOOKS[self.hook].args}

    def context(self) -> dict[str, Any]:
        """The ids and request context that have a value."""
        out: dict[str, Any] = {}
        for k in CONTEXT_KEYS:
            v = getattr(self, k)
            if v is not None:
                out[k] = v
        return out

    def kwargs(self) -> dict[str, Any]:
        """The keywords its hook received: context, then ``extra``."""
        return {**self.context(), **self.extra}


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStartEvent(Event):
    """A run (an ``RLM.run``, an agent's turn, a ``hookwire.trace`` block) began with
    ``input``; the keyword ``name`` names it."""

    name: ClassVar[str] = "run_start"
    hook: ClassVar[str] = "on_run_start"
    input: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunEndEvent(Event):
    """A run finished with ``output`` (``None`` if it failed; ``error`` is then in ``extra``)."""

    name: ClassVar[str] = "run_end"
    hook: ClassVar[str] = "on_run_end"
    output: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMStartEvent(Event):
    """An LLM call is about to be sent. ``prompt`` is the text, or the list of messages."""

    name: ClassVar[str] = "llm_start"
    hook: ClassVar[str] = "on_llm_start"
    prompt: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMNewTokenEvent(Event):
    """One streamed piece of the answer."""

    name: ClassVar[str] = "llm_new_token"
    hook: ClassVar[str] = "on_llm_new_token"
    token: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMEndEvent(Event):
    """An LLM call returned ``response`` (``.content``, ``.usage``, ``.model``, ...)."""

    name: ClassVar[str] = "llm_end"
    hook: ClassVar[str] = "on_llm_end"
    response: LLMResponse | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMErrorEvent(Event):
    """An LLM call failed with ``error``, after its retries (each one an ``on_retry``)."""

    name: ClassVar[str] = "llm_error"
    hook: ClassVar[str] = "on_llm_error"
    error: BaseException | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbeddingStartEvent(Event):
    """An embedding call is about to be sent; ``input`` is the text (or texts, or tokens)."""

    input: Any = None
    name: ClassVar[str] = "embedding_start"
    hook: ClassVar[str] = "on_embedding_start"


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbeddingEndEvent(Event):
    """An embedding call returned ``response`` (``.usage``, ``.cost``, ``.count``, ...)."""

    response: EmbeddingResponse | None = None
    name: ClassVar[str] = "embedding_end"
    hook: ClassVar[str] = "on_embedding_end"


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbeddingErrorEvent(Event):
    """An embedding call failed with ``error``, after its retries (each one an ``on_retry``)."""

    error: BaseException | None = None
    name: ClassVar[str] = "embedding_error"
    hook: ClassVar[str] = "on_embedding_error"


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolStartEvent(Event):
    """A tool is about to run with ``tool_input`` (its arguments)."""

    name: ClassVar[str] = "tool_start"
    hook: ClassVar[str] = "on_tool_start"
    tool_name: str = ""
    tool_input: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolEndEvent(Event):
    """A tool returned ``tool_output`` (as the text the model will see)."""

    name: ClassVar[str] = "tool_end"
    hook: ClassVar[str] = "on_tool_end"
    tool_name: str = ""
    tool_output: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolErrorEvent(Event):
    """A tool raised; the model is given the error as the tool's result."""

    name: ClassVar[str] = "tool_error"
    hook: ClassVar[str] = "on_tool_error"
    tool_name: str = ""
    error: BaseException | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryStoreEvent(Event):
    """Something was stored in a run's memory."""

    name: ClassVar[str] = "memory_store"
    hook: ClassVar[str] = "on_memory_store"
    content: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryRecallEvent(Event):
    """A run's memory was searched for ``query`` and gave ``results``."""

    name: ClassVar[str] = "memory_recall"
    hook: ClassVar[str] = "on_memory_recall"
    query: Any = None
    results: Sequence[Any] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryEvent(Event):
    """A failed call will be tried again: ``attempt`` of ``max_attempts`` failed with ``error``."""

    name: ClassVar[str] = "retry"
    hook: ClassVar[str] = "on_retry"
    attempt: int = 0
    max_attempts: int = 0
    error: BaseException | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorEvent(Event):
    """A failure the application should know about (once per failure)."""

    name: ClassVar[str] = "error"
    hook: ClassVar[str] = "on_error"
    error: BaseException | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetExceededEvent(Event):
    """A usage budget refused an LLM call; ``error`` is the ``BudgetExceeded`` raised."""

    name: ClassVar[str] = "budget_exceeded"
    hook: ClassVar[str] = "on_budget_exceeded"
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class HookSpec:
    """A hook, declared once: everything else about it is derived from this record.

    ``name`` is the method name (``"on_llm_end"``; it must be ``event.hook``), ``event`` the
    record type ``on_event`` receives, ``args`` the names of its positional arguments (fields
    of ``event``). ``starts_run``: the hook opens a run, an LLM call or a tool call, and the
    manager returns its ``run_id`` (pass it to the matching end hook); ``ends_run``: the hook
    closes what a start hook opened. ``prompts`` and ``responses`` name the arguments that
    carry what the user sent and what came back: privacy switches leave them out
    (``FileLogCallback(include_prompts=False)``, ``OpenTelemetryCallback`` without
    ``capture_content``). ``streamed``: the hook fires once per streamed piece, so handlers
    that record every event skip it unless asked. ``doc`` documents the hook's method on the
    base classes (the record's docstring when empty).
    """

    name: str
    event: type[Event]
    args: tuple[str, ...]
    starts_run: bool = False
    ends_run: bool = False
    prompts: tuple[str, ...] = ()
    responses: tuple[str, ...] = ()
    streamed: bool = False
    doc: str = ""

    def __post_init__(self) -> None:
        problem = _spec_problem(self)
        if problem:
            raise ConfigurationError(f"HookSpec {self.name!r}: {problem}")

    @property
    def content(self) -> tuple[str, ...]:
        """The arguments that carry prompt or response content."""
        return self.prompts + self.responses

    @property
    def description(self) -> str:
        """What the hook's method says about it: ``doc``, else the record's docstring."""
        return self.doc or inspect.cleandoc(self.event.__doc__ or "")


def _spec_problem(spec: HookSpec) -> str:
    event: object = spec.event  # checked at run time: callers may not use a type checker
    if not (isinstance(event, type) and issubclass(event, Event)):
        return f"event must be a subclass of hookwire.events.Event, not {event!r}"
    if not spec.name.startswith("on_") or spec.name != spec.event.hook:
        return (
            f"the name must start with 'on_' and equal its record's hook "
            f"({spec.event.__name__}.hook = {spec.event.hook!r})"
        )
    fields = {f.name for f in dataclasses.fields(spec.event)}
    missing = [a for a in spec.args if a not in fields]
    if missing:
        return f"args {missing} are not fields of {spec.event.__name__}"
    stray = [a for a in spec.content if a not in spec.args]
    if stray:
        return f"prompts/responses {stray} are not among its args {list(spec.args)}"
    if spec.starts_run and spec.ends_run:
        return "a hook cannot both start and end a run"
    return ""


_HOOKS: dict[str, HookSpec] = {
    s.name: s
    for s in (
        HookSpec("on_run_start", RunStartEvent, ("input",), starts_run=True, prompts=("input",)),
        HookSpec("on_llm_start", LLMStartEvent, ("prompt",), starts_run=True, prompts=("prompt",)),
        HookSpec(
            "on_llm_new_token",
            LLMNewTokenEvent,
            ("token",),
            responses=("token",),
            streamed=True,
        ),
        HookSpec("on_llm_end", LLMEndEvent, ("response",), ends_run=True, responses=("response",)),
        HookSpec("on_llm_error", LLMErrorEvent, ("error",), ends_run=True),
        HookSpec(
            "on_embedding_start",
            EmbeddingStartEvent,
            ("input",),
            starts_run=True,
            prompts=("input",),
        ),
        HookSpec("on_embedding_end", EmbeddingEndEvent, ("response",), ends_run=True),
        HookSpec("on_embedding_error", EmbeddingErrorEvent, ("error",), ends_run=True),
        HookSpec(
            "on_tool_start",
            ToolStartEvent,
            ("tool_name", "tool_input"),
            starts_run=True,
            prompts=("tool_input",),
        ),
        HookSpec(
            "on_tool_end",
            ToolEndEvent,
            ("tool_name", "tool_output"),
            ends_run=True,
            responses=("tool_output",),
        ),
        HookSpec("on_tool_error", ToolErrorEvent, ("tool_name", "error"), ends_run=True),
        HookSpec("on_memory_store", MemoryStoreEvent, ("content",), prompts=("content",)),
        HookSpec(
            "on_memory_recall",
            MemoryRecallEvent,
            ("query", "results"),
            prompts=("query",),
            responses=("results",),
        ),
        HookSpec("on_retry", RetryEvent, ("attempt", "max_attempts", "error")),
        HookSpec("on_error", ErrorEvent, ("error",)),
        HookSpec("on_budget_exceeded", BudgetExceededEvent, ("error",)),
        HookSpec("on_run_end", RunEndEvent, ("output",), ends_run=True, responses=("output",)),
    )
}
_BUILTIN: Final = frozenset(_HOOKS)

#: Every hook hookwire dispatches, by name, in the order a run meets them (hooks declared with
#: ``declare_hook`` follow). A read-only view: declare a hook with ``declare_hook``.
HOOKS: Final[Mapping[str, HookSpec]] = types.MappingProxyType(_HOOKS)


def _fields(event: type[Event]) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(event)) - {"extra"}


_EVENT_FIELDS: dict[type[Event], frozenset[str]] = {
    spec.event: _fields(spec.event) for spec in _HOOKS.values()
}

#: What ``on_hook_declared`` listeners are: called with the spec after it is declared or
#: removed (``spec.name in HOOKS`` tells which).
HookListener = Callable[[HookSpec], None]

_LISTENERS: list[HookListener] = []


def on_hook_declared(listener: HookListener) -> HookListener:
    """Call ``listener(spec)`` after every later ``declare_hook`` and hook removal.

    ``spec.name in HOOKS`` tells a declaration from a removal. Returns ``listener``, so it
    can decorate. Modules that derive something per hook (methods, tables) register here,
    after deriving it for the hooks already in ``HOOKS``.
    """
    _LISTENERS.append(listener)
    return listener


def declare_hook(spec: HookSpec) -> Callable[[], None]:
    """Declare a new hook; returns a function that removes it again.

    After this, ``BaseCallback`` and ``AsyncBaseCallback`` have a no-op method ``spec.name``
    for handlers to override, a ``CallbackManager`` dispatches it, ``FileLogCallback`` logs it
    (``event`` is the record's ``name``; ``prompts``/``responses`` honour its switches) and
    ``OpenTelemetryCallback`` exports it (a span from a start hook to an end hook, otherwise a
    span event ``hookwire.<name>`` on the enclosing span). Declare hooks at import time, before
    managers are built on other threads.
    """
    if spec.name in _HOOKS:
        raise ConfigurationError(f"the hook {spec.name} is already declared")
    _HOOKS[spec.name] = spec
    _EVENT_FIELDS[spec.event] = _fields(spec.event)
    try:
        _notify(spec)
    except BaseException:
        # A listener refused it: undo, so that nothing is left half-declared.
        with contextlib.suppress(Exception):
            remove_hook(spec.name)
        raise

    def remove() -> None:
        """Remove the hook declared by this ``declare_hook`` call (once; later calls do nothing)."""
        if _HOOKS.get(spec.name) is spec:
            remove_hook(spec.name)

    return remove


def remove_hook(name: str) -> None:
    """Remove a hook added with ``declare_hook`` (hookwire's own hooks cannot be removed)."""
    if name in _BUILTIN:
        raise ConfigurationError(f"{name} is one of hookwire's own hooks; it cannot be removed")
    spec = _HOOKS.pop(name, None)
    if spec is None:
        raise ConfigurationError(f"no hook named {name} is declared")
    if all(s.event is not spec.event for s in _HOOKS.values()):
        _EVENT_FIELDS.pop(spec.event, None)
    _notify(spec)


def _notify(spec: HookSpec) -> None:
    # Every listener hears it even if one fails; the first failure is raised after.
    failure: BaseException | None = None
    for listener in list(_LISTENERS):
        try:
            listener(spec)
        except BaseException as exc:
            failure = failure or exc
    if failure is not None:
        raise failure


def hook_methods(cls: type, make: Callable[[HookSpec], Callable[..., Any] | None]) -> None:
    """Give ``cls`` a method per hook, made by ``make(spec)`` (``None``: no method), for every
    hook in ``HOOKS`` and every hook declared later; a removed hook's method goes with it.

    A method ``cls`` defines itself (in its class body) is kept. The made function gets the
    hook's name, qualified name, module and docstring unless it has its own docstring.
    """
    made: set[str] = set()
    # Weakly: a class made at run time (in a test, say) may go; its listener then goes too.
    ref = weakref.ref(cls)

    def install(spec: HookSpec) -> None:
        cls = ref()
        if cls is None:
            _LISTENERS.remove(install)
            return
        name = spec.name
        if name not in _HOOKS:
            if name in made:
                made.discard(name)
                delattr(cls, name)
            return
        if name in cls.__dict__ and name not in made:
            return
        fn = make(spec)
        if fn is None:
            return
        fn.__name__ = name
        fn.__qualname__ = f"{cls.__qualname__}.{name}"
        fn.__module__ = cls.__module__
        if not fn.__doc__:
            fn.__doc__ = spec.description
        setattr(cls, name, fn)
        made.add(name)

    for spec in list(_HOOKS.values()):
        install(spec)
    on_hook_declared(install)


def event_from_call(hook: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Event:
    """Build the record of a hook call: positional ``args`` in the hook's order, then keywords."""
    spec = HOOKS[hook]
    fields = _EVENT_FIELDS[spec.event]
    values: dict[str, Any] = dict(zip(spec.args, args, strict=False))
    extra: dict[str, Any] = {}
    for k, v in kwargs.items():
        if k in fields:
            values[k] = v
        else:
            extra[k] = v
    if "tags" in values and values["tags"] is not None:
        values["tags"] = tuple(values["tags"])
    return spec.event(**values, extra=extra)
