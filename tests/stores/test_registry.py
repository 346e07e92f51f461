"""hookwire.stores.registry and the store interfaces: a URL's backend chooses the
implementation in one place, and handlers take any implementation of an interface."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hookwire.callbacks.accounting import AccountingCallbackHandler
from hookwire.callbacks.chat_history import ChatHistoryCallbackHandler
from hookwire.errors import ConfigurationError, ConversationNotFound
from hookwire.stores import ConversationStore, Owner, Page, UsageLedger
from hookwire.stores.conversations import (
    PostgresConversationStore,
    SQLConversationStore,
    SQLiteConversationStore,
)
from hookwire.stores.engine import DATABASE_BACKENDS, resolve_url
from hookwire.stores.ledger import (
    Claim,
    PostgresUsageLedger,
    SQLiteUsageLedger,
    UsageRecord,
)
from hookwire.stores.registry import StoreRegistry


def test_the_url_chooses_the_implementation(tmp_path: Path) -> None:
    cases = {
        f"sqlite:///{tmp_path}/a.db": (SQLiteConversationStore, SQLiteUsageLedger),
        "postgresql://h/db": (PostgresConversationStore, PostgresUsageLedger),
        "postgres://h/db": (PostgresConversationStore, PostgresUsageLedger),
        "postgresql+psycopg://h/db": (SQLConversationStore, PostgresUsageLedger),
    }
    for url, (store_class, ledger_class) in cases.items():
        assert type(ConversationStore(url)) is store_class
        assert type(ConversationStore.for_url(url)) is store_class
        assert type(UsageLedger(url)) is ledger_class
        assert type(UsageLedger.for_url(url)) is ledger_class
    assert type(ConversationStore("sqlite:///:memory:")) is SQLConversationStore


def test_for_url_shares_one_store_per_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    assert ConversationStore.for_url(url) is ConversationStore.for_url(url)
    assert UsageLedger.for_url(url) is UsageLedger.for_url(url)
    assert ConversationStore(url) is not ConversationStore(url)


def test_a_backend_without_an_implementation_is_named() -> None:
    registry: StoreRegistry[object] = StoreRegistry("widget store")
    registry.register("sqlite", lambda url: object)
    assert registry.lookup("sqlite+aiosqlite:///x.db") is object
    with pytest.raises(ConfigurationError, match="no widget store is registered for 'mysql'"):
        registry.lookup("mysql://h/db")


def test_an_incomplete_implementation_cannot_be_made() -> None:
    class Half(ConversationStore):
        url = "memory://"

    with pytest.raises(TypeError, match="abstract"):
        Half()


class MemoryStore(ConversationStore):
    """A conversation store in a dict: what a third-party implementation looks like."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self.conversations: dict[str, dict[str, Any]] = {}
        self.ids = (f"id-{i}" for i in itertools.count())

    def _mine(self, owner: Owner | None, cid: str) -> dict[str, Any]:
        found = self.conversations.get(cid)
        if found is None or (owner is not None and found["owner"] != owner):
            raise ConversationNotFound(cid)
        return found

    async def create_conversation(
        self, owner: Owner, *, conversation_id: str | None = None, **fields: Any
    ) -> str:
        cid = conversation_id or next(self.ids)
        if fields.pop("exist_ok", False) and cid in self.conversations:
            return cid
        self.conversations[cid] = {"id": cid, "owner": owner, "messages": [], **fields}
        return cid

    async def rename_conversation(self, owner: Owner | None, cid: str, name: str) -> None:
        self._mine(owner, cid)["name"] = name

    async def set_conversation_state(self, owner: Owner | None, cid: str, state: str) -> None:
        self._mine(owner, cid)["state"] = state

    async def delete_conversation(self, owner: Owner | None, cid: str) -> int:
        return len(self.conversations.pop(self._mine(owner, cid)["id"])["messages"])

    async def get_conversation(self, owner: Owner | None, cid: str) -> dict[str, Any]:
        found = self._mine(owner, cid)
        return {"id": cid, "message_count": len(found["messages"])}

    async def get_conversation_details(self, owner: Owner | None, cid: str) -> dict[str, Any]:
        return {
            **await self.get_conversation(owner, cid),
            "messages": self._mine(owner, cid)["messages"],
        }

    async def list_conversations(self, owner: Owner | None, **kw: Any) -> Page:
        return Page([{"id": c} for c, v in self.conversations.items() if v["owner"] == owner])

    async def get_messages(self, owner: Owner | None, cid: str, **kw: Any) -> Page:
        return Page(list(self._mine(owner, cid)["messages"]))

    async def add_message(
        self, owner: Owner | None, cid: str, text: str, sender: str, **fields: Any
    ) -> str:
        mid = next(self.ids)
        self._mine(owner, cid)["messages"].append({"id": mid, "text": text, "sender": sender})
        return mid


