"""Events out: the app thread's cost per event with an OutboxCallback, and events/s end to
end (app -> outbox -> relay -> sink) to a local webhook receiver and to Redis Streams, with
the outbox on SQLite and on PostgreSQL.

App-thread cost: ``thread_time`` of emitting N ``on_memory_store`` events through a manager
holding an ``OutboxCallback`` (the worker inserts on its own thread), next to the same
manager holding an inline no-op handler, best of 3 rounds. End to end: wall time from the
first emit to the relay finding nothing pending (``Relay.run(until_idle=True)``), N events;
on PostgreSQL also the server's CPU and WAL bytes per event (a local server: ``/proc``).
Targets (issue "Events out"): >= 20,000 events/s end to end; <= 2 µs per event on the app
thread.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from _postgres import SERVER, create_database, drop_database, server_up
from _timing import options
from hookwire import CallbackManager, trace
from hookwire.callbacks import BaseCallback
from hookwire.export import OutboxCallback, RedisStreamSink, Relay, WebhookSink
from hookwire.stores import engine, runner

#: Rows per relay claim and per request / pipeline.
BATCH = 2000


class _Noop(BaseCallback):
    def on_memory_store(self, content: Any, **kwargs: Any) -> None:
        pass


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver would

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _emit(manager: CallbackManager, n: int) -> float:
    start = time.thread_time()
    with trace("bench", callbacks=manager, conversation_id="c1"):
        for i in range(n):
            manager.on_memory_store(i)
    return time.thread_time() - start


def app_thread_cost(url: str, n: int) -> tuple[float, float]:
    best_outbox = best_noop = float("inf")
    for _ in range(3):
        handler = OutboxCallback(["bench"], url, hooks=["on_memory_store"])
        manager = CallbackManager([handler])
        best_outbox = min(best_outbox, _emit(manager, n) / n)
        handler.flush(120)
        best_noop = min(best_noop, _emit(CallbackManager([_Noop()]), n) / n)
    return best_outbox * 1e6, best_noop * 1e6


def _server_cpu() -> float | None:
    """CPU seconds of every PostgreSQL process of this machine (Linux ``/proc``), or None:
    the server's work per event, which the load moves less than its wall time. Other
    clients of the same server count too: read it on a server nobody else is busy with."""
    total, found = 0, False
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else []:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            stat = Path(f"/proc/{pid}/stat").read_text() if comm == "postgres" else ""
        except OSError:
            continue
        if stat:
            fields = stat.rsplit(")", 1)[1].split()
            total, found = total + int(fields[11]) + int(fields[12]), True
    return total / os.sysconf("SC_CLK_TCK") if found else None


def _wal() -> int:
    """The server's WAL position, in bytes."""

    async def read() -> int:
        import asyncpg

        conn = await asyncpg.connect(f"{SERVER}/postgres")
        try:
            return int(await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))
        finally:
            await conn.close()

    return asyncio.run(read())


#: Per PostgreSQL run: the server's CPU µs and WAL bytes per event.
SERVER_COST: list[tuple[float | None, float]] = []


def end_to_end(url: str, sink: Any, n: int, batch: int = BATCH) -> tuple[float, float]:
    """Events/s (wall) and events per CPU-second of this process (all its threads: the app,
    the outbox worker, the relay, the store loop and the webhook receiver); on PostgreSQL,
    the server's cost per event goes to ``SERVER_COST``."""
    pg = url.startswith("postgresql")
    if pg:
        wal, server = _wal(), _server_cpu()
    handler = OutboxCallback([sink], url, hooks=["on_memory_store"])
    relay = Relay([sink], url, batch_size=batch, poll=0.005)
    cpu = time.process_time()
    start = time.perf_counter()
    thread = relay.start()
    _emit(CallbackManager([handler]), n)
    handler.flush(300)
    relay._stop.set()
    thread.join()
    relay._stop.clear()
    relay.run(until_idle=True)
    result = n / (time.perf_counter() - start), n / (time.process_time() - cpu)
    if pg:
        after = _server_cpu()
        used = None if after is None or server is None else (after - server) / n * 1e6
        SERVER_COST.append((used, (_wal() - wal) / n))
    return result


def _pg_database() -> str | None:
    if not server_up():
        return None
    url = create_database()
    runner.run_sync(engine.upgrade(url), 120)
    return url


def _row(kind: str, sink: str, runs: list[tuple[float, float]]) -> None:
    wall = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] for r in runs)
    server = ""
    if kind == "postgresql" and SERVER_COST:
        costs = SERVER_COST[-len(runs) :]
        used = [c[0] for c in costs if c[0] is not None]
        server = f"{statistics.median(used):.1f}" if used else "?"
        server += f" / {statistics.median(c[1] for c in costs):,.0f}"
    print(
        f"| {kind} | {sink} | {wall:,.0f} | {cpu:,.0f} | {server} | "
        f"{', '.join(f'{r[0]:,.0f}' for r in runs)} |",
        flush=True,
    )


def main() -> None:
    parser = options(__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3, help="end-to-end runs per case")
    parser.add_argument("--only", choices=["sqlite", "postgresql"], help="one database")
    parser.add_argument("--batch", type=int, default=BATCH, help="rows per relay claim")
    parser.add_argument("--skip-app", action="store_true", help="end to end only")
    args = parser.parse_args()
    n = args.events
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    webhook_url = f"http://127.0.0.1:{server.server_address[1]}/"
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    with TemporaryDirectory() as tmp:
        databases = {"sqlite": f"sqlite:///{Path(tmp) / 'bench.db'}"}
        pg = _pg_database() if args.only != "sqlite" else None
        if pg is not None:
            databases["postgresql"] = pg
        if args.only == "postgresql":
            del databases["sqlite"]
        for kind, url in databases.items():
            if args.skip_app:
                break
            outbox_us, noop_us = app_thread_cost(url, n)
            print(
                f"{kind}: app thread per event: OutboxCallback {outbox_us:.2f} µs, "
                f"inline no-op handler {noop_us:.2f} µs (target <= 2 µs)",
                flush=True,
            )
        print(
            "| outbox | sink | events/s (median) | events per CPU-second | "
            "server CPU µs / WAL bytes per event | runs |"
        )
        print("|---|---|---:|---:|---:|---|")
        for kind, url in databases.items():
            hook = WebhookSink(webhook_url, "bench", name=f"webhook-{kind}")
            _row(
                kind, "webhook", [end_to_end(url, hook, n, args.batch) for _ in range(args.rounds)]
            )
            try:
                redis = RedisStreamSink(stream=f"bench:{uuid.uuid4().hex[:6]}", name=f"r-{kind}")
                _row(
                    kind,
                    "Redis",
                    [end_to_end(url, redis, n, args.batch) for _ in range(args.rounds)],
                )
                redis._client.delete(redis.stream)
            except Exception as exc:  # Redis not running: the webhook figures stand
                print(f"{kind:<10} Redis: skipped ({exc!r})", file=sys.stderr)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    server.shutdown()
    if pg is not None:
        runner.run_sync(engine.dispose_engines(), 60)
        drop_database(pg)


if __name__ == "__main__":
    main()
