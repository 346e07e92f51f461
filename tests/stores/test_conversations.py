"""hookwire.stores.conversations on SQLite and PostgreSQL: records, order, pages, access,
bad input, concurrency."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import math
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import hookwire
from hookwire.errors import (
    ConversationNotFound,
    InvalidInputError,
    InvalidMessageTimeError,
    InvalidMetadataError,
    InvalidNameError,
    InvalidSenderError,
    NotFoundError,
    ParentMessageError,
    StoreError,
)
from hookwire.stores import runner
from hookwire.stores.conversations import (
    MAX_NAME_LENGTH,
    ConversationStore,
    Owner,
    SQLConversationStore,
    SQLiteConversationStore,
    batching,
    check_metadata,
    parse_message_time,
)

UTC = dt.timezone.utc
SRC = str(Path(hookwire.__file__).resolve().parents[1])


def owner(**kw: Any) -> Owner:
    base = {"user_id": f"u-{uuid.uuid4().hex[:8]}", "org_id": "org-1", "realm": "main"}
    base.update(kw)
    return Owner(**base)


@pytest.fixture
def store(db_url: str) -> ConversationStore:
    return ConversationStore.for_url(db_url)


def exact_store(db_url: str) -> ConversationStore:
    """A store of its own whose list order follows every message: on PostgreSQL
    ``updated_at`` lags by up to ``touch_every`` (a minute) by default."""
    store = ConversationStore(db_url)
    if hasattr(store, "touch_every"):
        store.touch_every = 0.0
    return store


async def test_round_trip(store: ConversationStore) -> None:
    me = owner()
    cid = await store.create_conversation(me, agent_title="Support", metadata={"k": [1, 2]})
    first = await store.add_message(
        me,
        cid,
        "How can I reset my password?",
        "end_user",
        message_time="2023-05-15T14:30:00Z",
        metadata=[],
    )
    second = await store.add_message(
        me,
        cid,
        "Account Settings -> Reset Password.",
        "assistant",
        parent_message_id=first,
        message_time=dt.datetime(2023, 5, 15, 14, 30, 5, tzinfo=UTC),
        metadata={"source": "faq"},
        run_id="run-1",
        model="gpt-4o-mini",
        prompt_tokens=10,
        completion_tokens=5,
        total_tokens=15,
    )
    await store.rename_conversation(me, cid, "  Password Reset Help  ")
    details = await store.get_conversation_details(me, cid)
    assert details["id"] == cid
    assert details["name"] == "Password Reset Help"
    assert details["state"] == "normal"
    assert (details["realm"], details["org_id"], details["user_id"]) == (
        "main",
        "org-1",
        me.user_id,
    )
    assert details["agent_title"] == "Support"
    assert details["metadata"] == {"k": [1, 2]}
    assert details["message_count"] == 2
    assert details["created_at"].tzinfo is not None
    assert details["updated_at"] >= details["created_at"]
    m1, m2 = details["messages"]
    assert (m1["id"], m2["id"]) == (first, second)
    assert m1["parent_message_id"] is None
    assert m2["parent_message_id"] == first
    assert m1["message_time"] == dt.datetime(2023, 5, 15, 14, 30, tzinfo=UTC)
    assert m1["metadata"] == []
    assert m2["metadata"] == {"source": "faq"}
    assert (m2["model"], m2["prompt_tokens"], m2["completion_tokens"], m2["total_tokens"]) == (
        "gpt-4o-mini",
        10,
        5,
        15,
    )
    assert m2["run_id"] == "run-1"
    assert m1["sender"] == "end_user"
    assert m2["sender"] == "assistant"


async def test_explicit_ids_and_taken_ids(store: ConversationStore) -> None:
    me = owner()
    cid = f"conv-{uuid.uuid4()}"
    assert await store.create_conversation(me, conversation_id=cid) == cid
    assert await store.create_conversation(me, conversation_id=cid, exist_ok=True) == cid
    with pytest.raises(InvalidInputError, match="taken"):
        await store.create_conversation(me, conversation_id=cid)
    with pytest.raises(ConversationNotFound):
        await store.create_conversation(owner(), conversation_id=cid, exist_ok=True)
    mid = f"msg-{uuid.uuid4()}"
    assert await store.add_message(me, cid, "hi", "end_user", message_id=mid) == mid
    with pytest.raises(InvalidInputError, match="already exists"):
        await store.add_message(me, cid, "again", "end_user", message_id=mid)
    assert (await store.get_conversation(me, cid))["message_count"] == 1


async def test_state(store: ConversationStore) -> None:
    me = owner()
    cid = await store.create_conversation(me, state="human-intervention")
    assert (await store.get_conversation(me, cid))["state"] == "human-intervention"
    await store.set_conversation_state(me, cid, "normal")
    assert (await store.get_conversation(me, cid))["state"] == "normal"
    await store.add_message(me, cid, "help!", "end_user", conversation_state="human-intervention")
    assert (await store.get_conversation(me, cid))["state"] == "human-intervention"


async def test_delete(store: ConversationStore) -> None:
    me = owner()
    cid = await store.create_conversation(me)
    parent = None
    for i in range(5):
        parent = await store.add_message(me, cid, f"m{i}", "end_user", parent_message_id=parent)
    other = await store.create_conversation(me)
    await store.add_message(me, other, "kept", "end_user")
    assert await store.delete_conversation(me, cid) == 5
    with pytest.raises(ConversationNotFound):
        await store.get_conversation_details(me, cid)
    with pytest.raises(ConversationNotFound):
        await store.add_message(me, cid, "late", "end_user")
    assert (await store.get_conversation_details(me, other))["message_count"] == 1


async def test_list_newest_first_and_paginated(db_url: str) -> None:
    store = exact_store(db_url)
    me = owner()
    ids = [await store.create_conversation(me, name=f"c{i}") for i in range(7)]
    await store.add_message(me, ids[2], "bump", "end_user")  # now the most recent
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.list_conversations(me, limit=3, cursor=cursor)
        seen += [c["id"] for c in page]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen))
    assert seen[0] == ids[2]
    first = (await store.list_conversations(me, limit=50)).items
    assert [c["updated_at"] for c in first] == sorted(
        (c["updated_at"] for c in first), reverse=True
    )
    assert {c["message_count"] for c in first if c["id"] == ids[2]} == {1}
    # operator access, filtered by user
    assert {
        c["id"] for c in (await store.list_conversations(None, user_id=me.user_id)).items
    } == set(ids)


async def test_get_messages_pages(store: ConversationStore) -> None:
    me = owner()
    cid = await store.create_conversation(me)
    sent = [await store.add_message(me, cid, f"m{i}", "end_user") for i in range(11)]
    got: list[str] = []
    cursor = None
    while True:
        page = await store.get_messages(me, cid, limit=4, cursor=cursor)
        got += [m["id"] for m in page]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert got == sent
    assert all("seq" not in m for m in page)


@pytest.mark.parametrize(
    "intruder",
    [
        {"user_id": "someone-else"},
        {"org_id": "org-2"},
        {"realm": "other-realm"},
        {"is_anonymous": True},
    ],
)
async def test_other_owners_see_nothing(store: ConversationStore, intruder: dict[str, Any]) -> None:
    me = owner()
    them = (
        Owner(**{**me.__dict__, **intruder})
        if False
        else Owner(
            user_id=intruder.get("user_id", me.user_id),
            org_id=intruder.get("org_id", me.org_id),
            realm=intruder.get("realm", me.realm),
            is_anonymous=intruder.get("is_anonymous", me.is_anonymous),
        )
    )
    cid = await store.create_conversation(me, name="mine")
    mid = await store.add_message(me, cid, "secret", "end_user")
    missing = str(uuid.uuid4())

    async def attempts(conversation_id: str) -> list[str]:
        messages = []
        calls = [
            store.get_conversation_details(them, conversation_id),
            store.get_conversation(them, conversation_id),
            store.get_messages(them, conversation_id),
            store.rename_conversation(them, conversation_id, "stolen"),
            store.set_conversation_state(them, conversation_id, "human-intervention"),
            store.add_message(them, conversation_id, "hi", "end_user"),
            store.add_message(them, conversation_id, "hi", "end_user", parent_message_id=mid),
            store.delete_conversation(them, conversation_id),
            store.create_conversation(them, conversation_id=conversation_id, exist_ok=True)
            if conversation_id == cid
            else store.get_conversation(them, conversation_id),
        ]
        for call in calls:
            with pytest.raises(ConversationNotFound) as info:
                await call
            messages.append(str(info.value).replace(conversation_id, "<id>"))
        return messages

    # the same error, word for word, as for a conversation that does not exist
    assert await attempts(cid) == await attempts(missing)
    assert cid not in {c["id"] for c in (await store.list_conversations(them)).items}
    details = await store.get_conversation_details(me, cid)
    assert details["name"] == "mine"
    assert details["state"] == "normal"
    assert [m["text"] for m in details["messages"]] == ["secret"]


async def test_not_found_is_a_lookup_error(store: ConversationStore) -> None:
    with pytest.raises(LookupError):
        await store.get_conversation_details(owner(), "nope")
    with pytest.raises(NotFoundError):
        await store.get_messages(owner(), "nope")


async def test_parent_rules(store: ConversationStore) -> None:
    me = owner()
    a = await store.create_conversation(me)
    b = await store.create_conversation(me)
    in_a = await store.add_message(me, a, "in a", "end_user")
    with pytest.raises(ParentMessageError, match="not a message of conversation"):
        await store.add_message(me, b, "reply", "assistant", parent_message_id=in_a)
    with pytest.raises(ParentMessageError):
        await store.add_message(me, b, "reply", "assistant", parent_message_id=str(uuid.uuid4()))
    assert (await store.get_conversation(me, b))["message_count"] == 0


@pytest.mark.parametrize("sender", ["user", "END_USER", "", None, 3, "bot"])
async def test_bad_sender(store: ConversationStore, sender: Any) -> None:
    me = owner()
    cid = await store.create_conversation(me)
    with pytest.raises(InvalidSenderError, match="end_user, assistant, system, tool"):
        await store.add_message(me, cid, "x", sender)


@pytest.mark.parametrize(
    "when", ["yesterday", "2023-13-01T00:00:00Z", "", 1684161000, 3.5, [2023], "2023-05-15 25:00"]
)
async def test_bad_message_time(store: ConversationStore, when: Any) -> None:
    me = owner()
    cid = await store.create_conversation(me)
    with pytest.raises(InvalidMessageTimeError):
        await store.add_message(me, cid, "x", "end_user", message_time=when)


@pytest.mark.parametrize(
    "name", ["", "   ", "x" * (MAX_NAME_LENGTH + 1), None, 42, "a\x00b", "lone \ud800 surrogate"]
)
async def test_bad_name(store: ConversationStore, name: Any) -> None:
    me = owner()
    cid = await store.create_conversation(me, name="ok")
    with pytest.raises(InvalidNameError):
        await store.rename_conversation(me, cid, name)
    if name is not None:
        with pytest.raises(InvalidNameError):
            await store.create_conversation(me, name=name)
    assert (await store.get_conversation(me, cid))["name"] == "ok"


@pytest.mark.parametrize(
    "metadata", [{1: "int key"}, {"x": object()}, {"s": {1, 2}}, {"b": b"bytes"}, "nul\x00", 2**70]
)
async def test_bad_metadata(store: ConversationStore, metadata: Any) -> None:
    me = owner()
    cid = await store.create_conversation(me)
    with pytest.raises(InvalidMetadataError):
        await store.add_message(me, cid, "x", "end_user", metadata=metadata)
    with pytest.raises(InvalidMetadataError):
        await store.create_conversation(me, metadata=metadata)


async def test_other_bad_inputs(store: ConversationStore) -> None:
    me = owner()
    cid = await store.create_conversation(me)
    for call in [
        store.add_message(me, cid, None, "end_user"),  # type: ignore[arg-type]
        store.add_message(me, cid, "nul\x00", "end_user"),
        store.add_message(me, cid, "lone \udc80 surrogate", "end_user"),
        store.add_message(me, cid, "x", "end_user", model="gpt-\ud800"),
        store.add_message(me, cid, "x", "end_user", message_id="id-\ud800"),
        store.create_conversation(me, agent_title="agent \ud800"),
        store.add_message(me, cid, "x", "end_user", prompt_tokens=-1),
        store.add_message(me, cid, "x", "end_user", total_tokens=True),
        store.add_message(me, cid, "x", "end_user", message_id=""),
        store.add_message(me, cid, "x", "end_user", conversation_state="closed"),
        store.add_message(me, "", "x", "end_user"),
        store.create_conversation(me, state="archived"),
        store.create_conversation(me, conversation_id="x" * 65),
        store.set_conversation_state(me, cid, "paused"),
        store.get_messages(me, cid, cursor="bogus"),
        store.get_messages(me, cid, limit=0),
        store.list_conversations(me, cursor="!!!"),
        store.list_conversations(me, limit=10**6),
    ]:
        with pytest.raises(InvalidInputError):
            await call
    assert (await store.get_conversation(me, cid))["message_count"] == 0


def test_bad_inputs_are_value_errors_and_store_errors() -> None:
    with pytest.raises(ValueError):
        parse_message_time("nope")
    with pytest.raises(StoreError):
        check_metadata({1: 2})


async def test_twenty_tasks_on_shared_conversations(store: ConversationStore) -> None:
    me = owner()
    convs = [await store.create_conversation(me) for _ in range(3)]

    async def writer(k: int) -> list[tuple[str, str | None, str]]:
        cid = convs[k % 3]
        parent: str | None = None
        written = []
        for i in range(15):
            mid = await store.add_message(
                me, cid, f"w{k}-{i}", "end_user", parent_message_id=parent
            )
            written.append((mid, parent, cid))
            parent = mid
        return written

    results = await asyncio.gather(*(writer(k) for k in range(20)))
    expected = {mid: (parent, cid) for chain in results for mid, parent, cid in chain}
    assert len(expected) == 300
    stored: dict[str, tuple[str | None, str]] = {}
    for cid in convs:
        details = await store.get_conversation_details(me, cid)
        texts = [m["text"] for m in details["messages"]]
        writers = len([k for k in range(20) if convs[k % 3] == cid])
        assert len(texts) == len(set(texts)) == 15 * writers
        for m in details["messages"]:
            stored[m["id"]] = (m["parent_message_id"], cid)
        # each writer's messages keep their order
        for k in range(20):
            if convs[k % 3] != cid:
                continue
            mine = [t for t in texts if t.startswith(f"w{k}-")]
            assert mine == sorted(mine, key=lambda t: int(t.split("-")[1]))
    assert stored == expected


async def test_one_bad_message_does_not_fail_its_group(store: ConversationStore) -> None:
    me = owner()
    cid = await store.create_conversation(me)
    other = await store.create_conversation(owner())
    calls = [store.add_message(me, cid, f"ok{i}", "end_user") for i in range(10)]
    calls.insert(5, store.add_message(me, other, "not mine", "end_user"))
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert sum(isinstance(r, ConversationNotFound) for r in results) == 1
    assert (await store.get_conversation(me, cid))["message_count"] == 10


def test_sync_twin(db_url: str) -> None:
    store = ConversationStore.for_url(db_url)
    me = owner()
    from hookwire.stores.runner import run_sync

    cid = run_sync(store.create_conversation(me))
    first = store.add_message_sync(me, cid, "sync hello", "end_user")
    store.add_message_sync(me, cid, "sync reply", "assistant", parent_message_id=first)
    with pytest.raises(ParentMessageError):
        store.add_message_sync(me, cid, "x", "assistant", parent_message_id="missing")
    with pytest.raises(InvalidSenderError):
        store.add_message_sync(me, cid, "x", "robot")
    details = run_sync(store.get_conversation_details(me, cid))
    assert [m["text"] for m in details["messages"]] == ["sync hello", "sync reply"]


# -- properties ---------------------------------------------------------------------------


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(count=st.integers(0, 30), limit=st.integers(1, 12))
def test_pages_cover_every_message_once(db_url: str, count: int, limit: int) -> None:
    from hookwire.stores.runner import run_sync

    store = ConversationStore.for_url(db_url)
    me = owner()

    async def go() -> tuple[list[str], list[str]]:
        cid = await store.create_conversation(me)
        sent = list(
            await asyncio.gather(
                *(store.add_message(me, cid, f"m{i}", "end_user") for i in range(count))
            )
        )
        got: list[str] = []
        cursor = None
        while True:
            page = await store.get_messages(me, cid, limit=limit, cursor=cursor)
            assert len(page) <= limit
            got += [m["id"] for m in page]
            if page.next_cursor is None:
                return sent, got
            cursor = page.next_cursor

    sent, got = run_sync(go())
    assert sorted(got) == sorted(sent)
    assert len(got) == len(set(got))


@given(
    st.datetimes(
        min_value=dt.datetime(1, 1, 2),
        max_value=dt.datetime(9999, 12, 30),
        timezones=st.timezones(),
    )
)
def test_message_time_round_trips_as_the_same_instant(when: dt.datetime) -> None:
    parsed = parse_message_time(when.isoformat())
    assert parsed.tzinfo is not None
    assert parsed.utcoffset() == dt.timedelta(0)
    if when.tzinfo is not None and when.utcoffset() is not None:
        assert parsed == when.astimezone(UTC)
    assert parse_message_time(when) == parsed


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text().filter(lambda s: "\x00" not in s),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=8).filter(lambda s: "\x00" not in s), children, max_size=4
        )
    ),
    max_leaves=12,
)


@given(json_values)
def test_any_json_value_is_accepted_unchanged(value: Any) -> None:
    assert check_metadata(value) == value


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=json_values, text=st.text(max_size=200).filter(lambda s: "\x00" not in s))
def test_stored_text_and_metadata_read_back_unchanged(db_url: str, value: Any, text: str) -> None:
    from hookwire.stores.runner import run_sync

    store = ConversationStore.for_url(db_url)
    me = owner()

    async def go() -> dict[str, Any]:
        cid = await store.create_conversation(me)
        await store.add_message(me, cid, text, "tool", metadata=value)
        return (await store.get_conversation_details(me, cid))["messages"][0]

    message = run_sync(go())
    assert message["text"] == text
    assert message["metadata"] == value


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (3.0 is not 3, -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)
_INT64 = st.integers(-(2**63), 2**63 - 1)
_FLOATS = st.floats(
    min_value=-9.999999999999998e15, max_value=9.999999999999998e15, allow_nan=False
).filter(lambda f: not (f == 0.0 and math.copysign(1.0, f) < 0))
metadata_values = st.recursive(
    st.none() | st.booleans() | _INT64 | _FLOATS | _text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=12,
)
out_of_range_numbers = (
    st.integers(min_value=2**63, max_value=2**70)
    | st.integers(max_value=-(2**63) - 1, min_value=-(2**70))
    | st.floats(min_value=1e16, allow_infinity=False)
    | st.floats(max_value=-1e16, allow_infinity=False)
    | st.sampled_from([math.nan, math.inf, -math.inf, -0.0])
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=metadata_values)
@example(value=3.0)
@example(value=[2**63 - 1, -(2**63), 9.999999999999998e15, 5e-324])
@example(value={"cost": 1e15, "ratio": 0.1 + 0.2})
def test_metadata_round_trips_exactly_through_history(db_url: str, value: Any) -> None:
    from hookwire.stores.runner import run_sync

    store = ConversationStore.for_url(db_url)
    me = owner()

    async def go() -> tuple[Any, Any, Any]:
        cid = await store.create_conversation(me, metadata=value)
        await store.add_message(me, cid, "m", "tool", metadata=value)
        details = await store.get_conversation_details(me, cid)
        page = await store.get_messages(me, cid)
        return details["metadata"], details["messages"][0]["metadata"], page.items[0]["metadata"]

    for got in run_sync(go()):
        assert _same(got, value), (got, value)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(number=out_of_range_numbers, nested=st.booleans())
def test_a_number_that_would_not_round_trip_is_refused_at_write_time(
    db_url: str, number: Any, nested: bool
) -> None:
    from hookwire.stores.runner import run_sync

    store = ConversationStore.for_url(db_url)
    me = owner()
    value = {"usage": [number]} if nested else number

    async def go() -> list[Any]:
        cid = await store.create_conversation(me)
        with pytest.raises(InvalidMetadataError, match="metadata"):
            await store.add_message(me, cid, "m", "tool", metadata=value)
        with pytest.raises(InvalidMetadataError):
            await store.create_conversation(me, metadata=value)
        return (await store.get_conversation_details(me, cid))["messages"]

    assert run_sync(go()) == []


async def test_bare_numbers_keep_their_type_in_in_memory_sqlite() -> None:
    store = ConversationStore("sqlite:///:memory:")
    me = owner()
    cid = await store.create_conversation(me, metadata=3.0)
    for value in (3.0, 2**63 - 1, 0.5, 7):
        await store.add_message(me, cid, "m", "tool", metadata=value)
    details = await store.get_conversation_details(me, cid)
    assert _same(details["metadata"], 3.0)
    got = [m["metadata"] for m in details["messages"]]
    assert all(_same(a, b) for a, b in zip(got, [3.0, 2**63 - 1, 0.5, 7], strict=True))


async def test_in_memory_sqlite_goes_through_sqlalchemy_core() -> None:
    # no file for a writer thread to open: every statement goes through SQLAlchemy Core
    store = ConversationStore("sqlite:///:memory:")
    assert type(store) is SQLConversationStore
    me = owner()
    cid = await store.create_conversation(me)
    ids = await asyncio.gather(
        *(store.add_message(me, cid, f"m{i}", "end_user") for i in range(20))
    )
    await store.add_message(me, cid, "reply", "assistant", parent_message_id=ids[0])
    with pytest.raises(ParentMessageError):
        await store.add_message(me, cid, "x", "assistant", parent_message_id="missing")
    with pytest.raises(ConversationNotFound):
        await store.add_message(owner(), cid, "x", "end_user")
    await store.set_conversation_state(me, cid, "human-intervention")
    details = await store.get_conversation_details(me, cid)
    assert details["message_count"] == 21
    assert details["state"] == "human-intervention"
    assert details["messages"][-1]["parent_message_id"] == ids[0]
    assert [m["text"] for m in await store.get_messages(me, cid, limit=2)] == ["m0", "m1"]
    assert await store.delete_conversation(me, cid) == 21


async def test_rereading_a_conversation_sees_every_change(db_url: str) -> None:
    # a re-read fetches only new messages (see _MessageCache); it must never be stale
    store = ConversationStore.for_url(db_url)
    elsewhere = ConversationStore(db_url)  # another writer, as another process would be
    me = owner()
    cid = f"conv-{uuid.uuid4()}"
    await store.create_conversation(me, conversation_id=cid)
    await store.add_message(me, cid, "one", "end_user", metadata={"n": [1]})
    first = await store.get_conversation_details(me, cid)
    first["messages"][0]["metadata"]["n"].append("mutated by the caller")
    first["messages"][0]["text"] = "changed"
    await elsewhere.add_message(me, cid, "two", "assistant")
    await store.add_message(me, cid, "three", "end_user")
    again = await store.get_conversation_details(me, cid)
    assert [m["text"] for m in again["messages"]] == ["one", "two", "three"]
    assert again["messages"][0]["metadata"] == {"n": [1]}
    # deleted elsewhere and created again under the same id, with other messages
    await elsewhere.delete_conversation(me, cid)
    with pytest.raises(ConversationNotFound):
        await store.get_conversation_details(me, cid)
    await elsewhere.create_conversation(me, conversation_id=cid)
    await elsewhere.add_message(me, cid, "new life", "end_user")
    assert [m["text"] for m in (await store.get_conversation_details(me, cid))["messages"]] == [
        "new life"
    ]
    # a cached list that no longer adds up (a message committed out of order elsewhere) is
    # read again in full
    entry = store._messages.get(cid)
    assert entry is not None
    store._messages.put(cid, entry[0], entry[1], [])
    assert [m["text"] for m in (await store.get_conversation_details(me, cid))["messages"]] == [
        "new life"
    ]


@pytest.mark.parametrize("value", [5, -3, 1.5, 0, "5", "1e3", True, None, [], {}, [1, "2"]])
async def test_bare_json_values_read_back_as_given(store: ConversationStore, value: Any) -> None:
    me = owner()
    cid = await store.create_conversation(me, metadata=value)
    await store.add_message(me, cid, "x", "system", metadata=value)
    details = await store.get_conversation_details(me, cid)
    assert details["metadata"] == value
    assert type(details["metadata"]) is type(value)
    assert details["messages"][0]["metadata"] == value
    [message] = await store.get_messages(me, cid)
    assert message["metadata"] == value


async def _odd_messages(store: ConversationStore, me: Owner) -> str:
    # every kind of value a message's fields can hold, in one conversation
    cid = await store.create_conversation(me)
    first = await store.add_message(me, cid, "", "end_user", metadata={})
    await store.add_message(
        me,
        cid,
        'ünïcode ✓ "quoted" \\ \n',
        "assistant",
        parent_message_id=first,
        run_id="",
        model="",
        prompt_tokens=0,
        completion_tokens=0,
        total_tokens=0,
        metadata=1.0000000000000002,
    )
    await store.add_message(me, cid, "a", "tool", run_id="r-1", metadata=[None, "x"])
    await store.add_message(me, cid, "b", "system", model='gpt-4o \u00e9"', total_tokens=7)
    await store.add_message(me, cid, "c", "assistant", prompt_tokens=2**31 - 1, metadata="s")
    await store.add_message(me, cid, "d", "end_user", run_id="r-2", model="m")
    return cid


@pytest.mark.parametrize("json_functions", [True, False])
async def test_details_give_each_message_as_stored(
    db_url: str, json_functions: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # get_conversation_details reads its own way (on SQLite: converters, and a run's columns
    # as one JSON cell, or one by one where SQLite has no JSON functions); get_messages reads
    # every column as the database gives it. They must agree on every field and its type.
    from hookwire.stores import conversations
    from hookwire.stores.conversations import sqlite as sqlite_backend

    if not json_functions:
        if not db_url.startswith("sqlite"):
            pytest.skip("SQLite's select without JSON functions")
        monkeypatch.setattr(sqlite_backend, "_sqlite_has_json", lambda conn: False)
    store = ConversationStore(db_url)
    me = owner()
    cid = await _odd_messages(store, me)
    expected = [
        {k: m[k] for k in conversations.DETAIL_FIELDS}
        for m in await store.get_messages(me, cid, limit=100)
    ]
    for reader in (store, ConversationStore(db_url)):  # cached, then not
        for _ in range(2):
            got = (await reader.get_conversation_details(me, cid))["messages"]
            assert got == expected
            for mine, theirs in zip(got, expected, strict=True):
                assert list(mine) == list(theirs)
                assert [type(v) for v in mine.values()] == [type(v) for v in theirs.values()]


@pytest.mark.parametrize("odd", ["it's", "back\\slash", "semi;colon -- x", "ünïcode"])
async def test_ids_with_any_characters(db_url: str, odd: str) -> None:
    store = exact_store(db_url)
    me = owner()
    first = await store.create_conversation(me, conversation_id=f"{odd}-{uuid.uuid4().hex[:6]}")
    second = await store.create_conversation(me)
    await store.add_message(me, first, "bump", "end_user", message_id=f"{odd}-m")
    listed = [c["id"] for c in (await store.list_conversations(me)).items]
    assert listed == [first, second]
    details = await store.get_conversation_details(me, first)
    assert [m["id"] for m in details["messages"]] == [f"{odd}-m"]


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:1/unreachable",
        "sqlite:////proc/hookwire-cannot-write-here/x.db",
    ],
)
async def test_unreachable_database_is_a_store_error(url: str) -> None:
    from hookwire.callbacks.chat_history import ChatHistoryCallbackHandler

    store = ConversationStore(url)
    me = owner()
    with pytest.raises(StoreError) as info:
        await store.create_conversation(me)
    assert "password" not in str(info.value)
    with pytest.raises(StoreError):
        await store.add_message(me, "c", "x", "end_user")
    with pytest.raises(StoreError):
        await store.get_conversation_details(me, "c")
    with pytest.raises(StoreError):
        store.add_message_sync(me, "c", "x", "end_user")
    chat = ChatHistoryCallbackHandler(user_data={"user_id": "u"}, store=store)
    with pytest.raises(StoreError):
        chat.list_conversations_sync()


async def test_a_stale_cached_owner_stores_nothing_for_the_new_owner(db_url: str) -> None:
    # A store caches the owners it has written for; another process may delete the
    # conversation and create one with the same id for someone else. A group with a message
    # for it must store nothing there (the write is all or nothing), and its neighbours in the
    # same group must still be stored.
    store = ConversationStore(db_url)
    elsewhere = ConversationStore(db_url)
    me, them = owner(), owner()
    stale = f"conv-{uuid.uuid4()}"
    fine = await store.create_conversation(me)
    await store.create_conversation(me, conversation_id=stale)
    await store.add_message(me, stale, "cached owner", "end_user")
    await store.add_message(me, fine, "cached owner", "end_user")
    await elsewhere.delete_conversation(me, stale)
    await elsewhere.create_conversation(them, conversation_id=stale)
    results = await asyncio.gather(
        store.add_message(me, stale, "must not land", "end_user"),
        store.add_message(me, fine, "must land", "end_user"),
        store.add_message(me, stale, "must not land either", "assistant"),
        return_exceptions=True,
    )
    assert isinstance(results[0], ConversationNotFound)
    assert isinstance(results[2], ConversationNotFound)
    assert isinstance(results[1], str)
    theirs = await elsewhere.get_conversation_details(them, stale)
    assert theirs["messages"] == [] and theirs["message_count"] == 0
    mine = await elsewhere.get_conversation_details(me, fine)
    assert [m["text"] for m in mine["messages"]] == ["cached owner", "must land"]


async def test_a_stale_cached_owner_alone_in_its_group_changes_nothing(db_url: str) -> None:
    # A group of one conversation's messages inserts them and moves the conversation's
    # updated_at (and state) in one statement on PostgreSQL: with a stale cached owner, it must
    # neither insert nor change the new owner's conversation.
    store = ConversationStore(db_url)
    elsewhere = ConversationStore(db_url)
    me, them = owner(), owner()
    stale = await store.create_conversation(me)
    await store.add_message(me, stale, "cached owner", "end_user")
    await elsewhere.delete_conversation(me, stale)
    await elsewhere.create_conversation(them, conversation_id=stale)
    before = await elsewhere.get_conversation(them, stale)
    with pytest.raises(ConversationNotFound):
        await store.add_message(me, stale, "must not land", "end_user")
    with pytest.raises(ConversationNotFound):
        await store.add_message(
            me, stale, "must not land", "end_user", conversation_state="human-intervention"
        )
    after = await elsewhere.get_conversation(them, stale)
    assert after == before
    assert after["message_count"] == 0 and after["state"] == "normal"


async def test_updated_at_follows_the_newest_message(db_url: str) -> None:
    # once add_message returns, the conversation lists as updated at least when its newest
    # message was stored: for a lone writer and for writers whose groups overlap
    store = exact_store(db_url)
    me = owner()
    a, b = await store.create_conversation(me), await store.create_conversation(me)

    async def newest_first() -> list[str]:
        return [c["id"] for c in await store.list_conversations(me)]

    async def check(cid: str) -> None:
        conv = await store.get_conversation(me, cid)
        newest = max(m["created_at"] for m in await store.get_messages(me, cid, limit=500))
        assert conv["updated_at"] >= newest

    for i in range(3):
        await store.add_message(me, a, f"a{i}", "end_user")
        await check(a)
        assert (await newest_first())[0] == a
        await store.add_message(me, b, f"b{i}", "end_user", conversation_state="human-intervention")
        await check(b)
        assert (await newest_first())[0] == b
        assert (await store.get_conversation(me, b))["state"] == "human-intervention"

    async def writer(k: int) -> None:
        for i in range(10):
            await store.add_message(me, a if k % 2 else b, f"{k}:{i}", "assistant")

    await asyncio.gather(*(writer(k) for k in range(8)))
    await check(a)
    await check(b)
    await store.add_message(me, a, "last", "end_user")
    assert (await newest_first())[0] == a


@contextlib.asynccontextmanager
async def _database_of_its_own(pg_database_url: str) -> AsyncIterator[tuple[str, Any]]:
    """A new database at the schema head (its URL), and an admin connection to the server:
    what a test does to its connections must not touch other tests'."""
    import asyncpg

    from hookwire.stores import engine

    name = f"hookwire_t_{uuid.uuid4().hex[:12]}"
    url = pg_database_url.rsplit("/", 1)[0] + "/" + name
    admin = await asyncpg.connect(pg_database_url.replace("+asyncpg", ""))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            await runner.run(engine.upgrade(url))
            yield url, admin
        finally:
            await runner.run(engine.dispose_engines())
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _sessions(admin: Any, url: str) -> int:
    """How many connections the database of ``url`` has (ended ones take a moment to go)."""
    count = 0
    for _ in range(100):
        count = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", url.rsplit("/", 1)[1]
        )
        if not count:
            break
        await asyncio.sleep(0.05)
    return int(count)


