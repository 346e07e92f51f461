"""Events out: the app thread's cost per event with an OutboxCallback, and events/s end to
end (app -> outbox -> relay -> sink) to a local webhook receiver and to Redis Streams, with
the outbox on SQLite and on PostgreSQL.

App-thread cost: ``thread_time`` of emitting N ``on_memory_store`` events through a manager
holding an ``OutboxCallback`` (the worker inserts on its own thread), next to the same
manager holding an inline no-op handler, best of 3 rounds.

End to end, as deployed: this process is the app (emitting N events; its outbox worker
inserts them), the relay is a process of its own (``hookwire events relay``), the webhook
receiver another (Redis and PostgreSQL are servers already). Wall time from the first emit
until the receiver has all N events (webhook: event ids counted; Redis: ``XLEN``), and the
CPU each stage spent per event: this process (app thread, outbox worker, store loop), the
relay process, the receiver (the webhook process, or ``INFO cpu`` of Redis), the PostgreSQL
server (``/proc``: every ``postgres`` process). With 2 cores and other sessions on them the
wall figure is noisy. Two bounds from the CPU: this machine's cores over the stages' CPU per
event summed (were nothing else running), and, were each stage on a core of its own, one over
the largest stage's. The in-process row (app, relay and receiver threads of one process,
one GIL) is kept for reference.
Targets (issue "Events out"): >= 20,000 events/s end to end; <= 2 µs per event on the app
thread.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import statistics
import subprocess
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
from hookwire.export import EVENT_IDS_HEADER, OutboxCallback, RedisStreamSink, Relay, WebhookSink
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


class _Counting(_Ok):
    """The receiver of the deployed shape: counts the events it took (by their ids)."""

    received: Any = None

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        ids = self.headers[EVENT_IDS_HEADER] or ""
        with self.received.get_lock():
            self.received.value += ids.count(",") + 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _receiver(port: Any, received: Any) -> None:
    """The webhook receiver's process: answers 200 and counts the events."""
    _Counting.received = received
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    port.send(server.server_address[1])
    server.serve_forever()


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
        # The app's steady state: a new outbox's schema is made and its connections opened in
        # the background at first, and that work, sharing the GIL and the caches, would be
        # counted against the app. A round first, not counted.
        _emit(manager, n)
        handler.flush(120)
        best_outbox = min(best_outbox, _emit(manager, n) / n)
        handler.flush(120)
        best_noop = min(best_noop, _emit(CallbackManager([_Noop()]), n) / n)
    return best_outbox * 1e6, best_noop * 1e6


