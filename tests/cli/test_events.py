"""``hookwire events status``, ``replay`` and ``tail``."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from hookwire import CallbackManager
from hookwire.cli import app
from hookwire.export import OutboxCallback
from hookwire.stores import runner as store_runner
from hookwire.stores.outbox import Outbox

runner = CliRunner()


def _outbox(tmp_path: Path) -> tuple[str, Outbox]:
    url = f"sqlite+aiosqlite:///{tmp_path}/h.db"
    handler = OutboxCallback(["hooks", "redis"], url)
    manager = CallbackManager([handler])
    for _ in range(3):
        manager.on_error(RuntimeError("boom"))
    assert handler.flush(30)
    return url, Outbox(url)


def test_status_shows_each_sink(tmp_path: Path) -> None:
    url, box = _outbox(tmp_path)
    rows = store_runner.run_sync(box.claim("hooks", "r", 10, lease=60))
    store_runner.run_sync(box.delivered([rows[0].seq]))
    store_runner.run_sync(box.dead([rows[1].seq], "HTTP 400"))
    result = runner.invoke(app, ["events", "status", "--db", url])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["sink", "pending", "delivered", "failing", "dead", "lag"]
    assert lines[1].split()[:5] == ["hooks", "1", "1", "0", "1"]
    assert lines[2].split()[:5] == ["redis", "3", "0", "0", "0"]
    as_json = runner.invoke(app, ["events", "status", "--json", "--db", url])
    assert [r["sink"] for r in orjson.loads(as_json.output)] == ["hooks", "redis"]


def test_replay_dead_and_since(tmp_path: Path) -> None:
    url, box = _outbox(tmp_path)
    rows = store_runner.run_sync(box.claim("hooks", "r", 10, lease=60))
    store_runner.run_sync(box.delivered([rows[0].seq]))
    store_runner.run_sync(box.dead([rows[1].seq], "HTTP 400"))
    result = runner.invoke(app, ["events", "replay", "--dead", "--db", url])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("1 dead event(s)")
    later = runner.invoke(app, ["events", "replay", "--since", "2999-01-01", "--db", url])
    assert later.output.startswith("0 event(s)")
    every = runner.invoke(
        app, ["events", "replay", "--sink", "hooks", "--since", "1d", "--db", url]
    )
    assert every.output.startswith("1 event(s)")
    bad = runner.invoke(app, ["events", "replay", "--since", "someday", "--db", url])
    assert bad.exit_code == 2


def test_status_of_a_missing_database(tmp_path: Path) -> None:
    result = runner.invoke(app, ["events", "status", "--db", f"sqlite:///{tmp_path}/x.db"])
    assert result.exit_code == 1
    assert "there is no database" in result.stderr


@pytest.mark.redis
def test_tail_reads_a_stream(redis_url: str) -> None:
    import redis

    stream = f"hookwire-test:{uuid.uuid4().hex[:10]}"
    client = redis.Redis.from_url(redis_url)
    try:
        for n in range(5):
            client.xadd(stream, {"id": f"e{n}", "body": "{}"})
        result = runner.invoke(
            app, ["events", "tail", "--stream", stream, "--redis", redis_url, "--count", "2"]
        )
        assert result.exit_code == 0, result.output
        assert [orjson.loads(line)["id"] for line in result.output.splitlines()] == ["e3", "e4"]
    finally:
        client.delete(stream)
        client.close()


def test_relay_delivers_to_a_webhook_until_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from hookwire.export import SIGNATURE_HEADER, verify_signature

    got: list[int] = []

    class Ok(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            verify_signature(body, self.headers[SIGNATURE_HEADER], "k")
            got.append(len(orjson.loads(body)["events"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url, _ = _outbox(tmp_path)
        hook = f"http://127.0.0.1:{server.server_address[1]}/"
        args = ["events", "relay", "--webhook", hook, "--webhook-name", "hooks"]
        missing = runner.invoke(app, [*args, "--until-idle", "--db", url])
        assert missing.exit_code == 1 and "HOOKWIRE_WEBHOOK_SECRET" in missing.stderr
        monkeypatch.setenv("HOOKWIRE_WEBHOOK_SECRET", "k")
        # claims of 2 rows: the 3 events go out as two requests, in order
        batched = [*args, "--until-idle", "--batch-size", "2", "--poll", "0.01"]
        result = runner.invoke(app, [*batched, "--db", url])
        assert result.exit_code == 0, result.output
        assert result.output.startswith("delivered 3,") and got == [2, 1]
        none = runner.invoke(app, ["events", "relay", "--db", url])
        assert none.exit_code == 2
    finally:
        server.shutdown()
        server.server_close()


def test_purge_deletes_old_delivered_events(tmp_path: Path) -> None:
    from datetime import datetime, timedelta, timezone

    url, box = _outbox(tmp_path)
    rows = store_runner.run_sync(box.claim("hooks", "r", 10, lease=60))
    old = datetime.now(timezone.utc) - timedelta(days=30)
    store_runner.run_sync(box.delivered([rows[0].seq], now=old))
    store_runner.run_sync(box.delivered([rows[1].seq]))
    store_runner.run_sync(box.dead([rows[2].seq], "HTTP 400", now=old))
    result = runner.invoke(app, ["events", "purge", "--db", url])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("1 event(s) purged")
    dead = runner.invoke(app, ["events", "purge", "--older-than", "1d", "--dead", "--db", url])
    assert dead.output.startswith("1 event(s) purged")
    left = store_runner.run_sync(box.rows(sink="hooks"))
    assert [r["seq"] for r in left] == [rows[1].seq]
