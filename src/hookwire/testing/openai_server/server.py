"""``OpenAIServer``: the test server's lifecycle, its script and what it recorded."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from .handler import Handler, HTTPServer
from .script import SCRIPT_TYPES, ScriptItem

__all__ = ["OpenAIServer", "main"]


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
        self._httpd: HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> OpenAIServer:
        """Start serving on an ephemeral port (idempotent); returns the server."""
        if self._httpd is not None:
            return self
        httpd = HTTPServer(("127.0.0.1", 0), Handler)
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
            if not isinstance(item, SCRIPT_TYPES):
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
