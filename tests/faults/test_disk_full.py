"""A full disk: the log file keeps whole lines (what could not be written is counted, and
``flush()`` says so), the SQLite ledger and chat history keep what they could not write and
write it once there is space again, and the app's calls never wait for the disk.

On a 16 MB tmpfs (``small_disk``: as root), and for the log file also under ``RLIMIT_FSIZE``
in a process of its own (anywhere). The figures are printed; run with ``-s`` to see them."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hookwire import CallbackManager, LLMResponse, Usage
from hookwire.callbacks import ChatHistoryCallbackHandler, FileLogCallback
from hookwire.callbacks.accounting import AccountingCallbackHandler
from hookwire.callbacks.accounting.ledger_queue import PUT_WAIT
from hookwire.logschema import parse_line
from hookwire.stores import runner

RunScript = Callable[..., subprocess.CompletedProcess[str]]

CALL_BOUND = PUT_WAIT + 2.0  # generous: the app's call only queues


def _whole_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of the log, each a whole record (a cut or glued line fails to parse)."""
    return [parse_line(line) for line in path.read_bytes().splitlines() if line]


def _last_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON report a script printed last (it must have ended well)."""
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return report


def test_filelog_on_a_full_disk_cuts_no_line_counts_what_it_lost_and_resumes(
    small_disk: Any,
) -> None:
    path = small_disk.path / "app.jsonl"
    log = FileLogCallback(path)
    manager = CallbackManager([log])
    manager.on_memory_store("before", run_id="r")
    assert manager.flush(10)
    small_disk.fill(leave=3000)  # room for a few lines, then a line cut by the full disk
    sent = 0
    for i in range(40):
        manager.on_memory_store(f"while full {i} " + "x" * 150, run_id="r")
        sent += 1
        if i % 10 == 9:
            manager.flush(10)  # several batches, so several writes meet the full disk
    assert not log.flush()  # False while writes fail
    lost = log.dropped
    assert manager.stats()["dropped"]["FileLogCallback"] == lost
    small_disk.free()
    manager.on_memory_store("after", run_id="r")
    assert log.flush()  # space is back: True again
    log.close()
    lines = _whole_lines(path)
    contents = [r["data"]["content"] for r in lines]
    print(
        f"\nFIGURES disk full (FileLog, tmpfs): {sent} events while full, "
        f"{sent - lost} written whole, {lost} lost and counted, 0 cut lines"
    )
    assert contents[0] == "before" and contents[-1] == "after"
    assert len(contents) == 2 + sent - lost
    assert 0 < lost < sent
    assert log.written == len(contents)


def test_filelog_over_its_file_size_limit_cuts_no_line_and_resumes(
    run_script: RunScript, tmp_path: Path
) -> None:
    # RLIMIT_FSIZE in a process of its own: a write past the limit is cut short, the next
    # fails (EFBIG), as on a full disk; raising the limit is space coming back.
    path = tmp_path / "app.jsonl"
    report = _last_json(run_script("filelog_fsize.py", str(path)))
    contents = [r["data"]["content"] for r in _whole_lines(path)]
    assert report["flush_while_full"] is False
    assert report["flush_after"] is True
    assert contents[0] == "before" and contents[-1] == "after"
    assert len(contents) == 2 + report["sent"] - report["dropped"]
    assert 0 < report["dropped"] < report["sent"]


def test_a_full_disk_loses_no_turn_and_no_usage_row_on_sqlite(small_disk: Any) -> None:
    url = f"sqlite+aiosqlite:///{small_disk.path / 'app.db'}"
    user = f"disk-{uuid.uuid4().hex[:8]}"
    chat = ChatHistoryCallbackHandler(
        user_data={"user_id": user}, conversation_id=user, database_url=url
    )
    accounting = AccountingCallbackHandler(user_id=user, database_url=url)
    manager = CallbackManager([chat, accounting])
    slowest = 0.0

    def turn(i: int) -> None:
        nonlocal slowest
        started = time.monotonic()
        run_id = manager.on_run_start(f"question {i}")
        llm = manager.on_llm_start(f"question {i}", model="gpt-4o", parent_run_id=run_id)
        response = LLMResponse(f"answer {i} " + "y" * 400, usage=Usage(12, 7), model="gpt-4o")
        manager.on_llm_end(response, run_id=llm, model="gpt-4o", parent_run_id=run_id)
        manager.on_run_end(f"answer {i} " + "y" * 400, run_id=run_id)
        slowest = max(slowest, time.monotonic() - started)

    turn(0)
    assert manager.flush(30)
    small_disk.fill()
    full = 60
    for i in range(1, full + 1):
        turn(i)
    assert not manager.flush(1.0)  # kept, waiting for space
    small_disk.free()
    assert manager.flush(60)
    details = chat.get_conversation_details_sync(user)
    rows = runner.run_sync(accounting.store.records(user_id=user, limit=10_000))
    print(
        f"\nFIGURES disk full (SQLite): {full} turns while full; slowest app call "
        f"{slowest * 1000:.1f} ms; after space came back {details['message_count']} messages "
        f"of {2 * (full + 1)}, {len(rows)} usage rows of {full + 1}"
    )
    assert details["message_count"] == 2 * (full + 1)
    assert [m["text"] for m in details["messages"]][-2] == f"question {full}"
    assert len(rows) == full + 1
    assert not any(manager.stats()["dropped"].values())
    assert slowest < CALL_BOUND
    # And the writers go on as before.
    turn(full + 1)
    assert manager.flush(30)
    assert chat.get_conversation_details_sync(user)["message_count"] == 2 * (full + 2)
