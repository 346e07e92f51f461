"""hookwire._lru: a bounded cache that forgets the least recently used entry."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookwire._lru import LRU


def test_lru_forgets_the_least_recently_used_entry() -> None:
    cache: LRU[str, int] = LRU(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # now "b" is the coldest
    cache.put("c", 3)
    assert "b" not in cache and "a" in cache and "c" in cache
    assert cache.pop("a") == 1 and cache.pop("a") is None
    assert len(cache) == 1


def test_lru_needs_room_for_one_entry() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LRU(0)


@given(st.integers(1, 8), st.lists(st.tuples(st.booleans(), st.integers(0, 20))))
def test_lru_never_holds_more_than_its_limit_and_keeps_the_latest(
    limit: int, steps: list[tuple[bool, int]]
) -> None:
    cache: LRU[int, int] = LRU(limit)
    for write, key in steps:
        if write:
            cache.put(key, key)
            assert cache.get(key) == key
        else:
            assert cache.get(key) in (None, key)
        assert len(cache) <= limit
