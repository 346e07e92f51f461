"""What an LLM or embedding call returned: ``Usage`` (its token counts), ``ToolCall``,
``LLMResponse`` and ``EmbeddingResponse``. Immutable, built once per call; the event records
(``hookwire.events``) carry them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from .frozen import FrozenDict
from .slots import FACTORY as _FACTORY
from .slots import slot_setters

__all__ = ["EmbeddingResponse", "LLMResponse", "ToolCall", "Usage", "utcnow"]


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

    # Written out for the same reason as Usage's (built for each tool call of every LLM call).
    def __init__(self, id: str, name: str, arguments: str = "{}") -> None:
        _tool_id(self, id)
        _tool_name(self, name)
        _tool_arguments(self, arguments)


_tool_id, _tool_name, _tool_arguments = slot_setters(ToolCall, "id", "name", "arguments")

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

    ``response_metadata`` is what the provider said about how it served the call besides
    the fields above (OpenAI's ``system_fingerprint`` and ``service_tier``), read-only;
    hookwire's clients pass each entry to ``on_llm_end`` as a keyword of the same name.
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
    # Left out of the hash (a dict is unhashable); last, so the positional order is kept.
    response_metadata: Mapping[str, str] = field(default_factory=FrozenDict, hash=False)

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
        response_metadata: Mapping[str, str] = _FACTORY,
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
        if response_metadata is _FACTORY or not response_metadata:
            _resp_metadata(self, _NO_METADATA)
        elif type(response_metadata) is FrozenDict:
            _resp_metadata(self, response_metadata)
        else:
            _resp_metadata(self, FrozenDict(response_metadata))

    def __str__(self) -> str:
        return self.content

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the response (``response_metadata`` only when it has some)."""
        out: dict[str, Any] = {
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
        if self.response_metadata:
            out["response_metadata"] = dict(self.response_metadata)
        return out


#: The ``response_metadata`` of a response that has none (one shared, read-only).
_NO_METADATA: Any = FrozenDict()


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
    _resp_metadata,
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
    "response_metadata",
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
