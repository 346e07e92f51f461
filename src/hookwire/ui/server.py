"""The dashboard's HTTP server: the standard library's ``ThreadingHTTPServer`` serving the
static pages and the JSON API (``hookwire.ui.api``). A local read-only tool needs no
framework; what it needs is done here:

- **read-only**: ``GET`` and ``HEAD`` only (anything else is 405);
- **bound to localhost** by default; there the ``Host`` header must name a loopback address
  too, so that a web page elsewhere cannot reach the dashboard through a DNS name made to
  point at 127.0.0.1 (DNS rebinding);
- **a token for any other host**: the first request brings it as ``?token=`` (the address
  ``hookwire ui`` prints), which becomes an ``HttpOnly``, ``SameSite=Strict`` cookie; an API
  client may send ``Authorization: Bearer <token>`` instead;
- a strict ``Content-Security-Policy`` (the pages load only their own scripts and styles);
- ``/api/events``: server-sent events, a ``run`` event for each run that starts (the live
  view), polled from the store once a second, while the page listens.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import mimetypes
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import orjson

from ..logschema import json_default
from .api import ApiError, DashboardApi

__all__ = ["COOKIE", "DashboardServer", "is_loopback"]

logger = logging.getLogger("hookwire")

#: The cookie that carries the token after the first request.
COOKIE: Final = "hookwire_ui_token"
#: Seconds between two looks for new runs in the live view.
LIVE_POLL: Final = 1.0
_HEARTBEAT: Final = 15.0
_CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _static_files() -> dict[str, bytes]:
    root = resources.files("hookwire.ui").joinpath("static")
    return {f.name: f.read_bytes() for f in root.iterdir() if f.is_file()}


class DashboardServer(ThreadingHTTPServer):
    """``hookwire ui``'s server on ``host``:``port`` (``port`` 0: any free port), answering
    from ``api``; ``token`` is required of every request when given (and must be given for
    a host that is not loopback)."""

    daemon_threads = True

    def __init__(
        self, api: DashboardApi, host: str = "127.0.0.1", port: int = 8765, token: str | None = None
    ) -> None:
        if not is_loopback(host) and not token:
            raise ValueError(
                f"serving on {host} (not this machine alone) needs a token; pass --token, or "
                "leave --host out to serve on 127.0.0.1"
            )
        self.api = api
        self.token = token
        self.local = is_loopback(host)
        self.closing = threading.Event()
        self.static = _static_files()
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        """The dashboard's address (with the token, when there is one)."""
        host, port = str(self.server_address[0]), self.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        base = f"http://{shown}:{port}/"
        return f"{base}?token={self.token}" if self.token else base

    def shutdown(self) -> None:
        """Stop serving (live views end within a poll)."""
        self.closing.set()
        super().shutdown()


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    protocol_version = "HTTP/1.1"
    server_version = "hookwire-ui"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("hookwire ui: " + format, *args)

    # -- the rules ----------------------------------------------------------------------------

    def _host_allowed(self) -> bool:
        if not self.server.local:
            return True  # the token guards it
        host = self.headers.get("Host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return is_loopback(name)

    def _authorised(self, query: dict[str, list[str]]) -> tuple[bool, bool]:
        """(allowed, came by ``?token=``)."""
        token = self.server.token
        if not token:
            return True, False
        given = (query.get("token") or [""])[-1]
        if given and hmac.compare_digest(given.encode(), token.encode()):
            return True, True
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].encode(), token.encode()):
            return True, False
        for part in self.headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and hmac.compare_digest(value.encode(), token.encode()):
                return True, False
        return False, False

    # -- methods ------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _read_only(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"the dashboard is read-only\n", "text/plain",
                   extra={"Allow": "GET, HEAD"})  # fmt: skip

    do_POST = do_PUT = do_DELETE = do_PATCH = _read_only

    def _serve(self, head: bool) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if not self._host_allowed():
            self._error(HTTPStatus.FORBIDDEN, "this dashboard answers on localhost only")
            return
        allowed, by_query = self._authorised(query)
        if not allowed:
            self._error(
                HTTPStatus.UNAUTHORIZED,
                "open the address `hookwire ui` printed (it carries the token)",
            )
            return
        if by_query:  # keep the token out of the address bar and history: a cookie from now on
            self._send(
                HTTPStatus.SEE_OTHER,
                b"",
                "text/plain",
                extra={
                    "Location": parts.path or "/",
                    "Set-Cookie": f"{COOKIE}={self.server.token}; HttpOnly; SameSite=Strict; "
                    "Path=/",
                },
            )
            return
        path = parts.path
        if path == "/api/events":
            self._events(query)
            return
        if path.startswith("/api/"):
            try:
                body = orjson.dumps(
                    self.server.api.get(path, query),
                    default=json_default,
                    option=orjson.OPT_NON_STR_KEYS,
                )
            except ApiError as exc:
                self._error(HTTPStatus(exc.status), str(exc))
                return
            except Exception:
                logger.exception("hookwire ui: %s failed", path)
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "the dashboard failed; see its log")
                return
            self._send(HTTPStatus.OK, body, "application/json", head=head)
            return
        name = "index.html" if path in ("/", "/index.html") else path.removeprefix("/static/")
        content = self.server.static.get(name) if "/" not in name else None
        if content is None:
            self._error(HTTPStatus.NOT_FOUND, f"no such page: {path}")
            return
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self._send(HTTPStatus.OK, content, kind, head=head)

    # -- answers ------------------------------------------------------------------------------

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._send(status, orjson.dumps({"error": message}), "application/json")

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        kind: str,
        *,
        head: bool = False,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        if kind.startswith("text/") or kind.endswith(("json", "javascript")):
            kind += "; charset=utf-8"
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", _CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _events(self, query: dict[str, list[str]]) -> None:
        """Server-sent events: ``run`` for each run that starts, until the page goes."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        after: str | None = (query.get("after") or [""])[-1] or None
        quiet_since = time.monotonic()
        try:
            while not self.server.closing.is_set():
                found = self.server.api.get("/api/runs/since", {"after": [after]} if after else {})[
                    "items"
                ]
                for run in reversed(found):  # oldest first: the page prepends each
                    data = orjson.dumps(run, default=json_default)
                    self.wfile.write(b"event: run\ndata: " + data + b"\n\n")
                    after = run["started_at"].isoformat()
                if found:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > _HEARTBEAT:
                    self.wfile.write(b": still here\n\n")  # finds a page that went away
                    quiet_since = time.monotonic()
                self.wfile.flush()
                self.server.closing.wait(LIVE_POLL)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except ApiError as exc:
            logger.debug("hookwire ui: the live view stopped: %s", exc)
        except Exception:
            logger.exception("hookwire ui: the live view failed")
