"""The SQL schema of everything hookwire stores: one SQLAlchemy Core ``MetaData``.

Every table of every store lives in :data:`metadata`, so one Alembic history versions them
all (``hookwire.stores.migrations``). The tables are written for SQLite and PostgreSQL alike:

``conversations``
    id, realm, org_id, user_id, is_anonymous (the owner: a handler only sees rows whose owner
    matches its own), name, agent_title, state (``normal``, ``human-intervention``), model,
    created_at, updated_at, metadata (JSON), correlation_id, request_id, message_count (kept
    with the messages' inserts).

``messages``
    seq (a store-wide insertion order, the order of a conversation), id, conversation_id,
    parent_message_id, sender (``end_user``, ``assistant``, ``system``, ``tool``), text,
    message_time, created_at, metadata (JSON), correlation_id, request_id, run_id, model,
    prompt_tokens, completion_tokens, total_tokens.

``usage_ledger``
    one row per LLM call (``hookwire.callbacks.accounting``): seq, run_id (unique: a call is
    counted once), created_at, user_id, org_id, agent, conversation_id, model, provider, token
    counts (prompt, completion, cached, reasoning, total), cost (``None``: price unknown),
    currency, correlation_id, request_id, trace_id, source (``auto``, ``manual`` or ``estimated``).

``usage_totals``
    running sums of the ledger by scope (``user``, ``org``, ``agent``), key and period
    (``day`` ``2026-11-23``, ``month`` ``2026-11``, ``all``), kept in the ledger's transaction;
    budgets read them instead of summing the ledger, and so does ``hookwire costs`` where they
    cover its question. The scopes ``model``, ``provider`` and ``all`` (key ``""``: every
    call) are kept per day and month for summaries only.

``budget_reservations``
    the worst-case cost of LLM calls in flight, per budget scope, key and period; a call's
    reservation is removed when its ledger row is written (or it fails, or it expires).

``spans``
    the trace store (``hookwire.stores.traces``): one row per run, LLM call, tool call,
    memory operation, retry and error, with what the dashboard lists, filters and sums as real
    columns (trace, parent, kind, name, times, status, error type, model, provider, the
    request's user, org, conversation and agent, tokens by kind, cost, latency, time to first
    token, retries) and a short preview of the input and output.

``span_contents``
    a span's whole input and output (redacted JSON), apart from ``spans`` so that lists never
    read them; searched by a trigram index (language-neutral): on SQLite the FTS5 table
    ``span_search`` kept by triggers, on PostgreSQL a ``pg_trgm`` GIN index (migration
    ``0006_traces``; neither is in this metadata).

``span_rollups`` and ``span_latency``
    per-hour sums of the spans that ended (migration ``0007_trace_rollups``), kept in the
    transaction that writes them: spans, tokens by kind, cost and latency by hour, kind,
    status, error type, model and currency; and how many latencies (and times to first
    token) fell in each bucket of a logarithmic histogram, which merges across hours into
    percentiles (``hookwire.stores.traces.rollups``). The health view reads only these.

``budget_totals``
    on PostgreSQL, the sum of ``budget_reservations`` per scope, key, period and currency,
    kept with them, so that a budget check updates one row instead of summing the
    reservations (SQLite's check sums them; the table stays empty there).

``outbox``
    events on their way out to other systems (``hookwire.export``): one row per event and
    sink, with the event's stable id (a UUIDv7, unique with the sink), its ordering key (the
    conversation, else the trace), its JSON body, and its delivery state (``pending``,
    ``delivered``, ``dead``): attempts, when it may be tried next, a relay's claim on it, the
    last error and, for a refused event, the receiver's response.

Times are timezone-aware UTC datetimes on both databases (:class:`UTCDateTime`). Money is
exact on both (:class:`Money`).
"""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

from .values import MONEY_CONTEXT, MONEY_SCALE, has_lone_surrogate, money_from_units, tidy

