"""What every store on SQLAlchemy shares: its resolved URL, how it names itself and its
failures (with the password redacted), and the schema check before its first statement.

The ledger, the outbox and the trace store mix :class:`SQLStore` into their SQL base class
(``SQLUsageLedger(SQLStore, UsageLedger)``), ahead of the interface.
"""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from ..errors import StoreError
from .engine import ensure_schema, get_write_engine, redact, resolve_url

__all__ = ["SQLStore"]


class SQLStore:
    """The URL, ``repr``, schema check and error wrapping of a store on SQLAlchemy."""

    #: The database's resolved URL.
    url: str

    def __init__(self, url: str | None = None) -> None:
        self.url = resolve_url(url)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact(self.url)!r})"

    async def _ready(self) -> None:
        try:
            await ensure_schema(self.url)
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("opening the database", exc) from exc

    def _fail(self, doing: str, exc: Exception) -> StoreError:
        return StoreError(f"{doing} in {redact(self.url)} failed: {exc}")

    async def _connect_once(self) -> None:
        """Check the schema and connect once: the pool keeps the connection and, on SQLite,
        aiosqlite's thread, which could not be started at exit from Python 3.12 on."""
        await self._ready()
        try:
            async with get_write_engine(self.url).connect():
                pass
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("opening the database", exc) from exc
