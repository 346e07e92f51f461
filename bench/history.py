"""Chat history: hookwire's ChatHistoryCallbackHandler vs langchain's SQLChatMessageHistory.

Run from the repository root:

    PYTHONPATH=src python bench/history.py [--messages 4000] [--details 10000] [--no-postgres]

Both libraries write to the same kind of database in this one process: an SQLite file each
(WAL, as hookwire sets it up; langchain's default otherwise), and a fresh PostgreSQL database
on 127.0.0.1:5432 (created and dropped here; skipped if the server is not there). Every write
is a committed transaction before the call returns, for both.

- ``send_message`` with 8 concurrent writers (asyncio tasks) vs ``add_message`` with 8
  threads (sync engine) and ``aadd_message`` with 8 asyncio tasks (async engine): messages/s.
- one writer at a time: messages/s.
- reading a whole 10,000-message conversation: ``get_conversation_details`` vs ``.messages``
  (sync) / ``aget_messages()`` (async): milliseconds, best and median of 9 (the previous
  read's result freed before each is timed). "Cold" is a new store in this process (engine,
  schema check and imports already done: nothing of the conversation cached, a new SQLite
  connection); "first read of a new process" is the first
  call in a child process that has only imported hookwire, so it also pays the schema check,
  the engine and its dialect's import and the first connection.

Targets (issue 5): >= 3,000 msg/s on SQLite and >= 2,000 msg/s on PostgreSQL with 8 writers,
>= 3x langchain's add_message, and a 10,000-message conversation read within 50 ms.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore")  # langchain's deprecation notices are not the point here

from _postgres import fresh_database, server_up  # noqa: E402
from _timing import options  # noqa: E402
from hookwire.callbacks.chat_history import ChatHistoryCallbackHandler  # noqa: E402
from hookwire.stores import engine, runner  # noqa: E402

WRITERS = 8


def _row(name: str, *cells: str) -> None:
    print(f"| {name:<58} | " + " | ".join(f"{c:>12}" for c in cells) + " |")


async def hookwire_concurrent(url: str, total: int) -> float:
    chat = ChatHistoryCallbackHandler(
        user_data={"user_id": f"bench-{uuid.uuid4().hex[:6]}"}, database_url=url
    )
    cid = await chat.create_conversation()
    await chat.send_message(cid, "warm-up", "end_user")
    per = total // WRITERS

    async def writer(k: int) -> None:
        parent = None
        for i in range(per):
            parent = await chat.send_message(
                cid,
                f"writer {k} message {i}",
                "end_user" if i % 2 == 0 else "assistant",
                parent_message_id=parent,
                metadata=[],
            )

    start = time.perf_counter()
    await asyncio.gather(*(writer(k) for k in range(WRITERS)))
    return per * WRITERS / (time.perf_counter() - start)


async def hookwire_sequential(url: str, total: int) -> float:
    chat = ChatHistoryCallbackHandler(user_data={"user_id": "bench-seq"}, database_url=url)
    cid = await chat.create_conversation()
    await chat.send_message(cid, "warm-up", "end_user")
    start = time.perf_counter()
    for i in range(total):
        await chat.send_message(cid, f"message {i}", "end_user")
    return total / (time.perf_counter() - start)


def _lc_messages() -> tuple[Any, Any]:
    from langchain_core.messages import AIMessage, HumanMessage

    return HumanMessage, AIMessage


def langchain_threads(url: str, total: int) -> float:
    from langchain_community.chat_message_histories import SQLChatMessageHistory

    human, ai = _lc_messages()
    session = f"s-{uuid.uuid4().hex[:8]}"
    history = SQLChatMessageHistory(
        session_id=session,
        connection=url,
        engine_args={"pool_size": WRITERS} if "postgres" in url else None,
    )
    history.add_message(human("warm-up"))
    per = total // WRITERS

    def writer(k: int) -> None:
        for i in range(per):
            history.add_message((human if i % 2 == 0 else ai)(f"writer {k} message {i}"))

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(WRITERS) as pool:
        list(pool.map(writer, range(WRITERS)))
    return per * WRITERS / (time.perf_counter() - start)


async def langchain_async(url: str, total: int) -> float:
    from langchain_community.chat_message_histories import SQLChatMessageHistory
    from sqlalchemy.ext.asyncio import create_async_engine

    human, ai = _lc_messages()
    eng = create_async_engine(url)
    history = SQLChatMessageHistory(session_id=f"s-{uuid.uuid4().hex[:8]}", connection=eng)
    await history.aadd_messages([human("warm-up")])
    per = total // WRITERS

    async def writer(k: int) -> None:
        for i in range(per):
            await history.aadd_message((human if i % 2 == 0 else ai)(f"writer {k} message {i}"))

    start = time.perf_counter()
    try:
        await asyncio.gather(*(writer(k) for k in range(WRITERS)))
        return per * WRITERS / (time.perf_counter() - start)
    finally:
        await eng.dispose()


def langchain_sequential(url: str, total: int) -> float:
    from langchain_community.chat_message_histories import SQLChatMessageHistory

    human, _ = _lc_messages()
    history = SQLChatMessageHistory(session_id=f"s-{uuid.uuid4().hex[:8]}", connection=url)
    history.add_message(human("warm-up"))
    start = time.perf_counter()
    for i in range(total):
        history.add_message(human(f"message {i}"))
    return total / (time.perf_counter() - start)


async def _timed(fn: Callable[[], Awaitable[Any]], repeat: int = 9) -> tuple[float, float, Any]:
    times = []
    result = None
    for _ in range(repeat):
        # The last read's result is let go before the clock starts: freeing 10,000 messages
        # (5 to 15 ms) is not part of the next read, as in an app that drops a result when
        # its request ends.
        result = None
        start = time.perf_counter()
        result = await fn()
        times.append((time.perf_counter() - start) * 1000)
    return min(times), statistics.median(times), result


async def details_read(url: str, count: int) -> tuple[float, float, float, float, float, float]:
    from hookwire.stores.conversations import ConversationStore

    chat = ChatHistoryCallbackHandler(user_data={"user_id": "bench-read"}, database_url=url)
    cid = await chat.create_conversation()
    batch = 500
    for start in range(0, count, batch):
        await asyncio.gather(
            *(
                chat.send_message(
                    cid, f"message {i} " + "lorem ipsum " * 8, "end_user", metadata={"i": i}
                )
                for i in range(start, min(count, start + batch))
            )
        )

    async def cold() -> Any:
        # a store of its own: nothing of this conversation is cached yet
        fresh = ChatHistoryCallbackHandler(
            user_data={"user_id": "bench-read"}, store=ConversationStore(url)
        )
        return await fresh.get_conversation_details(cid)

    cold_best, cold_median, details = await _timed(cold)
    assert len(details["messages"]) == count
    await chat.get_conversation_details(cid)
    warm_best, warm_median, details = await _timed(lambda: chat.get_conversation_details(cid))
    assert len(details["messages"]) == count
    firsts = [_first_read_in_a_new_process(url, cid, count) for _ in range(FIRST_READS)]
    return cold_best, cold_median, warm_best, warm_median, min(firsts), statistics.median(firsts)


FIRST_READS = 5
# The first read of a process that has only imported hookwire: the handler's first
# get_conversation_details, which also checks the schema, creates the engine (importing the
# dialect) and opens the connection. Timed inside the child, printed in ms.
_FIRST_READ = """
import asyncio, sys, time
from hookwire.callbacks.chat_history import ChatHistoryCallbackHandler
url, cid, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
async def main():
    chat = ChatHistoryCallbackHandler(user_data={"user_id": "bench-read"}, database_url=url)
    start = time.perf_counter()
    details = await chat.get_conversation_details(cid)
    took = (time.perf_counter() - start) * 1000
    assert len(details["messages"]) == count
    print(took)
