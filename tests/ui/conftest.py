"""Fixtures of the UI tests: a seeded database (SQLite and PostgreSQL), and a dashboard on it
served on 127.0.0.1 (any free port)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from seed_data import Seeded, serve, trace_records

from hookwire.stores import runner
from hookwire.stores.conversations import ConversationStore, Owner
from hookwire.stores.ledger import UsageLedger, UsageRecord
from hookwire.stores.traces import TraceStore, spans_from_records
from hookwire.ui.server import DashboardServer


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


@pytest.fixture
def dashboard(seeded: Seeded) -> Iterator[tuple[DashboardServer, Seeded]]:
    server = serve(seeded.url)
    try:
        yield server, seeded
    finally:
        server.shutdown()
        server.server_close()
