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
