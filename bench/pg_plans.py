"""PostgreSQL query shapes of the conversation store: the statements before and after issue
17's items 3 to 5, on the same tables.

Run from the repository root:

    PYTHONPATH=src python bench/pg_plans.py [--sizes 10000,100000] [--repeat 7]

For each size, a fresh database on the benchmark server (``HOOKWIRE_BENCH_PG``; created and
dropped here) at hookwire's schema, filled with ``generate_series``: that many conversations
(one owner holds a tenth of them, one second apart) and ten messages per conversation, of
which 10,000 belong to one conversation of that owner, spread evenly through the table.
Each statement is the one the store sends (captured from it, or the asyncpg store's own) and
the one it sent before, run through asyncpg as the store runs it (a prepared statement):

- list: the owner's last page (deep), and walking all the owner's pages (keyset cursor);
- messages: ``get_messages``' first and last page of the long conversation, and reading it
  whole (the asyncpg store's statement; before: with ``enable_bitmapscan`` off for it);
- owner lookup and ``updated_at`` touch of one conversation, by a statement prepared and
  executed while the tables were empty (what a long-running process keeps).

First on the tables as filled (no statistics: the server may have autovacuum off), then after
``ANALYZE``. Milliseconds per call: the median of ``--repeat`` calls (walks: of 3).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _postgres import SERVER, server_up
from _timing import options
from hookwire.stores import engine, runner
from hookwire.stores.conversations import ConversationStore, Owner
from hookwire.stores.conversations.cursors import (
    encode_conversation_cursor,
    encode_message_cursor,
)
from hookwire.stores.conversations.postgres import (
    _PG_COUNT,
    _PG_DETAIL_SELECT,
    _PG_DETAILS,
    _PG_OWNERS,
)

OWNER = Owner(user_id="u1", org_id="o", realm="r")
LONG_ID = "c00000001"
LONG = 10_000
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)

OLD_DETAILS = (
    f"SELECT {_PG_DETAIL_SELECT} FROM messages WHERE conversation_id = $1 AND seq > $2 ORDER BY seq"
)
OLD_OWNERS = (
    "SELECT id, realm, org_id, user_id, is_anonymous FROM conversations "
    "WHERE id = ANY($1::varchar[])"
)
OLD_TOUCH = (
    "WITH no_wait AS (SELECT set_config('synchronous_commit', 'off', true)) "
    "UPDATE conversations SET updated_at = GREATEST(updated_at, $1::timestamptz) "
    "WHERE id = ANY($2::varchar[]) AND EXISTS (SELECT 1 FROM no_wait)"
)


def _touch_args(old: bool, cid: str) -> tuple[object, ...]:
    """The arguments of the update of one conversation per message group: the old touch's
    (an array of ids), or ``_PG_COUNT``'s (no message more, no state, moved to NOW)."""
    return (NOW, [cid]) if old else (cid, 0, None, NOW, 0.0)


def _fill(conversations: int) -> list[str]:
    messages = 10 * conversations
    every = messages // LONG
    return [
        "INSERT INTO conversations (id, realm, org_id, user_id, is_anonymous, created_at, "
        "updated_at) SELECT 'c' || lpad(g::text, 8, '0'), 'r', 'o', 'u' || (g % 10), false, "
        "$1::timestamptz - g * interval '1 second', $1::timestamptz - g * interval '1 second' "
        f"FROM generate_series(2, {conversations}) g",
        "INSERT INTO messages (id, conversation_id, sender, text, message_time, created_at) "
        f"SELECT 'm' || g, CASE WHEN g % {every} = 0 THEN '{LONG_ID}' ELSE 'c' || "
        f"lpad((2 + g % ({conversations} - 1))::text, 8, '0') END, 'end_user', 'hello', "
        f"$1::timestamptz, $1::timestamptz FROM generate_series(1, {messages}) g",
    ]