__all__ = [
    "CONVERSATION_STATES",
    "MONEY_SCALE",
    "OUTBOX_STATES",
    "SENDERS",
    "Money",
    "UTCDateTime",
    "budget_reservations",
    "budget_totals",
    "conversations",
    "has_lone_surrogate",
    "messages",
    "metadata",
    "outbox",
    "span_contents",
    "span_latency",
    "span_rollups",
    "spans",
    "usage_ledger",
    "usage_totals",
]

#: Who may send a message.
SENDERS: tuple[str, ...] = ("end_user", "assistant", "system", "tool")
#: The states a conversation may be in (Arshai's hand-off to a person is ``human-intervention``).
CONVERSATION_STATES: tuple[str, ...] = ("normal", "human-intervention")

_UTC = _dt.timezone.utc


#: Constraint names are explicit so migrations can refer to them on every database.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[_dt.datetime]):
    """A timezone-aware UTC datetime on every database.

    PostgreSQL keeps ``timestamptz`` (asyncpg decodes it natively). SQLite keeps fixed-width
    ISO 8601 text (``2024-01-02T03:04:05.000006+00:00``), which sorts as time does and parses
    with ``datetime.fromisoformat``, many times faster than SQLAlchemy's generic parser.
    Naive datetimes are taken as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(32))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = value.replace(tzinfo=_UTC) if value.tzinfo is None else value.astimezone(_UTC)
        if dialect.name == "sqlite":
            return value.isoformat(timespec="microseconds")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> _dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return _dt.datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=_UTC)  # type: ignore[no-any-return]
        return value  # type: ignore[no-any-return]


def _json() -> TypeEngine[Any]:
    return JSON().with_variant(JSONB(), "postgresql")


def _count() -> TypeEngine[int]:
    return BigInteger().with_variant(Integer(), "sqlite")


_ID = 64  # UUIDs are 36; callers' own ids may be longer

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(_ID), primary_key=True),
    Column("realm", String(128), nullable=False, server_default=""),
    Column("org_id", String(255), nullable=False, server_default=""),
    Column("user_id", String(255), nullable=False),
    Column("is_anonymous", Boolean, nullable=False, server_default="0"),
    Column("name", String(255), nullable=True),
    Column("agent_title", String(255), nullable=True),
    Column("state", String(32), nullable=False, server_default="normal"),
    Column("model", String(255), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("metadata", _json(), nullable=True),
    Column("correlation_id", String(255), nullable=True),
    Column("request_id", String(255), nullable=True),
    # kept in the transaction that inserts the conversation's messages
    Column("message_count", _count(), nullable=False, server_default="0"),
    # list_conversations: one owner's conversations, newest first
    Index(
        "ix_conversations_owner_updated",
        "realm",
        "org_id",
        "user_id",
        "is_anonymous",
        "updated_at",
        "id",
    ),
    # list_conversations(user_id=...) across realms and orgs (hookwire history list --user)
    Index("ix_conversations_user_updated", "user_id", "updated_at", "id"),
    # every owner's conversations, newest first (hookwire history list)
    Index("ix_conversations_updated", "updated_at", "id"),
)

messages = Table(
    "messages",
    metadata,
    Column(
        "seq",
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("id", String(_ID), nullable=False, unique=True),
    Column(
        "conversation_id",
        String(_ID),
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column(
        "parent_message_id",
        String(_ID),
        ForeignKey("messages.id", ondelete="SET NULL"),
        nullable=True,
    ),
    Column("sender", String(16), nullable=False),
    Column("text", Text(), nullable=False),
    Column("message_time", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("metadata", _json(), nullable=True),
    Column("correlation_id", String(255), nullable=True),
    Column("request_id", String(255), nullable=True),
    Column("run_id", String(64), nullable=True),
    Column("model", String(255), nullable=True),
    Column("prompt_tokens", Integer(), nullable=True),
    Column("completion_tokens", Integer(), nullable=True),
    Column("total_tokens", Integer(), nullable=True),
    CheckConstraint(
        "sender IN ('end_user', 'assistant', 'system', 'tool')",
        name="sender",
    ),
    # a conversation's messages in order, and its pages
    Index("ix_messages_conversation_seq", "conversation_id", "seq"),
    # the replies of a message (parent links), and ON DELETE SET NULL without a scan
    Index("ix_messages_parent", "parent_message_id"),
    Index("ix_messages_run", "run_id"),
)


# -- usage accounting -------------------------------------------------------------------------

#: Decimal places kept of every amount of money (a millionth of a millionth of the currency).
_MONEY_QUANTUM = _decimal.Decimal(1).scaleb(-MONEY_SCALE)
_MONEY_UNITS = 10**MONEY_SCALE
_MONEY_CTX = MONEY_CONTEXT


class Money(TypeDecorator[_decimal.Decimal]):
    """An exact amount of money, as ``Decimal``, rounded to :data:`MONEY_SCALE` places.

    PostgreSQL keeps ``numeric(38, 12)``. SQLite has no exact decimal type (its ``NUMERIC``
    turns values into floats), so there it is an integer count of 10^-12 units, which ``SUM``
    adds exactly (up to 9.2 million currency units in one sum).
    """

    impl = Numeric(38, MONEY_SCALE)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(38, MONEY_SCALE, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        amount = _MONEY_CTX.quantize(_decimal.Decimal(value), _MONEY_QUANTUM)
        if dialect.name == "sqlite":
            return int(amount.scaleb(MONEY_SCALE, _MONEY_CTX))
        return amount

    def process_result_value(self, value: Any, dialect: Dialect) -> _decimal.Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return money_from_units(value)
        return tidy(_decimal.Decimal(value))


usage_ledger = Table(
    "usage_ledger",
    metadata,
    Column("seq", _count(), primary_key=True, autoincrement=True),
    Column("run_id", String(_ID), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("user_id", String(255), nullable=True),
    Column("org_id", String(255), nullable=True),
    Column("agent", String(255), nullable=True),
    Column("conversation_id", String(_ID), nullable=True),
    Column("model", String(255), nullable=True),
    Column("provider", String(64), nullable=True),
    Column("prompt_tokens", BigInteger(), nullable=False),
    Column("completion_tokens", BigInteger(), nullable=False),
    Column("cached_tokens", BigInteger(), nullable=True),
    Column("reasoning_tokens", BigInteger(), nullable=True),
    Column("total_tokens", BigInteger(), nullable=False),
    Column("cost", Money(), nullable=True),
    Column("currency", String(3), nullable=False, server_default="USD"),
    Column("correlation_id", String(255), nullable=True),
    Column("request_id", String(255), nullable=True),
    Column("trace_id", String(_ID), nullable=True),
    Column("source", String(16), nullable=False, server_default="auto"),
    CheckConstraint(
        "prompt_tokens >= 0 AND completion_tokens >= 0 AND total_tokens >= 0",
        name="tokens",
    ),
    # summaries over a time range, per user / org / agent / model
    Index("ix_usage_ledger_created", "created_at"),
    Index("ix_usage_ledger_user_created", "user_id", "created_at"),
    Index("ix_usage_ledger_org_created", "org_id", "created_at"),
    Index("ix_usage_ledger_agent_created", "agent", "created_at"),
)


def _total_key() -> list[Any]:
    """The key of a running total, its table's primary key: a budget key's scope, key,
    period and period start, and the currency (new columns for each table)."""
    return [
        Column("scope", String(16), nullable=False),
        Column("key", String(255), nullable=False),
        Column("period", String(8), nullable=False),
        Column("period_start", String(10), nullable=False),
        Column("currency", String(3), nullable=False),
        PrimaryKeyConstraint("scope", "key", "period", "period_start", "currency"),
    ]


def _sums(*names: str) -> list[Column[Any]]:
    """Sums a migration added to a totals table (0 in the rows it found)."""
    return [
        Column(
            n, Money() if n.endswith("cost") else BigInteger(), nullable=False, server_default="0"
        )
        for n in names
    ]


usage_totals = Table(
    "usage_totals",
    metadata,
    *_total_key(),
    Column("calls", BigInteger(), nullable=False),
    Column("prompt_tokens", BigInteger(), nullable=False),
    Column("completion_tokens", BigInteger(), nullable=False),
    Column("cost", Money(), nullable=False),
    # what a summary needs besides (migration 0004), of the calls not estimated: cached and
    # reasoning token sums with the number of calls that reported them (a sum of no reported
    # count is unknown, not 0)
    *_sums("total_tokens", "cached_tokens", "cached_calls", "reasoning_tokens"),
    *_sums("reasoning_calls", "unknown_cost_calls"),
    # the calls whose usage hookwire estimated (source ``estimated``), which summaries show apart
    *_sums("estimated_calls", "estimated_prompt_tokens", "estimated_completion_tokens"),
    *_sums("estimated_tokens", "estimated_cost", "estimated_priced_calls"),
    # a summary's rows of one scope and period (every user's month), without the other periods;
    # with the whole key, so that a lookup of one row through it seeks (migration 0008)
    Index("ix_usage_totals_period", "scope", "period", "period_start", "key", "currency"),
)

budget_reservations = Table(
    "budget_reservations",
    metadata,
    Column("run_id", String(_ID), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("key", String(255), nullable=False),
    Column("period", String(8), nullable=False),
    Column("period_start", String(10), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", Money(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("run_id", "scope", "key", "period"),
    Index("ix_budget_reservations_scope", "scope", "key", "period", "period_start"),
)

budget_totals = Table(
    "budget_totals",
    metadata,
    *_total_key(),
    Column("reserved", Money(), nullable=False),
)


# -- traces -----------------------------------------------------------------------------------

_SPAN_ID = 96  # a run id, or a run id and a suffix (a retry's span: ``<run id>:retry:2``)
_ROOT = "parent_id IS NULL"


def _root_index(name: str, *columns: str) -> Index:
    """An index of root spans only (the runs list and its filters): the much larger rest of
    the table (LLM, tool, memory spans) costs it nothing."""
    return Index(name, *columns, sqlite_where=text(_ROOT), postgresql_where=text(_ROOT))


spans = Table(
    "spans",
    metadata,
    Column("span_id", String(_SPAN_ID), primary_key=True),
    Column("trace_id", String(_ID), nullable=False),
    Column("parent_id", String(_SPAN_ID), nullable=True),
    Column("kind", String(16), nullable=False),
    Column("name", String(255), nullable=True),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("ended_at", UTCDateTime(), nullable=True),
    Column("status", String(16), nullable=False),
    Column("error_type", String(255), nullable=True),
    Column("model", String(255), nullable=True),
    Column("provider", String(64), nullable=True),
    Column("user_id", String(255), nullable=True),
    Column("org_id", String(255), nullable=True),
    Column("conversation_id", String(_ID), nullable=True),
    Column("agent", String(255), nullable=True),
    Column("depth", Integer(), nullable=True),
    Column("input_tokens", BigInteger(), nullable=True),
    Column("output_tokens", BigInteger(), nullable=True),
    Column("cached_tokens", BigInteger(), nullable=True),
    Column("reasoning_tokens", BigInteger(), nullable=True),
    Column("cost", Money(), nullable=True),
    Column("currency", String(3), nullable=True),
    Column("latency_ms", Float(), nullable=True),
    Column("ttft_ms", Float(), nullable=True),
    Column("retries", Integer(), nullable=False, server_default="0"),
    Column("input_preview", String(200), nullable=True),
    Column("output_preview", String(200), nullable=True),
    # the runs list, newest first, and its filters (keyset on started_at, span_id)
    _root_index("ix_spans_root_started", "started_at", "span_id"),
    _root_index("ix_spans_root_user", "user_id", "started_at", "span_id"),
    _root_index("ix_spans_root_model", "model", "started_at", "span_id"),
    _root_index("ix_spans_root_agent", "agent", "started_at", "span_id"),
    _root_index("ix_spans_root_status", "status", "started_at", "span_id"),
    # a span's children, in order (a trace opens one level at a time); of child spans only,
    # so that no planner takes it for the runs (``parent_id IS NULL``) over their own indexes
    Index(
        "ix_spans_parent_started",
        "parent_id",
        "started_at",
        "span_id",
        sqlite_where=text("parent_id IS NOT NULL"),
        postgresql_where=text("parent_id IS NOT NULL"),
    ),
    Index("ix_spans_trace", "trace_id"),
    # retention (the oldest spans first), and the health view's counts of a time window,
    # read from the index alone
    Index("ix_spans_started", "started_at", "kind", "status", "error_type", "retries"),
)

span_contents = Table(
    "span_contents",
    metadata,
    # an integer key: SQLite's full-text index (``span_search``, FTS5) keys its rows by it,
    # and a rowid that is not a declared key may change in a VACUUM
    Column("seq", _count(), primary_key=True, autoincrement=True),
    Column(
        "span_id",
        String(_SPAN_ID),
        ForeignKey("spans.span_id", ondelete="CASCADE"),
        nullable=False,
        unique=True,
    ),
    Column("input", Text(), nullable=True),
    Column("output", Text(), nullable=True),
)

_HOUR_KEY = ("hour", "kind")

span_rollups = Table(
    "span_rollups",
    metadata,
    Column("hour", UTCDateTime(), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    # "" for none: a key column, and NULLs never conflict in an upsert
    Column("error_type", String(255), nullable=False),
    Column("model", String(255), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("spans", BigInteger(), nullable=False),
    Column("input_tokens", BigInteger(), nullable=False),
    Column("output_tokens", BigInteger(), nullable=False),
    Column("cached_tokens", BigInteger(), nullable=False),
    Column("reasoning_tokens", BigInteger(), nullable=False),
    Column("cost", Money(), nullable=False),
    Column("latency_ms", Float(), nullable=False),
    PrimaryKeyConstraint(*_HOUR_KEY, "status", "error_type", "model", "currency"),
)

span_latency = Table(
    "span_latency",
    metadata,
    Column("hour", UTCDateTime(), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("metric", String(8), nullable=False),  # "latency" or "ttft"
    Column("bucket", Integer(), nullable=False),
    Column("spans", BigInteger(), nullable=False),
    PrimaryKeyConstraint(*_HOUR_KEY, "metric", "bucket"),
)

# -- events out -------------------------------------------------------------------------------

#: The delivery states of an outbox row.
OUTBOX_STATES: tuple[str, ...] = ("pending", "delivered", "dead")

outbox = Table(
    "outbox",
    metadata,
    # the order events are delivered in, per sink and key
    Column("seq", _count(), primary_key=True, autoincrement=True),
    Column("event_id", String(_ID), nullable=False),
    Column("sink", String(64), nullable=False),
    Column("key", String(255), nullable=False),
    Column("event", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("body", Text(), nullable=False),
    Column("state", String(16), nullable=False, server_default="pending"),
    Column("attempts", Integer(), nullable=False, server_default="0"),
    Column("available_at", UTCDateTime(), nullable=False),
    Column("claimed_until", UTCDateTime(), nullable=True),
    Column("claimed_by", String(64), nullable=True),
    Column("failing_since", UTCDateTime(), nullable=True),
    Column("last_error", Text(), nullable=True),
    Column("response", Text(), nullable=True),
    Column("delivered_at", UTCDateTime(), nullable=True),
    CheckConstraint("state IN ('pending', 'delivered', 'dead')", name="state"),
    # an event is delivered to a sink under one id (a replay resets the row, never copies it)
    Index("uq_outbox_event_id_sink", "event_id", "sink", unique=True),
    # a relay's claim: the oldest pending rows of a sink; pending rows only, so marking a row
    # delivered or dead adds nothing to them (migration 0009)
    Index(
        "ix_outbox_pending",
        "sink",
        "seq",
        sqlite_where=text("state = 'pending'"),
        postgresql_where=text("state = 'pending'"),
    ),
    # the order check: an earlier pending row of the same sink and key
    Index(
        "ix_outbox_pending_key",
        "sink",
        "key",
        "seq",
        sqlite_where=text("state = 'pending'"),
        postgresql_where=text("state = 'pending'"),
    ),
)
