"""Conversations and their messages: the store behind ``ChatHistoryCallbackHandler``.

:class:`ConversationStore` (in :mod:`.api`) declares what a store does and the ownership rule;
``ConversationStore(url)`` and ``ConversationStore.for_url(url)`` give the implementation
registered below for the URL's backend:

- ``sqlite`` files: :class:`SQLiteConversationStore` (:mod:`.sqlite`), a writer queue on
  the store worker and reads in the caller's thread, on plain ``sqlite3`` connections;
- ``postgresql+asyncpg``: :class:`PostgresConversationStore` (:mod:`.postgres`), groups and
  reads on asyncpg connections;
- anything else SQLAlchemy serves (in-memory SQLite, ``postgresql+psycopg``):
  :class:`SQLConversationStore` (:mod:`.sql`), SQLAlchemy Core throughout.

The other modules: :mod:`.validation` (what is accepted), :mod:`.batching` (group commit),
:mod:`.ownership` (which messages of a group may be stored), :mod:`.reading` (whole
conversations and their cache), :mod:`.cursors` (page cursors).

Writes are transactions. Messages written concurrently are committed in groups: while one
transaction commits, the messages that arrive queue up and go into the next one, each caller
still getting its own result (its id, or its own error) once its group is committed. This is
what makes many writers fast on SQLite, where transactions are serialised, and cheap on
PostgreSQL; a message is acknowledged (its ``add_message`` returns) only once it is durable.

Records come back as plain dicts (JSON-friendly, what the CLI prints):

conversation
    ``id``, ``name``, ``state``, ``realm``, ``org_id``, ``user_id``, ``is_anonymous``,
    ``agent_title``, ``model``, ``created_at``, ``updated_at`` (aware UTC datetimes),
    ``metadata``, ``correlation_id``, ``request_id``, ``message_count``
message (``get_messages``)
    ``id``, ``conversation_id``, ``parent_message_id``, ``sender``, ``text``,
    ``message_time``, ``created_at``, ``metadata``, ``correlation_id``, ``request_id``,
    ``run_id``, ``model``, ``prompt_tokens``, ``completion_tokens``, ``total_tokens``
message (``get_conversation_details``)
    the fields in :data:`DETAIL_FIELDS`: ``id``, ``parent_message_id``, ``sender``,
    ``text``, ``message_time``, ``metadata``, ``run_id``, ``model`` and the token counts
"""

from __future__ import annotations

from .api import ConversationStore, Owner, Page, backends
from .batching import MAX_BATCH
from .postgres import PostgresConversationStore
from .reading import DETAIL_FIELDS
from .sql import SQLConversationStore
from .sqlite import SQLiteConversationStore, sqlite_file
from .validation import (
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    check_metadata,
    check_name,
    check_sender,
    check_state,
    parse_message_time,
)

__all__ = [
    "DETAIL_FIELDS",
    "MAX_BATCH",
    "MAX_ID_LENGTH",
    "MAX_NAME_LENGTH",
    "ConversationStore",
    "Owner",
    "Page",
    "PostgresConversationStore",
    "SQLConversationStore",
    "SQLiteConversationStore",
    "check_metadata",
    "check_name",
    "check_sender",
    "check_state",
    "parse_message_time",
]


def _sqlite_store(url: str) -> type[ConversationStore]:
    return SQLConversationStore if sqlite_file(url) is None else SQLiteConversationStore


def _postgres_store(url: str) -> type[ConversationStore]:
    if url.startswith("postgresql+asyncpg"):
        return PostgresConversationStore
    return SQLConversationStore


# The one place a URL's backend is matched with its implementation.
backends.register("sqlite", _sqlite_store)
backends.register("postgresql", _postgres_store)
