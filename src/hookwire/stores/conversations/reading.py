"""Reading whole conversations fast: the columns read, a cache of messages already read,
and the making of message dicts from rows (shared by the SQLite and PostgreSQL readers).

A whole-conversation read is one snapshot: the conversation's row with the count and last
``seq`` of its messages (the "head"), then its messages in order. What was read before is kept
in :class:`MessageCache`, so reading a conversation again fetches only what is new.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as _dt
import gc
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from ..engine import json_loads
from .ownership import owner_of
from .validation import not_found

if TYPE_CHECKING:
    from .api import Owner

__all__ = [
    "CONVERSATION_FIELDS",
    "DETAIL_FIELDS",
    "MESSAGE_COLUMNS",
    "MESSAGE_SELECT",
    "MessageCache",
    "conversation_from_tuple",
    "finish_read",
    "fresh",
    "gc_paused",
    "head_select",
    "reuse_cached",
]

_UTC = _dt.timezone.utc

# The statements of the read paths are put together from the fixed column names below (never
# from values: those always go as parameters of the driver).

#: Every column of a message, in the order the write paths insert them and ``get_messages``
#: returns them.
MESSAGE_COLUMNS = (
    "id",
    "conversation_id",
    "parent_message_id",
    "sender",
    "text",
    "message_time",
    "created_at",
    "metadata",
    "correlation_id",
    "request_id",
    "run_id",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
)
MESSAGE_SELECT = ", ".join(MESSAGE_COLUMNS)
#: What get_conversation_details gives for each message (get_messages gives every column):
#: the fields a conversation view needs, since reading a long conversation is mostly the cost
#: of making Python objects of its values.
DETAIL_FIELDS = (
    "id",
    "parent_message_id",
    "sender",
    "text",
    "message_time",
    "metadata",
    "run_id",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
)

CONVERSATION_FIELDS = (
    "id",
    "name",
    "state",
    "realm",
    "org_id",
    "user_id",
    "is_anonymous",
    "agent_title",
    "model",
    "created_at",
    "updated_at",
    "metadata",
    "correlation_id",
    "request_id",
)
CONVERSATION_SELECT = ", ".join(f"c.{f}" for f in CONVERSATION_FIELDS)


# The head of a whole-conversation read: the conversation, the count of its messages (only
# to check cached messages: the count of a snapshot's messages is the number it reads, so a
# read without them skips it) and its last message's seq, which the cache keeps (selected
# with each message, it would cost a column more per row).
def head_select(counted: bool, placeholder: str) -> str:
    """The head's statement; ``placeholder`` is the driver's mark for the conversation id
    (``?``, ``$1``)."""
    count = "c.message_count" if counted else "NULL"
    last = "(SELECT max(seq) FROM messages m WHERE m.conversation_id = c.id)"
    return (
        f"SELECT {CONVERSATION_SELECT}, {count}, {last} FROM conversations c "
        f"WHERE c.id = {placeholder}"
    )


def _last_seq(head: Sequence[Any], cached: int) -> int:
    """The seq of the last message a read saw: the head's, or the cached one's."""
    last = head[len(CONVERSATION_FIELDS) + 1]
    return cached if last is None else int(last)


def conversation_from_tuple(row: Sequence[Any], sqlite: bool) -> dict[str, Any]:
    """A conversation dict from a head row (SQLite's times and metadata come as text)."""
    d = dict(zip(CONVERSATION_FIELDS, row[: len(CONVERSATION_FIELDS)], strict=True))
    d["is_anonymous"] = bool(d["is_anonymous"])
    if sqlite:
        d["created_at"] = _dt.datetime.fromisoformat(d["created_at"])
        d["updated_at"] = _dt.datetime.fromisoformat(d["updated_at"])
        if d["metadata"] is not None:
            d["metadata"] = json_loads(d["metadata"])
    d["message_count"] = int(row[len(CONVERSATION_FIELDS)])
    return d


CachedEntry = tuple[Any, int, list[Any]]


def reuse_cached(
    head: Sequence[Any] | None,
    owner: Owner | None,
    conversation_id: str,
    cache: MessageCache,
    entry: CachedEntry | None,
) -> tuple[Any, Any, list[Any], int]:
    """Check a read's head (``not_found`` if there is none, or it is another owner's), and
    what of the cached ``entry`` still holds: the conversation's creation time, its message
    count (``None`` if not counted), the cached rows, and the ``seq`` to read on from."""
    if head is None or (owner is not None and not owner.sees(owner_of(head))):
        cache.drop(conversation_id)
        raise not_found(conversation_id)
    created, count = head[9], head[len(CONVERSATION_FIELDS)]
    if entry is not None and entry[0] == created:
        return created, count, entry[2], entry[1]
    return created, count, [], 0


def finish_read(
    head: Sequence[Any],
    conversation_id: str,
    cache: MessageCache,
    created: Any,
    last: int,
    base: list[Any],
    rows: list[Any],
    sqlite: bool,
) -> tuple[dict[str, Any], list[Any]]:
    """The conversation dict of a read and all its message rows (cached for the next read);
    ``base`` are the cached rows the new ``rows`` follow."""
    msgs = base + rows if base else rows
    details = conversation_from_tuple((*head[: len(CONVERSATION_FIELDS)], len(msgs)), sqlite)
    cache.put(conversation_id, created, _last_seq(head, last), msgs)
    return details, msgs


class MessageCache:
    """The messages of recently read conversations, so that reading one again fetches only
    what is new.

    Messages never change once stored (only a whole conversation is deleted), so a cached
    list stays true; it is keyed by the conversation's id and creation time, and each read
    checks the conversation's message count in the same transaction: anything unexpected (a
    message committed out of order by another process, a conversation deleted and created
    again) makes it read the whole conversation again. Metadata is kept as JSON text and
    decoded for every read, so callers get objects of their own: the cache keeps the rows as
    the driver returned them (tuples and records; on SQLite a run's values as a list, which
    nothing changes).
    """

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[str, tuple[Any, int, list[Any]]] = (
            collections.OrderedDict()
        )
        self._size = 0

    def get(self, conversation_id: str) -> tuple[Any, int, list[Any]] | None:
        with self._lock:
            entry = self._entries.get(conversation_id)
            if entry is not None:
                self._entries.move_to_end(conversation_id)
            return entry

    def put(self, conversation_id: str, created: Any, last_seq: int, msgs: list[Any]) -> None:
        with self._lock:
            old = self._entries.pop(conversation_id, None)
            if old is not None:
                self._size -= len(old[2])
            if len(msgs) > self.limit:
                return
            self._entries[conversation_id] = (created, last_seq, msgs)
            self._size += len(msgs)
            while self._size > self.limit and self._entries:
                _, dropped = self._entries.popitem(last=False)
                self._size -= len(dropped[2])

    def drop(self, conversation_id: str) -> None:
        with self._lock:
            old = self._entries.pop(conversation_id, None)
            if old is not None:
                self._size -= len(old[2])


_gc_lock = threading.Lock()
_gc_pausers = 0


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a conversation's rows become objects (a few
    tens of milliseconds for 10,000 messages). The rows and dicts hold no cycles, and the
    collections that tens of thousands of new objects trigger would scan them over and over:
    about a fifth of the time of reading a long conversation. Reads that overlap (threads, or
    tasks awaiting the database) share one pause, which ends with the last of them. The
    collector is left alone if something else has turned it off."""
    global _gc_pausers
    with _gc_lock:
        paused = _gc_pausers > 0 or gc.isenabled()
        if paused:
            _gc_pausers += 1
            gc.disable()
    try:
        yield
    finally:
        if paused:
            with _gc_lock:
                _gc_pausers -= 1
                if not _gc_pausers:
                    gc.enable()


def fresh(rows: list[Any], parse_time: bool) -> list[dict[str, Any]]:
    """Message dicts, new for each read, from cached rows (``DETAIL_FIELDS``;
    metadata as JSON text, times as ISO text when ``parse_time``, else asyncpg's datetimes)."""
    if not parse_time:
        return _build(rows, _aware)
    try:
        return _build(rows, _dt.datetime.fromisoformat)
    except ValueError:
        # PostgreSQL's infinite times, which asyncpg writes for the first and last datetimes
        return _build(rows, _time_from_text)


_MAX_TIME = _dt.datetime.max.replace(tzinfo=_UTC)
_MIN_TIME = _dt.datetime.min.replace(tzinfo=_UTC)


def _time_from_text(text: str) -> _dt.datetime:
    if text == "infinity":
        return _MAX_TIME
    if text == "-infinity":
        return _MIN_TIME
    return _dt.datetime.fromisoformat(text)


# Dict displays over unpacked rows: about twice as fast as dict(zip(...)) per row, which is
# most of the cost of reading a long conversation. The keys are DETAIL_FIELDS. Metadata is
# JSON text (on SQLite a bare number's as a BLOB, or in rows written before, the number
# itself: numeric affinity), or None. ``time_of`` makes the message time from the stored one
# (ISO text, or asyncpg's datetime).
def _build(rows: list[Any], time_of: Callable[[Any], _dt.datetime]) -> list[dict[str, Any]]:
    loads = orjson.loads
    return [
        {
            "id": i,
            "parent_message_id": parent,
            "sender": sender,
            "text": text,
            "message_time": time_of(at),
            "metadata": loads(meta) if meta.__class__ is str or meta.__class__ is bytes else meta,
            "run_id": run,
            "model": model,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": total,
        }
        for i, parent, sender, text, at, meta, run, model, prompt, completion, total in rows
    ]


def _aware(at: _dt.datetime) -> _dt.datetime:
    # asyncpg gives PostgreSQL's infinite times as naive datetimes
    return at if at.tzinfo is not None else at.replace(tzinfo=_UTC)


# Decoding a timestamptz makes asyncpg build a timedelta and add it to a datetime, about
# three times the cost of parsing the same time from ISO text with fromisoformat (which on


def _after_fork_in_child() -> None:
    # The parent's reads in progress are not the child's: start without their pauses.
    global _gc_lock, _gc_pausers
    _gc_lock = threading.Lock()
    if _gc_pausers:
        _gc_pausers = 0
        gc.enable()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
