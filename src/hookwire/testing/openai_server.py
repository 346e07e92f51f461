"""``OpenAIServer``: a small OpenAI-compatible HTTP server for tests, on 127.0.0.1.

It speaks enough of the Chat Completions protocol for the official ``openai`` SDK (and any
other OpenAI-compatible client) to talk to it as it would to the real API, so tests exercise
the real client stack (HTTP, JSON, SSE) without reaching the internet::

    from openai import OpenAI
    from hookwire.testing.openai_server import OpenAIServer, Reply, ToolCallReply, ErrorReply

    with OpenAIServer() as server:
        server.script(ErrorReply(429, retry_after=0), Reply("Paris."))
        client = OpenAI(base_url=server.base_url, api_key="test", max_retries=1)
        answer = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Capital of France?"}]
        )
        assert answer.choices[0].message.content == "Paris."
        assert len(server.requests) == 2

What it serves:

- ``POST /v1/chat/completions``: a JSON ``chat.completion``; with ``"stream": true``, SSE
  ``chat.completion.chunk`` events as the real API sends them (a first chunk with the
  role, one chunk per word, a last chunk with ``finish_reason``, the usage chunk with empty
  ``choices`` when ``stream_options.include_usage`` is set, then ``data: [DONE]``). Tool
  calls are sent whole in JSON mode and as ``delta.tool_calls`` pieces when streaming.
- ``GET /v1/models``: one model, so clients that list models work.

What it answers: each request consumes the next item of its *script* (``server.script(...)``
or ``OpenAIServer(script=[...])``), in order, whatever thread or client sends it:

- a ``str`` or ``Reply(text)``: that answer;
- ``ToolCallReply(name, arguments)``: the model asks to call a tool;
- ``ErrorReply(status, message, retry_after=...)``: an HTTP error with the API's error body
  (429 with a ``Retry-After`` header, 500, 401, 400, ...);
- ``Malformed()``: HTTP 200 whose body (or SSE data line) is not valid JSON;
- ``Drop(after=N)``: the connection is closed without finishing: after ``N`` content chunks
  of a stream, or before any response for a non-streamed call;
- ``Truncated(after=N)``: a stream that ends cleanly (HTTP-wise) after ``N`` content chunks,
  without a ``finish_reason`` or ``[DONE]``;
- ``Raw(body, hold=0)``: HTTP 200 with exactly ``body``: the SSE text of a streamed answer
  (write the events yourself, ``data: {...}`` and a blank line each), the JSON of a plain one;
  ``hold`` keeps a stream's body open that many seconds before it ends. For servers that
  answer oddly: comments, multi-line data, error events, wrong shapes, a body left open.

With the script empty it answers deterministically from the conversation: ``"You said: "``
and the last user message's text, or, right after a tool result, ``"The tool returned: "``
and the result.

What it records: ``server.requests`` is the list of the JSON bodies it received, in order;
``server.headers`` the matching request headers (lower-case names); ``server.peers`` the
client address (host, port) of each, so requests sent over one kept-alive connection share
one. ``server.reset()`` forgets them and empties the script.

Token counts are words: prompt tokens are the words of every message's content (at least
1), completion tokens the chunks of the answer. The server runs in a daemon thread on an
ephemeral port; ``close()`` (or leaving the ``with`` block) stops it.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeAlias

__all__ = [
    "Drop",
    "ErrorReply",
    "Malformed",
    "OpenAIServer",
    "Raw",
    "Reply",
    "ScriptItem",
    "ToolCallReply",
    "Truncated",
    "split_words",
]

_WORDS = re.compile(r"\s*\S+\s*|\s+")


def split_words(text: str) -> list[str]:
    """How the server cuts an answer into stream chunks: words with their trailing spaces."""
    return _WORDS.findall(text)


@dataclass(frozen=True)
class Reply:
    """A text answer. ``usage`` overrides the computed token counts (``prompt_tokens``,
    ``completion_tokens``); ``delay`` waits that many seconds before answering."""

    text: str
    finish_reason: str = "stop"
    model: str | None = None
    usage: Mapping[str, int] | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class ToolCallReply:
    """The model asks to call tool ``name`` with ``arguments`` (a dict, or JSON text).

    ``more`` adds further calls in the same answer, as ``(name, arguments)`` pairs.
    """

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None
    more: Sequence[tuple[str, Mapping[str, Any] | str]] = ()
    delay: float = 0.0


@dataclass(frozen=True)
class ErrorReply:
    """An HTTP error with the API's error body; ``retry_after`` adds a ``Retry-After``."""

    status: int
    message: str = ""
    retry_after: float | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class Malformed:
    """HTTP 200 with a body (or, when streaming, a data line) that is not JSON."""

    body: str = "{this is not json"
    delay: float = 0.0


