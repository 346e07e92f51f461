"""Page cursors: opaque strings a caller passes back to get the next page.

A conversation cursor is the last row's ``(updated_at, id)`` as base64 JSON (the list is
ordered by both, newest first); a message cursor is the last message's ``seq``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
from typing import Any

import orjson

from ...errors import InvalidInputError

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
    for the first page)."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, cid = orjson.loads(raw)
        return _dt.datetime.fromisoformat(at), str(cid)
    except (TypeError, ValueError, binascii.Error, orjson.JSONDecodeError):
        raise InvalidInputError(
            f"cursor {cursor!r} is not a cursor list_conversations returned; pass its "
            "next_cursor, or None for the first page"
        ) from None


def encode_message_cursor(seq: int) -> str:
    """The cursor of the page after the message whose ``seq`` is ``seq``."""
    return f"m{seq}"


def decode_message_cursor(cursor: Any) -> int | None:
    """The ``seq`` of a cursor :func:`encode_message_cursor` made (``None``: first page)."""
    if cursor is None:
        return None
    if isinstance(cursor, str) and cursor.startswith("m") and cursor[1:].isdigit():
        return int(cursor[1:])
    raise InvalidInputError(
        f"cursor {cursor!r} is not a cursor get_messages returned; pass its next_cursor, "
        "or None for the first page"
    )
