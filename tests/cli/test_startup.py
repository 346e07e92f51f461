"""``hookwire`` starts without importing what its command does not need: ``--help`` and the
commands' own help import neither the stores (SQLAlchemy, drivers, Alembic) nor the LLM
clients nor the log reader."""

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
         "ddsketch", "langchain_core", "opentelemetry")  # fmt: skip

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


def _imported(*args: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
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


def test_cli_spells_out_the_groups_of_the_modules_it_does_not_import() -> None:
    from hookwire.cli import costs, report
    from hookwire.report import GROUPINGS
    from hookwire.stores.ledger import GROUP_KEYS

    assert costs.GROUP_KEYS == GROUP_KEYS
    assert report.GROUPINGS == GROUPINGS
