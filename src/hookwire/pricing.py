"""The cost of an LLM call, from the maintained ``genai-prices`` database (offline).

``cost(model, usage, provider=None)`` returns the price of one call as a ``Decimal`` in the
model's currency (USD for every price ``genai-prices`` ships), or ``None`` when the model's
price is not known. It never returns ``0`` for an unknown model and never raises for one: the
first time a model turns out to be unknown, one warning is logged through the
``hookwire.pricing`` logger, and the cost stays unknown.

How tokens are priced (``hookwire.Usage`` follows OpenAI's conventions):

- ``prompt_tokens`` includes ``cached_tokens``; where the provider prices cached input (cache
  reads) differently, those tokens are charged at the cache price and the rest at the input
  price;
- ``prompt_tokens`` includes ``cache_creation_tokens`` too (prompt tokens written to the cache,
  Anthropic's ``cache_creation_input_tokens``): those are charged at the cache-write price
  (``cache_write_mtok``) where the provider has one, else at the input price;
- ``completion_tokens`` includes ``reasoning_tokens``; where the provider prices reasoning
  differently, those tokens are charged at the reasoning price;
- tiered prices (a higher rate for every token once a prompt passes a threshold) and per-request
  fees are applied as ``genai-prices`` defines them.

Calls to hookwire's own offline model (``hookwire.LocalLLM``, provider ``"local"``) have an
unknown cost too, without the warning (give them a price with ``set_price`` if you like).

Prices can be overridden or added, for fine-tuned or self-hosted models, with ``set_price``,
``load_prices`` (a dict or a TOML file), or the ``HOOKWIRE_PRICES`` environment variable naming
a TOML file::

    [models."my-finetune"]
    input_mtok = "0.30"          # per million prompt tokens
    output_mtok = "1.20"         # per million completion tokens
    cache_read_mtok = "0.03"     # optional: per million cached prompt tokens
    cache_write_mtok = "0.375"   # optional: per million prompt tokens written to the cache
    output_reasoning_mtok = "2"  # optional: per million reasoning tokens
    provider = "vllm"            # optional: only for calls made through that provider
    currency = "EUR"             # optional (default USD)

A price file that cannot be used (missing, a directory, unreadable, not UTF-8, not TOML, an
entry that is wrong) makes ``load_prices`` raise ``PricingError`` saying what to fix, and sets
nothing. Named by ``HOOKWIRE_PRICES``, it is logged as an error (``hookwire.pricing`` logger)
at the first price looked up, saying so; calls then go on with the other prices.

Money is ``Decimal`` all the way: prices and costs are never floats. A price written as a TOML
or Python float is read from its shortest text form (``0.3`` is ``Decimal("0.3")``).

Lookups are cached per model and provider, so pricing a call costs a few microseconds.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Context, Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .errors import ConfigurationError, InvalidUsageError, PricingError

if TYPE_CHECKING:
    from .events import Usage

__all__ = [
    "ModelPrices",
    "Tier",
    "clear_prices",
    "cost",
    "dearest_prices",
    "estimate",
    "load_prices",
    "price_of",
    "set_price",
]

logger = logging.getLogger("hookwire.pricing")

#: The provider name of hookwire's offline ``LocalLLM``: unpriced, without a warning.
LOCAL_PROVIDER: Final = "local"

#: Every price key an override may set (the names ``genai-prices`` uses).
PRICE_KEYS: Final = (
    "input_mtok",
    "output_mtok",
    "cache_read_mtok",
    "cache_write_mtok",
    "output_reasoning_mtok",
    "requests_kcount",
)

_MILLION = Decimal(1_000_000)
_THOUSAND = Decimal(1_000)
# Money arithmetic never runs in the application's decimal context (which may have been
# narrowed); 60 digits hold any realistic price times any realistic token count exactly.
_CTX = Context(prec=60)
_mul = _CTX.multiply
_add = _CTX.add
_div = _CTX.divide
_ZERO = Decimal(0)

#: How many (model, provider) pairs the lookup cache keeps before starting over.
_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Tier:
    """A tiered rate: once a call's prompt has more than ``start`` tokens, ``price`` applies
    to all of that kind of token in the call (the "cliff" model providers use)."""

    start: int
    price: Decimal


_Price = Decimal | tuple[Decimal, tuple[Tier, ...]]


@dataclass(frozen=True, slots=True)
class ModelPrices:
    """The prices of one model at one provider, per million tokens (``requests_kcount`` per
    thousand calls). ``None`` means that kind of usage is not priced separately: cached tokens
    (cache reads and writes) then cost the input price, reasoning tokens the output price.

    A price is a ``Decimal``, or ``(base, tiers)`` for tiered prices. ``source`` is
    ``"genai-prices"`` or ``"override"``; ``model_id`` and ``provider_id`` say which entry of
    the source matched.
    """

    input_mtok: _Price | None = None
    output_mtok: _Price | None = None
    cache_read_mtok: _Price | None = None
    output_reasoning_mtok: _Price | None = None
    requests_kcount: Decimal | None = None
    #: Per million prompt tokens written to the cache (``Usage.cache_creation_tokens``).
    cache_write_mtok: _Price | None = None
    currency: str = "USD"
    source: str = "override"
    model_id: str | None = None
    provider_id: str | None = None

    def cost(self, usage: Usage) -> Decimal:
        """The price of ``usage`` at these prices (the counts are checked first)."""
        _check_usage(usage)
        return self._cost(usage)

    def _cost(self, usage: Usage) -> Decimal:
        prompt = usage.prompt_tokens
        completion = usage.completion_tokens
        total = _ZERO
        cached = usage.cached_tokens or 0
        if cached and self.cache_read_mtok is not None:
            total = _mul(_rate(self.cache_read_mtok, prompt), cached)
            prompt -= cached
        written = usage.cache_creation_tokens or 0
        if written and self.cache_write_mtok is not None:
            total = _add(total, _mul(_rate(self.cache_write_mtok, usage.prompt_tokens), written))
            prompt -= written
        reasoning = usage.reasoning_tokens or 0
        if reasoning and self.output_reasoning_mtok is not None:
            total = _add(
                total, _mul(_rate(self.output_reasoning_mtok, usage.prompt_tokens), reasoning)
            )
            completion -= reasoning
        if prompt and self.input_mtok is not None:
            total = _add(total, _mul(_rate(self.input_mtok, usage.prompt_tokens), prompt))
        if completion and self.output_mtok is not None:
            total = _add(total, _mul(_rate(self.output_mtok, usage.prompt_tokens), completion))
        total = _div(total, _MILLION)
        if self.requests_kcount is not None:
            total = _add(total, _div(self.requests_kcount, _THOUSAND))
        return total


def _rate(price: _Price, prompt_tokens: int) -> Decimal:
    if isinstance(price, Decimal):
        return price
    base, tiers = price
    for tier in reversed(tiers):
        if prompt_tokens > tier.start:
            return tier.price
    return base


# -- checking usage ----------------------------------------------------------------------------


def _bad_count(name: str, value: object) -> InvalidUsageError:
    return InvalidUsageError(
        f"{name} must be a non-negative integer, not {value!r}; pass the token counts the "
        "provider reported (hookwire.Usage(prompt_tokens=..., completion_tokens=...))"
    )


def _check_usage(usage: Usage) -> None:
    prompt = usage.prompt_tokens
    completion = usage.completion_tokens
    # ``type(...) is int`` rejects bools and floats in one test, which the hot path needs.
    if type(prompt) is not int or prompt < 0:
        raise _bad_count("prompt_tokens", prompt)
    if type(completion) is not int or completion < 0:
        raise _bad_count("completion_tokens", completion)
    cached = usage.cached_tokens
    if cached is not None:
        if type(cached) is not int or cached < 0:
            raise _bad_count("cached_tokens", cached)
        if cached > prompt:
            raise InvalidUsageError(
                f"cached_tokens ({cached}) cannot exceed prompt_tokens ({prompt}): prompt_tokens "
                "counts every prompt token, cached or not (OpenAI's convention)"
            )
    written = usage.cache_creation_tokens
    if written is not None:
        if type(written) is not int or written < 0:
            raise _bad_count("cache_creation_tokens", written)
        if written + (cached or 0) > prompt:
            raise InvalidUsageError(
                f"cache_creation_tokens ({written}) and cached_tokens ({cached or 0}) cannot "
                f"exceed prompt_tokens ({prompt}) together: prompt_tokens counts every prompt "
                "token, read from or written to the cache or not"
            )
    reasoning = usage.reasoning_tokens
    if reasoning is not None:
        if type(reasoning) is not int or reasoning < 0:
            raise _bad_count("reasoning_tokens", reasoning)
        if reasoning > completion:
            raise InvalidUsageError(
                f"reasoning_tokens ({reasoning}) cannot exceed completion_tokens ({completion}): "
                "completion_tokens counts every generated token, reasoning included "
                "(OpenAI's convention)"
            )


# -- the lookup and its cache ------------------------------------------------------------------

_lock = threading.Lock()
# (model, provider) -> ModelPrices, or None when unknown. Conditional (time-dependent) prices
# are stored as a _Dynamic and resolved again on every call.
_cache: dict[tuple[str, str | None], ModelPrices | _Dynamic | None] = {}
# Overrides: lower-cased model -> {provider or None: ModelPrices}
_overrides: dict[str, dict[str | None, ModelPrices]] = {}
# Unknown models already warned about. Bounded: model names can come from requests and from
# servers' answers, and a warning per name beyond this many would flood the log anyway.
_warned: set[str] = set()
_WARNED_MAX = 1000
_env_loaded = False
# (model, provider, prompt tokens, max tokens) -> (the prices it was made from, the estimate):
# a budgeted call asks for one before every call, and the same few shapes come again and
# again (4x cheaper from here). Used only while _cache still holds those very prices.
_estimates: dict[tuple[str, str | None, int, int], tuple[ModelPrices, Decimal]] = {}


class _Dynamic:
    """A genai-prices model whose price depends on the time of the call."""

    __slots__ = ("model", "provider")

    def __init__(self, model: Any, provider: Any) -> None:
        self.model = model
        self.provider = provider

    def resolve(self, when: datetime | None = None) -> ModelPrices | None:
        return _from_genai(
            self.model.get_prices(when or datetime.now(timezone.utc)), self.model, self.provider
        )


def _decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool):
        raise PricingError(f"{what} must be a number, not {value!r}")
    try:
        if isinstance(value, float):
            # The shortest text form is what the user wrote (0.3, not 0.299999...).
            d = Decimal(repr(value))
        elif isinstance(value, (Decimal, int, str)):
            d = Decimal(value)
        else:
            raise PricingError(f"{what} must be a number or a numeric string, not {value!r}")
    except InvalidOperation:
        raise PricingError(f"{what} must be a number, not {value!r}") from None
    if not d.is_finite() or d < 0 or d > _MAX_PRICE:
        raise PricingError(f"{what} must be a number from 0 to {_MAX_PRICE}, not {value!r}")
    return d


# A price beyond this (per million tokens, or per thousand requests) is a typing error, and
# would overflow the exact arithmetic of costs.
_MAX_PRICE: Final = Decimal(10**9)


_SUPPORTED_GENAI_KEYS = frozenset(PRICE_KEYS)


def _from_genai(mp: Any, model: Any, provider: Any) -> ModelPrices | None:
    """hookwire's view of a genai-prices ``ModelPrice``; ``None`` if it prices nothing that a
    ``Usage`` can carry (such a model has no meaningful token price)."""
    from genai_prices.types import TieredPrices

    values: dict[str, Any] = {}
    for key in PRICE_KEYS:
        price = getattr(mp, key, None)
        if price is None:
            continue
        if isinstance(price, TieredPrices):
            if key == "requests_kcount":
                price = price.base
            else:
                price = (
                    price.base,
                    tuple(
                        Tier(t.start, t.price) for t in sorted(price.tiers, key=lambda t: t.start)
                    ),
                )
        values[key] = price
    if not values:
        return None
    return ModelPrices(**values, source="genai-prices", model_id=model.id, provider_id=provider.id)


def _lookup_genai(model: str, provider: str | None) -> ModelPrices | _Dynamic | None:
    try:
        from genai_prices.data_snapshot import get_snapshot
        from genai_prices.types import ModelPrice
    except ImportError:
        # genai-prices needs Python 3.11+; without it only the user's own prices are known.
        _warn_no_database()
        return None

    try:
        gp_provider, gp_model = get_snapshot().find_provider_model(model, None, provider, None)
    except LookupError:
        return None
    except (AttributeError, TypeError) as exc:
        # The snapshot API is genai-prices' own, not a promise: if a release changes it, the
        # cost becomes unknown (with one warning) instead of every call failing.
        _warn_incompatible_database(exc)
        return None
    if not isinstance(gp_model.prices, ModelPrice):
        return _Dynamic(gp_model, gp_provider)
    return _from_genai(gp_model.prices, gp_model, gp_provider)


def _lookup(model: str, provider: str | None) -> ModelPrices | _Dynamic | None:
    if not _env_loaded:
        _load_env()
    by_provider = _overrides.get(model.lower())
    if by_provider is not None:
        found = by_provider.get(provider.lower() if provider else None) or by_provider.get(None)
        if found is not None:
            return found
    if provider is not None and provider.lower() == LOCAL_PROVIDER:
        # hookwire's own offline model (hookwire.LocalLLM) has no price: unknown, as any
        # unpriced model, but expected, so no warning either.
        return None
    return _lookup_genai(model, provider)


_no_database_warned = False
_incompatible_warned = False


def _warn_incompatible_database(exc: Exception) -> None:
    global _incompatible_warned
    if not _incompatible_warned:
        _incompatible_warned = True
        logger.warning(
            "hookwire: this genai-prices release does not have the lookup hookwire uses (%s); "
            "costs of models without a price from set_price() or HOOKWIRE_PRICES are unknown. "
            "Install a genai-prices release that hookwire supports (see its pyproject.toml).",
            exc,
        )


def _warn_no_database() -> None:
    global _no_database_warned
    if not _no_database_warned:
        _no_database_warned = True
        logger.warning(
            "hookwire: the genai-prices package is not installed (it needs Python 3.11 or "
            "newer), so only prices given with hookwire.pricing.set_price() or a "
            "HOOKWIRE_PRICES file are known; install genai-prices for the maintained prices"
        )


def _warn_unknown(model: str, provider: str | None) -> None:
    if model in _warned:
        return
    with _lock:
        if model in _warned or len(_warned) >= _WARNED_MAX:
            return
        _warned.add(model)
    # The name as Python writes it (control characters escaped), cut to a length a log line
    # can carry: it may come from a server's answer.
    shown = repr(model) if len(model) <= 200 else repr(model[:200]) + f" (cut; {len(model)} chars)"
    where = f" at provider {provider[:200]!r}" if provider else ""
    logger.warning(
        "hookwire: no price known for model %s%s; its calls are recorded with an unknown cost "
        "(None). Add a price with hookwire.pricing.set_price(model, input_mtok=..., "
        'output_mtok=...) or a [models."<model>"] table in the HOOKWIRE_PRICES file',
        shown,
        where,
    )


def price_of(model: str, provider: str | None = None) -> ModelPrices | None:
    """The prices used for ``model`` (at ``provider``, when given), or ``None`` if unknown.

    An override (``set_price``, ``load_prices``) wins over ``genai-prices``. An override
    without a provider applies to every provider; one with a provider only to that provider.
    """
    key = (model, provider)
    entry = _cache.get(key, _MISSING)
    if entry is _MISSING:
        if not isinstance(model, str) or not model:
            return None
        entry = _lookup(model, provider)
        with _lock:
            if len(_cache) >= _CACHE_LIMIT:
                _cache.clear()
            _cache[key] = entry
    if isinstance(entry, _Dynamic):
        return entry.resolve()
    found: ModelPrices | None = entry
    return found


_MISSING: Final[Any] = object()


def cost(model: str, usage: Usage, provider: str | None = None) -> Decimal | None:
    """The cost of one call to ``model`` that used ``usage``, or ``None`` if its price is unknown.

    ``provider`` narrows the price to one provider (``"openai"``, ``"azure"``, ``"groq"``, ...);
    without it the provider is inferred from the model's name. Token counts must be
    non-negative integers, with ``cached_tokens <= prompt_tokens`` and ``reasoning_tokens <=
    completion_tokens``; anything else raises ``hookwire.errors.InvalidUsageError``. An unknown
    model logs one warning (per model) and gives ``None``, never ``0``.
    """
    _check_usage(usage)
    entry = _cache.get((model, provider), _MISSING)
    if entry.__class__ is ModelPrices:
        return entry._cost(usage)
    prices = price_of(model, provider)
    if prices is None:
        if provider != LOCAL_PROVIDER:
            _warn_unknown(str(model), provider)
        return None
    return prices._cost(usage)


def estimate(
    model: str,
    prompt_tokens: int,
    max_completion_tokens: int,
    provider: str | None = None,
) -> Decimal | None:
    """The most a call can cost: ``prompt_tokens`` in, ``max_completion_tokens`` out, none of
    it read from the cache, the dearest of the input and cache-write rates and of the output
    and reasoning rates. ``None`` if unknown.

    Budgets reserve this before a call and settle the real cost after it.
    """
    key = (model, provider, prompt_tokens, max_completion_tokens)
    entry = _cache.get(key[:2], _MISSING)
    # ``type(...) is int``: True and 1 are one dict key, and a bool is not a count.
    if type(prompt_tokens) is int and type(max_completion_tokens) is int:
        hit = _estimates.get(key)
        if hit is not None and hit[0] is entry:
            return hit[1]
    from .events import Usage

    usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=max_completion_tokens)
    _check_usage(usage)
    prices = price_of(model, provider)
    if prices is None:
        return None
    worst = prices._cost(usage)
    if prices.output_reasoning_mtok is not None and max_completion_tokens:
        as_reasoning = prices._cost(
            Usage(
                prompt_tokens=prompt_tokens,
                completion_tokens=max_completion_tokens,
                reasoning_tokens=max_completion_tokens,
            )
        )
        worst = max(worst, as_reasoning)
    if prices.cache_write_mtok is not None and prompt_tokens:
        # A prompt written to the cache costs more than one read (Anthropic: 1.25x input).
        written = Usage(prompt_tokens, max_completion_tokens, cache_creation_tokens=prompt_tokens)
        worst = max(worst, prices._cost(written))
    if _cache.get(key[:2]) is prices:  # not time-dependent prices (a _Dynamic)
        if len(_estimates) >= _CACHE_LIMIT:
            _estimates.clear()
        _estimates[key] = (prices, worst)
    return worst


def _top(price: _Price | None) -> Decimal:
    if price is None:
        return _ZERO
    if isinstance(price, tuple):
        return max([price[0], *(t.price for t in price[1])])
    return price


_dearest: ModelPrices | None = None


def dearest_prices() -> ModelPrices:
    """The dearest input and output rates of any model known (``genai-prices`` and your own
    prices; a tiered price at its top tier, reasoning at the output rate if dearer): what a
    call to a model without a known price can cost at most if its answer is billed under
    another model's name (an Azure deployment, a router alias). Budgets reserve this for it.
    """
    global _dearest
    found = _dearest
    if found is not None:
        return found
    if not _env_loaded:
        _load_env()
    rates: list[tuple[Decimal, Decimal, Decimal]] = []
    with _lock:
        overrides = [p for by in _overrides.values() for p in by.values()]
    try:
        from genai_prices.data_snapshot import get_snapshot
        from genai_prices.types import ModelPrice

        for gp_provider in get_snapshot().providers:
            for gp_model in gp_provider.models:
                found_prices = gp_model.prices
                if isinstance(found_prices, ModelPrice):
                    each = [found_prices]
                else:  # prices that change on a date or with a condition: all of them
                    each = [c.prices for c in found_prices]
                for mp in each:
                    one = _from_genai(mp, gp_model, gp_provider)
                    if one is not None:
                        overrides.append(one)
    except ImportError:
        pass  # only the user's own prices are known
    except (AttributeError, TypeError) as exc:
        _warn_incompatible_database(exc)
    for p in overrides:
        output = max(_top(p.output_mtok), _top(p.output_reasoning_mtok))
        prompt = max(_top(p.input_mtok), _top(p.cache_write_mtok))
        rates.append((prompt, output, p.requests_kcount or _ZERO))
    found = ModelPrices(
        input_mtok=max((r[0] for r in rates), default=_ZERO),
        output_mtok=max((r[1] for r in rates), default=_ZERO),
        requests_kcount=max((r[2] for r in rates), default=_ZERO),
        model_id="dearest known",
    )
    _dearest = found
    return found


# -- overrides ---------------------------------------------------------------------------------


def set_price(
    model: str,
    *,
    input_mtok: Any,
    output_mtok: Any,
    cache_read_mtok: Any = None,
    output_reasoning_mtok: Any = None,
    requests_kcount: Any = None,
    provider: str | None = None,
    currency: str = "USD",
    cache_write_mtok: Any = None,
) -> ModelPrices:
    """Set (or replace) the price of ``model``, per million tokens; it wins over
    ``genai-prices``. With ``provider``, only for calls made through that provider."""
    prices = _build(
        model,
        input_mtok=input_mtok,
        output_mtok=output_mtok,
        cache_read_mtok=cache_read_mtok,
        output_reasoning_mtok=output_reasoning_mtok,
        requests_kcount=requests_kcount,
        provider=provider,
        currency=currency,
        cache_write_mtok=cache_write_mtok,
    )
    _install([prices])
    return prices


def _build(
    model: str,
    *,
    input_mtok: Any,
    output_mtok: Any,
    cache_read_mtok: Any = None,
    output_reasoning_mtok: Any = None,
    requests_kcount: Any = None,
    provider: str | None = None,
    currency: str = "USD",
    cache_write_mtok: Any = None,
) -> ModelPrices:
    if not isinstance(model, str) or not model:
        raise ConfigurationError("set_price() needs a model name, e.g. set_price('my-model', ...)")
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise ConfigurationError(
            f"currency must be a three-letter ISO 4217 code such as 'USD', not {currency!r}"
        )
    if provider is not None and (not isinstance(provider, str) or not provider):
        raise ConfigurationError(f"provider must be a non-empty string or None, not {provider!r}")

    def opt(value: Any, key: str) -> Decimal | None:
        return None if value is None else _decimal(value, f"price {key} of {model!r}")

    return ModelPrices(
        input_mtok=_decimal(input_mtok, f"price input_mtok of {model!r}"),
        output_mtok=_decimal(output_mtok, f"price output_mtok of {model!r}"),
        cache_read_mtok=opt(cache_read_mtok, "cache_read_mtok"),
        output_reasoning_mtok=opt(output_reasoning_mtok, "output_reasoning_mtok"),
        requests_kcount=opt(requests_kcount, "requests_kcount"),
        cache_write_mtok=opt(cache_write_mtok, "cache_write_mtok"),
        currency=currency.upper(),
        source="override",
        model_id=model,
        provider_id=provider,
    )


def _install(prices: list[ModelPrices]) -> None:
    global _dearest
    _dearest = None
    with _lock:
        for p in prices:
            assert p.model_id is not None
            provider = p.provider_id.lower() if p.provider_id else None
            _overrides.setdefault(p.model_id.lower(), {})[provider] = p
        _cache.clear()
        _warned.clear()


def load_prices(source: Mapping[str, Any] | str | os.PathLike[str]) -> list[ModelPrices]:
    """Add the prices in ``source``: a dict, or the path of a TOML file, of the form
    ``{"models": {"<model>": {"input_mtok": ..., "output_mtok": ..., ...}}}`` (the outer
    ``"models"`` level may be left out of a dict). A model's entry may also be a list of
    tables, one per provider. Returns the prices set. Raises ``PricingError`` naming the
    entry that is wrong; nothing is set then.
    """
    if isinstance(source, Mapping):
        data: Mapping[str, Any] = source
        origin = "the prices dict"
    else:
        path = Path(source)
        origin = str(path)
        data = _read_toml(path)
    models = data["models"] if isinstance(data.get("models"), Mapping) else data
    built: list[ModelPrices] = []
    for model, entry in models.items():
        entries = entry if isinstance(entry, list) else [entry]
        for one in entries:
            if not isinstance(one, Mapping):
                raise PricingError(
                    f"{origin}: the price of {model!r} must be a table such as "
                    '{input_mtok = "0.5", output_mtok = "1.5"}, '
                    f"not {type(one).__name__}"
                )
            unknown = set(one) - {*PRICE_KEYS, "provider", "currency"}
            if unknown:
                raise PricingError(
                    f"{origin}: unknown key(s) {sorted(map(str, unknown))} in the price of "
                    f"{model!r}; "
                    f"the keys are {', '.join(PRICE_KEYS)}, provider, currency"
                )
            for required in ("input_mtok", "output_mtok"):
                if required not in one:
                    raise PricingError(f"{origin}: the price of {model!r} needs {required}")
            try:
                built.append(_build(str(model), **one))
            except (ConfigurationError, PricingError) as exc:
                raise PricingError(f"{origin}: {exc}") from exc
    # Everything was checked before anything is set, so a bad file changes nothing.
    _install(built)
    return built


def _read_toml(path: Path) -> Mapping[str, Any]:
    # tomllib is in the standard library from Python 3.11; tomli is the same parser before.
    toml: Any = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")
    try:
        with path.open("rb") as f:
            data: Mapping[str, Any] = toml.load(f)
    except FileNotFoundError:
        raise PricingError(f"price file {path} does not exist") from None
    except IsADirectoryError:
        raise PricingError(f"price file {path} is a directory; name a TOML file") from None
    except OSError as exc:
        raise PricingError(
            f"price file {path} cannot be read ({exc.strerror or exc}); check its permissions"
        ) from None
    except UnicodeDecodeError as exc:
        raise PricingError(
            f"price file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "save it as UTF-8 TOML"
        ) from None
    except toml.TOMLDecodeError as exc:
        raise PricingError(f"price file {path} is not valid TOML: {exc}") from exc
    return data


def _load_env() -> None:
    global _env_loaded
    with _lock:
        if _env_loaded:
            return
        _env_loaded = True
    path = os.environ.get("HOOKWIRE_PRICES")
    if path is None:
        return
    try:
        if not path.strip():
            raise PricingError("it is set but empty")
        load_prices(path)
    except PricingError as exc:
        # Not raised: pricing runs inside LLM calls and usage accounting, which must not fail
        # (and lose their records) for a price file. Logged as an error, once per process
        # (clear_prices() reads the file again), at the first price looked up.
        logger.error(
            "hookwire: HOOKWIRE_PRICES=%r cannot be used: %s. Fix the file or unset "
            "HOOKWIRE_PRICES; until then only set_price() and genai-prices prices apply.",
            path,
            exc,
        )


def clear_prices() -> None:
    """Forget every override and the lookup cache (the ``HOOKWIRE_PRICES`` file is read again
    on the next lookup)."""
    global _env_loaded, _dearest
    _dearest = None
    with _lock:
        _overrides.clear()
        _cache.clear()
        _warned.clear()
        _env_loaded = False