@pytest.mark.postgres
async def test_a_pooled_connection_the_server_closed_is_not_lent_again(
    pg_database_url: str,
) -> None:
    async with _database_of_its_own(pg_database_url) as (url, admin):
        store = ConversationStore(url)
        me = owner()
        cid = await store.create_conversation(me)
        await asyncio.gather(*(store.add_message(me, cid, f"{i}", "end_user") for i in range(20)))
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            url.rsplit("/", 1)[1],
        )
        await runner.run(asyncio.sleep(0.5))  # the store loop sees the connections end
        for i in range(5):
            await store.add_message(me, cid, f"after {i}", "end_user")
        assert (await store.get_conversation(me, cid))["message_count"] == 25


@pytest.mark.postgres
async def test_the_writer_gives_its_connections_back(pg_database_url: str) -> None:
    # it keeps them between groups while writing goes on; once writing stops, or when the
    # engines are disposed, none stays checked out of the pool
    from hookwire.stores import engine

    async with _database_of_its_own(pg_database_url) as (url, admin):
        store = ConversationStore(url)
        me = owner()
        cid = await store.create_conversation(me)

        async def write(dispose: bool) -> int:
            await asyncio.gather(
                *(store.add_message(me, cid, f"{i}", "end_user") for i in range(20))
            )
            pool = engine.get_engine(url).sync_engine.pool
            if dispose:
                await engine.dispose_engines()
                return -1
            for _ in range(100):  # writing has stopped: back within a few tenths of a second
                if not pool.checkedout():
                    break
                await asyncio.sleep(0.05)
            return int(pool.checkedout())

        assert await runner.run(write(dispose=False)) == 0
        await runner.run(write(dispose=True))
        assert await _sessions(admin, url) == 0  # a connection still held would be open
        assert (await store.get_conversation(me, cid))["message_count"] == 40