async def test_chat_history_takes_any_conversation_store() -> None:
    store = MemoryStore()
    handler = ChatHistoryCallbackHandler(user_data={"user_id": "u1"}, store=store)
    cid = await handler.create_conversation()
    await handler.send_message(cid, "hello", "end_user")
    handler.send_message_sync(cid, "hi there", "assistant")
    details = await handler.get_conversation_details(cid)
    assert [m["text"] for m in details["messages"]] == ["hello", "hi there"]
    stranger = ChatHistoryCallbackHandler(user_data={"user_id": "u2"}, store=store)
    with pytest.raises(ConversationNotFound):
        await stranger.get_conversation_details(cid)
    with pytest.raises(ConfigurationError, match="any implementation"):
        ChatHistoryCallbackHandler(store=object())  # type: ignore[arg-type]


class MemoryLedger(UsageLedger):
    """A usage ledger in a list."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self.rows: list[UsageRecord] = []

    async def record(
        self, records: Sequence[UsageRecord], release: Iterable[str] = ()
    ) -> list[UsageRecord]:
        seen = {r.run_id for r in self.rows}
        new = [r for r in records if r.run_id not in seen]
        self.rows.extend(new)
        return new

    async def reserve(
        self, run_id: str, claims: Sequence[Claim], ttl: float = 600.0, now: datetime | None = None
    ) -> None:
        return None

    async def spent(self, scope: str, key: str, period: str | None = None, **kw: Any) -> Decimal:
        return sum((r.cost or Decimal(0) for r in self.rows), Decimal(0))

    async def reserved(self, scope: str, key: str, period: str | None = None) -> Decimal:
        return Decimal(0)

    async def summary(self, by: Sequence[str] | str = (), **kw: Any) -> list[dict[str, Any]]:
        return [{"calls": len(self.rows)}]

    async def records(self, **kw: Any) -> list[UsageRecord]:
        return list(self.rows)


async def test_accounting_takes_any_usage_ledger() -> None:
    ledger = MemoryLedger()
    handler = AccountingCallbackHandler(user_id="u1", model_name="gpt-4o-mini", store=ledger)
    record = await handler.call_accounting(10, 20, "agent-1")
    await handler.call_accounting(10, 20, "agent-1", run_id=record.run_id)  # counted once
    assert [r.run_id for r in ledger.rows] == [record.run_id]
    assert await handler.asummary() == [{"calls": 1}]
    with pytest.raises(ConfigurationError, match="any implementation"):
        AccountingCallbackHandler(store=object())  # type: ignore[arg-type]


def test_a_scheme_of_its_own_serves_handlers_by_url() -> None:
    # registered for a scheme that is no database: the URL reaches the implementation as given
    ConversationStore.backends.register("memory", lambda url: MemoryStore)
    UsageLedger.backends.register_class("memory", MemoryLedger)
    try:
        chat = ChatHistoryCallbackHandler(
            user_data={"user_id": "u1"}, database_url="memory://chats"
        )
        assert type(chat.store) is MemoryStore and chat.store.url == "memory://chats"
        accounting = AccountingCallbackHandler(database_url="memory://usage")
        assert type(accounting.store) is MemoryLedger
        assert UsageLedger("memory://usage").url == "memory://usage"
    finally:
        ConversationStore.backends.unregister("memory")
        UsageLedger.backends.unregister("memory")
    with pytest.raises(ConfigurationError, match="unsupported database 'memory'"):
        ConversationStore("memory://chats")


def test_the_database_backends_are_the_ones_resolve_url_resolves(tmp_path: Path) -> None:
    for backend in DATABASE_BACKENDS:
        url = f"{backend}:///{tmp_path}/x.db" if backend == "sqlite" else f"{backend}://h/db"
        assert resolve_url(url)
    with pytest.raises(ConfigurationError, match="unsupported database"):
        resolve_url("mysql://h/db")
