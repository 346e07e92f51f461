"""The plans PostgreSQL makes for the conversation store's reads and lookups.

Each test runs ``EXPLAIN (ANALYZE, FORMAT JSON)`` of the exact statement the store runs
(captured from SQLAlchemy, or the asyncpg store's own) on tables filled with enough rows that
a filter would show: each must seek an index (an index condition), never scan a table or
filter out rows it read. The tables are filled with ``generate_series`` in a database of the
module's own and are not analysed: the plans are those of a server as it is (this one has
autovacuum off; CI's may analyse them meanwhile, and the plans must seek either way). Each
statement is also checked as a generic plan (what a prepared statement may switch to), and
as prepared while the tables were empty and then executed after they grew.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event

from hookwire.stores import engine, runner
from hookwire.stores.conversations import ConversationStore, Owner
from hookwire.stores.conversations.cursors import (
    encode_conversation_cursor,
    encode_message_cursor,
)
from hookwire.stores.conversations.postgres import (
    _PG_COUNT,
    _PG_DETAILS,
    _PG_HEAD,
    _PG_OWNERS,
)

pytestmark = pytest.mark.postgres

CONVERSATIONS = 20_000
MESSAGES = 100_000
LONG = 10_000  # messages of the long conversation, every tenth row of the table
OWNER = Owner(user_id="u1", org_id="o", realm="r")  # a tenth of the conversations
LONG_ID = "c00000001"  # OWNER's; the other conversations share the rest of the messages
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)

_FILL = (
    f"""
INSERT INTO conversations (id, realm, org_id, user_id, is_anonymous, created_at, updated_at)
SELECT 'c' || lpad(g::text, 8, '0'), 'r', 'o', 'u' || (g % 10), false,
       $1::timestamptz - g * interval '1 second', $1::timestamptz - g * interval '1 second'
FROM generate_series(2, {CONVERSATIONS}) g
""",
    f"""
INSERT INTO messages (id, conversation_id, sender, text, message_time, created_at)
SELECT 'm' || g,
       CASE WHEN g % 10 = 0 THEN '{LONG_ID}'
            ELSE 'c' || lpad((2 + g % ({CONVERSATIONS} - 1))::text, 8, '0') END,
       'end_user', 'hello', $1::timestamptz, $1::timestamptz
FROM generate_series(1, {MESSAGES}) g
""",
)


def _admin_url(url: str) -> str:
    return url.replace("+asyncpg", "")


class Statement:
    """A statement of the store, its arguments, and its name when prepared."""

    def __init__(self, name: str, sql: str, args: tuple[Any, ...]) -> None:
        self.name, self.sql, self.args = name, sql, args


def _captured(url: str, calls: list[tuple[str, Any, int]]) -> dict[str, Statement]:
    """The statements SQLAlchemy sends for the store calls of ``calls``: for each, its name,
    the call, and which of the call's statements (``-1``: the last)."""
    seen: list[tuple[str, Any]] = []

    async def listen() -> Any:
        def record(conn: Any, cursor: Any, sql: str, params: Any, ctx: Any, many: bool) -> None:
            seen.append((sql, params))

        sync_engine = engine.get_engine(url).sync_engine
        event.listen(sync_engine, "before_cursor_execute", record)
        return sync_engine, record

    sync_engine, record = runner.run_sync(listen(), timeout=30)
    statements = {}
    try:
        for name, call, which in calls:
            seen.clear()
            runner.run_sync(call, timeout=30)
            sql, params = seen[which]
            statements[name] = Statement(name, sql, tuple(params))
    finally:
        event.remove(sync_engine, "before_cursor_execute", record)
    return statements


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _assert_seeks(plan: dict[str, Any], index: str, condition: str = "") -> None:
    """``plan`` reads its table only through ``index`` with an index condition (containing
    ``condition``), and neither scans a table nor filters rows out of what it read."""
    nodes = list(_nodes(plan))
    shown = json.dumps(plan, indent=1)
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], shown
    seeks = [n for n in nodes if n.get("Index Name") == index]
    assert seeks, shown
    assert all(condition in n.get("Index Cond", "") for n in seeks), shown
    for n in nodes:
        assert not n.get("Rows Removed by Filter"), shown
        assert not n.get("Rows Removed by Index Recheck"), shown
        if n["Node Type"] in ("Index Scan", "Index Only Scan", "Bitmap Heap Scan"):
            assert "Filter" not in n, shown


