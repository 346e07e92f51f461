"""The ledger's queue: poison rows isolated, costs out of range kept as unknown, a bound
during an outage, and a close that gives up only the rows queued then."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest
import sqlalchemy.exc

from hookwire.callbacks.accounting.ledger_queue import (
    Failure,
    LedgerQueue,
    failure_kind,
    max_pending,
)
from hookwire.errors import ConfigurationError, StoreError
from hookwire.stores import runner
from hookwire.stores.ledger import UsageLedger, UsageRecord

# Nothing listens on port 1: every connection is refused at once.
UNREACHABLE = "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"


@pytest.fixture
def queue(db_url: str, caplog: pytest.LogCaptureFixture) -> LedgerQueue:
    """A ledger's queue of its own (the errors it logs captured)."""
    caplog.set_level(logging.ERROR, logger="hookwire")
    return LedgerQueue(UsageLedger(db_url))


def row(user: str, i: int, **fields: object) -> UsageRecord:
    values: dict[str, object] = {
        "run_id": f"{user}-{i}",
        "created_at": datetime.now(timezone.utc),
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "cost": Decimal("0.01"),
        "user_id": user,
    }
    values.update(fields)
    return UsageRecord(**values)  # type: ignore[arg-type]


def test_a_cost_the_ledger_cannot_hold_is_recorded_as_unknown_and_the_rows_behind_it_are_written(
    queue: LedgerQueue, caplog: pytest.LogCaptureFixture
) -> None:
    # A server reporting 3.7e12 tokens gives a cost beyond the column (SQLite: 9.2 million
    # units; PostgreSQL: 10^26): the call is kept, its cost unknown, never a wrong cost.
    user = uuid.uuid4().hex
    queue.put(row(user, 0))
    queue.put(row(user, 1, cost=Decimal("3.7e30"), prompt_tokens=3_700_000_000_000))
    queue.put(row(user, 2, cost=Decimal("NaN")))
    queue.put(row(user, 3))
    assert queue.flush(30)
    rows = runner.run_sync(queue.ledger.records(user_id=user))
    assert [(r.run_id, r.cost) for r in rows] == [
        (f"{user}-0", Decimal("0.01")),
        (f"{user}-1", None),
        (f"{user}-2", None),
        (f"{user}-3", Decimal("0.01")),
    ]
    assert rows[1].prompt_tokens == 3_700_000_000_000
    assert queue.dropped == 0
    logged = [r for r in caplog.records if "cost unknown" in r.getMessage()]
    assert len(logged) == 1  # once, then at debug level


def test_a_row_the_database_refuses_is_dropped_alone_counted_and_logged_once(
    queue: LedgerQueue, caplog: pytest.LogCaptureFixture
) -> None:
    # Token counts beyond 64 bits: SQLite's driver and PostgreSQL's bigint both refuse them.
    user = uuid.uuid4().hex
    for i, fields in enumerate(
        [{}, {"prompt_tokens": 2**64}, {}, {"completion_tokens": 2**70}, {}],
    ):
        queue.put(row(user, i, **fields))
    assert queue.flush(30)
    rows = runner.run_sync(queue.ledger.records(user_id=user))
    assert [r.run_id for r in rows] == [f"{user}-0", f"{user}-2", f"{user}-4"]
    assert queue.dropped == 2
    assert not queue.failing
    assert len([r for r in caplog.records if "refuses a usage row" in r.getMessage()]) == 1
    # The writer goes on: later rows are written too.
    queue.put(row(user, 5))
    assert queue.flush(30)
    assert len(runner.run_sync(queue.ledger.records(user_id=user))) == 4


def test_failure_kind_tells_an_outage_from_a_refused_row() -> None:
    def wrapped(orig: BaseException, cls: type[sqlalchemy.exc.DBAPIError]) -> StoreError:
        error = StoreError("writing usage failed")
        error.__cause__ = cls("INSERT ...", {}, orig)
        return error

    assert failure_kind(wrapped(OSError("refused"), sqlalchemy.exc.OperationalError)) is (
        Failure.UNAVAILABLE
    )
    assert failure_kind(wrapped(ValueError("22003"), sqlalchemy.exc.DataError)) is (Failure.REFUSED)
    assert failure_kind(OverflowError("Python int too large")) is Failure.REFUSED
    assert failure_kind(ConnectionRefusedError()) is Failure.UNAVAILABLE
    # A store's own timeout says nothing more: the database may be down.
    assert failure_kind(StoreError("did not finish within 30 s")) is Failure.UNAVAILABLE
    assert failure_kind(RuntimeError("something else")) is Failure.UNKNOWN


def test_an_unreachable_ledger_keeps_at_most_its_bound_and_counts_the_rest(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HOOKWIRE_LEDGER_MAX_PENDING", "50")
    queue = LedgerQueue(UsageLedger(UNREACHABLE))
    user = uuid.uuid4().hex
    try:
        with caplog.at_level(logging.ERROR, logger="hookwire"):
            for i in range(300):
                queue.put(row(user, i))
            assert not queue.flush(0.2)
        # At most the bound is queued, plus the batch being retried (itself at most the
        # bound); every other row is counted.
        assert queue.pending <= 100
        assert queue.pending + queue.dropped == 300
        assert queue.dropped >= 200
        assert len([r for r in caplog.records if "queue is full" in r.getMessage()]) == 1
    finally:
        queue.give_up(5.0)
    assert queue.pending == 0
    assert queue.dropped == 300


def test_giving_up_on_close_drops_only_the_rows_queued_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = LedgerQueue(UsageLedger(UNREACHABLE))
    user = uuid.uuid4().hex
    queue.put(row(user, 0))
    queue.give_up(5.0)
    assert queue.dropped == 1
    # After the close, a row that cannot be written is kept and retried, not dropped at once.
    queue.put(row(user, 1))
    assert not queue.flush(0.5)
    assert queue.pending == 1
    assert queue.failing
    queue.give_up(5.0)
    assert queue.dropped == 2


@pytest.mark.parametrize("value", ["0", "-3", "many", "1.5"])
def test_a_bad_ledger_bound_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("HOOKWIRE_LEDGER_MAX_PENDING", value)
    with pytest.raises(ConfigurationError, match="HOOKWIRE_LEDGER_MAX_PENDING"):
        max_pending()


def test_the_ledger_bound_defaults_and_reads_underscores(monkeypatch: pytest.MonkeyPatch) -> None:
    assert max_pending() == 100_000
    monkeypatch.setenv("HOOKWIRE_LEDGER_MAX_PENDING", "20_000")
    assert max_pending() == 20_000