def test_writers_on_another_threads_loop(db_url: str) -> None:
    # messages from a loop of another thread are handed to the store loop together; each
    # writer still gets its own id, in its own order, with its parent links
    store = ConversationStore.for_url(db_url)
    me = owner()

    async def main() -> tuple[str, dict[int, list[str]]]:
        cid = await store.create_conversation(me)
        ids: dict[int, list[str]] = {k: [] for k in range(8)}

        async def writer(k: int) -> None:
            parent = None
            for i in range(15):
                parent = await store.add_message(
                    me, cid, f"{k}:{i}", "end_user", parent_message_id=parent
                )
                ids[k].append(parent)

        await asyncio.gather(*(writer(k) for k in range(8)))
        return cid, ids

    out: list[tuple[str, dict[int, list[str]]]] = []
    thread = threading.Thread(target=lambda: out.append(asyncio.run(main())))
    thread.start()
    thread.join(60)
    assert out, "the writers did not finish"
    cid, ids = out[0]
    details = runner.run_sync(store.get_conversation_details(me, cid), 60)
    assert details["message_count"] == 120
    by_id = {m["id"]: m for m in details["messages"]}
    for k, mine in ids.items():
        assert len(set(mine)) == 15
        assert [by_id[i]["text"] for i in mine] == [f"{k}:{i}" for i in range(15)]
        assert [by_id[i]["parent_message_id"] for i in mine] == [None, *mine[:-1]]


