"""Which database, one engine for it, and its schema.

- :func:`resolve_url` ``(url=None)``: the explicit URL, else ``HOOKWIRE_DATABASE_URL``, else
  the SQLite file ``./hookwire.db`` (made absolute). ``sqlite://`` gets the ``aiosqlite``
  driver and ``postgresql://`` / ``postgres://`` get ``asyncpg``; anything else is a
  ``ConfigurationError`` that lists what is accepted.
- :func:`get_engine` ``(url)``: the ``AsyncEngine`` for that URL on the running event loop
  (connections belong to a loop; stores run on the loop of ``hookwire.stores.runner``, so in
  practice there is one per database per process). SQLite connections get WAL mode,
  ``busy_timeout`` and foreign keys; write transactions there start with ``BEGIN IMMEDIATE``
  (:func:`get_write_engine`) so concurrent writers queue instead of failing.
- :func:`ensure_schema` ``(url)``: checks once per process that the schema is at the code's
  Alembic head. A SQLite database is created or upgraded automatically (a local file the
  app owns). Any other database older than the code raises ``MigrationError`` telling to run
  ``hookwire db upgrade --db URL`` (or set ``HOOKWIRE_AUTO_MIGRATE=1`` to upgrade it
  automatically too); a database newer than the code raises ``MigrationError`` too.
- :func:`upgrade` ``(url, revision="head")``: applies the migrations (what ``hookwire db
  upgrade`` runs); concurrent upgrades of one database are serialised. On PostgreSQL, a run
  that applied migrations ANALYZEs hookwire's tables that hold rows.

Migrations live in ``hookwire/stores/migrations/versions`` and run programmatically (no
``alembic.ini``); every revision's ``down_revision`` chains to the previous one.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..errors import ConfigurationError, MigrationError, StoreError
from ..redaction import redact_url
from .revisions import DEFAULT_SQLITE_FILE, MIGRATIONS, file_heads, open_sqlite_at

__all__ = [
    "DATABASE_BACKENDS",
    "DEFAULT_SQLITE_FILE",
    "SQLITE_BUSY_SECONDS",
    "SQLITE_PRAGMAS",
    "dispose_engines",
    "ensure_schema",
    "get_engine",
    "get_write_engine",
    "head_revision",
    "is_sqlite",
    "json_loads",
    "redact",
    "resolve_url",
    "schema_ready",
    "schema_revision",
    "upgrade",
]


#: The URL schemes :func:`resolve_url` resolves (the databases SQLAlchemy serves for hookwire).
DATABASE_BACKENDS = frozenset({"sqlite", "postgresql", "postgres"})

_ACCEPTED = (
    "sqlite:///path/to/file.db (or sqlite+aiosqlite://...), "
    "postgresql://user:password@host:5432/dbname (or postgres://, postgresql+asyncpg://, "
    "postgresql+psycopg://)"
)

_MIGRATIONS = MIGRATIONS
#: How long an SQLite connection waits for another writer's lock, in seconds.
SQLITE_BUSY_SECONDS = 30.0
#: The settings of every SQLite connection hookwire opens (SQLAlchemy's and the plain
#: ``sqlite3`` ones of the conversation store): WAL, the busy timeout above (PRAGMA takes no
#: parameters, so it is written out), foreign keys, and NORMAL synchronisation, which in WAL
#: mode survives a crash of the process (SIGKILL) with every commit; only an OS crash or
#: power loss may lose the last transactions. A page cache of up to 16 MB (SQLite's default
#: is 2 MB): a batch of ledger rows dirties pages of indexes on random keys (users) and of
#: their totals, about 2.4 pages a row once the ledger holds 300,000 rows; past 2 MB a
#: transaction spills dirty pages to the WAL and writes them again, and re-reads the pages
#: it evicted. With 16 MB, 500-row batches at that size make 20 % fewer writes and half the
#: reads (``strace -c``; bench/README.md, ``scale.py``).
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA busy_timeout=30000",
    "PRAGMA foreign_keys=ON",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA cache_size=-16384",
)


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _sqlite_json_dumps(value: Any) -> str | bytes:
    # SQLite gives a column declared JSON numeric affinity, and would turn the text of a bare
    # number into a number of its own (3.0 into 3): a BLOB keeps the text as it is.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return orjson.dumps(value)
    return _json_dumps(value)


def json_loads(value: Any) -> Any:
    """Decode a stored JSON value: text, or on SQLite a bare number's text as a BLOB (or, in
    rows written before, the number itself, which numeric affinity made of the text)."""
    if isinstance(value, (int, float)):
        return value
    return orjson.loads(value)


def resolve_url(url: str | None = None) -> str:
    """The SQLAlchemy async URL to use: ``url``, else ``HOOKWIRE_DATABASE_URL``, else
    ``sqlite+aiosqlite:///<cwd>/hookwire.db``.

    A URL that cannot be used raises ``ConfigurationError`` saying what to write instead; its
    message shows the URL through :func:`redact`, so never its password. So does an empty
    ``url`` or an ``HOOKWIRE_DATABASE_URL`` set to blanks (unset it for the default)."""
    if url is None:
        raw = os.environ.get("HOOKWIRE_DATABASE_URL")
        if raw is None:
            path = Path(DEFAULT_SQLITE_FILE).resolve()
            return f"sqlite+aiosqlite:///{path}"
        if not raw.strip():
            raise ConfigurationError(
                "HOOKWIRE_DATABASE_URL is set but empty; set it to a database URL "
                f"({_ACCEPTED}), or unset it to use ./{DEFAULT_SQLITE_FILE}"
            )
    else:
        raw = url
    if not isinstance(raw, str):
        raise ConfigurationError(
            f"the database URL must be a string, not {type(raw).__name__}; accepted: {_ACCEPTED}"
        )
    if not raw.strip():
        raise ConfigurationError(
            f"the database URL is empty; pass a database URL ({_ACCEPTED}), or None for the default"
        )
    raw = raw.strip()
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw[len("postgres://") :]
    try:
        parsed = make_url(raw)
    except ArgumentError:
        raise ConfigurationError(
            f"{redact(raw)!r} is not a database URL; accepted: {_ACCEPTED}"
        ) from None
    except ValueError:  # the port is not a number (SQLAlchemy's int() says which text)
        raise ConfigurationError(
            f"the port in {redact(raw)!r} is not a number; write host:5432, or leave the port "
            "out; a password holding @, :, / or % must be percent-encoded (@ is %40)"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite":
        if driver not in ("", "aiosqlite", "pysqlite"):
            raise ConfigurationError(
                f"SQLite through the {driver!r} driver is not supported; use sqlite:/// "
                "(hookwire uses aiosqlite)"
            )
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            database = str(Path(database).expanduser().resolve())
        if not database:
            raise ConfigurationError(
                "an SQLite URL needs a file: sqlite:///hookwire.db (relative) or "
                "sqlite:////abs/path/hookwire.db"
            )
        return parsed.set(drivername="sqlite+aiosqlite", database=database).render_as_string(
            hide_password=False
        )
    if backend == "postgresql":
        if driver in ("", "asyncpg"):
            parsed = parsed.set(drivername="postgresql+asyncpg")
        elif driver not in ("psycopg", "psycopg_async"):
            raise ConfigurationError(
                f"PostgreSQL through the {driver!r} driver is not async; use postgresql:// "
                "(asyncpg) or postgresql+psycopg://"
            )
        _check_server_url(raw, parsed)
        if not parsed.database:
            raise ConfigurationError(
                f"{redact(raw)!r} names no database; add it: postgresql://host:5432/dbname"
            )
        return parsed.render_as_string(hide_password=False)
    raise ConfigurationError(
        f"unsupported database {backend!r} in {redact(raw)!r}; accepted: {_ACCEPTED}"
    )


def _check_server_url(raw: str, parsed: URL) -> None:
    """Refuse a server URL whose parts SQLAlchemy would split in the wrong place: a password
    holding a bare ``@`` makes the rest of it the host (and shows it in every error); one
    holding a bare ``/``, ``?`` or ``#`` as well ends the host early, so the URL's part after it
    is searched for an ``@`` too."""
    rest = raw.partition("://")[2]
    if rest.count("@") > 1 or "@" in (parsed.host or "") or "@" in (parsed.database or ""):
        raise ConfigurationError(
            f"{redact(raw)!r} has more than one @: percent-encode an @ in the user or "
            "password as %40 (and : as %3A, / as %2F, % as %25)"
        )
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise ConfigurationError(
            f"the port in {redact(raw)!r} is out of range; use a port from 1 to 65535 "
            "(PostgreSQL's is 5432)"
        )


def redact(url: str) -> str:
    """``url`` with its password hidden, for messages and logs (``hookwire.redaction.
    redact_url``: the one function every URL hookwire shows goes through)."""
    return redact_url(url)


def is_sqlite(url: str) -> bool:
    """Whether ``url`` (as resolved) is an SQLite database."""
    return url.startswith("sqlite")


# -- engines ----------------------------------------------------------------------------------

_engines: dict[tuple[str, int], tuple[asyncio.AbstractEventLoop, AsyncEngine]] = {}
_engines_lock = threading.Lock()
# the same engines, by the URL as given (resolving a URL costs more than the query it serves)
_fast: dict[tuple[str, int], tuple[asyncio.AbstractEventLoop, AsyncEngine]] = {}
_write: dict[int, AsyncEngine] = {}


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own implicit transactions are turned off so that hookwire decides how each
    # transaction begins (BEGIN, or BEGIN IMMEDIATE for writes).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    if conn.get_execution_options().get("hookwire_write"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


def _create(url: str) -> AsyncEngine:
    if is_sqlite(url):
        database = make_url(url).database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            json_serializer=_sqlite_json_dumps,
            json_deserializer=json_loads,
            connect_args={"timeout": SQLITE_BUSY_SECONDS},
        )
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
        return engine
    return create_async_engine(
        url,
        json_serializer=_json_dumps,
        json_deserializer=json_loads,
        pool_size=10,
        max_overflow=10,
    )


def get_engine(url: str | None = None) -> AsyncEngine:
    """The engine for ``url`` (resolved with :func:`resolve_url`) on the running event loop.

    Created on first use and kept; call it from the store loop (``hookwire.stores.runner``)
    to share one pool across the process.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise ConfigurationError(
            "get_engine() needs a running event loop; run the store code through "
            "hookwire.stores.runner.run_sync(...) from sync code"
        ) from None
    if url is not None:
        fast = _fast.get((url, id(loop)))
        if fast is not None and fast[0] is loop:
            return fast[1]
    given = url
    url = resolve_url(url)
    key = (url, id(loop))
    with _engines_lock:
        found = _engines.get(key)
        if found is None or found[0] is not loop:
            found = (loop, _create(url))
            _engines[key] = found
        if given is not None:
            _fast[(given, id(loop))] = found
        return found[1]


