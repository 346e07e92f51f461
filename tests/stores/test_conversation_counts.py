"""``conversations.message_count`` on SQLite and PostgreSQL: kept right by every write path
(groups of one and of several conversations, state changes, sync writes, refused messages,
deletes), and the index of ``list_conversations(user_id=...)``."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from typing import Any

import pytest

from hookwire.errors import NotFoundError, ParentMessageError
from hookwire.stores.conversations import ConversationStore, Owner


def owner() -> Owner:
    return Owner(user_id=f"u-{uuid.uuid4().hex[:8]}", org_id="org-1", realm="main")


@pytest.fixture
def store(db_url: str) -> ConversationStore:
    return ConversationStore.for_url(db_url)


async def _check_counts(store: ConversationStore, me: Owner, ids: list[str]) -> dict[str, int]:
    counts = {}
    for cid in ids:
        stored = len((await store.get_messages(me, cid, limit=1000)).items)
        assert (await store.get_conversation(me, cid))["message_count"] == stored
        details = await store.get_conversation_details(me, cid)
        assert details["message_count"] == stored
        counts[cid] = stored
    listed = {c["id"]: c["message_count"] for c in (await store.list_conversations(me)).items}
    assert {cid: listed[cid] for cid in ids} == counts
    return counts


async def test_message_count_follows_every_write_path(store: ConversationStore) -> None:
    me = owner()
    ids = [await store.create_conversation(me) for _ in range(4)]
    await _check_counts(store, me, ids)
    # many at once: groups of several conversations, some changing the state
    await asyncio.gather(
        *(
            store.add_message(
                me,
                ids[i % 4],
                f"m{i}",
                "end_user",
                conversation_state="human-intervention" if i % 7 == 0 else None,
            )
            for i in range(60)
        )
    )
    # one at a time: groups of one conversation
    for i in range(5):
        await store.add_message(me, ids[0], f"alone {i}", "assistant")
    # from sync code, on another thread
    await asyncio.to_thread(store.add_message_sync, me, ids[1], "sync", "end_user")
    counts = await _check_counts(store, me, ids)
    assert counts == {ids[0]: 20, ids[1]: 16, ids[2]: 15, ids[3]: 15}


async def test_message_count_ignores_refused_messages(store: ConversationStore) -> None:
    me, them = owner(), owner()
    cid = await store.create_conversation(me)
    await store.add_message(me, cid, "kept", "end_user")
    with pytest.raises(ParentMessageError):
        await store.add_message(me, cid, "orphan", "end_user", parent_message_id="no-such-id")
    with pytest.raises(NotFoundError):
        await store.add_message(them, cid, "not theirs", "end_user")
    assert await _check_counts(store, me, [cid]) == {cid: 1}


async def test_deleting_a_conversation_reports_and_drops_its_count(
    store: ConversationStore,
) -> None:
    me = owner()
    cid, other = await store.create_conversation(me), await store.create_conversation(me)
    for i in range(3):
        await store.add_message(me, cid, f"m{i}", "end_user")
    await store.add_message(me, other, "stays", "end_user")
    assert await store.delete_conversation(me, cid) == 3
    assert await _check_counts(store, me, [other]) == {other: 1}


def _sqlite_plan(tmp_path: Any, query: str, *args: str) -> str:
    from hookwire.stores import engine, runner

    path = tmp_path / "hookwire.db"
    runner.run_sync(engine.upgrade(f"sqlite:///{path}"))
    conn = sqlite3.connect(path)
    try:
        return " ".join(str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN {query}", args))
    finally:
        conn.close()


def test_listing_one_users_conversations_uses_the_user_index(tmp_path: Any) -> None:
    plan = _sqlite_plan(
        tmp_path,
        "SELECT id, message_count FROM conversations WHERE user_id = ? "
        "ORDER BY updated_at DESC, id DESC LIMIT 51",
        "u",
    )
    assert "ix_conversations_user_updated" in plan
    assert "TEMP B-TREE" not in plan


def test_listing_everyones_conversations_reads_an_index_in_order(tmp_path: Any) -> None:
    plan = _sqlite_plan(
        tmp_path,
        "SELECT id, message_count FROM conversations ORDER BY updated_at DESC, id DESC LIMIT 51",
    )
    assert "ix_conversations_updated" in plan
    assert "TEMP B-TREE" not in plan


@pytest.mark.postgres
async def test_updated_at_lags_by_default_while_the_count_moves(
    pg_database_url: str,
) -> None:
    # by default a write moves updated_at (an indexed column: no HOT update) at most once a
    # minute per conversation; the count, unindexed, moves with every write
    store = ConversationStore(pg_database_url)
    assert store.touch_every == 60.0  # type: ignore[attr-defined]
    me = owner()
    cid = await store.create_conversation(me)
    created = (await store.get_conversation(me, cid))["updated_at"]
    for i in range(3):
        await store.add_message(me, cid, f"m{i}", "end_user")
    conversation = await store.get_conversation(me, cid)
    assert conversation["updated_at"] == created
    assert conversation["message_count"] == 3
