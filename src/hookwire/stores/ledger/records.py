"""What the ledger keeps: one :class:`UsageRecord` per LLM call, the :class:`Claim` of a
budget on a call, and the keys of totals (scopes, periods, groups)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Final

from ...errors import ConfigurationError
from ..values import has_lone_surrogate

__all__ = [
    "ESTIMATED",
    "FIELDS",
    "GROUP_KEYS",
    "KEY_SIZE",
    "MAX_COST",
    "MAX_TOKENS",
    "PERIODS",
    "SCOPES",
    "Claim",
    "UsageRecord",
    "as_utc",
    "ledger_key",
    "period_name",
    "period_start",
    "row_of",
]

#: What a budget or a total can be kept for, and the ledger column holding its key.
SCOPES: Final[dict[str, str]] = {"user": "user_id", "org": "org_id", "agent": "agent"}
#: Budget periods: a calendar day or month in UTC, or ``None`` for all time.
PERIODS: Final = ("day", "month", None)
#: What ``summary(by=...)`` can group by.
GROUP_KEYS: Final = ("user", "org", "agent", "model", "provider", "day", "month")

_UTC = timezone.utc

#: The largest cost of one call the ledger takes (in its currency): far above any real call,
#: and far below what the totals can sum (SQLite keeps 10^-12 units in 64 bits: 9.2 million).
MAX_COST: Final = Decimal(1_000_000)
#: The ``source`` of a call whose provider sent no usage (``Usage.estimated``): its tokens
#: and cost are hookwire's upper bound, charged to budgets, and summaries show it apart.
ESTIMATED: Final = "estimated"

#: The largest token count of one call the ledger takes (each of its counts).
MAX_TOKENS: Final = 10**12

#: The longest user, org or agent id the ledger and the budget tables keep as it is.
KEY_SIZE: Final = 255


def ledger_key(value: str) -> str:
    """The one form a user, org or agent id takes in the ledger rows, their totals and the
    budget checks, so that a budget always finds its key's spend.

    An id the columns can hold is kept as it is. One longer than ``KEY_SIZE`` characters, or
    holding NUL or a lone surrogate (which no text column stores), becomes a readable prefix
    (NUL and surrogates escaped) and ``#`` and the SHA-256 of the whole id: distinct ids stay
    distinct, and one id always has one form.
    """
    if len(value) <= KEY_SIZE and "\x00" not in value and not has_lone_surrogate(value):
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    shown = value.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return f"{shown[: KEY_SIZE - len(digest) - 1]}#{digest}"


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One LLM call as the ledger keeps it. ``cost`` is ``None`` when the price is unknown.

    ``source`` is ``auto`` (recorded from the call's events), ``manual`` (``call_accounting``)
    or ``estimated`` (``ESTIMATED``: the provider sent no usage; the tokens and the cost are
    an upper bound, not the provider's figures)."""

    run_id: str
    created_at: datetime
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost: Decimal | None = None
    currency: str = "USD"
    user_id: str | None = None
    org_id: str | None = None
    agent: str | None = None
    conversation_id: str | None = None
    model: str | None = None
    provider: str | None = None
    correlation_id: str | None = None
    request_id: str | None = None
    trace_id: str | None = None
    source: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        """The row as a dict (``cost`` stays a ``Decimal``)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Claim:
    """One budget to check for one call: the scope's key, its limit, and what to reserve."""

    scope: str
    key: str
    period: str | None
    limit: Decimal
    amount: Decimal
    currency: str = "USD"


def period_start(period: str | None, at: datetime) -> str:
    """The key of the period containing ``at`` (UTC): ``2026-11-23``, ``2026-11``, or ``""``."""
    # Formatted by hand: strftime costs about 10x more, and a budgeted call takes several.
    if period == "day":
        at = at.astimezone(_UTC)
        return f"{at.year:04d}-{at.month:02d}-{at.day:02d}"
    if period == "month":
        at = at.astimezone(_UTC)
        return f"{at.year:04d}-{at.month:02d}"
    return ""


def period_name(period: str | None) -> str:
    """The stored name of a period (``day``, ``month``, ``all``)."""
    return period or "all"


def as_utc(value: datetime | date | str | None, what: str) -> datetime | None:
    """``value`` (a datetime, a date, an ISO 8601 string) as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ConfigurationError(
                f"{what} must be an ISO 8601 date or datetime such as 2026-11-23 or "
                f"2026-11-23T08:00:00Z, not {value!r}"
            ) from None
    if isinstance(value, datetime):
        return value.replace(tzinfo=_UTC) if value.tzinfo is None else value.astimezone(_UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=_UTC)
    raise ConfigurationError(f"{what} must be a datetime, a date or an ISO 8601 string")


#: The ledger's columns, as :class:`UsageRecord` names them.
FIELDS: tuple[str, ...] = tuple(UsageRecord.__slots__)


def row_of(r: UsageRecord) -> dict[str, Any]:
    """The ledger row of a record."""
    # dataclasses.asdict deep-copies every value; the ledger's values are all immutable.
    return {f: getattr(r, f) for f in FIELDS}
