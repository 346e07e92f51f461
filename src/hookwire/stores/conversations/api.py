"""What a conversation store does: :class:`ConversationStore`, the interface every backend
implements, and the ownership rule every method keeps.

Every method takes the :class:`Owner` it acts for: a conversation whose owner (user, org,
realm, anonymity) differs is reported as ``ConversationNotFound``, exactly as one that does
not exist, so its existence is not revealed. ``owner=None`` means operator access (the
``hookwire history`` CLI) and sees every conversation.

``ConversationStore(url)`` (or the shared :meth:`ConversationStore.for_url`) gives the
implementation registered for the URL's backend in :data:`backends`, as ``pathlib.Path()``
gives a ``PosixPath``: SQLite files and PostgreSQL (asyncpg) have their own, other
SQLAlchemy URLs (in-memory SQLite, psycopg) the generic SQL store. Any other implementation
is a subclass of :class:`ConversationStore`, passed to ``ChatHistoryCallbackHandler(store=)``
or registered for a scheme.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .. import runner
from ..registry import Store, StoreRegistry

__all__ = ["ConversationStore", "Owner", "Page", "backends"]


@dataclass(frozen=True, slots=True)
class Owner:
    """Who a store call acts for. A conversation is visible only to its exact owner."""

    user_id: str
    org_id: str = ""
    realm: str = ""
    is_anonymous: bool = False

    def sees(self, row: Any) -> bool:
        """Whether a conversation row (with the owner columns) belongs to this owner."""
        return (
            row.user_id == self.user_id
            and row.org_id == self.org_id
            and row.realm == self.realm
            and bool(row.is_anonymous) == self.is_anonymous
        )


@dataclass(slots=True)
class Page:
    """One page of results; pass ``next_cursor`` back as ``cursor`` for the next (``None``:
    this was the last page)."""

    items: list[dict[str, Any]]
    next_cursor: str | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class ConversationStore(Store):
    """Conversations and their messages in one database (``url`` as for
    ``hookwire.stores.engine.resolve_url``).

    The methods are coroutines that may be awaited from any event loop; the ``_sync`` ones
    are for sync code. Writes are transactions; a message is acknowledged (``add_message``
    returns) only once it is durable. Use :meth:`for_url` to share one store (and its write
    queue) per database in a process.
    """

    #: Which class serves a URL, by backend (registered in ``hookwire.stores.conversations``).
    backends = StoreRegistry["ConversationStore"]("conversation store")

    # -- conversations ------------------------------------------------------------------------

    @abc.abstractmethod
    async def create_conversation(
        self,
        owner: Owner,
        *,
        conversation_id: str | None = None,
        name: str | None = None,
        state: str = "normal",
        agent_title: str | None = None,
        model: str | None = None,
        metadata: Any = None,
        correlation_id: str | None = None,
        request_id: str | None = None,
        exist_ok: bool = False,
    ) -> str:
        """Create a conversation for ``owner``; returns its id (``conversation_id`` or a new
        UUID). With ``exist_ok``, an existing conversation of the same owner is kept as is;
        an id already used by anyone else raises ``InvalidInputError``."""

    @abc.abstractmethod
    async def rename_conversation(
        self, owner: Owner | None, conversation_id: str, name: str
    ) -> None:
        """Give the conversation a new name (stripped, 1 to ``MAX_NAME_LENGTH`` characters)."""

    @abc.abstractmethod
    async def set_conversation_state(
        self, owner: Owner | None, conversation_id: str, state: str
    ) -> None:
        """Set the conversation's state (``normal``, ``human-intervention``)."""

    @abc.abstractmethod
    async def delete_conversation(self, owner: Owner | None, conversation_id: str) -> int:
        """Delete the conversation and all its messages; returns how many messages went."""

    @abc.abstractmethod
    async def get_conversation(self, owner: Owner | None, conversation_id: str) -> dict[str, Any]:
        """The conversation's fields and ``message_count`` (without the messages)."""

    @abc.abstractmethod
    async def get_conversation_details(
        self, owner: Owner | None, conversation_id: str
    ) -> dict[str, Any]:
        """The conversation (as :meth:`get_conversation`) with ``messages``: every message in
        the order it was stored, each with the fields of ``DETAIL_FIELDS``. One consistent
        snapshot."""

    def get_conversation_details_sync(
        self, owner: Owner | None, conversation_id: str, timeout: float | None = 60.0
    ) -> dict[str, Any]:
        """:meth:`get_conversation_details` for sync code."""
        return runner.run_sync(self.get_conversation_details(owner, conversation_id), timeout)

    @abc.abstractmethod
    async def list_conversations(
        self,
        owner: Owner | None,
        *,
        limit: int = 50,
        cursor: str | None = None,
        user_id: str | None = None,
    ) -> Page:
        """The owner's conversations, most recently updated first, ``limit`` a page.

        ``user_id`` filters by user (operator access, ``owner=None``, only)."""

    @abc.abstractmethod
    async def get_messages(
        self,
        owner: Owner | None,
        conversation_id: str,
        *,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        """The conversation's messages in order (every column), ``limit`` a page."""

    # -- messages -----------------------------------------------------------------------------

    @abc.abstractmethod
    async def add_message(
        self,
        owner: Owner | None,
        conversation_id: str,
        text: str,
        sender: str,
        *,
        parent_message_id: str | None = None,
        message_time: Any = None,
        metadata: Any = None,
        message_id: str | None = None,
        correlation_id: str | None = None,
        request_id: str | None = None,
        run_id: str | None = None,
        model: str | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        total_tokens: int | None = None,
        conversation_state: str | None = None,
    ) -> str:
        """Store a message; returns its id once it is committed.

        ``parent_message_id`` must be a message of the same conversation. With
        ``conversation_state``, the conversation's state is set in the same transaction.
        """

    def add_message_sync(
        self,
        owner: Owner | None,
        conversation_id: str,
        text: str,
        sender: str,
        *,
        timeout: float | None = 60.0,
        **fields: Any,
    ) -> str:
        """:meth:`add_message` for sync code (and handlers' background workers)."""
        return runner.run_sync(
            self.add_message(owner, conversation_id, text, sender, **fields), timeout
        )


backends = ConversationStore.backends
