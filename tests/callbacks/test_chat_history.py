"""ChatHistoryCallbackHandler: the seed's examples, the methods beyond them, sync twins, access,
bad input, and recording runs through a CallbackManager."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import hookwire
from hookwire.callbacks import ChatHistoryCallbackHandler as Lazy
from hookwire.callbacks import chat_history
from hookwire.callbacks.chat_history import ChatHistoryCallbackHandler
from hookwire.dispatch import CallbackManager
from hookwire.errors import (
    ConfigurationError,
    ConversationNotFound,
    InvalidMessageTimeError,
    InvalidMetadataError,
    InvalidNameError,
    InvalidSenderError,
    ParentMessageError,
    StoreError,
)
from hookwire.events import LLMResponse, Usage
from hookwire.stores import runner
from hookwire.stores.conversations import ConversationStore

UTC = dt.timezone.utc


def handler(db_url: str, **kw: Any) -> ChatHistoryCallbackHandler:
    user = kw.pop("user_id", f"user-{uuid.uuid4().hex[:8]}")
    return ChatHistoryCallbackHandler(
        correlation_id="correlation-id",
        request_id="request-id",
        user_data={"user_id": user, "org_id": kw.pop("org_id", "org-456")},
        realm=kw.pop("realm", "main"),
        agent_title="Customer Support Agent",
        database_url=db_url,
        **kw,
    )


def test_lazy_export_is_the_class() -> None:
    assert Lazy is ChatHistoryCallbackHandler


async def test_seed_example(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The seed's first example, with only its import changed; the database comes from the
    # environment, as an application would configure it.
    monkeypatch.setenv("HOOKWIRE_DATABASE_URL", db_url)

    # Initialize the chat history handler
    chat_history = ChatHistoryCallbackHandler(
        conversation_id="existing-conversation-id",  # Optional
        correlation_id="correlation-id",
        request_id="request-id",
        user_data={
            "user_id": "user-123",
            "details": {"given_name": "John", "family_name": "Doe"},
            "org_id": "org-456",
        },
        realm="main",
        agent_title="Customer Support Agent",
        is_anonymous=False,
    )

    # Create a new conversation
    conversation_id = await chat_history.create_conversation(conversation_state="normal")

    # Send messages to the conversation
    user_message_id = await chat_history.send_message(
        conversation_id=conversation_id,
        message_text="How can I reset my password?",
        sender="end_user",
        parent_message_id=None,
        message_time="2023-05-15T14:30:00Z",
        metadata=[],
        conversation_state="normal",
    )

    assistant_message_id = await chat_history.send_message(
        conversation_id=conversation_id,
        message_text="You can reset your password by going to the Account Settings page and clicking on 'Reset Password'.",  # noqa: E501
        sender="assistant",
        parent_message_id=user_message_id,
        message_time="2023-05-15T14:30:05Z",
        metadata=[],
        conversation_state="normal",
    )

    # Rename a conversation
    await chat_history.rename_conversation(
        conversation_id=conversation_id, new_name="Password Reset Help"
    )

    # Get conversation details
    conversation_details = await chat_history.get_conversation_details(
        conversation_id=conversation_id
    )

    assert chat_history.store.url.startswith(db_url.split(":")[0])
    assert conversation_details["name"] == "Password Reset Help"
    assert conversation_details["state"] == "normal"
    assert conversation_details["realm"] == "main"
    assert conversation_details["agent_title"] == "Customer Support Agent"
    assert conversation_details["user_id"] == "user-123"
    assert conversation_details["org_id"] == "org-456"
    assert conversation_details["metadata"] == {
        "user_details": {"given_name": "John", "family_name": "Doe"}
    }
    assert conversation_details["message_count"] == 2
    first, second = conversation_details["messages"]
    assert first["id"] == user_message_id
    assert second["id"] == assistant_message_id
    assert second["parent_message_id"] == user_message_id
    assert first["message_time"] == dt.datetime(2023, 5, 15, 14, 30, tzinfo=UTC)
    assert second["message_time"] == dt.datetime(2023, 5, 15, 14, 30, 5, tzinfo=UTC)
    # every field of the messages, a page at a time
    [full, _] = await chat_history.get_messages(conversation_id)
    assert full["correlation_id"] == "correlation-id"
    assert full["request_id"] == "request-id"
    assert full["conversation_id"] == conversation_id
    assert full["created_at"].tzinfo is not None


async def test_seed_llm_integration_example(db_url: str) -> None:
    # The seed's "With LLMs" example: a reply whose message_time is the response's datetime.
    chat_history = ChatHistoryCallbackHandler(
        conversation_id="conversation-id",
        correlation_id="correlation-id",
        request_id="request-id",
        user_data={"user_id": f"user-{uuid.uuid4().hex[:6]}"},
        database_url=db_url,
    )
    conversation_id = await chat_history.create_conversation(
        conversation_id=f"conversation-{uuid.uuid4()}"
    )
    user_message_id = await chat_history.send_message(
        conversation_id, "What is the capital of France?", "end_user"
    )
    response = LLMResponse(
        content="Paris.",
        model="gpt-4",
        usage=Usage(prompt_tokens=12, completion_tokens=2),
        created_at=dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    await chat_history.send_message(
        conversation_id=conversation_id,
        message_text=response.content,
        sender="assistant",
        parent_message_id=user_message_id,
        message_time=response.created_at,
        metadata=[],
    )
    details = await chat_history.get_conversation_details(conversation_id)
    assert details["messages"][1]["message_time"] == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert details["messages"][1]["parent_message_id"] == user_message_id


async def test_methods_beyond_the_seed(db_url: str) -> None:
    chat = handler(db_url)
    a = await chat.create_conversation(name="first")
    b = await chat.create_conversation()
    assert chat.conversation_id == b
    await chat.send_message(None, "into b (the handler's conversation)", "end_user")
    await chat.set_conversation_state(a, "human-intervention")
    assert (await chat.get_conversation_details(a))["state"] == "human-intervention"
    page = await chat.list_conversations(limit=1)
    assert len(page) == 1
    assert page.next_cursor is not None
    rest = await chat.list_conversations(limit=10, cursor=page.next_cursor)
    assert {c["id"] for c in [*page, *rest]} == {a, b}
    msgs = await chat.get_messages(b)
    assert [m["text"] for m in msgs] == ["into b (the handler's conversation)"]
    assert await chat.delete_conversation(b) == 1
    assert chat.conversation_id is None
    with pytest.raises(ConversationNotFound):
        await chat.get_conversation_details(b)
    with pytest.raises(ConfigurationError, match="create_conversation"):
        await chat.get_messages()


def test_sync_twins(db_url: str) -> None:
    chat = handler(db_url)
    cid = chat.create_conversation_sync()
    first = chat.send_message_sync(
        cid, "hello", "end_user", message_time="2024-02-03T04:05:06+02:00"
    )
    chat.send_message_sync(cid, "hi!", "assistant", parent_message_id=first, metadata={"a": 1})
    chat.rename_conversation_sync(cid, "Greetings")
    chat.set_conversation_state_sync(cid, "human-intervention")
    details = chat.get_conversation_details_sync(cid)
    assert details["name"] == "Greetings"
    assert details["state"] == "human-intervention"
    assert details["messages"][0]["message_time"] == dt.datetime(2024, 2, 3, 2, 5, 6, tzinfo=UTC)
    assert [c["id"] for c in chat.list_conversations_sync()] == [cid]
    assert len(chat.get_messages_sync(cid, limit=1)) == 1
    assert chat.delete_conversation_sync(cid) == 2
    with pytest.raises(ConversationNotFound):
        chat.get_conversation_details_sync(cid)


async def test_access_control_every_method(db_url: str) -> None:
    mine = handler(db_url)
    cid = await mine.create_conversation(name="private")
    mid = await mine.send_message(cid, "my secret", "end_user")
    for other in (
        handler(db_url),  # another user
        handler(db_url, user_id=mine.user_id, org_id="org-other"),  # same user id, other org
        handler(db_url, user_id=mine.user_id, realm="other"),  # other realm
        handler(db_url, user_id=mine.user_id, is_anonymous=True),  # anonymous, same id
    ):
        for call in (
            other.get_conversation_details(cid),
            other.send_message(cid, "hi", "end_user"),
            other.send_message(cid, "hi", "assistant", parent_message_id=mid),
            other.rename_conversation(cid, "mine now"),
            other.set_conversation_state(cid, "human-intervention"),
            other.get_messages(cid),
            other.delete_conversation(cid),
        ):
            with pytest.raises(ConversationNotFound):
                await call
        with pytest.raises(ConversationNotFound):
            other.get_conversation_details_sync(cid)
        with pytest.raises(ConversationNotFound):
            other.send_message_sync(cid, "hi", "end_user")
        assert cid not in {c["id"] for c in await other.list_conversations()}
    details = await mine.get_conversation_details(cid)
    assert details["name"] == "private"
    assert [m["text"] for m in details["messages"]] == ["my secret"]


async def test_anonymous_handlers_see_only_their_own(db_url: str) -> None:
    one = ChatHistoryCallbackHandler(database_url=db_url)
    two = ChatHistoryCallbackHandler(database_url=db_url)
    assert one.is_anonymous
    assert one.user_id != two.user_id
    cid = await one.create_conversation()
    await one.send_message(cid, "anon", "end_user")
    with pytest.raises(ConversationNotFound):
        await two.get_conversation_details(cid)
    assert (await one.get_conversation_details(cid))["is_anonymous"] is True


async def test_bad_input_errors(db_url: str) -> None:
    chat = handler(db_url)
    cid = await chat.create_conversation()
    other = await chat.create_conversation()
    in_other = await chat.send_message(other, "x", "end_user")
    with pytest.raises(ConversationNotFound):
        await chat.send_message("no-such-conversation", "x", "end_user")
    with pytest.raises(ParentMessageError):
        await chat.send_message(cid, "x", "assistant", parent_message_id=in_other)
    with pytest.raises(InvalidSenderError):
        await chat.send_message(cid, "x", "user")
    with pytest.raises(InvalidMessageTimeError):
        await chat.send_message(cid, "x", "end_user", message_time="15/05/2023")
    with pytest.raises(InvalidNameError):
        await chat.rename_conversation(cid, "")
    with pytest.raises(InvalidNameError):
        await chat.rename_conversation(cid, "n" * 256)
    with pytest.raises(InvalidMetadataError):
        await chat.send_message(cid, "x", "end_user", metadata={"when": object()})
    assert (await chat.get_conversation_details(cid))["message_count"] == 0


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"user_data": {...}}, "user_data must be a dict"),
        ({"user_data": {"user_id": ""}}, "user_id"),
        ({"user_data": {"user_id": 5}}, "user_id"),
        ({"realm": ""}, "realm"),
        ({"user_data": {"user_id": "u\ud800"}}, "surrogate"),
        ({"user_data": {"user_id": "u1", "org_id": "o\x00"}}, "NUL"),
        ({"realm": "r\udfff"}, "surrogate"),
        ({"store": "sqlite:///x.db"}, "database_url"),
        ({"database_url": "mysql://x/y"}, "accepted"),
    ],
)
def test_constructor_errors(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        ChatHistoryCallbackHandler(**kw)


def test_store_and_url_together_are_refused(tmp_path: Any) -> None:
    store = ConversationStore.for_url(f"sqlite:///{tmp_path}/a.db")
    with pytest.raises(ConfigurationError, match="not both"):
        ChatHistoryCallbackHandler(store=store, database_url=f"sqlite:///{tmp_path}/a.db")
    assert ChatHistoryCallbackHandler(store=store).store is store


# -- as a callback ------------------------------------------------------------------------


def test_records_runs_through_a_manager(db_url: str) -> None:
    chat = handler(db_url)
    manager = CallbackManager([chat])
    run_id = manager.on_run_start("How can I reset my password?", name="Support Agent")
    # a nested sub-run (an RLM sub-call, a tool's own LLM call) is not a conversation turn
    inner = manager.on_run_start("sub-question", name="rlm", depth=2, parent_run_id=run_id)
    manager.on_run_end("sub-answer", name="rlm", depth=2, run_id=inner)
    manager.on_run_end(
        "Go to Account Settings.",
        name="Support Agent",
        run_id=run_id,
        usage=Usage(prompt_tokens=20, completion_tokens=7),
        model="gpt-4o-mini",
    )
    assert manager.flush(timeout=30)
    assert manager.stats()["errors_total"] == 0
    cid = chat.conversation_id
    assert cid is not None
    details = chat.get_conversation_details_sync(cid)
    question, answer = details["messages"]
    assert (question["sender"], question["text"]) == ("end_user", "How can I reset my password?")
    assert (answer["sender"], answer["text"]) == ("assistant", "Go to Account Settings.")
    assert answer["parent_message_id"] == question["id"]
    assert question["run_id"] == answer["run_id"] == run_id
    assert (answer["model"], answer["prompt_tokens"], answer["completion_tokens"]) == (
        "gpt-4o-mini",
        20,
        7,
    )
    assert answer["total_tokens"] == 27
    assert details["agent_title"] == "Customer Support Agent"


async def test_records_async_runs_in_the_context_conversation(db_url: str) -> None:
    chat = handler(db_url)
    manager = CallbackManager([chat])
    target = f"conv-{uuid.uuid4()}"
    with hookwire.request_context(conversation_id=target, user_id="ignored-for-access"):
        for i in range(3):
            run_id = await manager.aon_run_start(f"question {i}", name="agent")
            await manager.aon_run_end(
                LLMResponse(content=f"answer {i}", model="local-model"), run_id=run_id
            )
    assert manager.flush(timeout=30)
    details = await chat.get_conversation_details(target)
    assert [m["text"] for m in details["messages"]] == [
        "question 0",
        "answer 0",
        "question 1",
        "answer 1",
        "question 2",
        "answer 2",
    ]
    assert details["messages"][1]["model"] == "local-model"
    assert details["messages"][3]["parent_message_id"] == details["messages"][2]["id"]
    # the conversation belongs to the handler's user, not to the context's user_id
    assert details["user_id"] == chat.user_id


def test_failed_runs_keep_the_question_only(db_url: str) -> None:
    chat = handler(db_url)
    manager = CallbackManager([chat])
    run_id = manager.on_run_start("will fail")
    manager.on_run_end(None, run_id=run_id, error=RuntimeError("model down"))
    manager.flush(timeout=30)
    details = chat.get_conversation_details_sync(chat.conversation_id)
    assert [m["text"] for m in details["messages"]] == ["will fail"]


def test_recording_errors_never_reach_the_app(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    owner_handler = handler(db_url)
    taken = owner_handler.create_conversation_sync()
    # another user's handler pointed at that conversation: recording fails, quietly
    intruder = handler(db_url, conversation_id=taken)
    manager = CallbackManager([intruder])
    run_id = manager.on_run_start("hello")
    manager.on_run_end("hi", run_id=run_id)
    manager.flush(timeout=30)
    assert manager.stats()["errors_total"] >= 1
    assert owner_handler.get_conversation_details_sync(taken)["message_count"] == 0


def test_background_recording_does_not_block_dispatch(db_url: str) -> None:
    chat = handler(db_url)
    assert chat.run_in_background is True
    manager = CallbackManager([chat])
    ids = []
    for i in range(50):
        rid = manager.on_run_start(f"q{i}")
        manager.on_run_end(f"a{i}", run_id=rid)
        ids.append(rid)
    assert manager.close(timeout=60)
    details = chat.get_conversation_details_sync(chat.conversation_id)
    assert details["message_count"] == 100
    by_id = {m["id"]: m for m in details["messages"]}
    for m in details["messages"]:
        if m["sender"] == "assistant":
            parent = by_id[m["parent_message_id"]]
            assert parent["run_id"] == m["run_id"]
            assert parent["text"] == "q" + m["text"][1:]


def test_recording_is_drained_when_the_process_exits(db_url: str) -> None:
    import os
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    user = f"exit-{uuid.uuid4().hex[:6]}"
    script = textwrap.dedent(
        f"""
        from hookwire.callbacks.chat_history import ChatHistoryCallbackHandler
        from hookwire.dispatch import CallbackManager

        chat = ChatHistoryCallbackHandler(
            user_data={{"user_id": {user!r}}}, conversation_id={user!r},
            database_url={db_url!r},
        )
        manager = CallbackManager([chat])
        for i in range(20):
            run_id = manager.on_run_start(f"question {{i}}")
            manager.on_run_end(f"answer {{i}}", run_id=run_id)
        # no flush(): the process exits with the turns still queued
        """
    )
    src = str(Path(hookwire.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, timeout=120, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    reader = ChatHistoryCallbackHandler(user_data={"user_id": user}, database_url=db_url)
    details = reader.get_conversation_details_sync(user)
    assert details["message_count"] == 40
    assert [m["text"] for m in details["messages"]][-2:] == ["question 19", "answer 19"]


async def test_seed_configuration_example(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from hookwire.config import Settings

    conversation = f"conv-{uuid.uuid4()}"
    monkeypatch.setenv("HOOKWIRE_DATABASE_URL", db_url)
    monkeypatch.setenv("HOOKWIRE_CONVERSATION_ID", conversation)
    monkeypatch.setenv("HOOKWIRE_USER_ID", "user-from-env")
    monkeypatch.setenv("HOOKWIRE_ORG_ID", "org-from-env")
    monkeypatch.setenv("HOOKWIRE_AGENT_TITLE", "Configured Agent")

    # Get settings
    settings = Settings()

    # Create chat history with configuration based on settings
    chat_history = ChatHistoryCallbackHandler(
        conversation_id=settings.conversation_id,
        correlation_id=settings.correlation_id,
        request_id=settings.request_id,
        user_data=settings.get_user_data(),
        realm=settings.realm,
        agent_title=settings.agent_title,
        is_anonymous=settings.is_anonymous,
    )

    assert chat_history.conversation_id == conversation
    cid = await chat_history.create_conversation(conversation_id=conversation)
    await chat_history.send_message(cid, "configured", "end_user")
    details = await chat_history.get_conversation_details()
    assert (details["user_id"], details["org_id"], details["realm"]) == (
        "user-from-env",
        "org-from-env",
        "main",
    )
    assert details["agent_title"] == "Configured Agent"
    assert details["message_count"] == 1


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10"])
def test_max_pending_must_be_a_positive_number_of_events(bad: Any, tmp_path: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_pending"):
        ChatHistoryCallbackHandler(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'h.db'}", max_pending=bad
        )


def test_turns_beyond_max_pending_are_dropped_and_counted_never_waited_for(
    pg_database_url: str, pg_proxy: Any
) -> None:
    # The database never answers: the first turn hangs in the writer, the next fill the
    # bound, the rest are dropped at once and counted; all that was kept is stored later.
    user = f"bound-{uuid.uuid4().hex[:8]}"
    chat = ChatHistoryCallbackHandler(
        user_data={"user_id": user},
        conversation_id=user,
        database_url=pg_proxy.url(pg_database_url),
        max_pending=6,
    )
    manager = CallbackManager([chat])
    manager.on_run_end("warm-up")
    assert manager.flush(30)
    pg_proxy.stall()
    for i in range(20):
        run_id = manager.on_run_start(f"q{i}")
        manager.on_run_end(f"a{i}", run_id=run_id)
    dropped = manager.stats()["dropped"]["ChatHistoryCallbackHandler"]
    assert 40 - 6 - 1 <= dropped < 40
    pg_proxy.restore()
    assert manager.flush(60)
    stored = chat.get_conversation_details_sync(user)["message_count"]
    assert stored == 1 + 40 - dropped


@contextlib.contextmanager
def _writes_blocked(db_url: str) -> Iterator[None]:
    """Another connection holds what a message write waits for: SQLite's write lock, or
    PostgreSQL's lock on the conversations table (which the write's owner lookup reads)."""
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(db_url.split("///", 1)[1])
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.rollback()
            conn.close()
        return
    import asyncpg

    admin = runner.run_sync(asyncpg.connect(db_url.replace("+asyncpg", "")), 30)
    try:
        runner.run_sync(admin.execute("BEGIN; LOCK TABLE conversations IN ACCESS EXCLUSIVE MODE"))
        yield
    finally:
        runner.run_sync(admin.execute("ROLLBACK"), 30)
        runner.run_sync(admin.close(), 30)


def test_a_timed_out_send_message_sync_is_withdrawn_and_a_retry_stores_it_once(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = handler(db_url)
    cid = h.create_conversation_sync()
    monkeypatch.setattr(chat_history, "SYNC_TIMEOUT", 0.3)
    with _writes_blocked(db_url), pytest.raises(StoreError, match="withdrawn"):
        h.send_message_sync(cid, "hello", "end_user")
    monkeypatch.setattr(chat_history, "SYNC_TIMEOUT", 60.0)
    # the database is free again: the withdrawn message is never written, the retry once
    first = h.send_message_sync(cid, "hello", "end_user")
    second = h.send_message_sync(cid, "again", "end_user")
    details = h.get_conversation_details_sync(cid)
    assert [(m["id"], m["text"]) for m in details["messages"]] == [
        (first, "hello"),
        (second, "again"),
    ]


async def test_a_cancelled_send_message_is_withdrawn_before_it_is_written(db_url: str) -> None:
    h = handler(db_url)
    cid = await h.create_conversation()
    with _writes_blocked(db_url):
        task = asyncio.ensure_future(h.send_message(cid, "hello", "end_user"))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    stored = await h.send_message(cid, "again", "end_user")
    details = await h.get_conversation_details(cid)
    assert [(m["id"], m["text"]) for m in details["messages"]] == [(stored, "again")]