def get_write_engine(url: str | None = None) -> AsyncEngine:
    """The same engine, with write transactions that take SQLite's write lock at ``BEGIN``."""
    base = get_engine(url)
    write = _write.get(id(base))
    if write is None:
        write = _write[id(base)] = base.execution_options(hookwire_write=True)
    return write


#: Called with each engine ``dispose_engines`` is about to dispose, so that code holding its
#: connections (the conversation writer keeps one between groups) gives them back first.
_before_dispose: list[Callable[[AsyncEngine], Awaitable[None]]] = []


def before_dispose(hook: Callable[[AsyncEngine], Awaitable[None]]) -> None:
    """Have ``hook(engine)`` awaited before :func:`dispose_engines` disposes ``engine``."""
    _before_dispose.append(hook)


async def dispose_engines() -> None:
    """Close the pools of the engines created on the running loop (for tests and shutdown)."""
    loop = asyncio.get_running_loop()
    with _engines_lock:
        mine = [k for k, (lp, _) in _engines.items() if lp is loop]
        engines = [_engines.pop(k)[1] for k in mine]
        for k in [k for k, (lp, _) in _fast.items() if lp is loop]:
            del _fast[k]
        for e in engines:
            _write.pop(id(e), None)
    _ready.difference_update(k for k in list(_ready) if k[1] == id(loop))
    for engine in engines:
        for hook in _before_dispose:
            await hook(engine)
        await engine.dispose()