def _cpu(pid: int) -> float:
    """CPU seconds process ``pid`` has used (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


class Receiver:
    """The webhook receiver in a process of its own (``multiprocessing``, spawned)."""

    def __init__(self) -> None:
        spawn = multiprocessing.get_context("spawn")
        self.received = spawn.Value("q", 0)
        mine, theirs = spawn.Pipe()
        self.process = spawn.Process(target=_receiver, args=(theirs, self.received), daemon=True)
        self.process.start()
        self.url = f"http://127.0.0.1:{mine.recv()}/"

    def count(self) -> int:
        return int(self.received.value)

    def cpu(self) -> float:
        return _cpu(self.process.pid or 0)

    def close(self) -> None:
        self.process.terminate()
        self.process.join(10)


def _redis_cpu(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _wait(done: Any, what: str, timeout: float = 300.0, every: float = 0.002) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench/export.py: {what} did not happen in {timeout:.0f} s")
        time.sleep(every)


def deployed(
    url: str, sink: str, n: int, batch: int, receiver: Receiver | None, poll: float = 0.005
) -> dict[str, float]:
    """One end-to-end run as deployed (see the module): events/s (wall) and the CPU µs per
    event of each stage (``app``, ``relay``, ``receiver``, ``server``: PostgreSQL's)."""
    tag = uuid.uuid4().hex[:6]
    relay = [sys.executable, "-c", "from hookwire.cli import main; main()", "events", "relay"]
    relay += ["--db", url, "--batch-size", str(batch), "--poll", str(poll)]
    if sink == "webhook":
        assert receiver is not None
        name = f"webhook-{tag}"
        relay += ["--webhook", receiver.url, "--webhook-name", name]
        received, receiver_cpu = receiver.count, receiver.cpu
    else:
        import redis

        client = redis.Redis()
        name, stream = f"redis-{tag}", f"bench:{tag}"
        relay += ["--redis", "redis://127.0.0.1:6379/0", "--stream", stream, "--redis-name", name]
        received = lambda: int(client.xlen(stream))  # noqa: E731
        receiver_cpu = lambda: _redis_cpu(client)  # noqa: E731
    handler = OutboxCallback([name], url, hooks=["on_memory_store"])
    manager = CallbackManager([handler])
    env = {**os.environ, "HOOKWIRE_WEBHOOK_SECRET": "bench"}
    proc = subprocess.Popen(relay, env=env, stdout=subprocess.PIPE, text=True)
    try:
        # One event first: the relay has started, connected and delivered once.
        base = received()
        _emit(manager, 1)
        handler.flush(60)
        _wait(lambda: received() > base, "delivering a first event")
        base = received()
        pg = url.startswith("postgresql")
        wal, server = (_wal(), _server_cpu()) if pg else (0, None)
        relay_cpu, recv_cpu = _cpu(proc.pid), receiver_cpu()
        cpu, start = time.process_time(), time.perf_counter()
        _emit(manager, n)
        handler.flush(300)
        app = time.process_time() - cpu
        _wait(lambda: received() >= base + n, "delivering every event")
        wall = time.perf_counter() - start
        box = handler.store
        _wait(
            lambda: (
                not any(
                    r["pending"] for r in runner.run_sync(box.status(), 60) if r["sink"] == name
                )
            ),
            "marking every event delivered",
            every=0.05,
        )
        out = {
            "wall": n / wall,
            "app": app / n * 1e6,
            "relay": (_cpu(proc.pid) - relay_cpu) / n * 1e6,
            "receiver": (receiver_cpu() - recv_cpu) / n * 1e6,
        }
        if pg:
            after = _server_cpu()
            out["server"] = (after - server) / n * 1e6 if after and server else float("nan")
            out["wal"] = (_wal() - wal) / n
    finally:
        proc.send_signal(signal.SIGINT)
        said, _ = proc.communicate(timeout=60)
    if not said.startswith("delivered"):
        raise SystemExit(f"bench/export.py: the relay said {said!r}")
    if sink != "webhook":
        client.delete(stream)
        client.close()
    return out


def _deployed_row(kind: str, sink: str, runs: list[dict[str, float]]) -> None:
    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    stages = ["app", "relay", "receiver"] + (["server"] if kind == "postgresql" else [])
    ceiling = statistics.median(1e6 / max(r[k] for k in stages) for r in runs)
    cores = os.cpu_count() or 1
    machine = statistics.median(cores * 1e6 / sum(r[k] for k in stages) for r in runs)
    cpu = " | ".join(f"{med(k):.1f}" for k in stages)
    if kind != "postgresql":
        cpu += " | -"
    cpu += f" | {machine:,.0f}"
    walls = ", ".join(f"{r['wall']:,.0f}" for r in runs)
    print(
        f"| {kind} | {sink} | {med('wall'):,.0f} | {cpu} | {ceiling:,.0f} | {walls} |", flush=True
    )


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
    parser.add_argument(
        "--poll", type=float, default=0.005, help="the relay's wait when idle (seconds)"
    )
    parser.add_argument("--skip-app", action="store_true", help="end to end only")
    parser.add_argument(
        "--skip-one-process", action="store_true", help="no in-process reference rows"
    )
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
            "\nAs deployed (relay and webhook receiver in processes of their own); CPU µs per "
            "event per stage; with N cores, all CPU = N / the stages' CPU per event summed "
            "(this machine, nobody else on it); ceiling = 1 / the largest stage's (each stage "
            "on a core of its own):\n"
        )
        print(
            "| outbox | sink | events/s, wall (median) | app | relay | receiver | PG server | "
            f"{os.cpu_count()} cores, all CPU | ceiling events/s | runs |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
        receiver = Receiver()
        try:
            for kind, url in databases.items():
                for sink in ("webhook", "Redis"):
                    runs = [
                        deployed(url, sink.lower(), n, args.batch, receiver, args.poll)
                        for _ in range(args.rounds)
                    ]
                    _deployed_row(kind, sink, runs)
        finally:
            receiver.close()
        if args.skip_one_process:
            databases = {}
        else:
            print("\nFor reference, in one process (app, relay and receiver threads, one GIL):\n")
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
