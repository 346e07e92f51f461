"""Growth with history: reads and writes of hookwire's stores at 10^4, 10^5, 10^6 rows.

SQLite and PostgreSQL side by side, per size N: N conversations (three messages each, N/10
users) and a ledger of N LLM calls (N/10 users, 20 orgs, 5 agents, 4 models, over 90 days).
For each, the best of ``--rounds`` of:

- ``history list`` (``list_conversations``: everyone's newest 50, and one user's);
- every ``hookwire costs`` grouping over all time (none, user, org, agent, model, provider,
  day, month), ``--by user --since 7d`` (whole days from the totals, partial ones from the
  ledger) and ``--by user`` summed from the ledger's rows alone (what ``costs`` did before);
- the ledger's write rate at that size (rows/s, the median of 2,000 new calls of its N/10 users in
  batches of 500): calls of the last minute, as live traffic writes, and back-dated over 90 days;
- 1,000 concurrent runs (``RLM.arun``, 50 ms of model latency) without handlers, with four
  handlers, and with four handlers and a budget (see ``_burst.py``);
- on PostgreSQL, the share of HOT updates of ``conversations`` while 2,000 messages are
  written (``pg_stat_user_tables``), and the growth of its indexes, with ``updated_at`` moved
  by every write and at most once a minute (``PostgresConversationStore.touch_every``, the
  default).

Conversations and messages are made in SQL (fast at any size); the ledger is written through
``UsageLedger.record``, so its totals are the ones the library keeps.

    python bench/scale.py                        # 10^4 and 10^5: a few minutes
    python bench/scale.py --sizes 10000,100000,1000000
    python bench/scale.py --no-postgres
    python bench/scale.py --burst-only          # the 1,000 concurrent runs alone
    python bench/scale.py --cli-only            # CLI start-up alone
    python bench/scale.py --writes-only --sizes 10000,100000,1000000

``--writes-only``: SQLite ledger writes alone, the ledger and its totals filled in SQL (a few
minutes at 10^6 instead of an hour through ``record``).

CLI start-up (``--cli-only``): ``hookwire --help``, and ``hookwire costs`` (table and
``--json``) on a 50-call SQLite file, each run ``--cli-runs`` times as a new process: the median
wall time and the median CPU time (user + system, from ``getrusage``; what load does not
inflate).

Query plans of the PostgreSQL reads are in ``bench/pg_plans.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import closing
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import _burst
from _postgres import SERVER, server_up
from hookwire.stores import engine, runner
from hookwire.stores.conversations import ConversationStore
from hookwire.stores.ledger import UsageLedger, UsageRecord
from hookwire.stores.ledger.records import SCOPES
from hookwire.stores.ledger.rollups import DAY_MONTH_SCOPES

UTC = timezone.utc
NOW = datetime.now(UTC)
GROUPINGS: list[tuple[str, list[str], dict[str, Any]]] = [
    ("costs", [], {}),
    ("costs --by user", ["user"], {}),
    ("costs --by org", ["org"], {}),
    ("costs --by agent", ["agent"], {}),
    ("costs --by model", ["model"], {}),
    ("costs --by provider", ["provider"], {}),
    ("costs --by day", ["day"], {}),
    ("costs --by month", ["month"], {}),
    ("costs --by user --since 7d", ["user"], {"since": NOW - timedelta(days=7)}),
]


def _records(
    n: int, start: int, tag: str, users: int, seconds: int = 90 * 86400
) -> list[UsageRecord]:
    """``n`` calls of ``users`` users, made over the last ``seconds``."""
    rnd = random.Random(start)
    return [
        UsageRecord(
            run_id=f"{tag}-{i}",
            created_at=NOW - timedelta(seconds=rnd.randint(0, seconds)),
            prompt_tokens=rnd.randint(10, 2000),
            completion_tokens=rnd.randint(10, 500),
            total_tokens=2500,
            cost=Decimal(rnd.randint(1, 10**5)).scaleb(-8),
            user_id=f"user-{rnd.randrange(users)}",
            org_id=f"org-{rnd.randrange(20)}",
            agent=f"agent-{rnd.randrange(5)}",
            model=f"model-{rnd.randrange(4)}",
            provider="openai",
        )
        for i in range(start, start + n)
    ]


async def _fill_ledger(ledger: UsageLedger, n: int) -> None:
    step = 20_000
    for start in range(0, n, step):
        batch = _records(min(step, n - start), start, "fill", max(1, n // 10))
        for i in range(0, len(batch), 500):
            await ledger.record(batch[i : i + 500])


_CONV_SQL = {
    "sqlite": (
        "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < :n) "
        "INSERT INTO conversations (id, realm, org_id, user_id, is_anonymous, state, "
        "created_at, updated_at, message_count) SELECT 'c' || i, 'main', 'org-' || (i % 20), "
        "'user-' || (i % :users), 0, 'normal', "
        "strftime('%Y-%m-%dT%H:%M:%S.000000+00:00', 'now', '-' || (i % 7776000) || ' seconds'), "
        "strftime('%Y-%m-%dT%H:%M:%S.000000+00:00', 'now', '-' || (i % 7776000) || ' seconds'), "
        "3 FROM s"
    ),
    "postgresql": (
        "INSERT INTO conversations (id, realm, org_id, user_id, is_anonymous, state, "
        "created_at, updated_at, message_count) SELECT 'c' || i, 'main', 'org-' || (i % 20), "
        "'user-' || (i % :users), false, 'normal', now() - (i % 7776000) * interval '1 second', "
        "now() - (i % 7776000) * interval '1 second', 3 FROM generate_series(0, :n - 1) AS i"
    ),
}
_MSG_SQL = (
    "INSERT INTO messages (id, conversation_id, sender, text, message_time, created_at) "
    "SELECT c.id || '-' || k.k, c.id, 'end_user', 'hello there', c.created_at, c.created_at "
    "FROM conversations c CROSS JOIN (SELECT 1 AS k UNION ALL SELECT 2 UNION ALL SELECT 3) k"
)


async def _fill_history(url: str, n: int) -> None:
    from sqlalchemy import text

    dialect = "sqlite" if engine.is_sqlite(url) else "postgresql"
    async with engine.get_write_engine(url).begin() as conn:
        await conn.execute(text(_CONV_SQL[dialect]), {"n": n, "users": max(1, n // 10)})
        await conn.execute(text(_MSG_SQL))
    async with engine.get_write_engine(url).connect() as conn:
        ac = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await ac.execute(text("ANALYZE"))


async def _best(rounds: int, fn: Callable[[], Awaitable[Any]]) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        await fn()
        best = min(best, time.perf_counter() - t)
    return best * 1000


async def _measure(url: str, n: int, rounds: int) -> dict[str, str]:
    out: dict[str, str] = {}
    await engine.upgrade(url)
    ledger = UsageLedger(url)
    store = ConversationStore.for_url(url)
    t = time.perf_counter()
    await _fill_history(url, n)
    await _fill_ledger(ledger, n)
    print(f"  filled {n:,} in {time.perf_counter() - t:.0f} s", file=sys.stderr)

    out["history list"] = f"{await _best(rounds, lambda: store.list_conversations(None)):.1f}"
    out["history list --user"] = (
        f"{await _best(rounds, lambda: store.list_conversations(None, user_id='user-7')):.1f}"
    )
    for name, by, kw in GROUPINGS:
        out[name] = f"{await _best(rounds, lambda: ledger.summary(by, **kw)):.1f}"  # noqa: B023
    ledger.summaries_from_totals = False  # type: ignore[attr-defined]
    out["costs --by user (ledger rows)"] = (
        f"{await _best(rounds, lambda: ledger.summary(['user'])):.1f}"
    )
    del ledger.summaries_from_totals  # type: ignore[attr-defined]

    out.update(await _write_rates(ledger, n, rounds))

    if not engine.is_sqlite(url):
        out.update(await _hot_rows(url))
    return out


async def _hot_rows(url: str) -> dict[str, str]:
    """The HOT share of ``conversations`` updates and its indexes' growth while 2,000 messages
    are written, with ``updated_at`` moved by every write and as by default."""
    out: dict[str, str] = {}
    exact = ConversationStore(url)
    exact.touch_every = 0.0  # type: ignore[attr-defined]
    hot, grown = await _hot_ratio(url, exact)
    out["HOT updates, touch_every=0"] = hot
    out["index growth (KB), touch_every=0"] = grown
    hot, grown = await _hot_ratio(url, ConversationStore(url))
    out["HOT updates, default (touch_every=60)"] = hot
    out["index growth (KB), default"] = grown
    return out


async def _hot_ratio(url: str, store: ConversationStore) -> tuple[str, str]:
    from sqlalchemy import text

    from hookwire.stores.conversations import Owner

    query = text(
        "SELECT n_tup_upd, n_tup_hot_upd, pg_indexes_size('conversations') "
        "FROM pg_stat_user_tables WHERE relname = 'conversations'"
    )

    async def stats() -> tuple[int, int, int]:
        # other backends report their counts when idle, at most once a second
        await asyncio.sleep(2.0)
        async with engine.get_engine(url).connect() as conn:
            await conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            row = (await conn.execute(query)).one()
        return int(row[0]), int(row[1]), int(row[2])

    me = Owner(user_id=f"user-hot-{uuid.uuid4().hex[:6]}", org_id="org-1", realm="main")
    ids = [await store.create_conversation(me) for _ in range(20)]
    before = await stats()
    for round_ in range(100):
        await asyncio.gather(*(store.add_message(me, cid, f"m{round_}", "end_user") for cid in ids))
    after = await stats()
    updates, hot = after[0] - before[0], after[1] - before[1]
    return f"{hot:,} of {updates:,}", f"{(after[2] - before[2]) // 1024:,}"


async def _write_rates(ledger: UsageLedger, n: int, rounds: int) -> dict[str, str]:
    """Rows/s of 2,000 new calls of the ledger's N/10 users in batches of 500 (the median of
    ``rounds``): made in the last minute (live traffic), and back-dated over 90 days."""
    out: dict[str, str] = {}
    for name, seconds in (("ledger writes (rows/s)", 60), ("back-dated (rows/s)", 90 * 86400)):
        rates = []
        for r in range(max(3, rounds)):
            fresh = _records(2000, 10**9 + r, uuid.uuid4().hex[:6], max(1, n // 10), seconds)
            t = time.perf_counter()
            for i in range(0, len(fresh), 500):
                await ledger.record(fresh[i : i + 500])
            rates.append(len(fresh) / (time.perf_counter() - t))
        out[name] = f"{statistics.median(rates):,.0f}"
    return out


def _fill_sqlite_ledger(path: str, n: int) -> None:
    """``n`` ledger rows of N/10 users over 90 days, and their totals, made in SQL: what
    ``UsageLedger.record`` would keep, in seconds instead of an hour at 10^6."""
    scopes = [(s, c, ("day", "month", "all")) for s, c in SCOPES.items()]
    scopes += [(s, c, ("day", "month")) for s, c in DAY_MONTH_SCOPES.items()]
    start = {"day": "substr(created_at, 1, 10)", "month": "substr(created_at, 1, 7)", "all": "''"}
    with closing(sqlite3.connect(path)) as con:
        con.execute(_LEDGER_SQL, (n, max(1, n // 10)))
        for scope, column, periods in scopes:
            for p in periods:
                con.execute(_TOTALS_SQL.format(scope, column or "''", p, start[p]))
        con.commit()


_LEDGER_SQL = (
    "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < ?) "
    "INSERT INTO usage_ledger (run_id, created_at, user_id, org_id, agent, model, provider, "
    "prompt_tokens, completion_tokens, total_tokens, cost, currency, source) "
    "SELECT 'fill-' || i, strftime('%Y-%m-%dT%H:%M:%S.000000+00:00', 'now', "
    "'-' || (abs(random()) % 7776000) || ' seconds'), 'user-' || (abs(random()) % ?), "
    "'org-' || (i % 20), 'agent-' || (i % 5), 'model-' || (i % 4), 'openai', 100, 50, 150, "
    "1000000, 'USD', 'auto' FROM s"
)
_TOTALS_SQL = (
    "INSERT INTO usage_totals (scope, key, period, period_start, currency, calls, prompt_tokens, "
    "completion_tokens, cost, total_tokens) SELECT '{0}', {1}, '{2}', {3}, currency, count(*), "
    "sum(prompt_tokens), sum(completion_tokens), sum(cost), sum(total_tokens) "
    "FROM usage_ledger GROUP BY 2, 4, 5"
)


def _writes(sizes: list[int], rounds: int) -> dict[tuple[str, int], dict[str, str]]:
    results: dict[tuple[str, int], dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as directory:
        for n in sizes:
            url = _sqlite_url(directory, n)
            runner.run_sync(engine.upgrade(url), None)
            _fill_sqlite_ledger(url.split("///", 1)[1], n)
            rates = runner.run_sync(_write_rates(UsageLedger(url), n, rounds), None)
            results[("SQLite", n)] = {**rates, "load average": f"{os.getloadavg()[0]:.1f}"}
            print(f"  {n:,}: {results[('SQLite', n)]}", file=sys.stderr)
            runner.run_sync(engine.dispose_engines(), 30)
    return results


def _sqlite_url(directory: str, n: int) -> str:
    return f"sqlite+aiosqlite:///{directory}/scale-{n}.db"


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(sql.encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated row counts")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--burst-only", action="store_true", help="only 1,000 concurrent runs")
    parser.add_argument("--writes-only", action="store_true", help="only SQLite ledger writes")
    parser.add_argument("--cli-only", action="store_true", help="only CLI start-up")
    parser.add_argument("--cli-runs", type=int, default=11)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.cli_only:
        _print({("CLI", 0): _cli(args.cli_runs)})
        return
    if args.writes_only:
        _print(_writes(sizes, args.rounds))
        return
    if args.burst_only:
        _print(_bursts(not args.no_postgres and server_up(), args.rounds))
        return
    postgres = not args.no_postgres and server_up()
    results: dict[tuple[str, int], dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as directory:
        for n in sizes:
            print(f"SQLite, {n:,}", file=sys.stderr)
            url = _sqlite_url(directory, n)
            results[("SQLite", n)] = runner.run_sync(_measure(url, n, args.rounds), None)
            results[("SQLite", n)].update(asyncio.run(_burst.measure(url, args.rounds)))
            print(f"  {results[('SQLite', n)]}", file=sys.stderr)  # kept if a later size fails
            os.remove(url.split("///", 1)[1])
            if postgres:
                print(f"PostgreSQL, {n:,}", file=sys.stderr)
                name = f"hookwire_scale_{uuid.uuid4().hex[:8]}"
                _pg_admin(f'CREATE DATABASE "{name}"')
                pg = SERVER.replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
                try:
                    results[("PostgreSQL", n)] = runner.run_sync(_measure(pg, n, args.rounds), None)
                    results[("PostgreSQL", n)].update(asyncio.run(_burst.measure(pg, args.rounds)))
                    print(f"  {results[('PostgreSQL', n)]}", file=sys.stderr)
                finally:
                    runner.run_sync(engine.dispose_engines(), 30)
                    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _print(results)


def _bursts(postgres: bool, rounds: int) -> dict[tuple[str, int], dict[str, str]]:
    """The 1,000 concurrent runs alone, on a new SQLite file and PostgreSQL database."""
    results: dict[tuple[str, int], dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as directory:
        url = _sqlite_url(directory, 0)
        runner.run_sync(engine.upgrade(url), None)
        results[("SQLite", 0)] = asyncio.run(_burst.measure(url, rounds))
    if postgres:
        name = f"hookwire_scale_{uuid.uuid4().hex[:8]}"
        _pg_admin(f'CREATE DATABASE "{name}"')
        pg = SERVER.replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
        try:
            runner.run_sync(engine.upgrade(pg), None)
            results[("PostgreSQL", 0)] = asyncio.run(_burst.measure(pg, rounds))
        finally:
            runner.run_sync(engine.dispose_engines(), 30)
            _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return results


def _run_cli(argv: list[str], pycache: str) -> tuple[float, float]:
    """Wall and CPU seconds of one ``hookwire`` process."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    # with bytecode, as an installed package has it (pip compiles it)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = pycache
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "from hookwire.cli import main; main()", *argv],
        check=True,
        stdout=subprocess.DEVNULL,
        env=env,
    )
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _cli(runs: int) -> dict[str, str]:
    """``hookwire --help`` and ``hookwire costs`` on a small SQLite file: median ms."""
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as directory:
        url = _sqlite_url(directory, 50)
        runner.run_sync(UsageLedger(url).record(_records(50, 0, "cli", 5)), None)
        commands = {
            "hookwire --help": ["--help"],
            "hookwire costs --by user (table)": ["costs", "--by", "user", "--db", url],
            "hookwire costs --by user --json": ["costs", "--by", "user", "--json", "--db", url],
        }
        for name, argv in commands.items():
            _run_cli(argv, directory)  # compiled, cached
            times = [_run_cli(argv, directory) for _ in range(runs)]
            wall = statistics.median(w for w, _ in times) * 1000
            cpu = statistics.median(c for _, c in times) * 1000
            out[f"{name}: wall / CPU"] = f"{wall:.0f} / {cpu:.0f}"
    return out


def _print(results: dict[tuple[str, int], dict[str, str]]) -> None:
    columns = list(results)
    rows: list[str] = []
    for figures in results.values():
        rows.extend(r for r in figures if r not in rows)
    head = ["ms (best round)", *(f"{db} {n:,}" for db, n in columns)]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [results[c].get(r, "") for c in columns]
        print(f"| {r} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
