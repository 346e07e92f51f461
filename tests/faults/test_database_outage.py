"""A PostgreSQL that goes down and comes back, and one that never answers, faked by a TCP
proxy in front of the real server (``pg_proxy``): the app's calls return without waiting
for it, chat turns and usage rows are kept (within their bounds, the rest counted) and
written once it is back, and the log file goes on meanwhile.

The figures (the app's slowest call while the database is away, what was kept and written)
are printed; run with ``-s`` to see them. Only bounds that cannot flake are asserted."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from app_turn import turn

from hookwire import CallbackManager
from hookwire.callbacks import ChatHistoryCallbackHandler, FileLogCallback
from hookwire.callbacks.accounting import AccountingCallbackHandler
from hookwire.callbacks.accounting.ledger_queue import PUT_WAIT
from hookwire.errors import StoreError
from hookwire.stores import runner
from hookwire.stores.ledger import UsageLedger

pytestmark = pytest.mark.postgres

# The app's call never waits for the database: at most one usage row waits PUT_WAIT for room
# (before the queue knows the database is stuck); the rest is Python. Generous, never tight.
CALL_BOUND = PUT_WAIT + 2.0


class App:
    """An app's handlers on one database: chat history, accounting and a log file."""

    def __init__(self, url: str, log: Path, **chat: Any) -> None:
        self.user = f"outage-{uuid.uuid4().hex[:10]}"
        self.chat = ChatHistoryCallbackHandler(
            user_data={"user_id": self.user}, conversation_id=self.user, database_url=url, **chat
        )
        self.accounting = AccountingCallbackHandler(user_id=self.user, database_url=url)
        self.log = FileLogCallback(log)
        self.manager = CallbackManager([self.chat, self.accounting, self.log])
        self.slowest = 0.0
        self.calls = 0

    def turn(self) -> None:
        """One turn of the app: a run around an LLM call; times the whole of it."""
        self.slowest = max(self.slowest, turn(self.manager, self.calls))
        self.calls += 1

    def stored(self, direct_url: str) -> tuple[int, int]:
        """Messages and usage rows in the database (read without the proxy)."""
        reader = ChatHistoryCallbackHandler(
            user_data={"user_id": self.user}, database_url=direct_url
        )
        messages = reader.get_conversation_details_sync(self.user)["message_count"]
        rows = runner.run_sync(UsageLedger(direct_url).records(user_id=self.user, limit=10**6))
        return int(messages), len(rows)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines() if line]


def test_a_postgres_that_goes_down_and_comes_back_loses_no_turn_and_no_usage_row(
    pg_database_url: str, pg_proxy: Any, tmp_path: Path
) -> None:
    app = App(pg_proxy.url(pg_database_url), tmp_path / "app.jsonl")
    app.turn()
    assert app.manager.flush(30)
    pg_proxy.cut()
    down = 40
    for _ in range(down):
        app.turn()
    slowest_down = app.slowest
    assert not app.manager.flush(0.5)  # kept, not written: the database is down
    kept = app.manager.stats()["queued"]
    started = time.monotonic()
    with pytest.raises(StoreError):  # a read reports the outage, without waiting for writes
        app.chat.get_conversation_details_sync(app.user)
    read_failed_in = time.monotonic() - started
    pg_proxy.restore()
    assert app.manager.flush(60)
    messages, rows = app.stored(pg_database_url)
    print(
        f"\nFIGURES outage: {down} turns while PostgreSQL was down; slowest app call "
        f"{slowest_down * 1000:.1f} ms; queued while down {kept}; a read failed in "
        f"{read_failed_in * 1000:.0f} ms; after it came back "
        f"{messages} messages of {2 * (down + 1)}, {rows} usage rows of {down + 1}"
    )
    assert messages == 2 * (down + 1)
    assert rows == down + 1
    assert len(_lines(tmp_path / "app.jsonl")) == 4 * (down + 1)  # the log never stopped
    stats = app.manager.stats()
    assert not any(stats["dropped"].values()), stats
    assert slowest_down < CALL_BOUND


def test_a_postgres_that_never_answers_holds_the_app_up_at_most_its_bounds(
    pg_database_url: str,
    pg_proxy: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Small bounds, so that the stall outlasts them: what is beyond is dropped and counted,
    # never waited for.
    monkeypatch.setenv("HOOKWIRE_LEDGER_MAX_PENDING", "20")
    app = App(pg_proxy.url(pg_database_url), tmp_path / "app.jsonl", max_pending=30)
    app.turn()
    assert app.manager.flush(30)
    pg_proxy.stall()
    stalled = 60
    started = time.monotonic()
    for _ in range(stalled):
        app.turn()
    took = time.monotonic() - started
    dropped = app.manager.stats()["dropped"]
    pg_proxy.restore()
    assert app.manager.flush(60)
    messages, rows = app.stored(pg_database_url)
    chat_dropped = dropped.get("ChatHistoryCallbackHandler", 0)
    ledger_dropped = dropped.get("AccountingCallbackHandler", 0)
    print(
        f"\nFIGURES stall: {stalled} turns while PostgreSQL never answered, in {took:.2f} s; "
        f"slowest app call {app.slowest * 1000:.1f} ms; dropped {dropped}; after it answered "
        f"again {messages} messages, {rows} usage rows"
    )
    assert app.slowest < CALL_BOUND
    assert chat_dropped > 0  # the bound held ...
    assert ledger_dropped > 0
    assert messages == 2 * (stalled + 1) - chat_dropped  # ... and everything kept was written
    assert rows == stalled + 1 - ledger_dropped
    assert len(_lines(tmp_path / "app.jsonl")) == 4 * (stalled + 1)