def _captured(url: str, calls: list[Awaitable[Any]]) -> list[str]:
    """The last statement SQLAlchemy sends for each store call."""
    seen: list[str] = []

    async def listen() -> Any:
        sync_engine = engine.get_engine(url).sync_engine
        event.listen(sync_engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
        return sync_engine

    runner.run_sync(listen(), timeout=30)
    out = []
    for call in calls:
        runner.run_sync(call, timeout=60)
        out.append(seen[-1])
    return out


def _old_list(sql: str) -> str:
    old, n = re.subn(
        r"\(conversations\.updated_at, conversations\.id\) < \((\$\d+::[A-Z ]+), (\$\d+::VARCHAR)\)",
        r"(conversations.updated_at < \1 OR (conversations.updated_at = \1 "
        r"AND conversations.id < \2))",
        sql,
    )
    assert n == 1, sql
    return old


def _old_messages(sql: str) -> str:
    old, n = re.subn(
        r"WHERE \(messages\.conversation_id, messages\.seq\) > \((\$1::VARCHAR), (\$2::BIGINT)\) "
        r"AND \(messages\.conversation_id, messages\.seq\) <= \(\$1::VARCHAR, (\$3::BIGINT)\) "
        r"ORDER BY messages\.conversation_id, messages\.seq",
        r"WHERE messages.conversation_id = \1 AND messages.seq > \2 AND \3 IS NOT NULL "
        r"ORDER BY messages.seq",
        sql,
    )
    assert n == 1, sql
    return old


async def _median_ms(fn: Callable[[], Awaitable[Any]], repeat: int) -> float:
    await fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


async def _measure(url: str, conversations: int, repeat: int) -> list[tuple[str, str, float]]:
    raw = url.replace("+asyncpg", "")
    admin = await asyncpg.connect(raw)
    await admin.execute(
        "INSERT INTO conversations (id, realm, org_id, user_id, is_anonymous, created_at, "
        "updated_at) VALUES ($1, 'r', 'o', 'u1', false, $2, $2)",
        LONG_ID,
        NOW,
    )
    store = ConversationStore(url)
    owned = conversations // 10
    deep_g = 10 * (owned - 30) + 1  # the last page of the owner's: 30 conversations after it
    deep = (NOW - dt.timedelta(seconds=deep_g), f"c{deep_g:08d}")
    first_list, deep_list, first_msgs, last_msgs = await asyncio.to_thread(
        _captured,
        url,
        [
            store.list_conversations(OWNER, limit=50),
            store.list_conversations(OWNER, limit=50, cursor=encode_conversation_cursor(*deep)),
            store.get_messages(OWNER, LONG_ID, limit=100),
            store.get_messages(OWNER, LONG_ID, limit=100, cursor=encode_message_cursor(1)),
        ],
    )
    # Prepared while the tables are empty, as a process that started with the database keeps
    # them (asyncpg's statement cache); executed until the server may settle on a plan.
    kept = await asyncpg.connect(raw)
    lookups = {}
    for shape, owners, touch in (("before", OLD_OWNERS, OLD_TOUCH), ("after", _PG_OWNERS, None)):
        o = await kept.prepare(owners)
        t = await kept.prepare(touch or _PG_COUNT)
        for _ in range(8):
            await o.fetch(["c00000002"])
            await t.fetch(*_touch_args(touch is not None, "c00000002"))
        lookups[shape] = (o, t, touch is not None)
    for sql in _fill(conversations):
        await admin.execute(sql, NOW)
    last_seq = await admin.fetchval(
        "SELECT seq FROM messages WHERE conversation_id = $1 ORDER BY seq DESC OFFSET 100 LIMIT 1",
        LONG_ID,
    )

    rows: list[tuple[str, str, float]] = []
    conn = await asyncpg.connect(raw)

    async def walk(first: Any, rest: Any) -> None:
        page = await first.fetch(*OWNER_ARGS, 51)
        while len(page) > 50:
            last = page[49]
            page = await rest.fetch(*OWNER_ARGS, last["updated_at"], last["id"], 51)

    async def whole(sql: str, before: bool) -> None:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            if before:
                await conn.execute("SET LOCAL enable_bitmapscan TO off")
            await conn.fetch(sql, LONG_ID, 0)

    for state in ("no statistics", "after ANALYZE"):
        if state == "after ANALYZE":
            await admin.execute("ANALYZE conversations; ANALYZE messages")
        for shape in ("before", "after"):
            old = shape == "before"
            fl = await conn.prepare(first_list)
            dl = await conn.prepare(_old_list(deep_list) if old else deep_list)
            fm = await conn.prepare(_old_messages(first_msgs) if old else first_msgs)
            lm = await conn.prepare(_old_messages(last_msgs) if old else last_msgs)
            o, t, many = lookups[shape]
            cid = f"c{conversations - 7:08d}"
            cases: list[tuple[str, Callable[[], Awaitable[Any]], int]] = [
                ("list: deep page", lambda dl=dl: dl.fetch(*OWNER_ARGS, *deep, 51), repeat),
                ("list: walk all pages", lambda fl=fl, dl=dl: walk(fl, dl), 3),
                (
                    "get_messages: first page",
                    lambda fm=fm: fm.fetch(LONG_ID, 0, 2**63 - 1, 101),
                    repeat,
                ),
                (
                    "get_messages: last page",
                    lambda lm=lm: lm.fetch(LONG_ID, last_seq, 2**63 - 1, 101),
                    repeat,
                ),
                (
                    "whole read, 10,000 messages",
                    lambda old=old: whole(OLD_DETAILS if old else _PG_DETAILS, old),
                    repeat,
                ),
                ("owner lookup, prepared on empty tables", lambda o=o, c=cid: o.fetch([c]), repeat),
                (
                    "touch, prepared on empty tables",
                    lambda t=t, m=many, c=cid: t.fetch(*_touch_args(m, c)),
                    repeat,
                ),
            ]
            for name, fn, n in cases:
                rows.append((f"{state}: {name}", shape, await _median_ms(fn, n)))
    await conn.close()
    await kept.close()
    await admin.close()
    return rows


OWNER_ARGS = (OWNER.user_id, OWNER.org_id, OWNER.realm)


async def _database(name: str, create: bool) -> None:
    conn = await asyncpg.connect(f"{SERVER}/postgres")
    try:
        if create:
            await conn.execute(f'CREATE DATABASE "{name}"')
        else:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def main() -> None:
    parser = options(__doc__)
    parser.add_argument("--sizes", default="10000,100000", help="conversations, comma-separated")
    parser.add_argument("--repeat", type=int, default=7, help="calls per median")
    args = parser.parse_args()
    if not server_up():
        sys.exit(f"no PostgreSQL server at {SERVER} (set HOOKWIRE_BENCH_PG)")
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[int, list[tuple[str, str, float]]] = {}
    for size in sizes:
        name = f"hookwire_bench_plans_{uuid.uuid4().hex[:8]}"
        asyncio.run(_database(name, True))
        url = SERVER.replace("postgresql://", "postgresql+asyncpg://", 1) + "/" + name
        try:
            runner.run_sync(engine.upgrade(url), timeout=300)
            results[size] = asyncio.run(_measure(url, size, args.repeat))
        finally:
            runner.run_sync(engine.dispose_engines(), timeout=60)
            asyncio.run(_database(name, False))
    header = " | ".join(f"{s:,} before | {s:,} after" for s in sizes)
    print(f"| ms per call | {header} |")
    print("|---|" + "---:|" * (2 * len(sizes)))
    labels = list(dict.fromkeys(r[0] for r in results[sizes[0]]))
    for label in labels:
        cells = []
        for size in sizes:
            got = {shape: ms for lab, shape, ms in results[size] if lab == label}
            cells += [f"{got['before']:.2f}", f"{got['after']:.2f}"]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
