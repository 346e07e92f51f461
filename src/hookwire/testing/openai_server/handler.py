"""The test server's request handler: routes, the script's faults shared by every endpoint,
and the endpoint that answers the rest."""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from . import script
from .chat import ChatCompletions
from .completions import Completions
from .embeddings import Embeddings
from .messages import Messages
from .responses import Responses
from .wire import Wire

__all__ = ["HTTPServer", "Handler"]


class _Endpoint(Protocol):
    def answer(
        self,
        item: script.Reply | script.ToolCallReply | script.Drop | script.Truncated | None,
        stream: bool,
    ) -> None: ...


_Routed = type[ChatCompletions | Completions | Embeddings | Responses | Messages]

#: The POST routes, by the end of their path (``/messages``: Anthropic's Messages API).
_ROUTES: dict[str, _Routed] = {
    "/chat/completions": ChatCompletions,
    "/responses": Responses,
    "/embeddings": Embeddings,
    "/completions": Completions,
    "/messages": Messages,
}


def _route(path: str) -> _Routed | None:
    # By the end of the path, so Azure's ``/deployments/<name>/chat/completions`` routes too
    # (``/chat/completions`` is tried before ``/completions``).
    path = path.split("?", 1)[0].rstrip("/")
    for suffix, endpoint in _ROUTES.items():
        if path.endswith(suffix):
            return endpoint
    return None


class Owner(Protocol):
    """What the handler needs of the ``OpenAIServer`` that owns its HTTP server (a protocol, so
    that the server module imports this one and not the other way round)."""

    model: str
    api_key: str | None
    chunk_delay: float

    def _record(
        self, body: dict[str, Any], headers: dict[str, str], peer: Any = None
    ) -> script.ScriptItem | None: ...

    def _next_id(self) -> str: ...


class HTTPServer(ThreadingHTTPServer):
    """The HTTP server, pointing back at the ``OpenAIServer`` that owns it."""

    daemon_threads = True
    owner: Owner

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client closing its pooled connection is normal; anything else is a server bug
        # worth seeing.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionResetError, BrokenPipeError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    """One HTTP connection of the test server."""

    protocol_version = "HTTP/1.1"
    server: HTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes; without this, Nagle's algorithm and
        # the client's delayed ACK add ~40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        return None  # keep test output clean

    def _wire(self) -> Wire:
        owner = self.server.owner
        return Wire(self, owner._next_id, owner.chunk_delay)

    def do_GET(self) -> None:
        w = self._wire()
        if self.path.rstrip("/").endswith("/v1/models"):
            model = self.server.owner.model
            w.send_json(
                200,
                {
                    "object": "list",
                    "data": [{"id": model, "object": "model", "created": 0, "owned_by": "test"}],
                },
            )
            return
        w.send_json(404, script.error_body(404, f"no route GET {self.path}"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        w = self._wire()
        endpoint = _route(self.path)
        if endpoint is None:
            w.send_json(404, script.error_body(404, f"no route POST {self.path}"))
            return
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
        except ValueError as exc:
            w.send_json(400, script.error_body(400, f"the request body is not JSON: {exc}"))
            return
        owner = self.server.owner
        item = owner._record(
            body, {k.lower(): v for k, v in self.headers.items()}, self.client_address
        )
        # Each API's errors in its own shape (Anthropic's differ from OpenAI's).
        error_body = getattr(endpoint, "error_body", script.error_body)
        if owner.api_key is not None and (
            self.headers.get("Authorization") != f"Bearer {owner.api_key}"
            and self.headers.get("x-api-key") != owner.api_key  # Anthropic's header
        ):
            w.send_json(401, error_body(401, script.ERROR_MESSAGES[401]))
            return
        delay = getattr(item, "delay", 0.0)
        if delay:
            time.sleep(delay)
        stream = bool(body.get("stream"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        model = str(body.get("model") or owner.model)
        try:
            if not _fault(w, item, stream, error_body):
                assert not isinstance(item, (script.ErrorReply, script.Raw, script.Malformed))
                answer: _Endpoint = endpoint(w, body, model, include_usage)
                answer.answer(script.Reply(item) if isinstance(item, str) else item, stream)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away; nothing to answer


def _fault(
    w: Wire,
    item: script.ScriptItem | None,
    stream: bool,
    error_body: Callable[[int, str], dict[str, Any]] = script.error_body,
) -> bool:
    """Answer the script items every endpoint answers alike; ``False`` for the others.
    ``error_body`` makes the endpoint's error bodies."""
    if isinstance(item, script.ErrorReply):
        headers = {}
        if item.retry_after is not None:
            headers["Retry-After"] = script.fmt_seconds(item.retry_after)
        message = item.message
        if not message and error_body is script.error_body:
            message = script.ERROR_MESSAGES.get(item.status, "Error.")  # (others have their own)
        w.send_json(item.status, error_body(item.status, message), headers)
    elif isinstance(item, script.Raw):
        if stream:
            w.start_stream()
            w.chunk(item.body.encode())
            if item.hold:
                time.sleep(item.hold)
            w.end_stream()
        else:
            w.send_raw(200, item.body.encode(), "application/json")
    elif isinstance(item, script.Malformed):
        if stream:
            w.start_stream()
            w.chunk(b"data: " + item.body.encode() + b"\n\n")
            w.end_stream()
        else:
            w.send_raw(200, item.body.encode(), "application/json")
    elif isinstance(item, script.Drop) and not stream:
        w.drop()
    else:
        return False
    return True
