"""``TraceStoreCallback`` when its database cannot take spans: PostgreSQL down and back
(a TCP proxy, ``pg_proxy``), PostgreSQL unreachable for good, SQLite on a full disk. The
spans are kept within the queue's bound and written once the database is back; beyond the
bound events are dropped and counted, never waited for; the outage is logged once.

Figures are printed (run with ``-s``); only bounds that cannot flake are asserted."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from app_turn import turn

from hookwire import CallbackManager
from hookwire.callbacks import TraceStoreCallback
from hookwire.callbacks.trace_store import PUT_WAIT
from hookwire.stores import runner
from hookwire.stores.traces import TraceStore

# The app's call never waits for the database: at most one event waits PUT_WAIT for room
# (before the writer knows the database is away); the rest is Python. Generous, never tight.
CALL_BOUND = PUT_WAIT + 2.0
SPANS_PER_TURN = 2  # a run and its LLM call


class App:
    """An app recording its turns as spans."""

    def __init__(self, url: str, **options: Any) -> None:
        self.traces = TraceStoreCallback(url, **options)
        self.manager = CallbackManager([self.traces])
        self.slowest = 0.0
        self.turns = 0

    def turn(self) -> None:
        self.slowest = max(self.slowest, turn(self.manager, self.turns))
        self.turns += 1

    def flush(self, timeout: float) -> bool:
        return self.traces.flush(timeout)


@pytest.fixture
def pg_traces(pg_database_url: str) -> Iterator[str]:
    """The session's PostgreSQL database, its spans deleted afterwards (those of calls whose
    run was dropped too: no other test's health view should count them)."""
    yield pg_database_url
    later = datetime.now(timezone.utc) + timedelta(seconds=1)
    runner.run_sync(TraceStore(pg_database_url).prune(before=later))


def stored(url: str) -> int:
    return runner.run_sync(TraceStore(url).count())


def outage_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and "could not record spans" in r.getMessage()
    ]


@pytest.mark.postgres
def test_a_postgres_down_and_back_loses_no_span(
    pg_traces: str, pg_proxy: Any, caplog: pytest.LogCaptureFixture
) -> None:
    pg_database_url = pg_traces
    caplog.set_level(logging.DEBUG, logger="hookwire")
    before = stored(pg_database_url)
    app = App(pg_proxy.url(pg_database_url))
    app.turn()
    assert app.flush(30)
    pg_proxy.cut()
    down = 40
    for _ in range(down):
        app.turn()
    assert not app.flush(1.0)  # kept, not written: the database is down
    assert app.traces.failing
    pg_proxy.restore()
    assert app.flush(60)
    written = stored(pg_database_url) - before
    print(
        f"\nFIGURES traces outage: {down} turns while PostgreSQL was down; slowest app call "
        f"{app.slowest * 1000:.1f} ms; {written} spans of {SPANS_PER_TURN * (down + 1)} after"
    )
    assert written == SPANS_PER_TURN * (down + 1)
    assert app.manager.stats()["dropped"].get("TraceStoreCallback", 0) == 0
    assert app.slowest < CALL_BOUND
    assert len(outage_logs(caplog)) == 1  # once, not once per try
    assert any("records spans again" in r.getMessage() for r in caplog.records)


@pytest.mark.postgres
def test_an_unreachable_postgres_drops_and_counts_beyond_the_bound(
    pg_traces: str, pg_proxy: Any, caplog: pytest.LogCaptureFixture
) -> None:
    pg_database_url = pg_traces
    caplog.set_level(logging.DEBUG, logger="hookwire")
    app = App(pg_proxy.url(pg_database_url), queue_size=50)
    app.turn()
    assert app.flush(30)
    pg_proxy.cut()
    turns = 100  # 400 events: far beyond the 50 kept
    for _ in range(turns):
        app.turn()
    dropped = app.manager.stats()["dropped"].get("TraceStoreCallback", 0)
    print(
        f"\nFIGURES traces unreachable: {turns} turns; slowest app call "
        f"{app.slowest * 1000:.1f} ms; dropped {dropped} events"
    )
    assert app.slowest < CALL_BOUND  # never waited for room
    assert dropped > 0  # the bound held
    assert len(outage_logs(caplog)) == 1
    app.traces.give_up(10)  # closing for good: what is kept is counted as lost
    assert app.traces.pending == 0 and app.traces.dropped > dropped
    pg_proxy.restore()


def test_a_full_disk_loses_no_span_on_sqlite(small_disk: Any) -> None:
    url = f"sqlite+aiosqlite:///{small_disk.path / 'traces.db'}"
    app = App(url)
    app.turn()
    assert app.flush(30)
    small_disk.fill()
    full = 60
    for _ in range(full):
        app.turn()
    assert not app.flush(1.0)  # kept, waiting for space
    small_disk.free()
    assert app.flush(60)
    written = stored(url)
    print(
        f"\nFIGURES traces disk full (SQLite): {full} turns while full; slowest app call "
        f"{app.slowest * 1000:.1f} ms; {written} spans of {SPANS_PER_TURN * (full + 1)} after"
    )
    assert written == SPANS_PER_TURN * (full + 1)
    assert app.traces.dropped == 0
    assert app.slowest < CALL_BOUND
    app.turn()  # and it goes on as before
    assert app.flush(30) and stored(url) == SPANS_PER_TURN * (full + 2)
