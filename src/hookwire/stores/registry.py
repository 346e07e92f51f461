"""Which implementation of a store serves a database URL: one registry per kind of store,
keyed by the URL's backend (its scheme before any ``+driver``), as MLflow's ``StoreRegistry``.

A handler or the CLI asks its store's interface for "a store" (``ConversationStore(url)``,
``UsageLedger(url)``); the interface asks its registry, once, which class serves the URL. A
new backend is one ``register`` call: a database SQLAlchemy serves (its URL resolved by
``hookwire.stores.engine.resolve_url``), or a scheme of its own (``memory://...``, passed to
the implementation as given). A store can also simply be an instance of the interface,
passed to a handler as ``store=``.
"""

from __future__ import annotations

import abc
import os
import threading
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

from ..errors import ConfigurationError
from .engine import DATABASE_BACKENDS, resolve_url

__all__ = ["Store", "StoreRegistry"]

S = TypeVar("S")
StoreT = TypeVar("StoreT", bound="Store")


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

    def register_class(self, backend: str, cls: type[S]) -> None:
        """Serve every URL of ``backend`` with ``cls`` (``register`` with a builder that
        always gives it)."""
        self.register(backend, lambda url: cls)

    def unregister(self, backend: str) -> None:
        """Serve URLs of ``backend`` no more."""
        with self._lock:
            self._builders.pop(backend, None)

    def resolve(self, url: str | None) -> str:
        """The URL as its store gets it: a URL of a scheme of its own (a registered backend
        that is no database of ``DATABASE_BACKENDS``) as given, any other as
        ``hookwire.stores.engine.resolve_url`` resolves it (``None``: the default database)."""
        if url is not None:
            backend = _backend(url)
            if backend in self._builders and backend not in DATABASE_BACKENDS:
                return url
        return resolve_url(url)

    def backends(self) -> list[str]:
        """The backends registered, sorted."""
        return sorted(self._builders)

    def lookup(self, url: str) -> type[S]:
        """The class serving the resolved URL ``url``."""
        backend = _backend(url)
        builder = self._builders.get(backend)
        if builder is None:
            raise ConfigurationError(
                f"no {self.kind} is registered for {backend!r} databases; registered: "
                f"{', '.join(self.backends()) or 'none'}"
            )
        return builder(url)


def _backend(url: Any) -> str:
    """The backend of a URL: its scheme before any ``+driver``."""
    return str(url).partition(":")[0].partition("+")[0]


class Store(abc.ABC):
    """The base of a store interface (``ConversationStore``, ``UsageLedger``).

    An interface declares its registry as ``backends`` in its own class body; calling the
    interface, ``Interface(url)``, then makes the implementation registered for the URL's
    backend (as ``pathlib.Path()`` makes a ``PosixPath``), and :meth:`for_url` shares one per
    database in a process. An implementation is called as any class.
    """

    #: The database's resolved URL.
    url: str
    #: The implementations of this interface, by backend (set by each interface).
    backends: ClassVar[StoreRegistry[Any]]

    _shared: ClassVar[dict[tuple[type[Store], str], Store]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if "backends" in cls.__dict__:  # the interface itself: choose from the URL
            url = args[0] if args else kwargs.get("url")
            cls = cls.backends.lookup(cls.backends.resolve(url))
        return super().__new__(cls)

    @classmethod
    def for_url(cls: type[StoreT], url: str | None = None) -> StoreT:
        """The process-wide store of the database ``url`` names (typed code asks for a store
        this way: calling the interface does the same with a new instance)."""
        resolved = cls.backends.resolve(url)
        with Store._shared_lock:
            store = Store._shared.get((cls, resolved))
            if store is None:
                store = Store._shared[(cls, resolved)] = cls(resolved)
            return store  # type: ignore[return-value]  # keyed by cls: a cls instance


def _after_fork_in_child() -> None:
    # The parent's stores hold its threads and connections: the child makes its own.
    Store._shared = {}
    Store._shared_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