_EDGE_TIMES = [
    dt.datetime(2023, 5, 15, 14, 30, tzinfo=UTC),  # no fraction
    dt.datetime(2023, 5, 15, 14, 30, 0, 1, tzinfo=UTC),
    dt.datetime(2023, 5, 15, 14, 30, 0, 120000, tzinfo=UTC),  # trailing zeros
    dt.datetime(2023, 5, 15, 14, 30, 59, 999999, tzinfo=UTC),
    dt.datetime(1, 1, 1, tzinfo=UTC),
    dt.datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    dt.datetime(2024, 2, 29, 12, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
]


async def test_message_times_read_back_as_the_same_instant_in_utc(db_url: str) -> None:
    # PostgreSQL reads of whole conversations get times as text (cheaper than asyncpg's
    # datetimes): they must come back as the same aware UTC datetimes as every other read.
    store = ConversationStore(db_url)
    me = owner()
    cid = await store.create_conversation(me)
    for when in _EDGE_TIMES:
        await store.add_message(me, cid, "x", "end_user", message_time=when)
    for fresh in (ConversationStore(db_url), ConversationStore(db_url), store, store):
        got = [
            m["message_time"] for m in (await fresh.get_conversation_details(me, cid))["messages"]
        ]
        assert got == _EDGE_TIMES
        assert all(type(t) is dt.datetime and t.tzinfo is UTC for t in got)
    paged = [m["message_time"] for m in await store.get_messages(me, cid)]
    assert paged == got


@pytest.mark.postgres
async def test_postgres_message_times_do_not_depend_on_the_session_time_zone(
    pg_database_url: str,
) -> None:
    from sqlalchemy import text

    from hookwire.stores import engine

    store = ConversationStore(pg_database_url)
    me = owner()
    cid = await store.create_conversation(me)
    await store.add_message(me, cid, "x", "end_user", message_time=_EDGE_TIMES[3])
    name = pg_database_url.rsplit("/", 1)[1]

    async def default_time_zone(tz: str | None) -> None:
        async with engine.get_engine(pg_database_url).connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            setting = "RESET timezone" if tz is None else f"SET timezone TO '{tz}'"
            await conn.execute(text(f'ALTER DATABASE "{name}" {setting}'))
        await engine.dispose_engines()  # new connections take the database's default

    await runner.run(default_time_zone("Asia/Kathmandu"))  # +05:45
    try:
        details = await ConversationStore(pg_database_url).get_conversation_details(me, cid)
    finally:
        await runner.run(default_time_zone(None))
    [message] = details["messages"]
    assert message["message_time"] == _EDGE_TIMES[3]
    assert message["message_time"].tzinfo is UTC


def test_collector_pauses_overlap_and_respect_a_disabled_collector() -> None:
    import gc

    from hookwire.stores.conversations.reading import gc_paused as _gc_paused

    assert gc.isenabled()
    try:
        with _gc_paused():
            assert not gc.isenabled()
            with _gc_paused():  # an overlapping read (nested here, as it would interleave)
                assert not gc.isenabled()
            assert not gc.isenabled()  # the first read is still building its messages
        assert gc.isenabled()
        first, second = _gc_paused(), _gc_paused()
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)  # the one that paused ends first
        assert not gc.isenabled()
        second.__exit__(None, None, None)
        assert gc.isenabled()
        gc.disable()  # turned off by the application: left off
        with _gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


