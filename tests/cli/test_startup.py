"""``hookwire`` starts without importing what its command does not need: ``--help`` and the
commands' own help import neither the stores (SQLAlchemy, drivers, Alembic) nor the LLM
clients nor the log reader nor Pydantic; ``hookwire costs`` on an SQLite file reads it without
SQLAlchemy or Pydantic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hookwire

SRC = str(Path(hookwire.__file__).resolve().parents[1])
HEAVY = ("sqlalchemy", "alembic", "asyncpg", "aiosqlite", "psycopg", "openai", "httpx",
         "ddsketch", "langchain_core", "opentelemetry", "pydantic")  # fmt: skip

_PROBE = """
import json, sys
sys.argv = ["hookwire", *json.loads(sys.argv[1])]
from hookwire.cli import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})), file=sys.stderr)
"""


def _imported(*args: str, env: dict[str, str] | None = None) -> set[str]:
    env = {**os.environ, **(env or {}), "PYTHONPATH": SRC}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(list(args))],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["costs", "--help"],
        ["history", "list", "--help"],
        ["report", "--help"],
        ["traces", "prune", "--help"],
        ["import", "--help"],
        ["ui", "--help"],
    ],
)
def test_hookwire_help_imports_no_store_client_or_reader(args: list[str]) -> None:
    assert not _imported(*args) & set(HEAVY)


@pytest.fixture(scope="module")
def small_ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from datetime import datetime, timezone
    from decimal import Decimal

    from hookwire.stores import runner
    from hookwire.stores.ledger import UsageLedger, UsageRecord

    path = tmp_path_factory.mktemp("startup") / "hookwire.db"
    record = UsageRecord(
        run_id="r1",
        created_at=datetime.now(timezone.utc),
        prompt_tokens=10,
        completion_tokens=5,
        total_tokens=15,
        cost=Decimal("0.001"),
        user_id="alice",
    )
    runner.run_sync(UsageLedger(f"sqlite+aiosqlite:///{path}").record([record]))
    return path


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--by", "user", "--json"],
        ["--by", "user", "--by", "day", "--since", "7d"],
        ["--by", "model", "--user", "alice", "--until", "today"],
    ],
)
def test_hookwire_costs_on_sqlite_imports_no_store_client_or_pydantic(
    small_ledger: Path, args: list[str]
) -> None:
    imported = _imported("costs", "--db", f"sqlite:///{small_ledger}", *args)
    assert "hookwire" in imported
    assert not imported & set(HEAVY)


def test_hookwire_costs_reads_the_default_database_without_sqlalchemy(
    small_ledger: Path,
) -> None:
    env = {"HOOKWIRE_DATABASE_URL": f"sqlite:///{small_ledger}"}
    assert not _imported("costs", env=env) & set(HEAVY)


def test_cli_spells_out_the_groups_of_the_modules_it_does_not_import() -> None:
    from hookwire.cli import costs, report
    from hookwire.report import GROUPINGS
    from hookwire.stores.ledger import GROUP_KEYS

    assert costs.GROUP_KEYS == GROUP_KEYS
    assert report.GROUPINGS == GROUPINGS
