"""ConversationAgent: turns, history, agent context; seed example."""

from __future__ import annotations

from typing import Any

import pytest

from hookwire import ConversationAgent, LocalLLM
from hookwire.callbacks import BaseCallback
from hookwire.errors import ConfigurationError
from hookwire.llms import OpenAIClient
from hookwire.testing import RecordingCallback
from hookwire.testing.openai_server import OpenAIServer


class HistoryRecorder(BaseCallback):
    """Records what a chat-history handler would: the run's input and output."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str, str | None]] = []

    def on_run_start(self, input: Any, **kwargs: Any) -> None:
        self.messages.append(("end_user", input, kwargs.get("agent")))

    def on_run_end(self, output: Any, **kwargs: Any) -> None:
        self.messages.append(("assistant", output, kwargs.get("agent")))


async def test_seed_example_records_history(openai_server: OpenAIServer) -> None:
    chat_history = HistoryRecorder()
    llm_client = OpenAIClient(api_key="k", base_url=openai_server.base_url)
    agent = ConversationAgent(name="Support Agent", llm=llm_client, callbacks=[chat_history])
    response = await agent.process_message("How can I help you today?")
    assert str(response) == "You said: How can I help you today?"
    assert chat_history.messages == [
        ("end_user", "How can I help you today?", "Support Agent"),
        ("assistant", "You said: How can I help you today?", "Support Agent"),
    ]
    await agent.process_message("Second question")
    sent = openai_server.requests[1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[0]["content"].startswith("You are Support Agent")
    assert sent[1]["content"] == "How can I help you today?"
    assert len(agent.turns) == 4
    await llm_client.aclose()


async def test_context_and_run_names() -> None:
    rec = RecordingCallback()
    agent = ConversationAgent(
        "Billing Bot",
        LocalLLM(),
        callbacks=[rec],
        conversation_id="conv-1",
        user_id="u1",
        org_id="o1",
    )
    assert agent.slug == "billing-bot"
    await agent.process_message("hello", request_id="req-7")
    start = rec.calls[0]
    assert start["name"] == "Billing Bot"
    assert start["agent"] == "Billing Bot"
    for call in rec.calls:
        assert call["conversation_id"] == "conv-1"
        assert call["user_id"] == "u1"
        assert call["org_id"] == "o1"
        assert call["request_id"] == "req-7"


def test_sync_turns_and_bounded_history() -> None:
    llm = LocalLLM()
    agent = ConversationAgent("A", llm, max_turns=1, system_prompt="")
    agent.process_message_sync("first")
    agent.process_message_sync("second")
    result = agent.process_message_sync("third")
    assert [m["content"] for m in result.messages] == [
        "second",
        "You said: second",
        "third",
        "You said: third",
    ]
    assert len(agent.turns) == 6
    agent.reset()
    assert agent.turns == []
    assert "0 turns" in repr(agent)


async def test_failed_turn_is_not_remembered() -> None:
    agent = ConversationAgent("A", LocalLLM(max_retries=0, fail_times=1))
    with pytest.raises(Exception, match="rate limit"):
        await agent.process_message("x")
    assert agent.turns == []
    assert str(await agent.process_message("y")) == "You said: y"


def test_bad_arguments() -> None:
    with pytest.raises(ConfigurationError, match="name"):
        ConversationAgent("", LocalLLM())
    with pytest.raises(ConfigurationError):
        ConversationAgent("A", LocalLLM(), max_turns=-1)


def test_agent_serves_several_event_loops() -> None:
    import asyncio

    agent = ConversationAgent("A", LocalLLM())
    asyncio.run(agent.process_message("one"))

    async def two_at_once() -> None:
        await asyncio.gather(agent.process_message("two"), agent.process_message("three"))

    asyncio.run(two_at_once())
    assert [t["content"] for t in agent.turns if t["role"] == "user"] == ["one", "two", "three"]
