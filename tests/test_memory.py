"""Memories: in-process and SQLite, relevance ranking."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookwire.errors import ConfigurationError, StoreError
from hookwire.memory import InMemoryMemory, SQLiteMemory, relevance


def test_in_memory_search_ranks_by_overlap_then_recency() -> None:
    m = InMemoryMemory()
    m.add("my order number is ORD-1042")
    m.add("the weather is nice")
    m.add("order shipped yesterday")
    assert m.search("what is my order number?") == [
        "my order number is ORD-1042",
        "order shipped yesterday",
    ]
    assert m.search("order", k=1) == ["order shipped yesterday"]
    assert m.search("zebra") == []
    assert m.search("the and of") == []  # stop words only
    assert len(m) == 3
    m.clear()
    assert m.search("order") == []


def test_in_memory_is_bounded() -> None:
    m = InMemoryMemory(["alpha one", "alpha two", "alpha three"], max_items=2)
    assert len(m) == 2
    assert m.search("alpha", k=5) == ["alpha three", "alpha two"]
    with pytest.raises(ConfigurationError):
        InMemoryMemory(max_items=0)
    with pytest.raises(ConfigurationError, match="text"):
        m.add(42)  # type: ignore[arg-type]


async def test_async_forms() -> None:
    m = InMemoryMemory()
    await m.aadd("async memory works")
    assert await m.asearch("memory") == ["async memory works"]


def test_sqlite_persists_and_keeps_namespaces_apart(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "mem.db"
    a = SQLiteMemory(path, namespace="alice")
    a.add("alice likes green tea")
    b = SQLiteMemory(path, namespace="bob")
    b.add("bob likes black coffee")
    assert b.search("what does she like, tea?") == []
    a.close()
    again = SQLiteMemory(path, namespace="alice")
    assert again.search("tea") == ["alice likes green tea"]
    assert len(again) == 1
    again.clear()
    assert len(again) == 0
    assert b.search("coffee") == ["bob likes black coffee"]
    again.close()
    b.close()


async def test_sqlite_async(tmp_path: Path) -> None:
    m = SQLiteMemory(tmp_path / "m.db")
    await m.aadd("stored from asyncio")
    assert await m.asearch("asyncio") == ["stored from asyncio"]
    m.close()


def test_sqlite_bad_path_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError, match="cannot open"):
        SQLiteMemory(tmp_path / "dir.db")
    with pytest.raises(ConfigurationError):
        SQLiteMemory(tmp_path / "x.db", namespace="")


@given(st.text(max_size=80), st.text(max_size=80))
def test_relevance_is_symmetric_and_non_negative(a: str, b: str) -> None:
    assert relevance(a, b) == relevance(b, a) >= 0


@given(
    st.lists(st.text(min_size=1, max_size=30), max_size=20), st.text(max_size=30), st.integers(0, 5)
)
def test_search_returns_stored_items_only(items: list[str], query: str, k: int) -> None:
    m = InMemoryMemory(items)
    found = m.search(query, k)
    assert len(found) <= k
    assert all(f in items for f in found)
    assert all(relevance(query, f) > 0 for f in found)
