"""Relay: the outbox delivered to a real HTTP receiver on 127.0.0.1, at least once and in
order per conversation, through 5xx, 429 with Retry-After, 400 (dead), a receiver that is
down, and (PostgreSQL) two relays sharing one outbox."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import pytest

from hookwire import CallbackManager, trace
from hookwire.errors import DeliveryError
from hookwire.export import OutboxCallback, Relay, WebhookSink
from hookwire.stores import runner
from hookwire.stores.outbox import DEAD, DELIVERED, PENDING, Delivery, Outbox

from .conftest import SECRET, Receiver

UTC = timezone.utc


def _emit(url: str, sink: str, conversations: int, per: int) -> list[str]:
    """Emit ``per`` events in each of ``conversations`` conversations, interleaved; returns
    the expected (conversation, n) order as strings."""
    handler = OutboxCallback([sink], url)
    manager = CallbackManager([handler])
    for n in range(per):
        for c in range(conversations):
            with trace("turn", callbacks=manager, conversation_id=f"c{c}"):
                manager.on_memory_store(f"c{c}-{n}")
    assert handler.flush(60)
    return [f"c{c}-{n}" for c in range(conversations) for n in range(per)]


def _order(receiver: Receiver) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for event in receiver.events():
        if event["event"] == "memory_store":
            out.setdefault(event["key"], []).append(event["record"]["data"]["content"])
    return out


def _relay(url: str, receiver: Receiver, sink: str, **kw: object) -> Relay:
    options: dict[str, object] = {"backoff": 0.01, "max_backoff": 0.05, "poll": 0.01}
    options.update(kw)
    return Relay([WebhookSink(receiver.url, SECRET, name=sink)], url, **options)  # type: ignore[arg-type]


def test_everything_is_delivered_once_in_order(
    db_url: str, receiver: Receiver, sink_name: str
) -> None:
    _emit(db_url, sink_name, conversations=3, per=5)
    relay = _relay(db_url, receiver, sink_name, batch_size=4)
    relay.run(until_idle=True)
    relay.stop()
    order = _order(receiver)
    assert order == {f"c{c}": [f"c{c}-{n}" for n in range(5)] for c in range(3)}
    assert receiver.all_deliveries() == 3 * 5 * 3  # run_start, memory_store, run_end
    headers = receiver.requests[0]["headers"]
    ids = [e["id"] for e in receiver.requests[0]["body"]["events"]]
    assert headers["X-Hookwire-Event-Ids"] == ",".join(ids)
    status = {s["sink"]: s for s in runner.run_sync(Outbox(db_url).status())}[sink_name]
    assert status[DELIVERED] == 45 and status[PENDING] == 0 and status["lag"] == 0.0


def test_a_5xx_is_retried_then_delivered(db_url: str, receiver: Receiver, sink_name: str) -> None:
    _emit(db_url, sink_name, conversations=1, per=2)
    receiver.respond(500)
    receiver.respond(503)
    relay = _relay(db_url, receiver, sink_name)
    relay.run(until_idle=True)
    assert [r["status"] for r in receiver.requests] == [500, 503, 200]
    assert _order(receiver) == {"c0": ["c0-0", "c0-1"]}
    assert relay.counts["retried"] == 12 and relay.counts["delivered"] == 6
    rows = runner.run_sync(Outbox(db_url).rows(sink=sink_name))
    assert {r["attempts"] for r in rows} == {3}


def test_429_waits_for_retry_after(db_url: str, receiver: Receiver, sink_name: str) -> None:
    _emit(db_url, sink_name, conversations=1, per=1)
    receiver.respond(429, {"Retry-After": "120"})
    relay = _relay(db_url, receiver, sink_name)
    before = datetime.now(UTC)
    assert relay.run_once() == 0
    rows = runner.run_sync(Outbox(db_url).rows(sink=sink_name))
    assert all(r["available_at"] >= before + timedelta(seconds=120) for r in rows)
    assert all("429" in r["last_error"] for r in rows)
    assert relay.run_once() == 0  # not due yet: not even tried
    assert receiver.attempts == 1


def test_a_400_is_dead_at_once_with_the_response_kept(
    db_url: str, receiver: Receiver, sink_name: str
) -> None:
    _emit(db_url, sink_name, conversations=1, per=1)
    receiver.respond(400, body=b'{"error": "unknown field"}')
    relay = _relay(db_url, receiver, sink_name)
    relay.run(until_idle=True)
    dead = runner.run_sync(Outbox(db_url).rows(sink=sink_name, state=DEAD))
    assert len(dead) == 3 and receiver.attempts == 1
    assert dead[0]["response"] == 'HTTP 400\n{"error": "unknown field"}'
    # replayed, they go out again
    assert runner.run_sync(Outbox(db_url).replay(sink=sink_name, dead_only=True)) == 3
    relay.run(until_idle=True)
    assert len(receiver.events()) == 3


def test_a_receiver_that_is_down_then_back(db_url: str, sink_name: str) -> None:
    _emit(db_url, sink_name, conversations=2, per=3)
    down = Receiver()
    down.url = "http://127.0.0.1:9/hooks"  # the discard port: nothing listens
    relay = _relay(db_url, down, sink_name)
    for _ in range(3):
        relay.run_once()
    box = Outbox(db_url)
    status = {s["sink"]: s for s in runner.run_sync(box.status())}[sink_name]
    assert status["failing"] > 0 and status[DELIVERED] == 0
    assert "ConnectError" in runner.run_sync(box.rows(sink=sink_name))[0]["last_error"]
    relay.stop()


def test_a_receiver_back_up_gets_everything(
    db_url: str, receiver: Receiver, sink_name: str
) -> None:
    _emit(db_url, sink_name, conversations=2, per=3)
    down = Relay(
        [WebhookSink("http://127.0.0.1:9/hooks", SECRET, name=sink_name)],
        db_url,
        backoff=0.01,
        max_backoff=0.02,
    )
    down.run_once()
    down.run_once()
    up = _relay(db_url, receiver, sink_name)
    up.run(until_idle=True)
    assert _order(receiver) == {"c0": ["c0-0", "c0-1", "c0-2"], "c1": ["c1-0", "c1-1", "c1-2"]}


def test_rows_failing_past_dead_after_are_dead(
    db_url: str, receiver: Receiver, sink_name: str
) -> None:
    _emit(db_url, sink_name, conversations=1, per=1)
    box = Outbox(db_url)
    rows = runner.run_sync(box.rows(sink=sink_name))
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    runner.run_sync(box.failed([r["seq"] for r in rows], "old", long_ago, now=long_ago))
    receiver.respond(503)
    relay = _relay(db_url, receiver, sink_name, dead_after=3600)
    relay.run(until_idle=True)
    dead = runner.run_sync(box.rows(sink=sink_name, state=DEAD))
    assert len(dead) == 3 and "failing for 3600 s" in dead[0]["last_error"]


@pytest.mark.postgres
def test_two_relays_share_one_outbox(
    pg_database_url: str, receiver: Receiver, sink_name: str
) -> None:
    url = pg_database_url
    _emit(url, sink_name, conversations=8, per=10)
    relays = [_relay(url, receiver, sink_name, batch_size=5) for _ in range(2)]
    threads = [threading.Thread(target=r.run, kwargs={"until_idle": True}) for r in relays]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(r.counts["delivered"] > 0 for r in relays)
    # each event delivered once, none lost, in order per conversation
    assert receiver.all_deliveries() == 8 * 10 * 3 == len(receiver.events())
    assert _order(receiver) == {f"c{c}": [f"c{c}-{n}" for n in range(10)] for c in range(8)}


def test_a_hung_receiver_never_holds_up_the_app(
    db_url: str, receiver: Receiver, sink_name: str
) -> None:
    receiver.hold = 600.0  # answers nothing until released
    relay = _relay(db_url, receiver, sink_name)
    relay.start()
    handler = OutboxCallback([sink_name], db_url)
    manager = CallbackManager([handler])
    for n in range(3):
        with trace("turn", callbacks=manager, conversation_id="c0"):
            manager.on_memory_store(f"c0-{n}")
        assert handler.flush(60)  # in the outbox, while the receiver hangs
    deadline = datetime.now(UTC) + timedelta(seconds=60)
    while receiver.attempts == 0 and datetime.now(UTC) < deadline:
        threading.Event().wait(0.01)
    assert manager.stats()["dropped"]["OutboxCallback"] == 0
    receiver.hold = 0.0
    receiver.release.set()
    relay.stop()
    finish = _relay(db_url, receiver, sink_name)
    finish.run(until_idle=True)
    assert _order(receiver) == {"c0": ["c0-0", "c0-1", "c0-2"]}


class _Slices(WebhookSink):
    """A webhook sink that fails the request numbered ``fail_at`` once (1-based)."""

    def __init__(self, url: str, name: str, max_batch: int, fail_at: int | None) -> None:
        super().__init__(url, SECRET, name=name, max_batch=max_batch)
        self.sent = 0
        self.fail_at = fail_at

    def send(self, batch: Sequence[Delivery]) -> None:
        self.sent += 1
        if self.sent == self.fail_at:
            raise DeliveryError("the receiver is restarting")
        super().send(batch)


def test_a_claim_goes_out_in_slices_of_max_batch_in_order(
    db_url: str, receiver: Receiver, sink_name: str
) -> None:
    _emit(db_url, sink_name, conversations=3, per=5)
    sink = _Slices(receiver.url, sink_name, max_batch=4, fail_at=None)
    relay = Relay([sink], db_url, batch_size=10, poll=0.01)
    relay.run(until_idle=True)
    relay.stop()
    assert max(len(r["body"]["events"]) for r in receiver.requests) == 4
    assert _order(receiver) == {f"c{c}": [f"c{c}-{n}" for n in range(5)] for c in range(3)}
    assert receiver.all_deliveries() == 45  # each event once: no slice was sent twice


def test_a_failed_slice_holds_back_the_rest_and_keeps_what_went_before(
    db_url: str, receiver: Receiver, sink_name: str
) -> None:
    _emit(db_url, sink_name, conversations=3, per=5)
    sink = _Slices(receiver.url, sink_name, max_batch=4, fail_at=2)
    relay = Relay([sink], db_url, batch_size=45, poll=0.01, backoff=0.01, max_backoff=0.05)
    relay.run(until_idle=True)
    relay.stop()
    # The first slice is marked delivered and never sent again; the failed one and all after
    # it are retried, and each conversation still arrives in order.
    assert receiver.all_deliveries() == 45
    assert relay.counts == {"delivered": 45, "retried": 41, "dead": 0}
    assert _order(receiver) == {f"c{c}": [f"c{c}-{n}" for n in range(5)] for c in range(3)}


def test_batch_boundaries_keep_each_conversation_in_order(
    db_url: str, receiver: Receiver, sink_name: str
) -> None:
    # Claims of 7 rows cut the interleaved conversations at every possible place; a first
    # attempt that fails leaves the claim's rows waiting while the rows after them are due.
    _emit(db_url, sink_name, conversations=4, per=6)
    receiver.respond(500)
    relay = _relay(db_url, receiver, sink_name, batch_size=7)
    relay.run(until_idle=True)
    relay.stop()
    assert _order(receiver) == {f"c{c}": [f"c{c}-{n}" for n in range(6)] for c in range(4)}