class Plans:
    """The module's database and the plans of the store's statements on it."""

    def __init__(self, url: str, statements: dict[str, Statement]) -> None:
        self.url = url
        self.statements = statements
        #: each statement's plan as prepared on the empty tables, executed after they grew
        self.cached: dict[str, dict[str, Any]] = {}

    async def explain(self, name: str, generic: bool = False) -> dict[str, Any]:
        s = self.statements[name]
        conn = await asyncpg.connect(_admin_url(self.url))
        try:
            if not generic:
                text = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {s.sql}", *s.args)
            else:
                await conn.execute("SET plan_cache_mode TO force_generic_plan")
                await conn.execute(f"PREPARE {s.name} AS {s.sql}")
                text = await _explain_execute(conn, s)
        finally:
            await conn.close()
        return dict(json.loads(text)[0]["Plan"])


def _literal(value: Any) -> str:
    """``value`` as an SQL literal (EXECUTE takes no parameters; the tests' own values)."""
    if value is None:
        return "NULL"
    if isinstance(value, list):
        return f"ARRAY[{', '.join(_literal(v) for v in value)}]"
    if isinstance(value, dt.datetime):
        return f"'{value.isoformat()}'::timestamptz"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(int(value))


def _execute(s: Statement) -> str:
    return f"EXECUTE {s.name}({', '.join(_literal(v) for v in s.args)})"


