"""``ChatHistoryCallbackHandler``: conversations and their messages, kept in a real database.

Use it directly (the Arshai API, async, with a ``*_sync`` twin for every method)::

    chat_history = ChatHistoryCallbackHandler(
        correlation_id="correlation-id",
        request_id="request-id",
        user_data={"user_id": "user-123", "org_id": "org-456"},
        realm="main",
        agent_title="Customer Support Agent",
    )
    conversation_id = await chat_history.create_conversation(conversation_state="normal")
    question = await chat_history.send_message(
        conversation_id=conversation_id, message_text="How can I reset my password?",
        sender="end_user", parent_message_id=None, message_time="2023-05-15T14:30:00Z",
        metadata=[],
    )

or as a callback on a runner (``callbacks=[chat_history]``): each top-level run's input is
stored as the user's message and its output as the assistant's reply (linked to it by
``parent_message_id``, with the model, the tokens and the run id), in the conversation of the
run's request context, else the handler's ``conversation_id``, created on first use. That
recording happens on the handler's background worker, so the answer is not delayed, and is
drained before the process exits (``CallbackManager.flush()`` / ``close()``, ``atexit``).

The handler reads its own writes: every method waits first for what its hooks have queued
(a turn just recorded, a conversation created on first use), without blocking an event loop,
so ``get_conversation_details()`` right after ``await agent.process_message(...)`` has the turn.

The database is ``database_url=`` (or a shared ``store=``: any implementation of
``hookwire.stores.ConversationStore``), else ``HOOKWIRE_DATABASE_URL``, else ``./hookwire.db``
(SQLite); see ``hookwire.stores``. The handler acts for one user: a
conversation of another user, org or realm is ``ConversationNotFound``, as if it did not
exist.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

from .._lru import LRU
from .._workers import past_exit_deadline
from ..dispatch import aflush_handler, flush_handler
from ..errors import (
    ConfigurationError,
    InvalidInputError,
    MigrationError,
    NotFoundError,
    StoreError,
)
from ..ids import new_id
from ..stores.conversations import ConversationStore, Owner, Page
from ..stores.runner import in_store_loop, run_sync
from ..stores.schema import has_lone_surrogate
from .base import BaseCallback

__all__ = ["KNOWN_CONVERSATIONS", "MAX_PENDING", "ChatHistoryCallbackHandler"]

logger = logging.getLogger("hookwire")

T = TypeVar("T")

#: How long a sync method waits for the database before raising ``StoreError``.
SYNC_TIMEOUT = 60.0
#: Run events (a turn is two) a handler keeps queued by default while its database is down.
MAX_PENDING: Final = 10_000
#: The longest wait between two tries of a turn the database could not take.
MAX_BACKOFF: Final = 5.0

#: How many conversation ids a handler remembers as created (the most recently used).
KNOWN_CONVERSATIONS: Final = 10_000

# Stores that failed to take a turn, so that an outage is logged once per store (and its end).
_FAILING: set[int] = set()
_FAILING_LOCK = threading.Lock()


class ChatHistoryCallbackHandler(BaseCallback):
    """Stores conversations and messages for one user, directly or from run events.

    ``user_data`` is a mapping with ``user_id``, ``org_id`` and ``details`` (``details`` is
    kept in the conversation's metadata). Without a ``user_id`` the handler is anonymous: it
    gets a random id of its own, so it sees only the conversations it created.
    ``conversation_id`` is the conversation that run events are recorded into (created on
    first use); ``correlation_id`` / ``request_id`` are stored with every message.

    Run events are recorded in the background; while the database cannot take them (down,
    unreachable, full) they are retried with a backoff, in order, and kept: at most
    ``max_pending`` events, beyond which one is dropped and counted
    (``CallbackManager.stats()["dropped"]``). A turn the database refuses itself (another
    user's conversation) is not retried: it is counted in ``stats()["errors"]``.
    """

    run_in_background = True
    # Recording waits for the database, and retries while it is down: on a worker of its own,
    # so that other background handlers are not held up meanwhile.
    background_worker = "hookwire-history"
    # The app never waits for an outage: beyond max_pending events, one is dropped and counted.
    drop_when_full = True
    name = "ChatHistoryCallbackHandler"

    def __init__(
        self,
        conversation_id: str | None = None,
        correlation_id: str | None = None,
        request_id: str | None = None,
        user_data: Mapping[str, Any] | None = None,
        realm: str | None = None,
        agent_title: str | None = None,
        is_anonymous: bool = False,
        *,
        store: ConversationStore | None = None,
        database_url: str | None = None,
        max_pending: int = MAX_PENDING,
    ) -> None:
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending <= 0:
            raise ConfigurationError(
                f"max_pending must be a positive number of run events, not {max_pending!r}"
            )
        #: Run events kept queued at most (while the database is down); see ``max_pending``.
        self.queue_size = max_pending  # type: ignore[misc]  # this handler's own bound
        if store is not None and database_url is not None:
            raise ConfigurationError(
                "pass either store= or database_url= to ChatHistoryCallbackHandler, not both"
            )
        if store is not None and not isinstance(store, ConversationStore):
            raise ConfigurationError(
                f"store must be a hookwire.stores.ConversationStore (any implementation of "
                f"it), not {type(store).__name__}; to name a database use database_url="
            )
        if user_data is not None and not isinstance(user_data, Mapping):
            raise ConfigurationError(
                f"user_data must be a dict like {{'user_id': ..., 'org_id': ..., "
                f"'details': {{...}}}}, not {type(user_data).__name__}"
            )
        data = dict(user_data or {})
        user_id = data.get("user_id")
        org_id = data.get("org_id")
        for key, value in (("user_id", user_id), ("org_id", org_id), ("realm", realm)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigurationError(f"{key} must be a non-empty string, not {value!r}")
            if value is not None and ("\x00" in value or has_lone_surrogate(value)):
                raise ConfigurationError(
                    f"{key} {value!r} cannot be stored: it holds a NUL character or a lone "
                    "surrogate; pass valid Unicode text"
                )
        anonymous = bool(is_anonymous) or user_id is None
        if user_id is None:
            user_id = f"anonymous-{uuid.uuid4()}"
        self.store = store if store is not None else ConversationStore.for_url(database_url)
        self.owner = Owner(
            user_id=str(user_id),
            org_id=str(org_id or ""),
            realm=str(realm or ""),
            is_anonymous=anonymous,
        )
        self.conversation_id = conversation_id
        self.correlation_id = correlation_id
        self.request_id = request_id
        self.user_data = data
        self.realm = realm
        self.agent_title = agent_title
        self.is_anonymous = anonymous
        self._details = data.get("details")
        # run id -> (conversation id, the user's message id), between start and end of a run
        self._turns: dict[str, tuple[str, str]] = {}
        # conversations this handler has created or seen created: the most recent ones only
        # (one it forgot is created again with exist_ok, a round trip, never a duplicate)
        self._known: LRU[str, None] = LRU(KNOWN_CONVERSATIONS)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"ChatHistoryCallbackHandler(user_id={self.owner.user_id!r}, "
            f"conversation_id={self.conversation_id!r}, store={self.store!r})"
        )

    @property
    def user_id(self) -> str:
        """The user this handler acts for."""
        return self.owner.user_id

    def _cid(self, conversation_id: str | None) -> str:
        cid = conversation_id if conversation_id is not None else self.conversation_id
        if cid is None:
            raise ConfigurationError(
                "no conversation: pass conversation_id=..., or create one first with "
                "create_conversation()"
            )
        return cid

    # What this handler's hooks queued (a run's turn, a conversation made on first use) is
    # written before any method below touches a conversation, so that the handler reads its
    # own writes; with nothing queued this costs a look at its queues.

    async def _settled(self) -> None:
        if not _failing(self.store):
            await aflush_handler(self, SYNC_TIMEOUT)

    def _settled_sync(self) -> None:
        # Not on the store loop: the hooks being waited for need it to write.
        if not in_store_loop() and not _failing(self.store):
            flush_handler(self, SYNC_TIMEOUT)

    # -- the Arshai API (async) -----------------------------------------------------------

    async def create_conversation(
        self,
        conversation_state: str = "normal",
        *,
        conversation_id: str | None = None,
        name: str | None = None,
        metadata: Any = None,
        model: str | None = None,
    ) -> str:
        """Create a conversation for this handler's user; returns its id, which also becomes
        the handler's ``conversation_id``. ``conversation_id`` may be given (else a UUID)."""
        cid = await self.store.create_conversation(
            self.owner,
            **self._conversation_fields(conversation_state, conversation_id, name, metadata, model),
        )
        self.conversation_id = cid
        with self._lock:
            self._known.put(cid, None)
        return cid

    def _conversation_fields(
        self,
        state: str,
        conversation_id: str | None,
        name: str | None,
        metadata: Any,
        model: str | None,
        agent_title: str | None = None,
    ) -> dict[str, Any]:
        if metadata is None and self._details is not None:
            metadata = {"user_details": self._details}
        return {
            "conversation_id": conversation_id,
            "name": name,
            "state": state,
            "agent_title": agent_title or self.agent_title,
            "model": model,
            "metadata": metadata,
            "correlation_id": self.correlation_id,
            "request_id": self.request_id,
        }

    async def send_message(
        self,
        conversation_id: str | None,
        message_text: str,
        sender: str,
        parent_message_id: str | None = None,
        message_time: Any = None,
        metadata: Any = None,
        conversation_state: str | None = None,
        *,
        message_id: str | None = None,
        run_id: str | None = None,
        model: str | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        total_tokens: int | None = None,
    ) -> str:
        """Store a message; returns its id once it is durable.

        ``sender`` is ``end_user``, ``assistant``, ``system`` or ``tool``;
        ``parent_message_id`` a message of the same conversation; ``message_time`` a datetime
        or an ISO 8601 string (default: now); ``metadata`` any JSON value;
        ``conversation_state`` (``normal``, ``human-intervention``) updates the conversation.
        """
        await self._settled()
        return await self.store.add_message(
            self.owner,
            self._cid(conversation_id),
            message_text,
            sender,
            parent_message_id=parent_message_id,
            message_time=message_time,
            metadata=metadata,
            message_id=message_id,
            correlation_id=self.correlation_id,
            request_id=self.request_id,
            run_id=run_id,
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=total_tokens,
            conversation_state=conversation_state,
        )

    async def rename_conversation(self, conversation_id: str | None, new_name: str) -> None:
        """Rename the conversation (1 to 255 characters, stripped)."""
        await self._settled()
        await self.store.rename_conversation(self.owner, self._cid(conversation_id), new_name)

    async def get_conversation_details(self, conversation_id: str | None = None) -> dict[str, Any]:
        """The conversation: ``id``, ``name``, ``state``, ``realm``, ``org_id``, ``user_id``,
        ``is_anonymous``, ``agent_title``, ``model``, ``created_at``, ``updated_at``,
        ``metadata``, ``message_count``, and ``messages`` in order, each with ``id``,
        ``parent_message_id``, ``sender``, ``text``, ``message_time``, ``metadata``,
        ``run_id``, ``model`` and token counts."""
        await self._settled()
        return await self.store.get_conversation_details(self.owner, self._cid(conversation_id))

    # -- beyond the seed --------------------------------------------------------------------

    async def list_conversations(self, limit: int = 50, cursor: str | None = None) -> Page:
        """This user's conversations, most recently updated first; ``Page.next_cursor`` gets
        the next page."""
        await self._settled()
        return await self.store.list_conversations(self.owner, limit=limit, cursor=cursor)

    async def get_messages(
        self, conversation_id: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> Page:
        """The conversation's messages in order, a page at a time."""
        await self._settled()
        return await self.store.get_messages(
            self.owner, self._cid(conversation_id), limit=limit, cursor=cursor
        )

    async def set_conversation_state(self, conversation_id: str | None, state: str) -> None:
        """Set the state: ``normal``, or ``human-intervention`` to hand over to a person."""
        await self._settled()
        await self.store.set_conversation_state(self.owner, self._cid(conversation_id), state)

    async def delete_conversation(self, conversation_id: str | None = None) -> int:
        """Delete the conversation and its messages; returns how many messages were deleted."""
        await self._settled()
        cid = self._cid(conversation_id)
        count = await self.store.delete_conversation(self.owner, cid)
        with self._lock:
            self._known.pop(cid)
        if self.conversation_id == cid:
            self.conversation_id = None
        return count

    # -- sync twins -------------------------------------------------------------------------

    def create_conversation_sync(self, conversation_state: str = "normal", **kw: Any) -> str:
        """:meth:`create_conversation` for sync code."""
        return run_sync(self.create_conversation(conversation_state, **kw), SYNC_TIMEOUT)

    def send_message_sync(
        self,
        conversation_id: str | None,
        message_text: str,
        sender: str,
        parent_message_id: str | None = None,
        message_time: Any = None,
        metadata: Any = None,
        conversation_state: str | None = None,
        **kw: Any,
    ) -> str:
        """:meth:`send_message` for sync code.

        It either stores the message and returns its id, or stores nothing: a message not
        written within the wait (60 s: a locked or unreachable database) is withdrawn, and
        the ``StoreError`` says that sending it again is safe. One a transaction already
        holds is waited for up to as long again; only if even that runs out is the error
        one that names the message id to send it again with (``message_id=``), which the
        store refuses to store twice."""
        self._settled_sync()
        return self.store.add_message_sync(
            self.owner,
            self._cid(conversation_id),
            message_text,
            sender,
            timeout=SYNC_TIMEOUT,
            parent_message_id=parent_message_id,
            message_time=message_time,
            metadata=metadata,
            conversation_state=conversation_state,
            correlation_id=self.correlation_id,
            request_id=self.request_id,
            **kw,
        )

    def rename_conversation_sync(self, conversation_id: str | None, new_name: str) -> None:
        """:meth:`rename_conversation` for sync code."""
        run_sync(self.rename_conversation(conversation_id, new_name), SYNC_TIMEOUT)

    def get_conversation_details_sync(self, conversation_id: str | None = None) -> dict[str, Any]:
        """:meth:`get_conversation_details` for sync code."""
        self._settled_sync()
        return self.store.get_conversation_details_sync(
            self.owner, self._cid(conversation_id), SYNC_TIMEOUT
        )

    def list_conversations_sync(self, limit: int = 50, cursor: str | None = None) -> Page:
        """:meth:`list_conversations` for sync code."""
        return run_sync(self.list_conversations(limit, cursor), SYNC_TIMEOUT)

    def get_messages_sync(
        self, conversation_id: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> Page:
        """:meth:`get_messages` for sync code."""
        return run_sync(self.get_messages(conversation_id, limit, cursor), SYNC_TIMEOUT)

    def set_conversation_state_sync(self, conversation_id: str | None, state: str) -> None:
        """:meth:`set_conversation_state` for sync code."""
        run_sync(self.set_conversation_state(conversation_id, state), SYNC_TIMEOUT)

    def delete_conversation_sync(self, conversation_id: str | None = None) -> int:
        """:meth:`delete_conversation` for sync code."""
        return run_sync(self.delete_conversation(conversation_id), SYNC_TIMEOUT)

    # -- as a callback (runs on the handler's background worker) ----------------------------

    def _until_stored(self, write: Callable[[], T]) -> T:
        """``write()``, tried again with a backoff while the database cannot take it (down,
        unreachable, full); an error of the data itself is raised at once."""
        delay = 0.05
        while True:
            try:
                result = write()
            except Exception as exc:
                if not _unavailable(exc) or past_exit_deadline():
                    raise
                _outage(self.store, exc)
                time.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            _recovered(self.store)
            return result

    def _add_message(self, cid: str, text: str, sender: str, **fields: Any) -> str:
        # The id is ours, so that a try whose commit went through but whose answer was lost
        # (a cut connection) is recognised when tried again, not stored twice.
        message_id = new_id()
        tries = 0

        def write() -> str:
            nonlocal tries
            tries += 1
            try:
                return self.store.add_message_sync(
                    self.owner,
                    cid,
                    text,
                    sender,
                    timeout=SYNC_TIMEOUT,
                    message_id=message_id,
                    **fields,
                )
            except InvalidInputError as exc:
                if tries > 1 and message_id in str(exc):
                    return message_id  # stored by the try before
                raise

        return self._until_stored(write)

    def _run_conversation(self, kw: Mapping[str, Any]) -> str:
        cid = kw.get("conversation_id") or self.conversation_id
        with self._lock:
            if cid is None:
                cid = self.conversation_id = str(uuid.uuid4())
            known = cid in self._known
            if known:
                self._known.put(cid, None)  # now the most recent
        if not known:
            fields = self._conversation_fields(
                "normal", cid, None, None, kw.get("model"), agent_title=kw.get("agent")
            )
            self._until_stored(
                lambda: run_sync(
                    self.store.create_conversation(self.owner, exist_ok=True, **fields),
                    SYNC_TIMEOUT,
                )
            )
            with self._lock:
                self._known.put(cid, None)
        return str(cid)

    def on_run_start(self, input: Any, **kwargs: Any) -> None:
        """Store a top-level run's input as the user's message."""
        if kwargs.get("depth") or input is None:
            return
        cid = self._run_conversation(kwargs)
        run_id = kwargs.get("run_id")
        message_id = self._add_message(
            cid,
            _text(input),
            "end_user",
            correlation_id=kwargs.get("correlation_id") or self.correlation_id,
            request_id=kwargs.get("request_id") or self.request_id,
            run_id=run_id,
        )
        if run_id is not None:
            self._turns[run_id] = (cid, message_id)

    def on_run_end(self, output: Any, **kwargs: Any) -> None:
        """Store a top-level run's output as the assistant's reply to its input."""
        if kwargs.get("depth"):
            return
        run_id = kwargs.get("run_id")
        turn = self._turns.pop(run_id, None) if run_id is not None else None
        if output is None or kwargs.get("error") is not None:
            return
        if turn is None:
            cid, parent = self._run_conversation(kwargs), None
        else:
            cid, parent = turn
        usage = kwargs.get("usage")
        model = kwargs.get("model") or getattr(output, "model", None)
        self._add_message(
            cid,
            _text(output),
            "assistant",
            parent_message_id=parent,
            correlation_id=kwargs.get("correlation_id") or self.correlation_id,
            request_id=kwargs.get("request_id") or self.request_id,
            run_id=run_id,
            model=model if isinstance(model, str) else None,
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None),
            total_tokens=getattr(usage, "total_tokens", None),
        )


def _text(value: Any) -> str:
    """The text of a run's input or output: a string as is, an answer's ``content``, the
    last user message of a chat, else ``str()``."""
    if isinstance(value, str):
        return value
    content = getattr(value, "content", None)
    if isinstance(content, str):
        return content
    if isinstance(value, list) and value and isinstance(value[-1], Mapping):
        last = value[-1].get("content")
        if isinstance(last, str):
            return last
    return str(value)


def _unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot take the write now (worth trying again), as
    opposed to refusing it (bad input, another owner's conversation, an old schema)."""
    if isinstance(exc, (InvalidInputError, NotFoundError, MigrationError)):
        return False
    return isinstance(exc, (StoreError, OSError, TimeoutError))


def _failing(store: ConversationStore) -> bool:
    # While the database takes no writes, the turns queued before a read cannot be written
    # in the meantime: the read goes ahead (and reports the outage itself if it has to).
    return bool(_FAILING) and id(store) in _FAILING


def _outage(store: ConversationStore, exc: BaseException) -> None:
    with _FAILING_LOCK:
        first = id(store) not in _FAILING
        _FAILING.add(id(store))
    if first:
        logger.error(
            "hookwire: chat history could not be stored in %r; retrying with a backoff, the "
            "turns kept in order (further failures are logged at debug level): %s",
            store,
            exc,
        )
    else:
        logger.debug("hookwire: storing chat history in %r failed again: %r", store, exc)


def _recovered(store: ConversationStore) -> None:
    if _FAILING and id(store) in _FAILING:
        with _FAILING_LOCK:
            _FAILING.discard(id(store))
        logger.warning("hookwire: chat history is stored in %r again", store)