# -- schema -----------------------------------------------------------------------------------

_ready: set[tuple[str, int]] = set()
_ready_lock: dict[tuple[str, int], asyncio.Lock] = {}
_script: Any = None
# Alembic loads its scripts as modules, which is not safe from two threads at once; handlers on
# different event loops (history, accounting) may set up the same database together. Taken
# before any transaction begins, so it never waits while holding SQLite's write lock.
_migration_lock = threading.Lock()


async def _take_migration_lock() -> None:
    # Polled rather than waited for in a thread: this also runs while the interpreter exits
    # (background writers drain then), when no new thread can be started.
    while not _migration_lock.acquire(blocking=False):  # noqa: ASYNC110 - a thread lock
        await asyncio.sleep(0.002)


def _alembic_config(connection: Connection | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The Alembic revision this code needs (the head of its migrations)."""
    heads = _file_heads()
    if heads is None:
        heads = _script_directory().get_heads()
    if len(heads) != 1:  # pragma: no cover - a packaging mistake, caught by the tests
        raise MigrationError(f"hookwire's migrations have {len(heads)} heads: {heads}")
    return str(heads[0])


def _script_directory(lock_held: bool = False) -> Any:
    global _script
    if _script is None:
        if lock_held:
            _load_script()
        else:
            with _migration_lock:
                _load_script()
    return _script


def _load_script() -> None:
    global _script
    if _script is None:
        from alembic.script import ScriptDirectory

        _script = ScriptDirectory.from_config(_alembic_config())


_file_heads_cache: list[str] | None = None


def _file_heads() -> list[str] | None:
    """The heads of the migration files read as text (``revisions.file_heads``, cached), or
    ``None`` when Alembic must decide."""
    global _file_heads_cache
    if _file_heads_cache is None:
        _file_heads_cache = file_heads(_MIGRATIONS / "versions")
    return _file_heads_cache


def _known_revisions() -> set[str]:
    # called with the migration lock held
    return {str(rev.revision) for rev in _script_directory(lock_held=True).walk_revisions()}


def _current(connection: Connection) -> str | None:
    # What Alembic's MigrationContext.get_current_heads reads, without importing Alembic.
    if not connection.dialect.has_table(connection, "alembic_version"):
        return None
    row = connection.exec_driver_sql("SELECT version_num FROM alembic_version").first()
    return None if row is None else str(row[0])


async def schema_revision(url: str | None = None) -> str | None:
    """The revision the database is at (``None``: no hookwire schema yet)."""
    engine = get_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_current)
    except SQLAlchemyError as exc:
        raise StoreError(
            f"cannot read the schema version of {redact(resolve_url(url))}: {exc}"
        ) from exc


def _upgrade_sync(connection: Connection, revision: str) -> None:
    from alembic import command

    if connection.dialect.name == "postgresql":
        # Two processes upgrading the same database at once: the second waits, then finds
        # nothing left to do.
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7411024693180001)")
    before = _current(connection)
    command.upgrade(_alembic_config(connection), revision)
    if connection.dialect.name == "postgresql" and _current(connection) != before:
        _analyze(connection)


def _analyze(connection: Connection) -> None:
    """ANALYZE hookwire's tables that hold rows, after migrations created or changed them.

    A server without autovacuum would otherwise plan with no statistics (or with those of
    the table before the change) for as long as it runs. An empty table is left unanalysed:
    PostgreSQL then plans for a newly created table (at least ten pages, so lookups by key use
    the index); analysed while empty, it is planned as empty, with sequential scans that a
    statement prepared then keeps while the table grows."""
    from .schema import metadata

    for table in metadata.sorted_tables:
        name = connection.dialect.identifier_preparer.quote(table.name)
        if not connection.dialect.has_table(connection, table.name):
            continue
        if connection.exec_driver_sql(f"SELECT EXISTS (SELECT 1 FROM {name})").scalar():
            connection.exec_driver_sql(f"ANALYZE {name}")


async def upgrade(url: str | None = None, revision: str = "head") -> str | None:
    """Apply the migrations up to ``revision``; returns the revision the database is now at."""
    url = resolve_url(url)
    _script_directory()  # loaded before the lock is taken: loading takes it too
    await _take_migration_lock()
    try:
        await _upgrade_locked(url, revision)
    finally:
        _migration_lock.release()
    return await schema_revision(url)


async def _upgrade_locked(url: str, revision: str) -> None:
    engine = get_write_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade_sync, revision)
    except SQLAlchemyError as exc:
        raise MigrationError(f"upgrading {redact(url)} failed: {exc}") from exc
    except OSError as exc:
        raise StoreError(f"cannot open {redact(url)}: {exc}") from exc


def _auto_migrate(url: str) -> bool:
    flag = os.environ.get("HOOKWIRE_AUTO_MIGRATE", "").strip().lower()
    if flag in ("1", "true", "yes", "on"):
        return True
    if flag in ("0", "false", "no", "off"):
        return False
    return is_sqlite(url)


def schema_ready(url: str | None, loop: asyncio.AbstractEventLoop) -> bool:
    """Whether :func:`ensure_schema` has already succeeded for ``url`` on ``loop``: code on
    another thread can then skip the hop to ``loop`` that checking again would cost.

    An SQLite file already at the head revision counts as checked: its revision is read with
    a plain read-only ``sqlite3`` connection, here, instead of making the async engine on the
    loop (importing the dialect, starting aiosqlite's thread), which cost a process's first
    read about 20 ms. Anything else (no file yet, another revision, no single head in the
    migration files) is left to :func:`ensure_schema`, which upgrades or names the error.
    """
    key = (resolve_url(url), id(loop))
    if key in _ready:
        return True
    if _sqlite_file_at_head(key[0]):
        _ready.add(key)
        return True
    return False


def _sqlite_file_at_head(url: str) -> bool:
    if not is_sqlite(url):
        return False
    database = make_url(url).database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return False
    heads = _file_heads()
    if heads is None or len(heads) != 1:
        return False
    conn = open_sqlite_at(database, heads[0], timeout=30.0)
    if conn is None:
        return False
    conn.close()
    return True


async def ensure_schema(url: str | None = None) -> None:
    """Make sure the database's schema is the one this code needs (see the module docs)."""
    url = resolve_url(url)
    key = (url, id(asyncio.get_running_loop()))
    if key in _ready:
        return
    lock = _ready_lock.setdefault(key, asyncio.Lock())
    async with lock:
        if key in _ready:
            return
        head = head_revision()
        await _take_migration_lock()
        try:
            await _check_or_upgrade(url, head)
        finally:
            _migration_lock.release()
        _ready.add(key)


async def _check_or_upgrade(url: str, head: str) -> None:
    current = await schema_revision(url)
    if current == head:
        return
    if current is not None and current not in _known_revisions():
        raise MigrationError(
            f"the database {redact(url)} is at schema revision {current!r}, newer than "
            f"this hookwire ({head!r}); upgrade hookwire"
        )
    if not _auto_migrate(url):
        raise MigrationError(
            f"the database {redact(url)} is at schema revision {current or 'none'}, "
            f"this hookwire needs {head!r}; run `hookwire db upgrade --db URL` "
            "(or set HOOKWIRE_AUTO_MIGRATE=1)"
        )
    await _upgrade_locked(url, "head")


def _after_fork_in_child() -> None:
    # Connections and the loop they belong to stay with the parent process.
    global _engines_lock, _migration_lock
    _engines.clear()
    _fast.clear()
    _write.clear()
    _ready.clear()
    _ready_lock.clear()
    _engines_lock = threading.Lock()
    _migration_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
