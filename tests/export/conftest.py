"""A real webhook receiver on 127.0.0.1 for the export tests: it checks each request's
signature, answers from a script of responses (then 200), and keeps what it received."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from hookwire.export import SIGNATURE_HEADER, verify_signature

SECRET = "s3cret-for-tests"


class Receiver:
    """What the server received and how it answers next."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: Responses to give, in order: (status, headers, body); then 200.
        self.script: list[tuple[int, dict[str, str], bytes]] = []
        #: Every request: its headers and parsed body (signature checked).
        self.requests: list[dict[str, Any]] = []
        #: Every request, answered or not.
        self.attempts = 0
        #: The event ids of every request, as it arrived (before any hold).
        self.arrived: list[list[str]] = []
        #: Seconds to hold each request before answering (a slow or hung receiver).
        self.hold = 0.0
        self.release = threading.Event()
        self.server: ThreadingHTTPServer | None = None
        self.url = ""

    def respond(
        self, status: int, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> None:
        self.script.append((status, headers or {}, body))

    def events(self) -> list[dict[str, Any]]:
        """The events of the 2xx answered requests, duplicates dropped by id (as a receiver
        does), in the order first received."""
        seen: set[str] = set()
        out = []
        with self.lock:
            for request in self.requests:
                if request["status"] // 100 != 2:
                    continue
                for event in request["body"]["events"]:
                    if event["id"] not in seen:
                        seen.add(event["id"])
                        out.append(event)
        return out

    def all_deliveries(self) -> int:
        with self.lock:
            return sum(len(r["body"]["events"]) for r in self.requests if r["status"] == 200)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            verify_signature(body, self.headers.get(SIGNATURE_HEADER), SECRET)
            with receiver.lock:
                receiver.attempts += 1
                receiver.arrived.append([e["id"] for e in orjson.loads(body)["events"]])
                status, headers, answer = (
                    receiver.script.pop(0) if receiver.script else (200, {}, b"ok")
                )
            if receiver.hold:
                receiver.release.wait(receiver.hold)
            with receiver.lock:
                receiver.requests.append(
                    {"status": status, "headers": dict(self.headers), "body": orjson.loads(body)}
                )
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(r))
    server.daemon_threads = True
    r.server = server
    r.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield r
    finally:
        r.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def sink_name() -> str:
    """A sink name of this test's own (the PostgreSQL database is shared by the session)."""
    return f"hook-{uuid.uuid4().hex[:10]}"
