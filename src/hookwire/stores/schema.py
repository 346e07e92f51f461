"""The SQL schema of everything hookwire stores: one SQLAlchemy Core ``MetaData``.

Every table of every store lives in :data:`metadata`, so one Alembic history versions them
all (``hookwire.stores.migrations``). The tables are written for SQLite and PostgreSQL alike:

``conversations``
    id, realm, org_id, user_id, is_anonymous (the owner: a handler only sees rows whose owner
    matches its own), name, agent_title, state (``normal``, ``human-intervention``), model,
    created_at, updated_at, metadata (JSON), correlation_id, request_id.

``messages``
    seq (a store-wide insertion order, the order of a conversation), id, conversation_id,
    parent_message_id, sender (``end_user``, ``assistant``, ``system``, ``tool``), text,
    message_time, created_at, metadata (JSON), correlation_id, request_id, run_id, model,
    prompt_tokens, completion_tokens, total_tokens.

Times are timezone-aware UTC datetimes on both databases (:class:`UTCDateTime`).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "CONVERSATION_STATES",
    "SENDERS",
    "UTCDateTime",
    "conversations",
    "messages",
    "metadata",
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