async def _explain_execute(conn: Any, s: Statement) -> str:
    return str(await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {_execute(s)}"))


async def _long_conversation(url: str) -> None:
    """The long conversation's row (the fill makes its messages), for the store to find."""
    admin = await asyncpg.connect(_admin_url(url))
    try:
        await admin.execute(
            "INSERT INTO conversations (id, realm, org_id, user_id, is_anonymous, created_at, "
            "updated_at) VALUES ($1, 'r', 'o', 'u1', false, $2, $2)",
            LONG_ID,
            NOW,
        )
    finally:
        await admin.close()


def _statements(url: str) -> dict[str, Statement]:
    """The statements the store runs for the reads and lookups the tests check."""
    store = ConversationStore(url)
    # The pages' positions are fixed by the fill: OWNER's conversations are every tenth, one
    # second apart, newest first; the long conversation's messages every tenth seq.
    deep = 1_900  # of OWNER's 2,000
    deep_at = NOW - dt.timedelta(seconds=10 * deep + 1)
    deep_id = f"c{10 * deep + 1:08d}"
    statements = _captured(
        url,
        [
            ("list_first", store.list_conversations(OWNER, limit=50), -1),
            (
                "list_deep",
                store.list_conversations(
                    OWNER, limit=50, cursor=encode_conversation_cursor(deep_at, deep_id)
                ),
                -1,
            ),
            ("messages_first", store.get_messages(OWNER, LONG_ID, limit=100), -1),
            (
                "messages_last",
                store.get_messages(
                    OWNER, LONG_ID, limit=100, cursor=encode_message_cursor(MESSAGES - 1_000)
                ),
                -1,
            ),
            # the owner check of a read (before its messages)
            ("owner_of_read", store.get_messages(OWNER, LONG_ID, limit=100), -2),
        ],
    )
    for s in (
        Statement("details", _PG_DETAILS, (LONG_ID, 0)),
        # what is new since a cached read
        Statement("details_on", _PG_DETAILS, (LONG_ID, MESSAGES - 500)),
        Statement("head", _PG_HEAD, (LONG_ID,)),
        Statement("owners", _PG_OWNERS, (["c00012345"],)),
        Statement("touch", _PG_COUNT, ("c00012345", 0, None, NOW, 0.0)),
    ):
        statements[s.name] = s
    return statements


async def _setup(url: str) -> Plans:
    await _long_conversation(url)
    plans = Plans(url, _statements(url))
    conn = await asyncpg.connect(_admin_url(url))
    try:
        # Prepared while the tables are (nearly) empty and executed until PostgreSQL may settle
        # on a generic plan; then executed again on the grown tables.
        for s in plans.statements.values():
            await conn.execute(f"PREPARE {s.name} AS {s.sql}")
            for _ in range(8):
                await conn.fetch(_execute(s))
        for fill in _FILL:
            await conn.execute(fill, NOW)
        for s in plans.statements.values():
            plans.cached[s.name] = dict(json.loads(await _explain_execute(conn, s))[0]["Plan"])
    finally:
        await conn.close()
    return plans


@contextlib.contextmanager
def _database(pg_database_url: str, revision: str = "head") -> Iterator[str]:
    """A database of its own (the URL) at ``revision``, dropped afterwards."""
    name = f"hookwire_t_plans_{uuid.uuid4().hex[:12]}"
    url = pg_database_url.rsplit("/", 1)[0] + "/" + name
    admin_url = _admin_url(pg_database_url)

    async def admin(*statements: str) -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            for sql in statements:
                await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        runner.run_sync(engine.upgrade(url, revision), timeout=120)
        yield url
    finally:
        runner.run_sync(engine.dispose_engines(), timeout=30)
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def plans(pg_database_url: str) -> Iterator[Plans]:
    with _database(pg_database_url) as url:
        yield asyncio.run(_setup(url))


def _check(plans: Plans, name: str, index: str, condition: str = "", cached: bool = True) -> None:
    """The statement seeks ``index`` as planned now, as a generic plan, and as prepared
    while the tables were empty; a page (with LIMIT) in the index's order, with no sort."""
    found = [asyncio.run(plans.explain(name)), asyncio.run(plans.explain(name, generic=True))]
    if cached:
        found.append(plans.cached[name])
    for plan in found:
        _assert_seeks(plan, index, condition)
        if "LIMIT" in plans.statements[name].sql:
            assert "Sort" not in {n["Node Type"] for n in _nodes(plan)}, json.dumps(plan)


_OWNER_INDEX = "ix_conversations_owner_updated"
_MESSAGE_INDEX = "ix_messages_conversation_seq"


def test_the_first_page_of_conversations_seeks_the_owner_index(plans: Plans) -> None:
    _check(plans, "list_first", _OWNER_INDEX, "user_id")


def test_a_deep_page_of_conversations_seeks_past_the_pages_before_it(plans: Plans) -> None:
    _check(plans, "list_deep", _OWNER_INDEX, "ROW(updated_at, (id)::text) <")


def test_the_first_page_of_messages_seeks_the_conversation_index(plans: Plans) -> None:
    _check(plans, "messages_first", _MESSAGE_INDEX, "conversation_id")


def test_the_last_page_of_messages_seeks_past_the_pages_before_it(plans: Plans) -> None:
    _check(plans, "messages_last", _MESSAGE_INDEX, "seq) >")


def test_a_whole_conversation_read_seeks_the_conversation_index(plans: Plans) -> None:
    _check(plans, "details", _MESSAGE_INDEX, "seq) >")
    _check(plans, "details_on", _MESSAGE_INDEX, "seq) >")
    _check(plans, "head", "pk_conversations", "id")


def test_owner_lookups_are_index_probes(plans: Plans) -> None:
    _check(plans, "owners", "pk_conversations", "id")
    _check(plans, "owner_of_read", "pk_conversations", "id")
    _check(plans, "touch", "pk_conversations", "id")


def test_db_upgrade_analyzes_the_tables_it_changed_and_the_reads_still_seek(
    pg_database_url: str,
) -> None:
    from hookwire.cli import db

    head = engine.head_revision()
    before = engine._script_directory().get_revision(head).down_revision
    with _database(pg_database_url, before) as url:

        async def fill() -> None:
            await _long_conversation(url)
            conn = await asyncpg.connect(_admin_url(url))
            try:
                for fill in _FILL:
                    await conn.execute(fill, NOW)
            finally:
                await conn.close()

        async def analyzed() -> dict[str, bool]:
            conn = await asyncpg.connect(_admin_url(url))
            try:
                rows = await conn.fetch(
                    "SELECT relname, last_analyze IS NOT NULL FROM pg_stat_user_tables"
                )
            finally:
                await conn.close()
            return {r[0]: r[1] for r in rows}

        asyncio.run(fill())
        db.upgrade(url)
        assert engine.head_revision() == runner.run_sync(engine.schema_revision(url), timeout=30)
        found = asyncio.run(analyzed())
        assert found["conversations"] and found["messages"], found
        # an empty table is left to the planner's assumption for a new table (see engine)
        assert not found["usage_ledger"], found

        # With the statistics of the grown tables, as without them: the pages seek.
        plans = Plans(url, _statements(url))
        _check(plans, "list_deep", _OWNER_INDEX, "ROW(updated_at, (id)::text) <", cached=False)
        _check(plans, "messages_first", _MESSAGE_INDEX, "conversation_id", cached=False)
        _check(plans, "messages_last", _MESSAGE_INDEX, "seq) >", cached=False)
        _check(plans, "details", _MESSAGE_INDEX, "seq) >", cached=False)
        _check(plans, "details_on", _MESSAGE_INDEX, "seq) >", cached=False)
        _check(plans, "head", "pk_conversations", "id", cached=False)
        _check(plans, "owners", "pk_conversations", "id", cached=False)
