"""How the test server writes an answer: JSON bodies, server-sent events, a broken connection.

Every endpoint writes through a ``Wire``; the request handler makes one per request."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any

__all__ = ["Endpoint", "Wire"]


class Wire:
    """The response side of one request: ``send_json``, or a stream of ``event``s between
    ``start_stream`` and ``end_stream``; ``drop`` breaks the connection."""

    __slots__ = ("chunk_delay", "handler", "next_id")

    def __init__(
        self, handler: BaseHTTPRequestHandler, next_id: Callable[[], str], chunk_delay: float
    ) -> None:
        self.handler = handler
        self.next_id = next_id
        self.chunk_delay = chunk_delay

    def send_json(
        self, status: int, payload: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        """A whole JSON answer with ``status``."""
        self.send_raw(status, json.dumps(payload).encode(), "application/json", headers)

    def send_raw(
        self,
        status: int,
        data: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Exactly ``data`` with ``status``."""
        h = self.handler
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        h.send_header("x-request-id", f"req_{self.next_id()}")
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()

    def chunk(self, data: bytes) -> None:
        """One HTTP chunk of a streamed body."""
        w = self.handler.wfile
        w.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        w.flush()

    def event(self, payload: Any, name: str | None = None) -> None:
        """One server-sent event (with an ``event:`` line when ``name`` is given)."""
        head = f"event: {name}\n".encode() if name else b""
        self.chunk(head + b"data: " + json.dumps(payload).encode() + b"\n\n")

    def start_stream(self) -> None:
        """The headers of a server-sent event stream."""
        h = self.handler
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream; charset=utf-8")
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("x-request-id", f"req_{self.next_id()}")
        h.end_headers()

    def end_stream(self) -> None:
        """The end of a streamed body."""
        self.handler.wfile.write(b"0\r\n\r\n")
        self.handler.wfile.flush()

    def drop(self) -> None:
        """Close the connection at once, whatever was sent."""
        h = self.handler
        h.close_connection = True
        try:
            h.wfile.flush()
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Endpoint:
    """An endpoint answering one request through ``w``: the request's ``body``, the ``model``
    to report, and whether a stream should end with a usage chunk."""

    def __init__(self, w: Wire, body: dict[str, Any], model: str, include_usage: bool) -> None:
        self.w = w
        self.body = body
        self.model = model
        self.usage = include_usage

    def refuse_tools(self, endpoint: str) -> None:
        """Answer a ``ToolCallReply`` where the endpoint has no tool calls: a 400."""
        message = f"tool calls are not part of {endpoint}; script a Reply"
        error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
        self.w.send_json(400, {"error": error})
