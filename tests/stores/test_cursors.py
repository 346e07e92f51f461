"""Page cursors: what the stores hand out comes back; anything else is a named error."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookwire.errors import InvalidInputError
from hookwire.stores.conversations import ConversationStore, Owner
from hookwire.stores.conversations.cursors import (
    decode_conversation_cursor,
    decode_message_cursor,
    encode_conversation_cursor,
    encode_message_cursor,
)
from hookwire.stores.runner import run_sync

UTC = dt.timezone.utc


def _b64(value: Any) -> str:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    ["m²", "m١٢٣", "m" + "9" * 5000, "m99999999999999999999", "m-1", "m 1", "m", "", "1", 5, b"m1"],
)
def test_a_malformed_get_messages_cursor_is_an_invalid_input_error(cursor: Any) -> None:
    with pytest.raises(InvalidInputError, match="not a cursor get_messages returned"):
        decode_message_cursor(cursor)


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!",
        "é",
        _b64(["2026-01-01T00:00:00+00:00"]),
        _b64([1, "c"]),
        _b64(["2026-01-01", ["c"]]),
        _b64(["0001-01-01T00:00:00+05:00", "c"]),
        _b64(["2026-01-01", "x" * 65]),
        _b64(["2026-01-01", "a\x00b"]),
        _b64(["2026-01-01", ""]),
        _b64(b"\xff\xfe"),
        "A" * 5000,
        7,
    ],
)
def test_a_malformed_list_conversations_cursor_is_an_invalid_input_error(cursor: Any) -> None:
    with pytest.raises(InvalidInputError, match="not a cursor list_conversations returned"):
        decode_conversation_cursor(cursor)


_ANY = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="m0123456789²١-", max_size=25),
    st.builds(
        _b64,
        st.lists(st.one_of(st.text(max_size=70), st.integers(-(2**63), 2**63 - 1)), max_size=3),
    ),
    st.builds(_b64, st.binary(max_size=60)),
    st.builds(
        encode_conversation_cursor,
        st.datetimes(timezones=st.sampled_from([UTC, None, dt.timezone(dt.timedelta(hours=5))])),
        st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=70),
    ),
    st.builds(encode_message_cursor, st.integers(-5, 10**20)),
    st.integers(),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(cursor=_ANY)
def test_property_any_cursor_decodes_or_is_an_invalid_input_error(cursor: Any) -> None:
    for decode in (decode_message_cursor, decode_conversation_cursor):
        with contextlib.suppress(InvalidInputError):
            decode(cursor)


@settings(max_examples=200, deadline=None)
@given(
    seq=st.integers(0, 10**18 - 1),
    at=st.datetimes(timezones=st.sampled_from([UTC, None])),
    cid=st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        min_size=1,
        max_size=64,
    ),
)
def test_property_cursors_the_stores_make_come_back(seq: int, at: dt.datetime, cid: str) -> None:
    assert decode_message_cursor(encode_message_cursor(seq)) == seq
    assert decode_conversation_cursor(encode_conversation_cursor(at, cid)) == (at, cid)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cursor=_ANY)
def test_property_a_store_takes_any_cursor_or_names_it(db_url: str, cursor: Any) -> None:
    store = ConversationStore.for_url(db_url)
    me = Owner(user_id=f"u-{uuid.uuid4().hex[:8]}", org_id="org-1", realm="main")

    async def go() -> None:
        cid = await store.create_conversation(me)
        await store.add_message(me, cid, "hello", "end_user")
        for call in (
            store.get_messages(me, cid, cursor=cursor),
            store.list_conversations(me, cursor=cursor),
        ):
            with contextlib.suppress(InvalidInputError):
                await call
        assert [m["text"] for m in (await store.get_messages(me, cid)).items] == ["hello"]

    run_sync(go())
