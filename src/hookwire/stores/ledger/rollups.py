"""Which parts of a usage summary the running totals (``usage_totals``) answer, and how the
parts add up: the plan behind ``UsageLedger.summary`` (``hookwire costs``).

The totals hold, per scope (``user``, ``org``, ``agent``, ``model``, ``provider``, and
``all``: every call) and key, the sums of each UTC day and month (and of all time for user,
org and agent). A summary is *covered* when it groups by at most one of user, org, agent,
model and provider (and by day or month), and filters on that same one at most. Its time
range then splits into whole months and whole days, read from the totals, and the partial
days at either end, read from the ledger (an index range of less than a day each). A summary
that groups or filters by two of them reads the ledger.

Grouping by a scope without filtering on it also counts the calls without a key (no user,
say): their group is the ``all`` scope's sums less the keyed sums, per period.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from decimal import Context, Decimal, localcontext
from typing import Any, NamedTuple

from ...errors import ConfigurationError
from .records import GROUP_KEYS, SCOPES, as_utc, ledger_key

__all__ = [
    "DAY_MONTH_SCOPES",
    "SUMS",
    "Piece",
    "Plan",
    "Read",
    "add",
    "arguments",
    "finish",
    "from_totals",
    "plan",
    "subtract",
    "summarise",
]

#: The scopes the totals keep per day and month only (the budget scopes, ``SCOPES``, also
#: have all-time rows), with the ledger column of their key.
DAY_MONTH_SCOPES: dict[str, str | None] = {"model": "model", "provider": "provider", "all": None}
_KEYED = (*SCOPES, "model", "provider")

_UTC = timezone.utc
#: Sums of money are exact: far more digits than the 38 a stored amount has.
_EXACT = Context(prec=80)

#: The sums every part of a summary carries: the tokens and cost of the calls not estimated,
#: and the estimated calls' apart (``cached_calls``, ``reasoning_calls``,
#: ``estimated_priced_calls``: how many calls had those figures, so that a sum of none is
#: unknown rather than 0).
SUMS = (
    "calls",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cached_calls",
    "reasoning_tokens",
    "reasoning_calls",
    "total_tokens",
    "cost",
    "unknown_cost_calls",
    "estimated_calls",
    "estimated_tokens",
    "estimated_cost",
    "estimated_priced_calls",
)
_MONEY = ("cost", "estimated_cost")


class Piece(NamedTuple):
    """One read of a summary: from the totals (``period``: ``day``, ``month`` or ``all``,
    ``period_start`` in ``[first, last)`` as text, ``None``: unbounded) or, when ``period`` is
    ``None``, from the ledger over ``first <= created_at < last`` (datetimes)."""

    period: str | None
    first: Any
    last: Any


class Plan(NamedTuple):
    """How to answer a covered summary: the totals' ``scope``, its key when filtered
    (``key``), whether the calls without a key form a group of their own (``keyless``), and
    the pieces of the time range."""

    scope: str
    key: str | None
    keyless: bool
    pieces: tuple[Piece, ...]


class Read(NamedTuple):
    """One query of a summary, for a backend to run: the ledger's sums over ``piece``
    (``scope`` ``None``), or the sums of ``usage_totals`` rows of ``scope`` in ``piece``
    (with ``key`` when not ``None``), grouped by ``groups`` (the scope's own group is the
    totals' key; day and month their period)."""

    piece: Piece
    scope: str | None
    key: str | None
    groups: tuple[str, ...]


def _day(at: datetime) -> datetime:
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def _next_day(at: datetime) -> datetime:
    floor = _day(at)
    return floor if floor == at else floor + timedelta(days=1)


def _month(at: datetime) -> datetime:
    return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(at: datetime) -> datetime:
    floor = _month(at)
    if floor == at:
        return floor
    return (floor + timedelta(days=32)).replace(day=1)


def _text(at: datetime | None, period: str) -> str | None:
    if at is None:
        return None
    return at.strftime("%Y-%m-%d" if period == "day" else "%Y-%m")


def _split(start: datetime | None, end: datetime | None, by_day: bool) -> list[Piece]:
    """The pieces of ``[start, end)``: partial days from the ledger, whole days and months
    from the totals."""
    if start is not None and end is not None and start >= end:
        return []
    try:
        first_day = None if start is None else _next_day(start)
        last_day = None if end is None else _day(end)
    except OverflowError:  # the last day of year 9999: too near the end to round
        return [Piece(None, start, end)]
    if first_day is not None and last_day is not None and first_day >= last_day:
        return [Piece(None, start, end)]
    pieces: list[Piece] = []
    if start is not None and first_day != start:
        pieces.append(Piece(None, start, first_day))
    if end is not None and last_day != end:
        pieces.append(Piece(None, last_day, end))
    if by_day:
        pieces.append(Piece("day", _text(first_day, "day"), _text(last_day, "day")))
        return pieces
    try:
        first_month = None if first_day is None else _next_month(first_day)
    except OverflowError:
        first_month = last_day
    last_month = None if last_day is None else _month(last_day)
    if first_month is not None and last_month is not None and first_month >= last_month:
        pieces.append(Piece("day", _text(first_day, "day"), _text(last_day, "day")))
        return pieces
    if first_day is not None and first_month != first_day:
        pieces.append(Piece("day", _text(first_day, "day"), _text(first_month, "day")))
    if last_day is not None and last_month != last_day:
        pieces.append(Piece("day", _text(last_month, "day"), _text(last_day, "day")))
    pieces.append(Piece("month", _text(first_month, "month"), _text(last_month, "month")))
    return pieces


def plan(
    groups: Sequence[str],
    start: datetime | None,
    end: datetime | None,
    where: Mapping[str, str],
) -> Plan | None:
    """How the totals answer a summary grouped by ``groups`` over ``[start, end)`` (UTC)
    with the filters ``where`` (keys already in ledger form), or ``None`` when they do not
    cover it and the ledger must."""
    scopes = {g for g in groups if g in _KEYED} | set(where)
    if len(scopes) > 1 or not scopes <= set(_KEYED):
        return None
    scope = next(iter(scopes), "all")
    key = where.get(scope)
    keyless = scope != "all" and key is None
    if "day" in groups:
        by = "day"
    elif "month" in groups:
        by = "month"
    else:
        by = None
    if start is None and end is None:
        # all time: one row per key, except for the calls-without-key sums (no all-time row)
        period = by or ("all" if scope in SCOPES else "month")
        if keyless and period == "all":
            period = "month"
        return Plan(scope, key, keyless, (Piece(period, None, None),))
    return Plan(scope, key, keyless, tuple(_split(start, end, by == "day")))


def arguments(
    by: Sequence[str] | str,
    since: datetime | date | str | None,
    until: datetime | date | str | None,
    where: Mapping[str, str] | None,
) -> tuple[list[str], datetime | None, datetime | None, dict[str, str]]:
    """``UsageLedger.summary``'s arguments checked and in the form every backend reads: the
    groups, ``[start, end)`` in UTC, and the filters with their keys in ledger form. Raises
    ``ConfigurationError`` for a group or filter that does not exist or a group named twice."""
    groups = [by] if isinstance(by, str) else list(by)
    for g in groups:
        if g not in GROUP_KEYS:
            raise ConfigurationError(
                f"cannot group usage by {g!r}; choose from {', '.join(GROUP_KEYS)}"
            )
    if len(set(groups)) != len(groups):
        raise ConfigurationError(f"by={groups!r} names a group twice")
    filters: dict[str, str] = {}
    for name, value in (where or {}).items():
        if name in SCOPES:
            filters[name] = ledger_key(value) if isinstance(value, str) else value
        elif name in ("model", "provider"):
            filters[name] = value
        else:
            raise ConfigurationError(
                f"cannot filter usage by {name!r}; choose from user, org, agent, model, provider"
            )
    return groups, as_utc(since, "since"), as_utc(until, "until"), filters


def summarise(
    groups: Sequence[str],
    start: datetime | None,
    end: datetime | None,
    how: Plan | None,
    fetch: Callable[[Read], Iterable[Mapping[str, Any]]],
) -> list[dict[str, Any]]:
    """The rows of a summary (as :func:`finish` gives them) from the reads ``fetch`` runs:
    the ledger's rows over ``[start, end)`` when ``how`` is ``None``, else the pieces of
    ``how``. ``fetch`` gives each read's rows (the groups, ``currency`` and the sums: of
    :data:`SUMS` from the ledger, of the totals' columns from the totals)."""
    pieces = (Piece(None, start, end),) if how is None else how.pieces
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for piece in pieces:
        if piece.period is None:
            add(merged, fetch(Read(piece, None, None, tuple(groups))), groups)
        else:
            assert how is not None
            _add_from_totals(merged, how, piece, groups, fetch)
    return finish(merged, groups)


def _add_from_totals(
    merged: dict[tuple[Any, ...], dict[str, Any]],
    how: Plan,
    piece: Piece,
    groups: Sequence[str],
    fetch: Callable[[Read], Iterable[Mapping[str, Any]]],
) -> None:
    rows = [from_totals(row) for row in fetch(Read(piece, how.scope, how.key, tuple(groups)))]
    add(merged, rows, groups)
    if not how.keyless:
        return
    # The calls without a key: every call's sums less the keyed ones, per period.
    periods = tuple(g for g in groups if g in ("day", "month"))
    everything: dict[tuple[Any, ...], dict[str, Any]] = {}
    keyed: dict[tuple[Any, ...], dict[str, Any]] = {}
    add(everything, [from_totals(r) for r in fetch(Read(piece, "all", "", periods))], periods)
    add(keyed, rows, periods)
    rest = subtract(everything, keyed)
    add(
        merged,
        [
            {**dict(zip((*periods, "currency"), k, strict=True)), how.scope: None, **sums}
            for k, sums in rest.items()
        ],
        groups,
    )


def _zero() -> dict[str, Any]:
    return {name: (Decimal(0) if name in _MONEY else 0) for name in SUMS}


def from_totals(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row of summed ``usage_totals`` columns as :data:`SUMS` (whose prompt, completion
    and cost leave the estimated calls out, where the totals' own, for budgets, have them)."""
    out = dict(row)
    with localcontext(_EXACT):
        for name, estimated in (
            ("prompt_tokens", "estimated_prompt_tokens"),
            ("completion_tokens", "estimated_completion_tokens"),
            ("cost", "estimated_cost"),
        ):
            out[name] = (row[name] or 0) - (row[estimated] or 0)
    return out


def add(into: dict[tuple[Any, ...], dict[str, Any]], rows: Iterable[Mapping[str, Any]],
        keys: Sequence[str]) -> None:  # fmt: skip
    """Add ``rows`` (each with ``keys``, ``currency`` and :data:`SUMS`) into ``into``, keyed by
    the rows' ``keys`` and currency."""
    with localcontext(_EXACT):
        for row in rows:
            k = (*(row[name] for name in keys), row["currency"])
            total = into.get(k)
            if total is None:
                total = into[k] = _zero()
            for name in SUMS:
                total[name] += row[name] or 0


def subtract(
    whole: Mapping[tuple[Any, ...], Mapping[str, Any]],
    part: Mapping[tuple[Any, ...], Mapping[str, Any]],
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """``whole`` less ``part``, key by key, leaving out the keys with no call left."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    with localcontext(_EXACT):
        for k, sums in whole.items():
            less = part.get(k)
            rest = {name: sums[name] - (less[name] if less else 0) for name in SUMS}
            if rest["calls"] > 0:
                out[k] = rest
    return out


def _plain(amount: Decimal) -> Decimal:
    """``amount`` as the ledger's columns give it: no trailing zeros, no exponent."""
    if amount == amount.to_integral_value():
        return amount.quantize(Decimal(1), context=_EXACT)
    return amount.normalize(_EXACT)


def finish(merged: Mapping[tuple[Any, ...], Mapping[str, Any]],
           keys: Sequence[str]) -> list[dict[str, Any]]:  # fmt: skip
    """The summary's rows, sorted by their keys (``None`` last) and currency: a sum nothing
    reported is ``None`` (``cost`` when no call had a price, cached and reasoning tokens when
    no call counted them)."""
    rows = []
    for k, sums in merged.items():
        row: dict[str, Any] = dict(zip((*keys, "currency"), k, strict=True))
        row["calls"] = int(sums["calls"])
        row["prompt_tokens"] = int(sums["prompt_tokens"])
        row["completion_tokens"] = int(sums["completion_tokens"])
        row["cached_tokens"] = int(sums["cached_tokens"]) if sums["cached_calls"] else None
        row["reasoning_tokens"] = int(sums["reasoning_tokens"]) if sums["reasoning_calls"] else None
        row["total_tokens"] = int(sums["total_tokens"])
        known = sums["calls"] - sums["unknown_cost_calls"]
        row["cost"] = _plain(Decimal(sums["cost"])) if known else None
        row["unknown_cost_calls"] = int(sums["unknown_cost_calls"])
        row["estimated_calls"] = int(sums["estimated_calls"])
        row["estimated_tokens"] = int(sums["estimated_tokens"])
        priced = sums["estimated_priced_calls"]
        row["estimated_cost"] = _plain(Decimal(sums["estimated_cost"])) if priced else None
        rows.append(row)
    rows.sort(key=lambda r: [(r[n] is None, r[n] or "") for n in (*keys, "currency")])
    return rows
