"""CPU per message of ``send_message`` on PostgreSQL, on both sides of the connection.

Run from the repository root (PostgreSQL on 127.0.0.1:5432, on this machine):

    PYTHONPATH=src python bench/history_cpu.py [--messages 8000] [--rounds 3] [--one-writer]

Writes as ``bench/history.py`` does (8 asyncio writers, or one) into a fresh database, and
prints per round: messages/s, this process's CPU per message, and the server's: the user and
system time of every ``postgres`` process (from ``/proc``, so the server must be local), before
and after. CPU figures move less with the load of a shared machine than rates do; alternate
two checkouts process by process to compare them.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import history
from _postgres import create_database, drop_database
from _timing import options
from hookwire.stores import engine, runner


def server_cpu_seconds() -> float:
    """User plus system time of the local PostgreSQL server's processes so far."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended
            continue
        name, _, rest = text.partition(") ")
        if name.endswith("(postgres"):
            fields = rest.split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = options(__doc__)
    parser.add_argument("--one-writer", action="store_true")
    parser.add_argument("--messages", type=int, default=8000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    url = create_database()
    try:
        runner.run_sync(engine.upgrade(url), timeout=120)
        asyncio.run(history.hookwire_concurrent(url, 800))  # connections, caches
        write = history.hookwire_sequential if args.one_writer else history.hookwire_concurrent
        for _ in range(args.rounds):
            server, cpu = server_cpu_seconds(), time.process_time()
            rate = asyncio.run(write(url, args.messages))
            cpu, server = time.process_time() - cpu, server_cpu_seconds() - server
            print(
                f"{'one writer' if args.one_writer else f'{history.WRITERS} writers'}: "
                f"{rate:,.0f} msg/s, Python CPU {1e6 * cpu / args.messages:.0f} µs/msg, "
                f"server CPU {1e6 * server / args.messages:.0f} µs/msg",
                flush=True,
            )
    finally:
        runner.run_sync(engine.dispose_engines(), timeout=30)
        drop_database(url)


if __name__ == "__main__":
    main()