asyncio.run(main())
"""


def _first_read_in_a_new_process(url: str, cid: str, count: int) -> float:
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", _FIRST_READ, url, cid, str(count)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.split()[-1])


async def langchain_read(url: str, count: int, async_url: str | None) -> tuple[float, float]:
    from langchain_community.chat_message_histories import SQLChatMessageHistory

    human, _ = _lc_messages()
    history = SQLChatMessageHistory(session_id=f"r-{uuid.uuid4().hex[:8]}", connection=url)
    for start in range(0, count, 1000):
        history.add_messages(
            [
                human(f"message {i} " + "lorem ipsum " * 8)
                for i in range(start, min(count, start + 1000))
            ]
        )

    async def read() -> Any:
        return await asyncio.to_thread(lambda: history.messages)

    best, median, msgs = await _timed(read)
    assert len(msgs) == count
    return best, median


def run_backend(
    label: str, hw_url: str, lc_sync_url: str, lc_async_url: str, total: int, details: int
) -> dict[str, float]:
    runner.run_sync(engine.upgrade(hw_url), timeout=120)
    out: dict[str, float] = {}
    out["hw_conc"] = asyncio.run(hookwire_concurrent(hw_url, total))
    out["lc_threads"] = langchain_threads(lc_sync_url, total)
    out["lc_async"] = asyncio.run(langchain_async(lc_async_url, total))
    out["hw_seq"] = asyncio.run(hookwire_sequential(hw_url, total // 8))
    out["lc_seq"] = langchain_sequential(lc_sync_url, total // 8)
    (
        out["hw_read_best"],
        out["hw_read_med"],
        out["hw_warm_best"],
        out["hw_warm_med"],
        out["hw_first_best"],
        out["hw_first_med"],
    ) = asyncio.run(details_read(hw_url, details))
    out["lc_read_best"], out["lc_read_med"] = asyncio.run(
        langchain_read(lc_sync_url, details, None)
    )
    lc_best = max(out["lc_threads"], out["lc_async"])
    print(f"\n### {label}\n")
    _row("operation", "hookwire", "langchain", "ratio")
    print("|" + "-" * 60 + "|" + "|".join("-" * 14 for _ in range(3)) + "|")
    _row(
        f"messages/s, {WRITERS} writers (langchain: threads)",
        f"{out['hw_conc']:,.0f}",
        f"{out['lc_threads']:,.0f}",
        f"{out['hw_conc'] / out['lc_threads']:.1f}x",
    )
    _row(
        f"messages/s, {WRITERS} writers (langchain: async engine)",
        f"{out['hw_conc']:,.0f}",
        f"{out['lc_async']:,.0f}",
        f"{out['hw_conc'] / out['lc_async']:.1f}x",
    )
    _row(
        "messages/s, one writer",
        f"{out['hw_seq']:,.0f}",
        f"{out['lc_seq']:,.0f}",
        f"{out['hw_seq'] / out['lc_seq']:.1f}x",
    )
    _row(
        f"read a {details:,}-message conversation (cold), best ms",
        f"{out['hw_read_best']:.1f}",
        f"{out['lc_read_best']:.1f}",
        f"{out['lc_read_best'] / out['hw_read_best']:.1f}x",
    )
    _row(
        f"read a {details:,}-message conversation (cold), median ms",
        f"{out['hw_read_med']:.1f}",
        f"{out['lc_read_med']:.1f}",
        f"{out['lc_read_med'] / out['hw_read_med']:.1f}x",
    )
    _row(
        f"first read of a new process ({FIRST_READS} processes), best ms",
        f"{out['hw_first_best']:.1f}",
        "",
        "",
    )
    _row(
        f"first read of a new process ({FIRST_READS} processes), median ms",
        f"{out['hw_first_med']:.1f}",
        "",
        "",
    )
    _row(
        "read it again (hookwire fetches only what is new), best ms",
        f"{out['hw_warm_best']:.1f}",
        f"{out['lc_read_best']:.1f}",
        f"{out['lc_read_best'] / out['hw_warm_best']:.1f}x",
    )
    _row(
        "read it again, median ms",
        f"{out['hw_warm_med']:.1f}",
        f"{out['lc_read_med']:.1f}",
        f"{out['lc_read_med'] / out['hw_warm_med']:.1f}x",
    )
    target = 3000 if label.startswith("SQLite") else 2000
    print(
        f"\ntargets: {WRITERS}-writer rate {out['hw_conc']:,.0f} msg/s vs >= {target:,} "
        f"({'met' if out['hw_conc'] >= target else 'NOT met'}); vs best langchain "
        f"{out['hw_conc'] / lc_best:.1f}x (>= 3x: {'met' if out['hw_conc'] >= 3 * lc_best else 'NOT met'}); "
        f"read {out['hw_read_med']:.1f} ms cold (new store), {out['hw_first_med']:.1f} ms "
        f"first in a new process, {out['hw_warm_med']:.1f} ms again, medians (<= 50 ms)"
    )
    return out


def main() -> None:
    parser = options(__doc__)
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--details", type=int, default=10_000)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores; {args.messages:,} messages "
        f"per write test, {WRITERS} writers"
    )
    with tempfile.TemporaryDirectory() as tmp:
        hw = Path(tmp) / "hookwire.db"
        lc = Path(tmp) / "langchain.db"
        import sqlite3

        # the same journal mode for both (WAL is a property of the file)
        sqlite3.connect(lc).execute("PRAGMA journal_mode=WAL").close()
        run_backend(
            "SQLite (a file each)",
            f"sqlite:///{hw}",
            f"sqlite:///{lc}",
            f"sqlite+aiosqlite:///{lc}",
            args.messages,
            args.details,
        )
    if args.no_postgres or not server_up():
        print("\n(PostgreSQL skipped)")
        return
    with fresh_database() as url:
        where = url.split("://", 1)[1]
        try:
            run_backend(
                "PostgreSQL (one fresh database, both libraries)",
                url,
                f"postgresql+psycopg://{where}",
                f"postgresql+asyncpg://{where}",
                args.messages,
                args.details,
            )
        finally:
            runner.run_sync(engine.dispose_engines(), timeout=30)


if __name__ == "__main__":
    main()
