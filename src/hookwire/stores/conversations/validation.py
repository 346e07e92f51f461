"""What a conversation store accepts: every rule raises a named error saying what is."""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

import orjson

from ...errors import (
    ConversationNotFound,
    InvalidInputError,
    InvalidMessageTimeError,
    InvalidMetadataError,
    InvalidNameError,
    InvalidSenderError,
)
from ...ids import new_id
from ..schema import CONVERSATION_STATES, SENDERS, has_lone_surrogate

__all__ = [
    "MAX_ID_LENGTH",
    "MAX_NAME_LENGTH",
    "METADATA_FLOAT_LIMIT",
    "METADATA_INT_RANGE",
    "check_id",
    "check_limit",
    "check_lookup_id",
    "check_metadata",
    "check_name",
    "check_sender",
    "check_state",
    "check_text",
    "check_tokens",
    "conversation_row",
    "message_row",
    "not_found",
    "optional_str",
    "parse_message_time",
]

#: The longest conversation name accepted, in characters.
MAX_NAME_LENGTH = 255
#: The longest id accepted from a caller.
MAX_ID_LENGTH = 64

_UTC = _dt.timezone.utc
_SENDERS = frozenset(SENDERS)
_STATES = frozenset(CONVERSATION_STATES)


def check_sender(sender: Any) -> str:
    """``sender`` if it is one of ``end_user``, ``assistant``, ``system``, ``tool``."""
    if not isinstance(sender, str) or sender not in _SENDERS:
        raise InvalidSenderError(
            f"sender {sender!r} is not allowed; use one of {', '.join(SENDERS)}"
        )
    return sender


def check_state(state: Any) -> str:
    """``state`` if it is a conversation state (``normal``, ``human-intervention``)."""
    if not isinstance(state, str) or state not in _STATES:
        raise InvalidInputError(
            f"conversation_state {state!r} is not a state; use one of "
            f"{', '.join(CONVERSATION_STATES)}"
        )
    return state


def check_name(name: Any) -> str:
    """``name`` stripped, if it is a non-empty string of at most ``MAX_NAME_LENGTH``."""
    if not isinstance(name, str):
        raise InvalidNameError(f"a conversation name must be a string, not {type(name).__name__}")
    stripped = name.strip()
    if not stripped:
        raise InvalidNameError("a conversation name cannot be empty or only spaces")
    if len(stripped) > MAX_NAME_LENGTH:
        raise InvalidNameError(
            f"a conversation name can have at most {MAX_NAME_LENGTH} characters, "
            f"this one has {len(stripped)}; shorten it"
        )
    if "\x00" in stripped:
        raise InvalidNameError("a conversation name cannot contain NUL characters")
    if has_lone_surrogate(stripped):
        raise InvalidNameError(
            "a conversation name cannot contain lone surrogates (text that is not valid "
            "Unicode, such as '\\ud800'); decode the text with errors='replace' first"
        )
    return stripped


def parse_message_time(value: Any) -> _dt.datetime:
    """An aware UTC datetime from a datetime (naive ones are taken as UTC), an ISO 8601
    string (``2023-05-15T14:30:00Z``), or ``None`` (now)."""
    if value is None:
        return _dt.datetime.now(_UTC)
    if isinstance(value, _dt.datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = _dt.datetime.fromisoformat(text)
        except ValueError:
            raise InvalidMessageTimeError(
                f"message_time {value!r} is not an ISO 8601 time; use for example "
                "'2023-05-15T14:30:00Z' or a datetime"
            ) from None
    else:
        raise InvalidMessageTimeError(
            f"message_time must be a datetime or an ISO 8601 string, not "
            f"{type(value).__name__} ({value!r})"
        )
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=_UTC)
    try:
        return parsed.astimezone(_UTC)
    except OverflowError:
        raise InvalidMessageTimeError(
            f"message_time {value!r} is out of range once converted to UTC"
        ) from None


