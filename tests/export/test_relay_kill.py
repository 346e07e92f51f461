"""A relay killed (SIGKILL) in the middle of a delivery: its claim runs out and another relay
delivers the same rows again: at least once, nothing lost, order per conversation kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import hookwire
from hookwire.stores import runner
from hookwire.stores.outbox import DELIVERED, Outbox

from .conftest import SECRET, Receiver
from .test_relay import _emit, _order, _relay

SRC = Path(hookwire.__file__).resolve().parents[1]

RELAY = textwrap.dedent(
    """
    import sys
    from hookwire.export import Relay, WebhookSink

    url, db, sink, secret = sys.argv[1:]
    Relay([WebhookSink(url, secret, name=sink, timeout=600)], db, lease=2.0, batch_size=5).run()
    """
)


@pytest.mark.timeout(120)
def test_a_relay_killed_mid_delivery_is_redelivered(
    db_url: str, receiver: Receiver, sink_name: str
) -> None:
    _emit(db_url, sink_name, conversations=2, per=4)
    receiver.hold = 600.0  # the first request is never answered while the relay lives
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", RELAY, receiver.url, db_url, sink_name, SECRET], env=env
    )
    try:
        deadline = time.monotonic() + 60
        while receiver.attempts == 0:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    receiver.hold = 0.0
    receiver.release.set()
    rows = runner.run_sync(Outbox(db_url).rows(sink=sink_name))
    assert not any(r["state"] == DELIVERED for r in rows)  # the killed relay marked nothing
    relay = _relay(db_url, receiver, sink_name)
    relay.run(until_idle=True)  # waits for the dead relay's lease to run out
    relay.stop()
    order = _order(receiver)
    assert order == {f"c{c}": [f"c{c}-{n}" for n in range(4)] for c in range(2)}
    assert len(receiver.events()) == 24
    # the batch the killed relay was sending came again from the second relay
    killed, *later = receiver.arrived
    assert set(killed) <= {i for ids in later for i in ids}


APP = textwrap.dedent(
    """
    import sys
    from hookwire import CallbackManager, trace
    from hookwire.export import OutboxCallback

    db, sink = sys.argv[1:]
    handler = OutboxCallback([sink], db, hooks=["on_memory_store"])
    manager = CallbackManager([handler])
    n = 0
    while True:
        for c in range(3):
            with trace("turn", callbacks=manager, conversation_id=f"c{c}"):
                manager.on_memory_store(f"c{c}-{n}")
        n += 1
        if n % 10 == 0:
            handler.flush(60)
            print(n, flush=True)  # every turn before this is acknowledged
    """
)


def _spawn(script: str, *args: str) -> subprocess.Popen[str]:
    path = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        env={**os.environ, "PYTHONPATH": path},
        stdout=subprocess.PIPE,
        text=True,
    )


def _acknowledged(proc: subprocess.Popen[str], at_least: int) -> int:
    assert proc.stdout is not None
    acked = 0
    while acked < at_least:
        line = proc.stdout.readline()
        assert line, "the app ended early"
        acked = int(line)
    return acked


@pytest.mark.timeout(120)
def test_an_app_killed_mid_batch_loses_nothing_it_acknowledged(
    db_url: str, receiver: Receiver, sink_name: str
) -> None:
    proc = _spawn(APP, db_url, sink_name)
    try:
        acked = _acknowledged(proc, 30)
        os.kill(proc.pid, signal.SIGKILL)  # the next turns are on their way to the outbox
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # closes the pipe
    relay = _relay(db_url, receiver, sink_name, batch_size=50)
    relay.run(until_idle=True)
    relay.stop()
    order = _order(receiver)
    for c in range(3):
        got = order[f"c{c}"]
        assert got[:acked] == [f"c{c}-{n}" for n in range(acked)]  # all acknowledged, in order
        assert got == [f"c{c}-{n}" for n in range(len(got))]  # and nothing out of order


@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_two_apps_and_two_relays_on_postgres(
    pg_database_url: str, receiver: Receiver, sink_name: str
) -> None:
    apps = [_spawn(APP, pg_database_url, f"{sink_name}") for _ in range(2)]
    relays = [_relay(pg_database_url, receiver, sink_name, batch_size=7) for _ in range(2)]
    threads = [r.start() for r in relays]
    try:
        acked = [_acknowledged(p, 20) for p in apps]
    finally:
        for p in apps:
            p.kill()
            p.communicate()
    for r, t in zip(relays, threads, strict=True):
        r.stop()
        t.join()
    drain = _relay(pg_database_url, receiver, sink_name)  # what the apps wrote last
    drain.run(until_idle=True)
    drain.stop()
    rows = runner.run_sync(Outbox(pg_database_url).rows(sink=sink_name, limit=100_000))
    assert {r["state"] for r in rows} == {DELIVERED}
    # every row delivered, once to the deduplicating receiver, and none lost
    assert len(receiver.events()) == len(rows) >= 3 * sum(acked)
    assert receiver.all_deliveries() == len(rows)
