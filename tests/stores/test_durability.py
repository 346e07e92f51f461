"""Processes and crashes: 4 processes + 20 tasks writing the same conversations lose and
duplicate nothing; a writer killed with SIGKILL leaves every acknowledged message readable."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

import hookwire
from hookwire.stores import engine, runner
from hookwire.stores.conversations import ConversationStore, Owner

SRC = str(Path(hookwire.__file__).resolve().parents[1])

WRITER = textwrap.dedent(
    """
    import sys
    from hookwire.stores.conversations import ConversationStore, Owner

    url, user, tag, count, *convs = sys.argv[1:]
    store = ConversationStore.for_url(url)
    me = Owner(user, "org", "main")
    parents = {}
    for i in range(int(count)):
        cid = convs[i % len(convs)]
        mid = store.add_message_sync(
            me, cid, f"{tag}-{i}", "end_user", parent_message_id=parents.get(cid)
        )
        parents[cid] = mid
        # acknowledged: the id is printed only once add_message_sync returned
        print(mid, cid, flush=True)
    """
)


def _spawn(url: str, user: str, tag: str, count: int, convs: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, url, user, tag, str(count), *convs],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


async def test_four_processes_and_twenty_tasks(db_url: str) -> None:
    store = ConversationStore.for_url(db_url)
    user = f"u-{uuid.uuid4().hex[:8]}"
    me = Owner(user, "org", "main")
    convs = [await store.create_conversation(me) for _ in range(2)]
    procs = [_spawn(db_url, user, f"p{k}", 25, convs) for k in range(4)]

    async def task(k: int) -> list[str]:
        parent = None
        out = []
        for i in range(15):
            parent = await store.add_message(
                me, convs[k % 2], f"t{k}-{i}", "assistant", parent_message_id=parent
            )
            out.append(parent)
        return out

    mine = await asyncio.gather(*(task(k) for k in range(20)))
    outputs = []
    for p in procs:
        out, err = await asyncio.to_thread(p.communicate, timeout=120)
        assert p.returncode == 0, err
        outputs.append(out)
    acked = {line.split()[0] for out in outputs for line in out.splitlines()}
    acked |= {mid for chain in mine for mid in chain}
    assert len(acked) == 4 * 25 + 20 * 15

    stored = {}
    for cid in convs:
        for m in (await store.get_conversation_details(me, cid))["messages"]:
            stored[m["id"]] = {**m, "conversation_id": cid}
    assert set(stored) == acked  # none lost, none extra
    texts = [m["text"] for m in stored.values()]
    assert len(texts) == len(set(texts))  # none duplicated
    for m in stored.values():
        # every chain keeps its parent links, inside the same conversation
        tag, i = m["text"].rsplit("-", 1)
        if int(i) >= (2 if tag.startswith("p") else 1):
            parent = stored[m["parent_message_id"]]
            assert parent["conversation_id"] == m["conversation_id"]
            assert parent["text"].rsplit("-", 1)[0] == tag


def test_sigkill_keeps_every_acknowledged_message(db_url: str) -> None:
    store = ConversationStore.for_url(db_url)
    user = f"u-{uuid.uuid4().hex[:8]}"
    me = Owner(user, "org", "main")
    cid = runner.run_sync(store.create_conversation(me))
    proc = _spawn(db_url, user, "k", 100_000, [cid])
    assert proc.stdout is not None
    acked: list[str] = []
    try:
        for line in proc.stdout:
            acked.append(line.split()[0])
            if len(acked) >= 150:
                proc.send_signal(signal.SIGKILL)  # mid-write: more messages are in flight
                break
    finally:
        proc.kill()
        proc.communicate(timeout=30)  # reaps it and closes its pipes
    assert proc.returncode == -signal.SIGKILL
    assert len(acked) >= 150

    details = runner.run_sync(store.get_conversation_details(me, cid))
    stored = {m["id"]: m for m in details["messages"]}
    assert set(acked) <= set(stored)  # every acknowledged message is there
    for m in stored.values():  # and the chain is whole: no dangling parent
        if m["parent_message_id"] is not None:
            assert m["parent_message_id"] in stored

    async def consistent() -> list[str]:
        async with engine.get_engine(db_url).connect() as conn:
            if db_url.startswith("sqlite"):
                rows = await conn.execute(text("PRAGMA integrity_check"))
                problems = [r[0] for r in rows if r[0] != "ok"]
                rows = await conn.execute(text("PRAGMA foreign_key_check"))
                return problems + [str(tuple(r)) for r in rows]
            rows = await conn.execute(
                text(
                    "SELECT m.id FROM messages m LEFT JOIN messages p "
                    "ON p.id = m.parent_message_id "
                    "WHERE m.parent_message_id IS NOT NULL AND p.id IS NULL"
                )
            )
            return [r[0] for r in rows]

    assert runner.run_sync(consistent()) == []
    # and the database takes writes again
    after = store.add_message_sync(me, cid, "after the crash", "end_user")
    assert after in {
        m["id"] for m in runner.run_sync(store.get_conversation_details(me, cid))["messages"]
    }


@pytest.mark.parametrize("kind", ["sqlite"])
def test_forked_child_gets_its_own_writer(kind: str, tmp_path: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    url = f"sqlite:///{tmp_path}/fork.db"
    store = ConversationStore.for_url(url)
    me = Owner("u", "", "")
    cid = runner.run_sync(store.create_conversation(me))
    store.add_message_sync(me, cid, "parent", "end_user")
    script = textwrap.dedent(
        f"""
        import os, sys
        from hookwire.stores.conversations import ConversationStore, Owner
        store = ConversationStore.for_url({url!r})
        me = Owner("u", "", "")
        store.add_message_sync(me, {cid!r}, "before fork", "end_user")
        pid = os.fork()
        if pid == 0:
            store.add_message_sync(me, {cid!r}, "child", "end_user")
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        store.add_message_sync(me, {cid!r}, "parent after", "end_user")
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script], env=env, timeout=60, capture_output=True
    )
    assert done.returncode == 0, done.stderr
    texts = [
        m["text"] for m in runner.run_sync(store.get_conversation_details(me, cid))["messages"]
    ]
    assert texts == ["parent", "before fork", "child", "parent after"]


def test_writer_needs_no_thread_of_its_own(tmp_path: Path) -> None:
    import threading

    from hookwire.stores.conversations import batching

    store = ConversationStore(f"sqlite:///{tmp_path}/idle.db")
    me = Owner("u", "", "")
    cid = runner.run_sync(store.create_conversation(me))
    store.add_message_sync(me, cid, "first", "end_user")
    names = {t.name for t in threading.enumerate()}
    assert batching.STORE_WORKER in names  # the shared store worker writes
    assert not any("sqlite" in name for name in names)  # no writer or reader threads
    store.add_message_sync(me, cid, "second", "end_user")
    details = runner.run_sync(store.get_conversation_details(me, cid))
    assert [m["text"] for m in details["messages"]] == ["first", "second"]