#: The integers metadata may hold: the 64-bit range, which every backend keeps exactly.
METADATA_INT_RANGE = (-(2**63), 2**63 - 1)
#: Floats metadata may hold are finite and smaller than this in size: PostgreSQL gives a
#: larger one (written with an exponent, and whole) back as an integer.
METADATA_FLOAT_LIMIT = 1e16


def _number_error(value: Any, path: str) -> InvalidMetadataError | None:
    """Why the number ``value`` (at ``path``) would not come back as it was, if it would not."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        low, high = METADATA_INT_RANGE
        if low <= value <= high:
            return None
        return InvalidMetadataError(
            f"metadata number {value} at {path} is outside the 64-bit integer range "
            "(-2**63 to 2**63-1) that every database keeps exactly; store it as a string"
        )
    if not math.isfinite(value):
        return InvalidMetadataError(
            f"metadata cannot hold {value!r} (at {path}): JSON has no NaN or infinity; "
            "store a string or None instead"
        )
    if value == 0.0 and math.copysign(1.0, value) < 0:
        return InvalidMetadataError(
            f"metadata cannot hold -0.0 (at {path}): PostgreSQL keeps it as 0.0; store 0.0"
        )
    if abs(value) >= METADATA_FLOAT_LIMIT:
        return InvalidMetadataError(
            f"metadata float {value!r} at {path} is 1e16 or more in size, which PostgreSQL "
            f"gives back as an integer; store it as an int ({int(value)}) or a string"
        )
    return None


def _check_numbers(value: Any, path: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _check_numbers(v, f"{path}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_numbers(v, f"{path}[{i}]")
    elif isinstance(value, (int, float)):
        error = _number_error(value, path)
        if error is not None:
            raise error


def check_metadata(value: Any) -> Any:
    """``value`` if it can be stored as JSON (any JSON value: object, list, string, ...) and
    read back exactly as it is: integers in the 64-bit range, finite floats under
    :data:`METADATA_FLOAT_LIMIT` in size other than -0.0 (``InvalidMetadataError`` names any
    other number, rather than storing it changed)."""
    if value is None:
        return None
    _check_numbers(value, "metadata")
    try:
        encoded = orjson.dumps(value)
    except TypeError as exc:
        raise InvalidMetadataError(
            f"metadata must be JSON (dicts with string keys, lists, strings, numbers, "
            f"booleans, None): {exc}"
        ) from None
    if b"\\u0000" in encoded:
        raise InvalidMetadataError("metadata cannot contain NUL characters (\\u0000)")
    # What is stored is what is read back: tuples become lists, datetimes ISO strings.
    return orjson.loads(encoded)


def check_text(text: Any) -> str:
    """``text`` if it is a string a database can store (no NUL, no lone surrogate)."""
    if not isinstance(text, str):
        raise InvalidInputError(f"message_text must be a string, not {type(text).__name__}")
    if "\x00" in text:
        raise InvalidInputError(
            "message_text cannot contain NUL characters (PostgreSQL cannot store them)"
        )
    if has_lone_surrogate(text):
        raise InvalidInputError(
            "message_text cannot contain lone surrogates (text that is not valid Unicode, "
            "such as '\\ud800', which no database can store as UTF-8); decode the text "
            "with errors='replace' first"
        )
    return text


def check_id(value: Any, what: str) -> str:
    """``value`` if it is a non-empty id of at most ``MAX_ID_LENGTH`` characters."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_ID_LENGTH
        or "\x00" in value
        or has_lone_surrogate(value)
    ):
        raise InvalidInputError(
            f"{what} must be a non-empty string of at most {MAX_ID_LENGTH} characters, "
            f"not {value!r}"
        )
    return value


