"""Run ids: UUIDv7 text, unique and ordered across threads, processes and the dispatchers."""

from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hookwire import CallbackManager, ids, new_id
from hookwire.testing import RecordingCallback


def _check_v7(text: str) -> uuid.UUID:
    u = uuid.UUID(text)
    assert str(u) == text  # canonical lower-case text, 8-4-4-4-12
    assert u.version == 7 and u.variant == uuid.RFC_4122
    return u


def test_new_id_is_uuid7_text_carrying_the_current_millisecond() -> None:
    before = int(time.time() * 1000)
    rid = new_id()
    after = int(time.time() * 1000)
    u = _check_v7(rid)
    assert before <= u.int >> 80 <= after


def test_ids_are_unique_and_ordered_within_a_thread() -> None:
    ids = [new_id() for _ in range(20_000)]  # crosses several 4,096-id prefixes
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    for rid in ids[::997]:
        _check_v7(rid)


def test_ids_are_unique_across_threads_racing_for_the_prefix() -> None:
    def make(_: int) -> list[str]:
        return [new_id() for _ in range(10_000)]

    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(make, range(8)))
    every = [rid for batch in batches for rid in batch]
    assert len(set(every)) == len(every) == 80_000


def test_a_stale_prefix_of_another_counter_block_is_never_reused() -> None:
    # A thread that drew n while another thread had already built the prefix for a later
    # block must build its own, not append its tail to the other block's prefix.
    now = time.time()
    later = ids._fresh_id(5 << 12, now)
    earlier = ids._fresh_id(4 << 12 | 7, now)
    assert later[-3:] == "000" and earlier[-3:] == "007"
    assert later[:-3] != earlier[:-3]
    assert ids._ID_CELL[0][1] == 4


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=2**46),
    ms=st.integers(min_value=0, max_value=2**48 - 1),
)
def test_fresh_id_encodes_the_millisecond_and_the_counter(n: int, ms: int) -> None:
    u = _check_v7(ids._fresh_id(n, (ms + 0.5) / 1000))
    assert u.int >> 80 == ms
    assert u.int & 0xFFF == n & 0xFFF


def test_the_dispatchers_ids_are_new_ids() -> None:
    rec = RecordingCallback()
    m = CallbackManager([rec])
    ids = [m.on_llm_start("p", model="m") for _ in range(5_000)]
    ids.append(new_id())
    ids.append(m.on_tool_start("t", {}))
    assert len(set(ids)) == len(ids) and ids == sorted(ids)
    for rid in ids[::499]:
        _check_v7(rid)
    assert [c["run_id"] for c in rec.calls] == ids[:5_000] + ids[-1:]


def test_an_explicit_timestamp_of_any_type_still_gets_an_id() -> None:
    rec = RecordingCallback()
    m = CallbackManager([rec])
    rid = m.on_llm_start("p", timestamp="2026-01-01T00:00:00Z")
    _check_v7(rid)
    assert rec.calls[0]["timestamp"] == "2026-01-01T00:00:00Z"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_forked_child_draws_ids_apart_from_its_parent() -> None:
    new_id()  # the parent has a prefix cached, which the child inherits
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.write(write, "\n".join(new_id() for _ in range(100)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        child = f.read().split("\n")
    os.waitpid(pid, 0)
    parent = [new_id() for _ in range(100)]
    assert len(child) == 100
    assert not set(child) & set(parent)
    # The per-process random bits differ, so the two can never meet.
    assert {c[14:23] for c in child} != {p[14:23] for p in parent}


def test_id_at_carries_the_time_it_is_given() -> None:
    now = time.time()
    u = _check_v7(ids.id_at(now))
    assert u.int >> 80 == int(now * 1000)
