"""Page cursors: opaque strings a caller passes back to get the next page.

A conversation cursor is the last row's ``(updated_at, id)`` as base64 JSON (the list is
ordered by both, newest first); a message cursor is the last message's ``seq``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import re
from typing import Any

import orjson

from ...errors import InvalidInputError
from .validation import MAX_ID_LENGTH

# A message's seq is a 64-bit integer, written in ASCII digits (str.isdigit() would also take
# "²" and other digits int() refuses, or turns into a number the database cannot hold).
_MESSAGE_CURSOR = re.compile(r"m(0|[1-9][0-9]{0,17})")
# A conversation id, as the stores take them: no NUL, at most MAX_ID_LENGTH characters.
_ID = re.compile(rf"[^\x00]{{1,{MAX_ID_LENGTH}}}")
_MAX_CURSOR = 1024

__all__ = [
    "decode_conversation_cursor",
    "decode_message_cursor",
    "encode_conversation_cursor",
    "encode_message_cursor",
]


def encode_conversation_cursor(at: _dt.datetime, conversation_id: str) -> str:
    """The cursor of the page after the conversation ``conversation_id`` updated at ``at``."""
    raw = orjson.dumps([at.isoformat(timespec="microseconds"), conversation_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_conversation_cursor(cursor: Any) -> tuple[_dt.datetime, str] | None:
    """``(updated_at, id)`` of a cursor :func:`encode_conversation_cursor` made (``None``
    for the first page); anything else raises ``InvalidInputError``."""
    if cursor is None:
        return None
    try:
        if not isinstance(cursor, str) or not cursor.isascii() or len(cursor) > _MAX_CURSOR:
            raise ValueError(cursor)
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, cid = orjson.loads(raw)
        if not isinstance(at, str) or not isinstance(cid, str) or not _ID.fullmatch(cid):
            raise ValueError(cursor)
        when = _dt.datetime.fromisoformat(at)
        if when.tzinfo is not None:
            when.astimezone(_dt.timezone.utc)  # a time with no UTC date (year 1, east of UTC)
        return when, cid
    except (TypeError, ValueError, OverflowError, binascii.Error, orjson.JSONDecodeError):
        raise InvalidInputError(
            f"cursor {_shown(cursor)} is not a cursor list_conversations returned; pass its "
            "next_cursor, or None for the first page"
        ) from None


def encode_message_cursor(seq: int) -> str:
    """The cursor of the page after the message whose ``seq`` is ``seq``."""
    return f"m{seq}"


def decode_message_cursor(cursor: Any) -> int | None:
    """The ``seq`` of a cursor :func:`encode_message_cursor` made (``None``: first page);
    anything else raises ``InvalidInputError``."""
    if cursor is None:
        return None
    m = _MESSAGE_CURSOR.fullmatch(cursor) if isinstance(cursor, str) else None
    if m is None:
        raise InvalidInputError(
            f"cursor {_shown(cursor)} is not a cursor get_messages returned; pass its "
            "next_cursor, or None for the first page"
        )
    return int(m.group(1))


def _shown(cursor: Any) -> str:
    text = repr(cursor)
    return text if len(text) <= 80 else f"{text[:77]}..."
