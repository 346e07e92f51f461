"""End to end: the seed's agent example records its conversation automatically."""

from __future__ import annotations

import uuid

from hookwire.agents import ConversationAgent
from hookwire.callbacks.chat_history import ChatHistoryCallbackHandler
from hookwire.llms import LocalLLM
from hookwire.rlm import RLM


async def test_seed_agent_example_records_the_conversation(db_url: str) -> None:
    llm_client = LocalLLM(rules=[("password", "Go to Account Settings and click Reset Password.")])
    conversation = f"conversation-{uuid.uuid4()}"

    # Initialize chat history handler
    chat_history = ChatHistoryCallbackHandler(
        user_data={"user_id": "user-123", "org_id": "org-456"},
        conversation_id=conversation,
        database_url=db_url,
    )

    # Create conversation agent
    agent = ConversationAgent(name="Support Agent", llm=llm_client, callbacks=[chat_history])

    # Process user message
    response = await agent.process_message("How can I help you today?")
    second = await agent.process_message("How do I reset my password?")

    # Chat history is automatically updated by the agent (in the background: wait for it)
    assert agent.callbacks.flush(timeout=30)
    assert agent.callbacks.stats()["errors_total"] == 0
    details = await chat_history.get_conversation_details(conversation)
    assert details["user_id"] == "user-123"
    assert details["agent_title"] == "Support Agent"
    texts = [(m["sender"], m["text"]) for m in details["messages"]]
    assert texts == [
        ("end_user", "How can I help you today?"),
        ("assistant", str(response)),
        ("end_user", "How do I reset my password?"),
        ("assistant", str(second)),
    ]
    assert "Reset Password" in str(second)
    q1, a1, q2, a2 = details["messages"]
    assert a1["parent_message_id"] == q1["id"]
    assert a2["parent_message_id"] == q2["id"]
    assert a1["run_id"] == q1["run_id"] is not None
    assert a1["model"] == "local-echo"
    assert a1["total_tokens"] is not None
    assert a1["total_tokens"] > 0


def test_rlm_run_is_recorded_once_not_per_sub_call(db_url: str) -> None:
    chat_history = ChatHistoryCallbackHandler(
        user_data={"user_id": f"u-{uuid.uuid4().hex[:6]}"}, database_url=db_url
    )
    rlm = RLM.from_local(callbacks=[chat_history])
    result = rlm.run("Summarise hookwire in one line.")
    assert rlm.callbacks.flush(timeout=30)
    details = chat_history.get_conversation_details_sync()
    assert [m["sender"] for m in details["messages"]] == ["end_user", "assistant"]
    assert details["messages"][1]["text"] == str(result)


async def test_a_handler_reads_the_turn_it_just_recorded_without_a_flush(db_url: str) -> None:
    conversation = f"conversation-{uuid.uuid4()}"
    chat_history = ChatHistoryCallbackHandler(
        user_data={"user_id": f"u-{uuid.uuid4().hex[:8]}"},
        conversation_id=conversation,
        database_url=db_url,
    )
    agent = ConversationAgent(name="Support Agent", llm=LocalLLM(), callbacks=[chat_history])
    for i in range(5):
        answer = await agent.process_message(f"question {i}")
        # no flush(): the handler waits for what its own hooks queued before it reads
        details = await chat_history.get_conversation_details(conversation)
        assert [m["text"] for m in details["messages"][-2:]] == [f"question {i}", str(answer)]
        page = await chat_history.get_messages(conversation)
        assert len(page) == 2 * (i + 1)


async def test_a_handler_without_a_conversation_id_finds_the_one_its_run_created(
    db_url: str,
) -> None:
    chat_history = ChatHistoryCallbackHandler(
        user_data={"user_id": f"u-{uuid.uuid4().hex[:8]}"}, database_url=db_url
    )
    agent = ConversationAgent(name="Support Agent", llm=LocalLLM(), callbacks=[chat_history])
    answer = await agent.process_message("hello")
    details = await chat_history.get_conversation_details()
    assert [m["text"] for m in details["messages"]] == ["hello", str(answer)]
    await chat_history.rename_conversation(None, "greeting")
    assert (await chat_history.list_conversations()).items[0]["name"] == "greeting"


def test_sync_reads_see_the_turn_the_handler_just_recorded(db_url: str) -> None:
    chat_history = ChatHistoryCallbackHandler(
        user_data={"user_id": f"u-{uuid.uuid4().hex[:8]}"}, database_url=db_url
    )
    agent = ConversationAgent(name="Support Agent", llm=LocalLLM(), callbacks=[chat_history])
    answer = agent.process_message_sync("hello")
    details = chat_history.get_conversation_details_sync()
    assert [m["text"] for m in details["messages"]] == ["hello", str(answer)]
    assert len(chat_history.get_messages_sync()) == 2