@dataclass(frozen=True)
class Drop:
    """Close the connection without finishing: after ``after`` content chunks of a stream of
    ``text``, or at once (no response at all) for a non-streamed call."""

    after: int = 2
    text: str = "This answer will be cut off before it is finished."
    delay: float = 0.0


@dataclass(frozen=True)
class Truncated:
    """A stream that ends cleanly after ``after`` content chunks, with neither a
    ``finish_reason`` nor ``[DONE]`` (a proxy cutting the body short). Non-streamed calls get
    a JSON body whose choice has no ``finish_reason``."""

    after: int = 2
    text: str = "This answer stops in the middle of a sentence and never finishes."
    delay: float = 0.0


@dataclass(frozen=True)
class Raw:
    """HTTP 200 with exactly ``body``: the SSE text when the request streams, else the JSON.
    ``hold``: seconds a stream's body is kept open after ``body`` before it ends."""

    body: str
    delay: float = 0.0
    hold: float = 0.0


#: Anything ``OpenAIServer.script`` accepts.
ScriptItem: TypeAlias = (
    str | Reply | ToolCallReply | ErrorReply | Malformed | Drop | Truncated | Raw
)

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    422: ("invalid_request_error", None),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}

_ERROR_MESSAGES = {
    400: "Invalid request.",
    401: "Incorrect API key provided.",
    403: "Forbidden.",
    404: "The model does not exist or you do not have access to it.",
    429: "Rate limit reached. Please try again later.",
    500: "The server had an error while processing your request.",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _prompt_tokens(body: Mapping[str, Any]) -> int:
    messages = body.get("messages") or []
    words = sum(len(_text_of(m.get("content")).split()) for m in messages if isinstance(m, dict))
    return max(words, 1)


def _default_answer(body: Mapping[str, Any]) -> str:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    if messages and messages[-1].get("role") == "tool":
        return "The tool returned: " + _text_of(messages[-1].get("content"))
    for m in reversed(messages):
        if m.get("role") == "user":
            return "You said: " + _text_of(m.get("content"))
    return "Hello! How can I help you today?"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes; without this, Nagle's algorithm and
        # the client's delayed ACK add ~40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        return None  # keep test output clean

    # -- plumbing -----------------------------------------------------------------------------

    def _send_json(
        self, status: int, payload: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        self._send_raw(status, data, "application/json", headers)

    def _send_raw(
        self,
        status: int,
        data: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_{self.server.owner._next_id()}")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _event(self, payload: Any) -> None:
        self._chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("x-request-id", f"req_{self.server.owner._next_id()}")
        self.end_headers()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- routes ---------------------------------------------------------------------------------

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/v1/models"):
            model = self.server.owner.model
            self._send_json(
                200,
                {
                    "object": "list",
                    "data": [{"id": model, "object": "model", "created": 0, "owned_by": "test"}],
                },
            )
            return
        self._send_json(404, _error_body(404, f"no route GET {self.path}"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send_json(404, _error_body(404, f"no route POST {self.path}"))
            return
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
        except ValueError as exc:
            self._send_json(400, _error_body(400, f"the request body is not JSON: {exc}"))
            return
        owner = self.server.owner
        item = owner._record(
            body, {k.lower(): v for k, v in self.headers.items()}, self.client_address
        )
        if owner.api_key is not None and self.headers.get("Authorization") != (
            f"Bearer {owner.api_key}"
        ):
            self._send_json(401, _error_body(401, _ERROR_MESSAGES[401]))
            return
        delay = getattr(item, "delay", 0.0)
        if delay:
            time.sleep(delay)
        stream = bool(body.get("stream"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        model = str(body.get("model") or owner.model)
        try:
            self._answer(item, body, model, stream, include_usage)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away; nothing to answer

    def _answer(
        self, item: ScriptItem | None, body: dict[str, Any], model: str, stream: bool, usage: bool
    ) -> None:
        if isinstance(item, ErrorReply):
            headers = {}
            if item.retry_after is not None:
                headers["Retry-After"] = _fmt_seconds(item.retry_after)
            message = item.message or _ERROR_MESSAGES.get(item.status, "Error.")
            self._send_json(item.status, _error_body(item.status, message), headers)
            return
        if isinstance(item, Raw):
            if stream:
                self._start_stream()
                self._chunk(item.body.encode())
                if item.hold:
                    time.sleep(item.hold)
                self._end_stream()
            else:
                self._send_raw(200, item.body.encode(), "application/json")
            return
        if isinstance(item, Malformed):
            if stream:
                self._start_stream()
                self._chunk(b"data: " + item.body.encode() + b"\n\n")
                self._end_stream()
            else:
                self._send_raw(200, item.body.encode(), "application/json")
            return
        if isinstance(item, Drop) and not stream:
            self._drop()
            return
        if isinstance(item, ToolCallReply):
            calls = _tool_calls(item, self.server.owner)
            if stream:
                self._stream_tools(calls, body, model, usage)
            else:
                self._json_answer(None, calls, "tool_calls", body, model, None)
            return
        if isinstance(item, Truncated) and not stream:
            self._json_answer(item.text, None, None, body, model, None)
            return
        if isinstance(item, (Drop, Truncated)):
            self._stream_cut(item, model)
            return
        reply = Reply(item) if isinstance(item, str) else item
        if reply is None:
            reply = Reply(_default_answer(body))
        model = reply.model or model
        if stream:
            self._stream_text(reply, body, model, usage)
        else:
            self._json_answer(reply.text, None, reply.finish_reason, body, model, reply.usage)

    def _usage(
        self, body: Mapping[str, Any], completion: int, override: Mapping[str, int] | None
    ) -> dict[str, Any]:
        prompt = _prompt_tokens(body)
        if override:
            prompt = int(override.get("prompt_tokens", prompt))
            completion = int(override.get("completion_tokens", completion))
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }

    def _json_answer(
        self,
        text: str | None,
        calls: list[dict[str, Any]] | None,
        finish_reason: str | None,
        body: Mapping[str, Any],
        model: str,
        usage: Mapping[str, int] | None,
    ) -> None:
        owner = self.server.owner
        completion = (
            len(split_words(text))
            if text
            else sum(len(split_words(c["function"]["arguments"])) for c in calls or [])
        )
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        self._send_json(
            200,
            {
                "id": f"chatcmpl-{owner._next_id()}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": finish_reason,
                    }
                ],
                "usage": self._usage(body, completion, usage),
                "system_fingerprint": "fp_hookwire_test",
            },
        )

    def _chunk_frame(self, cid: str, model: str, choices: list[Any], usage: bool) -> dict[str, Any]:
        frame: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_hookwire_test",
            "choices": choices,
        }
        if usage:
            frame["usage"] = None
        return frame

    def _stream_text(self, reply: Reply, body: Mapping[str, Any], model: str, usage: bool) -> None:
        owner = self.server.owner
        cid = f"chatcmpl-{owner._next_id()}"
        words = split_words(reply.text)
        self._start_stream()
        self._event(
            self._chunk_frame(
                cid,
                model,
                [_choice({"role": "assistant", "content": "", "refusal": None}, None)],
                usage,
            )
        )
        for word in words:
            if owner.chunk_delay:
                time.sleep(owner.chunk_delay)
            self._event(self._chunk_frame(cid, model, [_choice({"content": word}, None)], usage))
        self._event(self._chunk_frame(cid, model, [_choice({}, reply.finish_reason)], usage))
        if usage:
            frame = self._chunk_frame(cid, model, [], False)
            frame["usage"] = self._usage(body, len(words), reply.usage)
            self._event(frame)
        self._chunk(b"data: [DONE]\n\n")
        self._end_stream()

    def _stream_tools(
        self, calls: list[dict[str, Any]], body: Mapping[str, Any], model: str, usage: bool
    ) -> None:
        owner = self.server.owner
        cid = f"chatcmpl-{owner._next_id()}"
        self._start_stream()
        pieces = 0
        for index, call in enumerate(calls):
            head = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            delta: dict[str, Any] = {"tool_calls": [head]}
            if index == 0:
                delta = {"role": "assistant", "content": None, "tool_calls": [head]}
            self._event(self._chunk_frame(cid, model, [_choice(delta, None)], usage))
            # Arguments arrive in pieces, as the real API sends them.
            args = call["function"]["arguments"]
            for start in range(0, len(args), 8):
                pieces += 1
                part = {"index": index, "function": {"arguments": args[start : start + 8]}}
                self._event(
                    self._chunk_frame(cid, model, [_choice({"tool_calls": [part]}, None)], usage)
                )
        self._event(self._chunk_frame(cid, model, [_choice({}, "tool_calls")], usage))
        if usage:
            frame = self._chunk_frame(cid, model, [], False)
            frame["usage"] = self._usage(body, pieces, None)
            self._event(frame)
        self._chunk(b"data: [DONE]\n\n")
        self._end_stream()

    def _stream_cut(self, item: Drop | Truncated, model: str) -> None:
        owner = self.server.owner
        cid = f"chatcmpl-{owner._next_id()}"
        self._start_stream()
        self._event(
            self._chunk_frame(
                cid, model, [_choice({"role": "assistant", "content": ""}, None)], False
            )
        )
        for word in split_words(item.text)[: item.after]:
            self._event(self._chunk_frame(cid, model, [_choice({"content": word}, None)], False))
        if isinstance(item, Drop):
            self._drop()  # no terminating chunk: the client sees the connection break
        else:
            self._end_stream()


def _choice(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def _error_body(status: int, message: str) -> dict[str, Any]:
    kind, code = _ERROR_TYPES.get(status, ("server_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _tool_calls(item: ToolCallReply, owner: OpenAIServer) -> list[dict[str, Any]]:
    out = []
    for i, (name, arguments) in enumerate(((item.name, item.arguments), *item.more)):
        args = arguments if isinstance(arguments, str) else json.dumps(dict(arguments))
        call_id = item.id if (i == 0 and item.id) else f"call_{owner._next_id()}"
        out.append(
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
        )
    return out


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: OpenAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client closing its pooled connection is normal; anything else is a server bug
        # worth seeing.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionResetError, BrokenPipeError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class OpenAIServer:
    """An OpenAI-compatible HTTP server on 127.0.0.1, for tests (see the module docstring).

    ``OpenAIServer(script=None, *, model="gpt-4o-mini", api_key=None, chunk_delay=0.0)``:
    ``script`` is the first items to answer with; ``model`` is the name it reports when a
    request names none; with ``api_key`` set, requests without ``Authorization: Bearer
    <api_key>`` get a 401; ``chunk_delay`` sleeps between streamed chunks.

    Use it as a context manager, or call ``start()`` and ``close()``. ``base_url`` ends in
    ``/v1``, ready for ``OpenAI(base_url=...)`` or ``OPENAI_BASE_URL``.
    """

    def __init__(
        self,
        script: Iterable[ScriptItem] | None = None,
        *,
        model: str = "gpt-4o-mini",
        api_key: str | None = None,
        chunk_delay: float = 0.0,
    ) -> None:
        self.model = model
        self.api_key = api_key
        self.chunk_delay = chunk_delay
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.peers: list[tuple[str, int]] = []
        self._script: deque[ScriptItem] = deque(script or ())
        self._lock = threading.Lock()
        self._ids = 0
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> OpenAIServer:
        """Start serving on an ephemeral port (idempotent); returns the server."""
        if self._httpd is not None:
            return self
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name="hookwire-openai-server",
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- addresses ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port it listens on (starts the server if needed)."""
        if self._httpd is None:
            self.start()
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: what ``OpenAI(base_url=...)`` takes."""
        return self.url + "/v1"

    # -- script and records ---------------------------------------------------------------------

    def script(self, *items: ScriptItem) -> OpenAIServer:
        """Add replies or failures, answered in order by the next requests; returns the server."""
        for item in items:
            if not isinstance(
                item, (str, Reply, ToolCallReply, ErrorReply, Malformed, Drop, Truncated, Raw)
            ):
                raise TypeError(
                    f"a script item must be a str, Reply, ToolCallReply, ErrorReply, Malformed, "
                    f"Drop, Truncated or Raw, not {type(item).__name__}"
                )
        with self._lock:
            self._script.extend(items)
        return self

    @property
    def pending(self) -> int:
        """How many script items are left."""
        with self._lock:
            return len(self._script)

    def reset(self) -> None:
        """Forget the requests received and empty the script."""
        with self._lock:
            self.requests.clear()
            self.headers.clear()
            self.peers.clear()
            self._script.clear()

    def _record(
        self, body: dict[str, Any], headers: dict[str, str], peer: Any = None
    ) -> ScriptItem | None:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            self.peers.append(tuple(peer[:2]) if peer else ("", 0))
            return self._script.popleft() if self._script else None

    def _next_id(self) -> str:
        with self._lock:
            self._ids += 1
            return f"{self._ids:06d}"

    def __repr__(self) -> str:
        state = f"{self.base_url}" if self._httpd is not None else "stopped"
        return f"OpenAIServer({state}, {len(self.requests)} requests, {self.pending} scripted)"


def main(argv: Sequence[str] | None = None) -> None:
    """Serve until interrupted: ``python -m hookwire.testing.openai_server``.

    Prints the base URL on the first line of stdout, so another process can point
    ``OPENAI_BASE_URL`` at it.
    """
    import argparse

    parser = argparse.ArgumentParser(description="An OpenAI-compatible server for tests.")
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args(argv)
    with OpenAIServer(model=args.model, api_key=args.api_key) as server:
        print(server.base_url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
