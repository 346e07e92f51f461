"""A TCP proxy on 127.0.0.1 in front of a real server, that a test can cut or stall.

For fault tests against a database that goes away without touching the real server (other
tests use it at the same time): point the code under test at ``proxy.port`` and call

- :meth:`TCPProxy.cut`: the server is down. Open connections are reset and new ones are
  refused (the listening socket is closed);
- :meth:`TCPProxy.stall`: the server never answers. Connections are accepted (new ones
  too) and the bytes sent are taken, but nothing is passed on either way;
- :meth:`TCPProxy.restore`: back to normal. After a stall, what was held is passed on, so
  the stalled requests complete; after a cut, clients reconnect.

The ``pg_proxy`` fixture of ``tests/conftest.py`` gives one in front of the test
PostgreSQL server.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

__all__ = ["TCPProxy"]

_CHUNK = 65536


class TCPProxy:
    """Forwards 127.0.0.1:``port`` to ``host``:``target_port`` (threads: test code only)."""

    def __init__(self, host: str, target_port: int) -> None:
        self.target = (host, target_port)
        self.flowing = threading.Event()
        self.flowing.set()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._closed = False
        self._listener: socket.socket | None = None
        self.port = 0
        self._listen()

    def __repr__(self) -> str:
        return f"TCPProxy(127.0.0.1:{self.port} -> {self.target[0]}:{self.target[1]})"

    def url(self, url: str) -> str:
        """``url`` (a database URL) through this proxy: the same, at 127.0.0.1:``port``."""
        from sqlalchemy.engine import make_url

        return make_url(url).set(host="127.0.0.1", port=self.port).render_as_string(False)

    # -- what a test does --------------------------------------------------------------------

    def cut(self) -> None:
        """Down: reset every open connection and refuse new ones."""
        self.flowing.set()  # pumps held by a stall end with their sockets
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown() first: on Linux a close() alone does not wake the thread blocked in
            # accept(), which would go on accepting.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                _reset(sock)

    def stall(self) -> None:
        """Never answers: accept and take bytes, pass nothing on."""
        self.flowing.clear()
        if self._listener is None:
            self._listen()

    def restore(self) -> None:
        """Back to normal (what a stall held is passed on)."""
        if self._listener is None:
            self._listen()
        self.flowing.set()

    def close(self) -> None:
        """Stop listening and drop every connection."""
        self._closed = True
        self.cut()

    # -- the machinery -----------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by cut()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(_CHUNK)
                if not data:
                    break
                self.flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def _reset(sock: socket.socket) -> None:
    # SO_LINGER 0: close() sends a RST, as a server that went away does, not a polite FIN.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