async def test_sqlite_stores_of_a_file_share_one_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a new store of a file reads on the process's reader of that file: no thread to start,
    # no connection to open (at most one per reader thread, of which there are two)
    from hookwire.stores.conversations import sqlite as sqlite_backend

    url = f"sqlite:///{tmp_path}/shared.db"
    me = owner()
    store = ConversationStore(url)
    cid = await store.create_conversation(me)
    await store.add_message(me, cid, "x", "end_user")
    await store.get_conversation_details(me, cid)
    opened: list[str] = []
    real_connect = sqlite_backend._sqlite_connect

    def counted(path: str, detect_types: int = 0) -> Any:
        opened.append(path)
        return real_connect(path, detect_types)

    monkeypatch.setattr(sqlite_backend, "_sqlite_connect", counted)
    for _ in range(6):
        fresh = ConversationStore(url)
        assert fresh._reader is store._reader
        details = await fresh.get_conversation_details(me, cid)
        assert [m["text"] for m in details["messages"]] == ["x"]
    assert len(opened) <= 1


async def test_a_kept_sqlite_connection_sees_another_process_commits(tmp_path: Path) -> None:
    # the reader keeps its connections; each read is a transaction of its own, so a commit
    # made elsewhere before it (another process, another connection) is always seen
    url = f"sqlite:///{tmp_path}/other.db"
    store = ConversationStore(url)
    me = Owner("u-other", "org", "main")
    cid = await store.create_conversation(me)
    await store.add_message(me, cid, "mine", "end_user")
    assert len((await store.get_conversation_details(me, cid))["messages"]) == 1
    for k in range(2):
        script = (
            "import sys\n"
            "from hookwire.stores.conversations import ConversationStore, Owner\n"
            "store = ConversationStore.for_url(sys.argv[1])\n"
            "store.add_message_sync(Owner('u-other', 'org', 'main'), sys.argv[2], "
            "sys.argv[3], 'assistant')\n"
        )
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-W", "ignore", "-c", script, url, cid, f"theirs {k}"],
            env={**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")},
            timeout=60,
            capture_output=True,
        )
        assert done.returncode == 0, done.stderr
        expected = ["mine"] + [f"theirs {i}" for i in range(k + 1)]
        for reader in (store, ConversationStore(url)):  # cached messages, then none
            details = await reader.get_conversation_details(me, cid)
            assert [m["text"] for m in details["messages"]] == expected
            assert details["message_count"] == len(expected)


