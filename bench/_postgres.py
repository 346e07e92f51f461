"""The PostgreSQL server the benchmarks use (not a benchmark itself)."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

#: The server's URL, without a database: ``HOOKWIRE_BENCH_PG``, by default the local server.
SERVER = os.environ.get("HOOKWIRE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")


def server_up() -> bool:
    """Whether the server takes connections (within a second)."""
    url = urlsplit(SERVER)
    try:
        with socket.create_connection((url.hostname or "127.0.0.1", url.port or 5432), timeout=1):
            return True
    except OSError:
        return False
