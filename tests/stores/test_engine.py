"""hookwire.stores.engine: URLs, engines, schema versions and migrations."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from hookwire.errors import ConfigurationError, MigrationError
from hookwire.stores import engine, runner


def test_default_is_sqlite_file_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert engine.resolve_url() == f"sqlite+aiosqlite:///{tmp_path / 'hookwire.db'}"


def test_env_var_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKWIRE_DATABASE_URL", "postgres://u:p@db:5432/app")
    assert engine.resolve_url() == "postgresql+asyncpg://u:p@db:5432/app"


def test_explicit_url_wins_over_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOOKWIRE_DATABASE_URL", "postgres://u:p@db:5432/app")
    assert engine.resolve_url(f"sqlite:///{tmp_path}/a.db") == (
        f"sqlite+aiosqlite:///{tmp_path}/a.db"
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://h/db", "postgresql+asyncpg://h/db"),
        ("postgresql+asyncpg://h:1/db", "postgresql+asyncpg://h:1/db"),
        ("postgresql+psycopg://h/db", "postgresql+psycopg://h/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_postgres_urls_get_an_async_driver(given: str, expected: str) -> None:
    assert engine.resolve_url(given) == expected


def test_relative_sqlite_path_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert engine.resolve_url("sqlite:///chat.db") == f"sqlite+aiosqlite:///{tmp_path}/chat.db"


@pytest.mark.parametrize(
    "bad",
    [
        "not a url",
        "mysql://h/db",
        "postgresql+psycopg2://h/db",
        "postgresql://h",
        "sqlite+pysqlcipher:///x.db",
        "sqlite://",
    ],
)
def test_bad_urls_say_what_is_accepted(bad: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        engine.resolve_url(bad)
    assert "sqlite" in str(info.value) or "postgresql" in str(info.value)


def test_password_is_not_in_error_messages() -> None:
    with pytest.raises(ConfigurationError) as info:
        engine.resolve_url("mysql://u:s3cret@h/db")
    assert "s3cret" not in str(info.value)


def test_get_engine_needs_a_loop() -> None:
    with pytest.raises(ConfigurationError, match="run_sync"):
        engine.get_engine("sqlite:///x.db")


def test_new_sqlite_file_gets_the_schema_and_pragmas(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/new.db"

    async def go() -> tuple[str | None, str, int, int, int]:
        await engine.ensure_schema(url)
        async with engine.get_engine(url).connect() as conn:
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
            fks = (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one()
            busy = (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one()
            cache = (await conn.execute(text("PRAGMA cache_size"))).scalar_one()
        return await engine.schema_revision(url), mode, fks, busy, cache

    revision, mode, fks, busy, cache = runner.run_sync(go())
    assert revision == engine.head_revision()
    assert (mode, fks) == ("wal", 1)
    assert busy > 0
    assert cache == -16384  # KiB: a ledger batch's dirty pages fit (engine.SQLITE_PRAGMAS)
    assert (tmp_path / "new.db").exists()


def test_head_is_the_chat_history_revision_or_later() -> None:
    assert engine.head_revision() >= "0001_chat_history"


def test_head_read_from_the_files_is_alembics() -> None:
    # the schema check reads the migration files as text instead of loading them with Alembic
    script = engine._script_directory()
    assert engine._file_heads() == [str(h) for h in script.get_heads()]
    assert engine.head_revision() == str(script.get_heads()[0])
    known = {str(r.revision) for r in script.walk_revisions()}
    assert engine._file_heads_cache is not None and set(engine._file_heads_cache) <= known


@pytest.mark.parametrize(
    "body",
    [
        "revision = compute()\ndown_revision = None\n",  # not a plain literal
        'revision = "a"\nrevision = "b"\ndown_revision = None\n',  # twice
        'revision = "a"\n',  # no down_revision
        'revision = "a"\ndown_revision = "missing"\n',  # a parent no file has
    ],
)
def test_files_alembic_must_read_make_the_check_fall_back_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str
) -> None:
    (tmp_path / "versions").mkdir()
    (tmp_path / "versions" / "0001_x.py").write_text(body)
    monkeypatch.setattr(engine, "_MIGRATIONS", tmp_path)
    monkeypatch.setattr(engine, "_file_heads_cache", None)
    assert engine._file_heads() is None


def test_heads_of_plain_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "versions").mkdir()
    (tmp_path / "versions" / "1.py").write_text("revision = '1'\ndown_revision = None\n")
    (tmp_path / "versions" / "2.py").write_text(
        'revision: str = "2"\ndown_revision: str | None = "1"\n'
    )
    monkeypatch.setattr(engine, "_MIGRATIONS", tmp_path)
    monkeypatch.setattr(engine, "_file_heads_cache", None)
    assert engine._file_heads() == ["2"]


def test_schema_check_at_head_does_not_import_alembic(tmp_path: Path) -> None:
    # importing Alembic was most of a process's first read; it is only needed to migrate
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path}/fresh.db"
    runner.run_sync(engine.upgrade(url))
    code = (
        "import sys; from hookwire.stores import engine, runner; "
        f"runner.run_sync(engine.ensure_schema({url!r})); "
        "print(engine.head_revision(), 'alembic' in sys.modules)"
    )
    import hookwire

    # this checkout's code, whatever the working directory
    env = {**os.environ, "PYTHONPATH": str(Path(hookwire.__file__).parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.split() == [engine.head_revision(), "False"]


def _set_revision(url: str, revision: str | None) -> None:
    async def go() -> None:
        async with engine.get_engine(url).begin() as conn:
            await conn.execute(text("DELETE FROM alembic_version"))
            if revision is not None:
                await conn.execute(
                    text("INSERT INTO alembic_version (version_num) VALUES (:r)"), {"r": revision}
                )
        await engine.dispose_engines()

    runner.run_sync(go())


def test_newer_schema_than_the_code_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/newer.db"
    runner.run_sync(engine.upgrade(url))
    _set_revision(url, "9999_from_the_future")
    with pytest.raises(MigrationError, match="upgrade hookwire"):
        runner.run_sync(engine.ensure_schema(url))


def test_older_schema_without_auto_migrate_says_run_db_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    monkeypatch.setenv("HOOKWIRE_AUTO_MIGRATE", "0")
    with pytest.raises(MigrationError, match="hookwire db upgrade"):
        runner.run_sync(engine.ensure_schema(url))
    runner.run_sync(engine.upgrade(url))
    runner.run_sync(engine.ensure_schema(url))


def test_upgrade_and_downgrade_round_trip(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/rt.db"

    async def go() -> tuple[str | None, str | None]:
        await engine.upgrade(url)
        head = await engine.schema_revision(url)
        from alembic import command

        def down(conn: object) -> None:
            command.downgrade(engine._alembic_config(conn), "base")  # type: ignore[arg-type]

        async with engine.get_write_engine(url).begin() as conn:
            await conn.run_sync(down)
        base = await engine.schema_revision(url)
        await engine.upgrade(url)
        return head, base

    head, base = runner.run_sync(go())
    assert head == engine.head_revision()
    assert base is None


@pytest.mark.postgres
def test_postgres_database_is_at_head(pg_database_url: str) -> None:
    assert runner.run_sync(engine.schema_revision(pg_database_url)) == engine.head_revision()
    # a second upgrade is a no-op
    assert runner.run_sync(engine.upgrade(pg_database_url)) == engine.head_revision()


def test_run_sync_from_the_store_loop_is_refused() -> None:
    async def inner() -> None:
        runner.run_sync(engine.schema_revision(f"sqlite:///{os.getcwd()}/x.db"))

    with pytest.raises(ConfigurationError, match="await"):
        runner.run_sync(inner())


async def test_run_from_another_loop(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/loop.db"
    await runner.run(engine.ensure_schema(url))
    assert await runner.run(engine.schema_revision(url)) == engine.head_revision()


async def test_schema_ready_once_checked_on_that_loop(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ready.db"
    store_loop = runner.get_loop()
    assert not engine.schema_ready(url, store_loop)
    await runner.run(engine.ensure_schema(url))
    assert engine.schema_ready(url, store_loop)
    # the same database by another spelling of its URL, and not on another loop
    assert engine.schema_ready(f"sqlite+aiosqlite:///{tmp_path}/ready.db", store_loop)


def test_sqlite_file_at_head_is_ready_without_making_an_engine(tmp_path: Path) -> None:
    # a process's first read skips the async engine when the file is already at head
    url = f"sqlite:///{tmp_path}/head.db"
    runner.run_sync(engine.upgrade(url))
    loop = asyncio.new_event_loop()  # never run: the check cannot have used it
    try:
        assert engine.schema_ready(url, loop)
        assert (engine.resolve_url(url), id(loop)) in engine._ready
    finally:
        loop.close()


@pytest.mark.parametrize("state", ["missing", "older", "empty", "not a database"])
def test_sqlite_file_not_at_head_is_left_to_ensure_schema(tmp_path: Path, state: str) -> None:
    path = tmp_path / "db.sqlite"
    url = f"sqlite:///{path}"
    if state == "older":
        runner.run_sync(engine.upgrade(url, "0001_chat_history"))
        runner.run_sync(engine.dispose_engines())
    elif state == "empty":
        path.write_bytes(b"")
    elif state == "not a database":
        path.write_bytes(b"this is not an SQLite file, " * 100)
    loop = asyncio.new_event_loop()
    try:
        assert not engine.schema_ready(url, loop)
    finally:
        loop.close()
    assert path.exists() == (state != "missing")  # the check creates nothing
    if state != "not a database":
        runner.run_sync(engine.ensure_schema(url))
        assert runner.run_sync(engine.schema_revision(url)) == engine.head_revision()


def test_concurrent_first_use_from_several_loops_migrates_once(tmp_path: Path) -> None:
    # History and accounting handlers each set up the database on their own event loop; on a
    # fresh file they do it at the same moment. Alembic's script loading is not thread-safe,
    # so this used to fail with KeyError('script') and lose the first write.
    import threading

    for round_ in range(3):
        url = f"sqlite:///{tmp_path}/fresh{round_}.db"
        engine._script = None  # load the migration scripts again, from all threads at once
        barrier = threading.Barrier(4)
        errors: list[BaseException] = []

        def first_use(
            url: str = url,
            barrier: threading.Barrier = barrier,
            errors: list[BaseException] = errors,
        ) -> None:
            try:
                barrier.wait()
                asyncio.run(engine.ensure_schema(url))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=first_use) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert runner.run_sync(engine.schema_revision(url)) == engine.head_revision()


# -- passwords in URLs: never shown, whatever they hold --------------------------------------


def test_a_password_holding_at_is_refused_and_never_shown_half_redacted() -> None:
    with pytest.raises(ConfigurationError, match="percent-encode an @") as info:
        engine.resolve_url("postgresql://app:p@ssw0rd@db/x")
    assert "ssw0rd" not in str(info.value)
    assert engine.redact("postgresql://app:p@ssw0rd@db/x") == "postgresql://app:[REDACTED]@db/x"
    # Percent-encoded, it is a working URL whose password is hidden whole.
    url = engine.resolve_url("postgresql://app:p%40ssw0rd@db/x")
    assert engine.redact(url) == "postgresql+asyncpg://app:[REDACTED]@db/x"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:s3cret@db:abc/x",
        "postgresql://app:s3c@ret:word@db/x",
        "postgresql://app:s3cret@db:99999/x",
        "postgresql://app:s3cret@db:-1/x",
    ],
)
def test_a_bad_port_is_a_configuration_error_without_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError, match="port") as info:
        engine.resolve_url(url)
    assert "s3c" not in str(info.value)
    assert "ret" not in str(info.value).replace("percent", "")


@pytest.mark.parametrize("blank", ["", " ", "\t\n"])
def test_a_blank_hookwire_database_url_is_an_error_that_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, blank: str
) -> None:
    monkeypatch.setenv("HOOKWIRE_DATABASE_URL", blank)
    with pytest.raises(ConfigurationError, match=r"HOOKWIRE_DATABASE_URL is set but empty.*unset"):
        engine.resolve_url()
    with pytest.raises(ConfigurationError, match="the database URL is empty"):
        engine.resolve_url(blank)


# A password made of marked pieces ("QQ" + 3 characters) between any separators: a piece seen
# anywhere is a piece of the password shown.
_PIECE = st.from_regex(r"QQ[a-z0-9]{3}", fullmatch=True)
_SEPARATORS = st.text(alphabet="@:/%#?&=+!$'\"\\[]", max_size=3)
_PASSWORD = st.lists(st.tuples(_SEPARATORS, _PIECE), min_size=1, max_size=4).map(
    lambda parts: "".join(sep + piece for sep, piece in parts)
)


@settings(max_examples=150, deadline=None)
@given(password=_PASSWORD, encoded=st.booleans(), user=st.sampled_from(["app", "u-1", "a.b"]))
def test_property_no_rendering_of_a_database_url_holds_its_password(
    password: str, encoded: bool, user: str
) -> None:
    from hookwire.events import event_from_call
    from hookwire.logschema import to_line
    from hookwire.redaction import Redactor
    from hookwire.stores.conversations import ConversationStore
    from hookwire.stores.ledger import UsageLedger

    secret = quote(password, safe="") if encoded else password
    url = f"postgresql://{user}:{secret}@127.0.0.1:1/app"
    log_line = to_line(
        event_from_call("on_error", (RuntimeError(f"no {url}\n"),), {"run_id": "r", "timestamp": 1})
    )
    shown = [
        engine.redact(url),
        Redactor().text(f"cannot connect to {url}: refused"),
        log_line.decode(),
    ]
    try:
        resolved = engine.resolve_url(url)
    except ConfigurationError as exc:
        shown.append(str(exc))
    else:
        assert not encoded or engine.redact(resolved).count("[REDACTED]") == 1
        shown += [
            engine.redact(resolved),
            repr(ConversationStore.for_url(url)),
            repr(UsageLedger.for_url(url)),
        ]
    for rendering in shown:
        assert "QQ" not in rendering, rendering


@settings(max_examples=25, deadline=None)
@given(password=_PASSWORD, encoded=st.booleans())
# A bare @ first, then / and ?: the host seemed to end before the password's real end.
@example(password="@QQ000/QQ000?QQ000", encoded=False)
def test_property_the_cli_never_shows_a_database_password(password: str, encoded: bool) -> None:
    from typer.testing import CliRunner

    from hookwire.cli import app

    secret = quote(password, safe="") if encoded else password
    url = f"postgresql://app:{secret}@127.0.0.1:1/app"
    for args in (["db", "current"], ["costs"], ["history", "list"]):
        result = CliRunner().invoke(app, [*args, "--db", url])
        assert result.exit_code == 1
        assert "QQ" not in result.output, result.output
        assert "Traceback" not in result.output
