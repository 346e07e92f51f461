"""Which implementation of a store serves a database URL: one registry per kind of store,
keyed by the URL's backend (its scheme before any ``+driver``), as MLflow's ``StoreRegistry``.

A handler or the CLI asks its store's interface for "a store" (``ConversationStore(url)``,
``UsageLedger(url)``); the interface asks its registry, once, which class serves the URL. A
new backend is one ``register`` call (with its scheme accepted by
``hookwire.stores.engine.resolve_url``); a store that is no database at all is simply an
instance of the interface, passed to the handler as ``store=``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from ..errors import ConfigurationError

__all__ = ["StoreRegistry"]

S = TypeVar("S")


class StoreRegistry(Generic[S]):
    """Builders of one kind of store (``kind`` names it in errors), by URL backend.

    A builder takes the resolved URL and returns the class that serves it (a backend may
    serve some URLs of its scheme one way and others another, as SQLite files and in-memory
    databases)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._builders: dict[str, Callable[[str], type[S]]] = {}
        self._lock = threading.Lock()

    def register(self, backend: str, builder: Callable[[str], type[S]]) -> None:
        """Serve URLs of ``backend`` (``sqlite``, ``postgresql``, ...) with ``builder``'s
        class (replacing any builder registered before)."""
        with self._lock:
            self._builders[backend] = builder

    def backends(self) -> list[str]:
        """The backends registered, sorted."""
        return sorted(self._builders)

    def lookup(self, url: str) -> type[S]:
        """The class serving the resolved URL ``url``."""
        backend = url.partition(":")[0].partition("+")[0]
        builder = self._builders.get(backend)
        if builder is None:
            raise ConfigurationError(
                f"no {self.kind} is registered for {backend!r} databases; registered: "
                f"{', '.join(self.backends()) or 'none'}"
            )
        return builder(url)