def check_tokens(value: Any, what: str) -> int | None:
    """``value`` if it is ``None`` or a token count (a non-negative 32-bit integer)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 2**31 - 1:
        raise InvalidInputError(f"{what} must be a non-negative integer, not {value!r}")
    return value


def optional_str(value: Any, what: str, limit: int = 255) -> str | None:
    """``value`` if it is ``None`` or a storable string of at most ``limit`` characters."""
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or len(value) > limit
        or "\x00" in value
        or has_lone_surrogate(value)
    ):
        raise InvalidInputError(
            f"{what} must be a string of at most {limit} characters, without NUL characters "
            "or lone surrogates"
        )
    return value


def id_taken(conversation_id: str) -> InvalidInputError:
    """The error for creating a conversation under an id that is used already."""
    return InvalidInputError(
        f"a conversation with id {conversation_id!r} cannot be created: the id is taken; "
        "leave conversation_id out to get a new one"
    )


def not_found(conversation_id: str) -> ConversationNotFound:
    """The error for a conversation that does not exist or is not the caller's (the two
    read the same, so that another owner's conversation is not revealed)."""
    return ConversationNotFound(
        f"conversation {conversation_id!r} not found (it does not exist, or belongs to another "
        "user, org or realm); create it with create_conversation() or check the id"
    )


def check_lookup_id(value: Any) -> str:
    """``value`` if it can name a conversation to look up."""
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"conversation_id must be a non-empty string, not {value!r}")
    return value


def check_limit(limit: Any) -> int:
    """``limit`` if it is a page size from 1 to 10,000."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise InvalidInputError(f"limit must be an integer from 1 to 10000, not {limit!r}")
    return limit


def conversation_row(
    owner: Any,
    *,
    conversation_id: Any = None,
    name: Any = None,
    state: Any = "normal",
    agent_title: Any = None,
    model: Any = None,
    metadata: Any = None,
    correlation_id: Any = None,
    request_id: Any = None,
) -> dict[str, Any]:
    """The validated row of a new conversation of ``owner`` (an ``Owner``)."""
    return {
        "id": new_id() if conversation_id is None else check_id(conversation_id, "conversation_id"),
        "realm": owner.realm,
        "org_id": owner.org_id,
        "user_id": owner.user_id,
        "is_anonymous": owner.is_anonymous,
        "name": None if name is None else check_name(name),
        "agent_title": optional_str(agent_title, "agent_title"),
        "state": check_state(state),
        "model": optional_str(model, "model"),
        "metadata": check_metadata(metadata),
        "correlation_id": optional_str(correlation_id, "correlation_id"),
        "request_id": optional_str(request_id, "request_id"),
    }


def message_row(
    conversation_id: Any,
    text: Any,
    sender: Any,
    *,
    parent_message_id: Any = None,
    message_time: Any = None,
    metadata: Any = None,
    message_id: Any = None,
    correlation_id: Any = None,
    request_id: Any = None,
    run_id: Any = None,
    model: Any = None,
    prompt_tokens: Any = None,
    completion_tokens: Any = None,
    total_tokens: Any = None,
    conversation_state: Any = None,
) -> tuple[dict[str, Any], str | None]:
    """The validated row of a new message, and the conversation state to set (if any)."""
    row = {
        "id": new_id() if message_id is None else check_id(message_id, "message_id"),
        "conversation_id": check_lookup_id(conversation_id),
        "parent_message_id": None
        if parent_message_id is None
        else check_id(parent_message_id, "parent_message_id"),
        "sender": check_sender(sender),
        "text": check_text(text),
        "message_time": parse_message_time(message_time),
        "metadata": check_metadata(metadata),
        "correlation_id": optional_str(correlation_id, "correlation_id"),
        "request_id": optional_str(request_id, "request_id"),
        "run_id": optional_str(run_id, "run_id", 64),
        "model": optional_str(model, "model"),
        "prompt_tokens": check_tokens(prompt_tokens, "prompt_tokens"),
        "completion_tokens": check_tokens(completion_tokens, "completion_tokens"),
        "total_tokens": check_tokens(total_tokens, "total_tokens"),
    }
    state = None if conversation_state is None else check_state(conversation_state)
    return row, state
