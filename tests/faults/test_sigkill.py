"""SIGKILL in the middle of writing: every acknowledged write is found afterwards.

An app (``scripts/app_writer.py``) records chat history, usage rows and a log file, and
flushes every 5 turns: once ``flush()`` returned True, those turns are acknowledged. It is
killed with SIGKILL while writing more; then every acknowledged message, usage row and log
line must be there, and every line of the log whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import hookwire
from hookwire.callbacks import ChatHistoryCallbackHandler
from hookwire.logschema import parse_line
from hookwire.stores import runner
from hookwire.stores.ledger import UsageLedger

SCRIPTS = Path(__file__).parent / "scripts"
SRC = Path(hookwire.__file__).resolve().parents[1]
ACKNOWLEDGED = 60  # turns acknowledged before the kill


@pytest.mark.timeout(120)
def test_sigkill_mid_write_loses_no_acknowledged_turn_usage_row_or_log_line(
    db_url: str, tmp_path: Path
) -> None:
    user = f"kill-{uuid.uuid4().hex[:10]}"
    log = tmp_path / "app.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "app_writer.py"), db_url, str(log), user],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    turns, runs = 0, []
    try:
        assert proc.stdout is not None
        while turns < ACKNOWLEDGED:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            ack = json.loads(line)
            turns = ack["turns"]
            runs += ack["runs"]
        os.kill(proc.pid, signal.SIGKILL)  # mid-write: the next turns are being recorded
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    reader = ChatHistoryCallbackHandler(user_data={"user_id": user}, database_url=db_url)
    texts = [m["text"] for m in reader.get_conversation_details_sync(user)["messages"]]
    rows = runner.run_sync(UsageLedger(db_url).records(user_id=user, limit=100_000))
    lines = [parse_line(line) for line in log.read_bytes().splitlines() if line]  # all whole
    logged_runs = {r.get("run_id") for r in lines}
    print(
        f"\nFIGURES SIGKILL ({db_url.split(':')[0]}): {turns} turns acknowledged; found "
        f"{len(texts)} messages, {len(rows)} usage rows, {len(lines)} log lines (all whole)"
    )
    for i in range(turns):
        assert f"question {i}" in texts and f"answer {i}" in texts
    assert set(runs) <= {r.run_id for r in rows}
    assert set(runs) <= logged_runs
    assert len(lines) >= 4 * turns
