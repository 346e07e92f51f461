"""``hookwire report``: a table or JSON from JSONL logs, broken lines on stderr."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hookwire import CallbackManager, LLMResponse, Usage, request_context
from hookwire.callbacks import FileLogCallback
from hookwire.cli import app

runner = CliRunner()


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """Two gpt-4o calls by alice (priced), one local call by bob (no price), a broken line."""
    path = tmp_path / "a.jsonl"
    callback = FileLogCallback(path)
    manager = CallbackManager([callback])
    calls = (("alice", "gpt-4o", "0.001"), ("alice", "gpt-4o", "0.002"), ("bob", "local", None))
    for user, model, cost in calls:
        with request_context(user_id=user):
            run_id = manager.on_llm_start("hi", model=model)
            response = LLMResponse(
                "a", Usage(10, 5), model=model, cost=None if cost is None else Decimal(cost)
            )
            manager.on_llm_end(response, run_id=run_id, model=model, latency_ms=100.0)
    callback.close()
    with path.open("ab") as f:
        f.write(b"oops\n")
    return path


def test_table(log: Path) -> None:
    result = runner.invoke(app, ["report", str(log)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "hookwire report by model" in out
    row = next(line for line in out.splitlines() if "gpt-4o" in line)
    for cell in ("2", "20", "10", "30", "$0.003"):
        assert cell in row
    assert "$?" in next(line for line in out.splitlines() if "local" in line)
    assert "7 lines, 6 events, 1 broken" in out
    assert result.stderr.startswith(f"broken line {log}:7: not valid JSON: ")
    assert len(result.stderr.splitlines()) == 1


def test_json_by_user_from_stdin(log: Path) -> None:
    result = runner.invoke(app, ["report", "-", "--by", "user", "--json"], input=log.read_bytes())
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["by"] == "user"
    assert {g["key"]: g["calls"] for g in data["groups"]} == {"alice": 2, "bob": 1}
    assert data["broken"]["count"] == 1
    assert result.stderr.startswith("broken line <stdin>:7: not valid JSON")


def test_a_missing_log_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    result = runner.invoke(app, ["report", str(missing)])
    assert result.exit_code == 1
    assert result.stderr == (
        f"hookwire report: error: cannot read log {missing}: No such file or directory\n"
    )
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by", "planet", "x.jsonl"], "Invalid value for '--by': cannot group by 'planet'"),
        ([], "Missing argument"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["report", *args])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"hookwire report: error: {message}")
