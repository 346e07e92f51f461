"""``ConversationAgent``: a named agent that keeps a conversation's turns.

``await agent.process_message(text)`` is one turn: a run named after the agent, with
``agent=<name>`` (and the conversation and user, when given) in the request context; the
user's message is the run's input and the answer its output, which is what the chat-history
handler records. The previous turns go to the model with each new message.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

from .dispatch import Callbacks
from .errors import ConfigurationError
from .llms.protocol import LLM
from .memory import BaseMemory
from .rlm import RLM, RunResult

__all__ = ["ConversationAgent"]


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "agent"


class ConversationAgent:
    """An agent that answers messages in one conversation, remembering its turns.

    ``name`` names the agent's runs and is the ``agent`` in their context (``slug`` is the
    lower-case, dash-separated form, used for accounting). ``llm`` is any hookwire LLM client;
    ``callbacks``, ``tools``, ``memory``, ``system_prompt``, ``max_steps`` and ``max_retries``
    are as for ``RLM``. ``conversation_id``, ``user_id``, ``org_id``, ``correlation_id`` and
    ``request_id`` go into every turn's request context. ``max_turns`` bounds the history
    sent to the model (older turns are dropped from it, not from ``turns``).
    """

    def __init__(
        self,
        name: str,
        llm: LLM,
        callbacks: Callbacks = None,
        *,
        tools: Sequence[Any] = (),
        memory: BaseMemory | None = None,
        system_prompt: str | None = None,
        max_steps: int = 8,
        max_retries: int | None = None,
        max_turns: int = 20,
        conversation_id: str | None = None,
        user_id: str | None = None,
        org_id: str | None = None,
        correlation_id: str | None = None,
        request_id: str | None = None,
        **params: Any,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError("ConversationAgent needs a name, e.g. name='Support Agent'")
        if max_turns < 0:
            raise ConfigurationError(f"max_turns must be >= 0, not {max_turns!r}")
        self.name = name
        self.slug = _slug(name)
        self.max_turns = max_turns
        self.runner = RLM(
            llm,
            callbacks=callbacks,
            tools=tools,
            memory=memory,
            system_prompt=system_prompt
            if system_prompt is not None
            else f"You are {name}. Answer helpfully and concisely.",
            max_steps=max_steps,
            max_retries=max_retries,
            name=name,
            **params,
        )
        self.context = {
            k: v
            for k, v in {
                "conversation_id": conversation_id,
                "user_id": user_id,
                "org_id": org_id,
                "correlation_id": correlation_id,
                "request_id": request_id,
            }.items()
            if v is not None
        }
        #: The conversation so far: ``{"role": "user"|"assistant", "content": ...}`` dicts.
        self.turns: list[dict[str, Any]] = []
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    @property
    def llm(self) -> LLM:
        """The agent's model client."""
        return self.runner.llm

    @property
    def callbacks(self) -> Any:
        """The agent's ``CallbackManager``."""
        return self.runner.callbacks

    def _history(self) -> list[dict[str, Any]]:
        if not self.max_turns:
            return []
        return self.turns[-2 * self.max_turns :]

    def _context(self, context: dict[str, Any]) -> dict[str, Any]:
        return {**self.context, **context, "agent": self.name}

    def _remember(self, text: str, result: RunResult) -> None:
        self.turns.append({"role": "user", "content": text})
        self.turns.append({"role": "assistant", "content": result.content})

    async def process_message(self, text: str, **context: Any) -> RunResult:
        """Answer ``text`` as the next turn; ``str(result)`` is the answer.

        ``context`` adds request context for this turn (``request_id=...``). Turns of one
        agent are processed one at a time, in order.
        """
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            # A lock belongs to one event loop; an agent may serve several asyncio.run calls.
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:
            result = await self.runner.arun(text, history=self._history(), **self._context(context))
            self._remember(text, result)
            return result

    def process_message_sync(self, text: str, **context: Any) -> RunResult:
        """``process_message`` for code without an event loop."""
        result = self.runner.run(text, history=self._history(), **self._context(context))
        self._remember(text, result)
        return result

    def reset(self) -> None:
        """Forget the conversation's turns."""
        self.turns.clear()

    def __repr__(self) -> str:
        return f"ConversationAgent({self.name!r}, {len(self.turns) // 2} turns)"