async def test_reads_during_writes_are_whole_snapshots_never_stale(db_url: str) -> None:
    # reads on kept connections (new stores, the same store, sync reads in another thread)
    # while another writer commits: each read is an ordered prefix of what is written, with
    # every message acknowledged before the read started
    writer = ConversationStore(db_url)
    me = owner()
    cid = await writer.create_conversation(me)
    total = 120
    acked = 0
    done = threading.Event()

    async def write() -> None:
        nonlocal acked
        for i in range(total):
            await writer.add_message(me, cid, f"m{i}", "end_user")
            acked = i + 1
        done.set()

    def check(details: dict[str, Any], before: int) -> None:
        texts = [m["text"] for m in details["messages"]]
        assert texts == [f"m{i}" for i in range(len(texts))]
        assert details["message_count"] == len(texts) >= before

    async def read(fresh: bool) -> int:
        reads = 0
        shared = ConversationStore(db_url)
        while not done.is_set():
            before = acked
            store = ConversationStore(db_url) if fresh else shared
            check(await store.get_conversation_details(me, cid), before)
            reads += 1
            await asyncio.sleep(0)
        return reads

    def read_sync() -> int:
        reads = 0
        store = ConversationStore(db_url)
        while not done.is_set():
            before = acked
            check(store.get_conversation_details_sync(me, cid), before)
            reads += 1
        return reads

    try:
        counts = await asyncio.gather(
            write(), read(True), read(False), asyncio.to_thread(read_sync)
        )
    finally:
        done.set()  # a failed check stops the other readers too
    assert all(n > 0 for n in counts[1:])
    check(await ConversationStore(db_url).get_conversation_details(me, cid), total)


