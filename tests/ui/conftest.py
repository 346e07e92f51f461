"""A dashboard on a seeded database, served on 127.0.0.1 (any free port), for the UI tests."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from hookwire.stores import runner
from hookwire.stores.conversations import ConversationStore, Owner
from hookwire.stores.ledger import UsageLedger, UsageRecord
from hookwire.stores.traces import TraceStore, spans_from_records
from hookwire.ui.api import DashboardApi
from hookwire.ui.server import DashboardServer
from hookwire.ui.spend import parse_budget


@dataclass
class Seeded:
    url: str
    user: str
    runs: list[str]  # newest first
    conversation: str
    store: TraceStore


def trace_records(run: str, at: float, user: str, *, fail: bool = False) -> list[dict[str, Any]]:
    """A run with an LLM call (retried once) and a tool call (failing when ``fail``)."""
    ctx = {"trace_id": run, "user_id": user, "agent": "support", "org_id": "acme"}
    child = {**ctx, "parent_run_id": run, "depth": 1}
    llm, tool = f"{run}-llm", f"{run}-tool"
    return [
        {"v": 1, "event": "run_start", "run_id": run, "timestamp": at, "name": "Support Agent",
         "data": {"input": f"question of {run}"}, **ctx},
        {"v": 1, "event": "llm_start", "run_id": llm, "timestamp": at + 0.01, "model": "gpt-4o",
         "data": {"prompt": [{"role": "user", "content": "where is my order?"}]}, **child},
        {"v": 1, "event": "retry", "run_id": llm, "timestamp": at + 0.02,
         "data": {"attempt": 1, "max_attempts": 3,
                  "error": {"type": "RateLimitError", "message": "429"}}, **child},
        {"v": 1, "event": "llm_end", "run_id": llm, "timestamp": at + 0.3, "model": "gpt-4o",
         "latency_ms": 290.0, "ttft_ms": 40.0, **child,
         "data": {"response": {"content": f"answer of {run}", "cost": "0.002",
                  "usage": {"prompt_tokens": 20, "completion_tokens": 10}}}},
        {"v": 1, "event": "tool_start", "run_id": tool, "timestamp": at + 0.31, **child,
         "data": {"tool_name": "order_status", "tool_input": {"order": 42}}},
        {"v": 1, "event": "tool_error" if fail else "tool_end", "run_id": tool,
         "timestamp": at + 0.4, "latency_ms": 90.0, **child,
         "data": {"tool_name": "order_status", "error": {"type": "ConnectionError",
                  "message": "down"}} if fail else {"tool_name": "order_status",
                  "tool_output": "shipped"}},
        {"v": 1, "event": "run_end", "run_id": run, "timestamp": at + 0.5, "cost": "0.002",
         "model": "gpt-4o", "data": {"output": f"answer of {run}"}, **ctx},
    ]  # fmt: skip


@pytest.fixture
def seeded(db_url: str) -> Seeded:
    user = f"alice-{uuid.uuid4().hex[:6]}"
    store = TraceStore(db_url)
    runner.run_sync(store.prune(max_spans=0))
    now = time.time()
    runs = [f"run-{uuid.uuid4().hex[:8]}-{i}" for i in range(3)]
    records = []
    for i, run in enumerate(runs):
        records += trace_records(run, now - 60 * (i + 1), user, fail=i == 1)
    runner.run_sync(store.record(spans_from_records(records)))
    ledger = UsageLedger.for_url(db_url)
    rows = [
        UsageRecord(
            run_id=f"{run}-llm",
            created_at=datetime.now(timezone.utc),
            prompt_tokens=20,
            completion_tokens=10,
            total_tokens=30,
            cost=Decimal("0.002"),
            user_id=user,
            org_id="acme",
            agent="support",
            model="gpt-4o",
            provider="openai",
        )
        for run in runs
    ]
    runner.run_sync(ledger.record(rows))
    chats = ConversationStore.for_url(db_url)
    owner = Owner(user_id=user)
    cid = runner.run_sync(chats.create_conversation(owner, name="Order help"))
    runner.run_sync(chats.add_message(owner, cid, "where is my order?", "end_user"))
    runner.run_sync(
        chats.add_message(owner, cid, f"answer of {runs[0]}", "assistant", run_id=runs[0])
    )
    return Seeded(db_url, user, runs, cid, store)


def serve(url: str, token: str | None = None, host: str = "127.0.0.1") -> DashboardServer:
    """A dashboard server on ``url``, serving in a thread (shut it down after)."""
    api = DashboardApi(url, [parse_budget("user=0.05/month"), parse_budget("org:acme=1/day")])
    server = DashboardServer(api, host, 0, token)
    threading.Thread(target=server.serve_forever, name="dashboard", daemon=True).start()
    return server


@pytest.fixture
def dashboard(seeded: Seeded) -> Iterator[tuple[DashboardServer, Seeded]]:
    server = serve(seeded.url)
    try:
        yield server, seeded
    finally:
        server.shutdown()
        server.server_close()
