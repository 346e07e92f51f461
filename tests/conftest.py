"""Fixtures shared by every test module.

Services: tests that need PostgreSQL (127.0.0.1:5432, database ``test``) or Redis
(127.0.0.1:6379) use the ``pg_url`` / ``redis_url`` fixtures. Without the server they skip
with the reason; with ``CI=true`` they fail instead, so CI can never pass by skipping them.
"""

from __future__ import annotations

import gc
import os
import socket
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from hookwire import RLM, pricing
from hookwire.testing.openai_server import OpenAIServer

# Speed is measured in bench/, never asserted in tests: hypothesis' per-example deadline would
# be a timed assertion that fails on a loaded machine, so it is off for the whole suite.
settings.register_profile("hookwire", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("hookwire")

PG_HOST = os.environ.get("HOOKWIRE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("HOOKWIRE_TEST_PG_PORT", "5432"))
PG_URL = f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/test"
REDIS_URL = "redis://127.0.0.1:6379/0"

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# LiteLLM fetches its model cost map from the internet when it is imported, unless told to use
# the copy it ships; set before any test imports it (tests never reach the internet).
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _need(service: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    reason = f"{service} is not reachable on {host}:{port}"
    if IN_CI:
        pytest.fail(f"{reason}, and CI=true requires it (.ci/run starts it)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_url() -> str:
    """SQLAlchemy URL of the test PostgreSQL database (asyncpg driver)."""
    _need("PostgreSQL", PG_HOST, PG_PORT)
    return PG_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the test Redis server."""
    _need("Redis", "127.0.0.1", 6379)
    return REDIS_URL


def pytest_collection_finish(session: pytest.Session) -> None:
    # Every test module is imported by now, and with it LangChain, LlamaIndex, LiteLLM and the
    # OpenTelemetry SDK: millions of objects that a full garbage collection walks, 1-5 s each
    # time, and the openai_server fixture below collects after each of some 450 tests. What
    # survives this collection is the imports' own, alive to the end: frozen (gc.freeze), later
    # collections walk only what tests made.
    gc.collect()
    gc.freeze()


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """A fresh OpenAI-compatible server on 127.0.0.1 (``hookwire.testing.OpenAIServer``)."""
    with OpenAIServer() as server:
        yield server
    # SDK clients a test left open are collected now, while the test that made them is
    # current; otherwise their ResourceWarning fires in whichever test the collector next
    # runs in (filterwarnings=error makes that a failure of an unrelated test).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture(params=["offline", "online"])
def rlm_server(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OpenAIServer | None]:
    """``None`` offline; online, a running ``OpenAIServer`` that ``OPENAI_BASE_URL`` points to
    (``.script(...)`` sets its replies)."""
    if request.param == "offline":
        yield None
        return
    with OpenAIServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        # Long enough to look real, so that a test can check it never reaches a log.
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789abcdefghij")
        yield server


@pytest.fixture
def make_rlm(rlm_server: OpenAIServer | None) -> Iterator[Callable[..., RLM]]:
    """Builds runners as the seeds write them: ``RLM.from_local("gpt-4o", callbacks=...)``
    offline, ``RLM.from_openai("gpt-4o", callbacks=...)`` through the real ``openai`` SDK
    online; each is closed, with its callbacks, after the test."""
    made: list[RLM] = []

    def build(callbacks: list[Any], **kw: Any) -> RLM:
        if rlm_server is None:
            rlm = RLM.from_local("gpt-4o", callbacks=callbacks, **kw)
        else:
            rlm = RLM.from_openai("gpt-4o", callbacks=callbacks, **kw)
        made.append(rlm)
        return rlm

    yield build
    for rlm in made:
        close = getattr(rlm.llm, "close", None)
        if close is not None:
            close()
        rlm.callbacks.close()


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    # Nothing a test does may read the developer's own settings or write next to the repo.
    for key in list(os.environ):
        if key.startswith("HOOKWIRE_") and not key.startswith("HOOKWIRE_TEST_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    # Prices set by a test (or by the demo it runs) are process-wide: none outlives its test.
    pricing.clear_prices()


try:
    import genai_prices  # noqa: F401 - only whether it is there
except ImportError:  # Python 3.10: genai-prices needs 3.11
    # Without genai-prices hookwire knows only the prices it is given: the models the tests call
    # get genai-prices' figures from a HOOKWIRE_PRICES file (read by the processes a test starts
    # too), set here already for what a test module prices as it is imported.
    PRICES_WITHOUT_GENAI: str | None = str(Path(__file__).with_name("prices_without_genai.toml"))
    os.environ["HOOKWIRE_PRICES"] = PRICES_WITHOUT_GENAI
else:
    PRICES_WITHOUT_GENAI = None


@pytest.fixture(autouse=True)
def _prices_without_genai(_isolated_home: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # After _isolated_home, which clears every HOOKWIRE_ variable.
    if PRICES_WITHOUT_GENAI is not None:
        monkeypatch.setenv("HOOKWIRE_PRICES", PRICES_WITHOUT_GENAI)


# -- databases for store tests (hookwire.stores) -----------------------------------------------


def _pg_admin(sql: str) -> None:
    import asyncio

    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="postgres", database="test")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


@contextmanager
def _fresh_pg_database() -> Iterator[str]:
    """A new PostgreSQL database at hookwire's schema head (asyncpg URL), dropped after."""
    import uuid

    from hookwire.stores import engine, runner

    name = f"hookwire_t_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    url = f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    try:
        runner.run_sync(engine.upgrade(url), timeout=120)
        yield url
    finally:
        try:
            runner.run_sync(engine.dispose_engines(), timeout=30)
        finally:
            _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_database_url(pg_url: str) -> Iterator[str]:
    """A FRESH PostgreSQL database for this test session, at hookwire's schema head.

    Other test sessions (other branches, other engineers) use the same server at the same
    time, so each session creates its own ``hookwire_t_<random>`` database and drops it at the
    end. The URL uses the asyncpg driver.
    """
    with _fresh_pg_database() as url:
        yield url


@pytest.fixture
def pg_proxy(pg_url: str) -> Iterator[Any]:
    """A ``TCPProxy`` (``tests/tcp_proxy.py``) in front of the test PostgreSQL server, to
    fake an outage without touching the server: ``proxy.url(url)`` goes through it;
    ``cut()`` (down), ``stall()`` (never answers), ``restore()``."""
    from tcp_proxy import TCPProxy

    proxy = TCPProxy(PG_HOST, PG_PORT)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database URL for store tests, once for SQLite (a new file) and once for PostgreSQL
    (the session's fresh database, see ``pg_database_url``). Both are at the schema head."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("db") / "hookwire.db"
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("pg_database_url")
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def own_db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Like ``db_url``, but the PostgreSQL database is this test's own (made and dropped
    around it), for tests that change rows across the whole database (``hookwire db prune``)."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("db") / "hookwire.db"
        yield f"sqlite+aiosqlite:///{path}"
        return
    request.getfixturevalue("pg_url")  # skips without the server
    with _fresh_pg_database() as url:
        yield url
