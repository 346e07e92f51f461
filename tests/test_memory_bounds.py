"""Memory that stays bounded however many keys pass through a long-running process: the
chat-history handler's known conversations, the stores' owner cache, ``hookwire report``'s
latency sketches."""

from __future__ import annotations

import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from hookwire import report
from hookwire.callbacks import chat_history
from hookwire.callbacks.chat_history import ChatHistoryCallbackHandler
from hookwire.dispatch import CallbackManager
from hookwire.stores.conversations.ownership import OwnerCache


def test_chat_history_handler_remembers_a_bounded_number_of_conversations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chat_history, "KNOWN_CONVERSATIONS", 3)
    chat = ChatHistoryCallbackHandler(
        user_data={"user_id": f"u-{uuid.uuid4().hex[:8]}"},
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'h.db'}",
    )
    manager = CallbackManager([chat])
    ids = [f"c{i}" for i in range(8)]
    for cid in [*ids, ids[0]]:  # the first again, long forgotten: created with exist_ok
        run_id = manager.on_run_start(f"q {cid}", conversation_id=cid)
        manager.on_run_end(f"a {cid}", run_id=run_id, conversation_id=cid)
    assert manager.flush(timeout=30)
    assert manager.stats()["errors_total"] == 0
    assert len(chat._known) == 3
    assert chat.get_conversation_details_sync(ids[0])["message_count"] == 4
    assert chat.get_conversation_details_sync(ids[5])["message_count"] == 2


def test_owner_cache_keeps_the_most_recent_owners_only() -> None:
    cache = OwnerCache(limit=4)
    owners = {f"c{i}": SimpleNamespace(user_id="u") for i in range(10)}
    cache.learn(owners, [])
    assert len(cache.owners) == 4
    assert "c9" in cache.owners and "c0" not in cache.owners


def _line(user: str, latency: float) -> bytes:
    rec: dict[str, Any] = {
        "v": 1,
        "event": "llm_end",
        "run_id": f"r-{user}-{latency}",
        "timestamp": 1e9,
        "user_id": user,
        "latency_ms": latency,
        "data": {"response": {"usage": {"prompt_tokens": 1}, "cost": "0.5"}},
    }
    return orjson.dumps(rec) + b"\n"


def test_report_keeps_latency_sketches_for_the_first_groups_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "SKETCHED_GROUPS", 2)
    log = tmp_path / "log.jsonl"
    log.write_bytes(b"".join(_line(f"user{i}", 10.0 * (i + 1)) for i in range(5) for _ in range(3)))
    result = report.summarize([log], by="user")
    sketched = [g for g in result.groups.values() if g.latency is not None]
    assert len(sketched) == 2
    assert all(g.calls == 3 for g in result.groups.values())
    unsketched = [g for g in result.groups.values() if g.latency is None]
    assert all(g.quantile(0.5) is None for g in unsketched)
    # every latency still counts in the total
    assert result.total.latency is not None and result.total.latency.count == 15
    assert result.total.quantile(0.95) == pytest.approx(50.0, rel=0.02)