async def test_sqlite_reads_follow_a_file_replaced_under_them(tmp_path: Path) -> None:
    # a kept connection reads the file it opened; once another file is moved to its path
    # (a restored backup), reads are of the new file, not of the one that was there
    import sqlite3

    old, new = tmp_path / "db.sqlite", tmp_path / "restored.sqlite"
    me = owner()
    before = ConversationStore(f"sqlite:///{old}")
    gone = await before.create_conversation(me)
    await before.add_message(me, gone, "old file", "end_user")
    assert len((await before.get_conversation_details(me, gone))["messages"]) == 1
    other = ConversationStore(f"sqlite:///{new}")
    kept = await other.create_conversation(me)
    await other.add_message(me, kept, "new file", "end_user")
    for path in (old, new):  # everything in the main files, nothing left in their WALs
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    os.replace(new, old)
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{new}{suffix}")
    for reader in (before, ConversationStore(f"sqlite:///{old}")):
        with pytest.raises(ConversationNotFound):
            await reader.get_conversation_details(me, gone)
        details = await reader.get_conversation_details(me, kept)
        assert [m["text"] for m in details["messages"]] == ["new file"]


def test_a_sync_read_of_sqlite_runs_in_the_calling_thread(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no hop to the store loop and a reader thread and back (PostgreSQL reads on the loop)
    from hookwire.stores.conversations import sqlite as sqlite_backend

    store = ConversationStore(db_url)
    me = owner()
    cid = runner.run_sync(store.create_conversation(me))
    store.add_message_sync(me, cid, "x", "end_user")
    hops: list[object] = []
    real_run_sync = runner.run_sync

    def counted(coro: Any, timeout: float | None = None) -> Any:
        hops.append(coro)
        return real_run_sync(coro, timeout)

    monkeypatch.setattr(runner, "run_sync", counted)
    threads: list[threading.Thread] = []
    real_details = sqlite_backend._SQLiteReader.details

    def details(self: Any, *args: Any) -> Any:
        threads.append(threading.current_thread())
        return real_details(self, *args)

    monkeypatch.setattr(sqlite_backend._SQLiteReader, "details", details)
    got = store.get_conversation_details_sync(me, cid)
    assert [m["text"] for m in got["messages"]] == ["x"]
    assert got == runner.run_sync(store.get_conversation_details(me, cid))
    store.add_message_sync(me, cid, "y", "assistant")
    assert [m["text"] for m in store.get_conversation_details_sync(me, cid)["messages"]] == [
        "x",
        "y",
    ]
    with pytest.raises(ConversationNotFound):
        store.get_conversation_details_sync(owner(), cid)
    sqlite = isinstance(store, SQLiteConversationStore)
    assert len(hops) == (1 if sqlite else 5)  # the async read above; else every read
    here = threading.current_thread()
    assert [t is here for t in threads] == ([True, False, True, True] if sqlite else [])


async def test_a_new_store_of_a_checked_database_reads_without_a_schema_hop(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the schema check crosses to the store loop and back; a database this process already
    # checked is not checked again by each new store (SQLite reads then never hop at all,
    # PostgreSQL reads once, to run on the store loop)
    me = owner()
    store = ConversationStore(db_url)
    cid = await store.create_conversation(me)
    await store.add_message(me, cid, "x", "end_user")
    hops: list[object] = []
    real_run = runner.run

    def counted(coro: Any) -> Any:
        hops.append(coro)
        return real_run(coro)

    monkeypatch.setattr(runner, "run", counted)
    details = await ConversationStore(db_url).get_conversation_details(me, cid)
    assert [m["text"] for m in details["messages"]] == ["x"]
    expected = 0 if isinstance(store, SQLiteConversationStore) else 1
    assert len(hops) == expected


def test_rows_with_datetimes_become_messages_with_aware_times() -> None:
    # The path of PostgreSQL reads on Python 3.10 (asyncpg's datetimes, not ISO text): an
    # infinite time comes as a naive datetime and is returned as the aware UTC value.
    from hookwire.stores.conversations.reading import fresh

    aware = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    rows = [
        ("m1", None, "end_user", "hi", aware, '{"k": 1}', None, None, None, None, None),
        ("m2", "m1", "assistant", "yo", dt.datetime.max, None, "r", "gpt", 1, 2, 3),
    ]
    first, second = fresh(rows, parse_time=False)
    assert first["message_time"] == aware and first["metadata"] == {"k": 1}
    assert second["message_time"] == dt.datetime.max.replace(tzinfo=dt.timezone.utc)
    assert second["parent_message_id"] == "m1" and second["total_tokens"] == 3


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(alphabet=st.characters(blacklist_categories=()), max_size=40))
def test_any_text_is_stored_unchanged_or_refused_by_name(db_url: str, text: str) -> None:
    # Lone surrogates and NUL cannot be stored as UTF-8 text: a named error, never the
    # database driver's own exception, and the conversation is left as it was.
    from hookwire.stores.runner import run_sync

    store = ConversationStore.for_url(db_url)
    me = owner()

    async def go() -> tuple[str | None, int]:
        cid = await store.create_conversation(me)
        try:
            await store.add_message(me, cid, text, "end_user")
        except InvalidInputError:
            return None, (await store.get_conversation(me, cid))["message_count"]
        return (await store.get_conversation_details(me, cid))["messages"][0]["text"], 1

    stored, count = run_sync(go())
    if stored is None:
        assert count == 0
        assert "\x00" in text or any("\ud800" <= c <= "\udfff" for c in text)
    else:
        assert stored == text


def test_sqlite_connections_are_closed_at_exit(tmp_path: Path) -> None:
    # Python 3.13 reports a connection freed unclosed (ResourceWarning): the readers' and the
    # writers' connections are closed once the queued messages are written.
    script = """
import asyncio, sys, warnings
warnings.simplefilter("always", ResourceWarning)
from hookwire.stores.conversations import ConversationStore, Owner
store = ConversationStore(sys.argv[1])
me = Owner("u", "", "")
async def go():
    cid = await store.create_conversation(me)
    await store.add_message(me, cid, "async", "end_user")
    await store.get_conversation_details(me, cid)
    return cid
cid = asyncio.run(go())
store.add_message_sync(me, cid, "sync", "end_user")
store.get_conversation_details_sync(me, cid)
"""
    src = str(Path(hookwire.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", script, f"sqlite:///{tmp_path}/exit.db"],
        env=env,
        timeout=120,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "ResourceWarning" not in done.stderr, done.stderr


def test_a_dropped_sqlite_store_closes_its_writer_connection(tmp_path: Path) -> None:
    import gc
    import sqlite3

    store = SQLiteConversationStore(f"sqlite:///{tmp_path}/dropped.db")
    me = owner()
    cid = runner.run_sync(store.create_conversation(me))
    store.add_message_sync(me, cid, "x", "end_user")
    conn = store._writer._conn.get()
    del store
    gc.collect()
    with pytest.raises(sqlite3.ProgrammingError):  # closed
        conn.execute("SELECT 1")


def test_sqlite_reads_use_no_thread_pool_of_their_own(tmp_path: Path) -> None:
    store = ConversationStore(f"sqlite:///{tmp_path}/pool.db")
    me = owner()

    async def go() -> list[str]:
        cid = await store.create_conversation(me)
        await store.add_message(me, cid, "x", "end_user")
        details = await asyncio.gather(*(store.get_conversation_details(me, cid) for _ in range(8)))
        return [d["messages"][0]["text"] for d in details]

    assert asyncio.run(go()) == ["x"] * 8
    assert not [t.name for t in threading.enumerate() if "sqlite" in t.name]


class _LateFuture(concurrent.futures.Future[str]):
    """A future whose first wait runs out (its caller's timeout), whatever it holds."""

    waits = 0

    def result(self, timeout: float | None = None) -> str:
        self.waits += 1
        if self.waits == 1 or not self.done():
            raise concurrent.futures.TimeoutError
        return super().result(0)


def test_a_message_a_transaction_has_taken_is_waited_for_not_withdrawn() -> None:
    done = _LateFuture()
    item = batching.Pending(None, {"id": "m-1"}, False, None, batching.settle_future(done))
    assert item.take()
    done.set_result("m-1")
    assert batching.wait_sync(item, done, 0.01, "sqlite:///h.db") == "m-1"
    assert done.waits == 2 and not item.withdraw()


def test_a_taken_message_still_unsettled_names_the_id_to_send_it_again_with() -> None:
    done = _LateFuture()
    item = batching.Pending(None, {"id": "m-2"}, False, None, batching.settle_future(done))
    assert item.take()
    with pytest.raises(StoreError, match=r"message_id='m-2'"):
        batching.wait_sync(item, done, 0.01, "sqlite:///h.db")


def test_a_withdrawn_message_is_not_taken_into_a_transaction() -> None:
    item = batching.Pending(None, {"id": "m-3"}, False, None, lambda outcome: None)
    assert item.withdraw()
    assert not item.take()
