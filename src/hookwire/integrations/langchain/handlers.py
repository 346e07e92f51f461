"""The LangChain callback handlers: ``HookwireCallbackHandler`` and its async mirror.

Each LangChain event is one call of the bridge's translation, whose hook calls are then made
by ``_send`` (sync) or ``_asend`` (async). The two handlers mirror each other method for
method and differ only in ``async``/``await`` and the ``a`` of the hooks they call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.messages import BaseMessage

from ...dispatch import CallbackManager, Callbacks
from ...errors import CallbackAbort
from .bridge import Bridge, Emit

__all__ = ["AsyncHookwireCallbackHandler", "HookwireCallbackHandler"]

Translate = Callable[..., list[Emit]]

#: The reprs of the refusals on their way through LangChain, whose warning about them is dropped.
_refusals: set[str] = set()


def _propagating(abort: CallbackAbort) -> None:
    """Mark ``abort`` as deliberate: LangChain logs "Error in <handler>.<event> callback" for
    every exception a handler raises, even one it then propagates as asked (``raise_error``)."""
    if len(_refusals) > 64:  # a handler called outside LangChain: no warning came to clear it
        _refusals.clear()
    _refusals.add(repr(abort))


class _QuietRefusals(logging.Filter):
    """Drops LangChain's warning about a refusal a hookwire handler propagated on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            _refusals
            and record.msg == "Error in %s.%s callback: %s"
            and isinstance(args, tuple)
            and len(args) == 3
            and args[2] in _refusals
        ):
            _refusals.discard(args[2])
            return False
        return True


logging.getLogger("langchain_core.callbacks.manager").addFilter(_QuietRefusals())


class _Bridged:
    """What both handlers hold: a bridge to a hookwire ``CallbackManager``."""

    def __init__(
        self, callbacks: Callbacks = None, *, prompts_and_parsers: bool = False, **context: Any
    ) -> None:
        super().__init__()
        self._bridge = Bridge(callbacks, context, prompts_and_parsers=prompts_and_parsers)

    @property
    def manager(self) -> CallbackManager:
        """The hookwire ``CallbackManager`` the events go to."""
        return self._bridge.manager


class HookwireCallbackHandler(_Bridged, BaseCallbackHandler):
    """A LangChain callback handler that sends LangChain's events to hookwire handlers.

    ``callbacks`` is a list of hookwire handlers (or a ``CallbackManager``);
    ``prompts_and_parsers=True`` makes prompts and output parsers runs of their own (by default
    what runs inside them hangs under their parent); ``**context`` sets request context for
    every event (``user_id``, ``org_id``, ``conversation_id``, ``correlation_id``,
    ``request_id``, ``agent``). Pass it where LangChain takes callbacks: ``config={"callbacks":
    [handler]}``, or a model's ``callbacks=[handler]``.

    It runs inline (``run_inline = True``), also from LangChain's async code, so events keep
    their order and contextvars; hookwire handlers that do I/O still run in the background.
    With async hookwire handlers in async LangChain code, prefer
    ``AsyncHookwireCallbackHandler``.
    """

    run_inline = True
    # Only deliberate exceptions escape hookwire's dispatch (a budget's ``CallbackAbort``, or
    # a handler marked ``raise_error``); LangChain must let those through to the caller.
    raise_error = True

    def _send(self, where: str, translate: Translate, *args: Any) -> None:
        """Translate the LangChain event ``where`` and make its hook calls. A hook that
        refuses (``CallbackAbort``) is told about as runners do, then re-raised."""
        bridge = self._bridge
        try:
            emits = translate(*args)
        except Exception as exc:
            bridge.failed(where, exc)
            return
        manager = bridge.manager
        for hook, hook_args, kw in emits:
            try:
                getattr(manager, hook)(*hook_args, **kw)
            except CallbackAbort as abort:
                for told, told_args, told_kw in bridge.aborted(abort, kw):
                    getattr(manager, told)(*told_args, **told_kw)
                _propagating(abort)
                raise

    def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A chain began: ``on_run_start``."""
        self._send(
            "on_chain_start",
            self._bridge.chain_start,
            serialized,
            inputs,
            (run_id, parent_run_id, tags, metadata),
            kwargs,
        )

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A chain returned: ``on_run_end``."""
        self._send("on_chain_end", self._bridge.chain_end, outputs, run_id, kwargs.get("inputs"))

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """A chain raised: ``on_run_end(None, error=...)``, and ``on_error`` if outermost."""
        self._send("on_chain_error", self._bridge.chain_error, error, run_id)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A chat model call began: ``on_llm_start`` with the messages as dicts."""
        self._send(
            "on_chat_model_start",
            self._bridge.chat_model_start,
            serialized,
            messages,
            (run_id, parent_run_id, tags, metadata),
            kwargs,
        )

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A text LLM call began: ``on_llm_start`` with the prompt text."""
        self._send(
            "on_llm_start",
            self._bridge.llm_start,
            serialized,
            prompts,
            (run_id, parent_run_id, tags, metadata),
            kwargs,
        )

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A streamed token: ``on_llm_new_token``."""
        bridge = self._bridge
        try:
            event = bridge.token(token, run_id, kwargs.get("chunk"))
        except Exception as exc:
            bridge.failed("on_llm_new_token", exc)
            return
        if event is not None:
            bridge.manager.on_llm_new_token(event[0], index=event[1], **event[2])

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """The call returned: ``on_llm_end`` with an ``LLMResponse``."""
        self._send("on_llm_end", self._bridge.llm_end, response, run_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """The call failed: ``on_llm_error``."""
        self._send("on_llm_error", self._bridge.llm_error, error, run_id, kwargs.get("response"))

    def on_retry(self, retry_state: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A call will be retried: ``on_retry``."""
        self._send("on_retry", self._bridge.retry, retry_state, run_id)

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A tool began: ``on_tool_start``."""
        self._send(
            "on_tool_start",
            self._bridge.tool_start,
            serialized,
            input_str,
            (run_id, parent_run_id, tags, metadata),
            kwargs,
        )

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A tool returned: ``on_tool_end``."""
        self._send("on_tool_end", self._bridge.tool_end, output, run_id)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """A tool raised: ``on_tool_error`` and ``on_error(stage="tool")``."""
        self._send("on_tool_error", self._bridge.tool_error, error, run_id)

    def on_retriever_start(
        self,
        serialized: dict[str, Any],
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A retriever began (remembered until it returns)."""
        self._send(
            "on_retriever_start",
            self._bridge.retriever_start,
            serialized,
            query,
            (run_id, parent_run_id, tags, metadata),
            kwargs,
        )

    def on_retriever_end(self, documents: Sequence[Any], *, run_id: UUID, **kwargs: Any) -> None:
        """A retriever returned: ``on_memory_recall(query, [page contents])``."""
        self._send("on_retriever_end", self._bridge.retriever_end, documents, run_id)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """A retriever raised: ``on_error(stage="memory")`` (once, by the outermost run)."""
        self._send("on_retriever_error", self._bridge.retriever_error, error, run_id)


class AsyncHookwireCallbackHandler(_Bridged, AsyncCallbackHandler):
    """The async mirror of ``HookwireCallbackHandler``: hookwire handlers are awaited
    (``aon_*``) on the app's event loop. Use it in async LangChain code whose hookwire
    handlers are ``AsyncBaseCallback`` subclasses; it takes the same arguments."""

    # Awaited in order in the caller's task (not gathered with other handlers): events keep
    # their order and contextvars, as with the sync handler.
    run_inline = True
    raise_error = True

    async def _asend(self, where: str, translate: Translate, *args: Any) -> None:
        """``HookwireCallbackHandler._send``, awaiting the ``aon_*`` hooks."""
        bridge = self._bridge
        try:
            emits = translate(*args)
        except Exception as exc:
            bridge.failed(where, exc)
            return
        manager = bridge.manager
        for hook, hook_args, kw in emits:
            try:
                await getattr(manager, "a" + hook)(*hook_args, **kw)
            except CallbackAbort as abort:
                for told, told_args, told_kw in bridge.aborted(abort, kw):
                    await getattr(manager, "a" + told)(*told_args, **told_kw)
                _propagating(abort)
                raise

    async def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A chain began: ``on_run_start``."""
        await self._asend(
            "on_chain_start",
            self._bridge.chain_start,
            serialized,
            inputs,
            (run_id, parent_run_id, tags, metadata),
            kwargs,
        )

    async def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A chain returned: ``on_run_end``."""
        await self._asend(
            "on_chain_end", self._bridge.chain_end, outputs, run_id, kwargs.get("inputs")
        )

    async def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """A chain raised: ``on_run_end(None, error=...)``, and ``on_error`` if outermost."""
        await self._asend("on_chain_error", self._bridge.chain_error, error, run_id)

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A chat model call began: ``on_llm_start`` with the messages as dicts."""
        await self._asend(
            "on_chat_model_start",
            self._bridge.chat_model_start,
            serialized,
            messages,
            (run_id, parent_run_id, tags, metadata),
            kwargs,
        )

    async def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A text LLM call began: ``on_llm_start`` with the prompt text."""
        await self._asend(
            "on_llm_start",
            self._bridge.llm_start,
            serialized,
            prompts,
            (run_id, parent_run_id, tags, metadata),
            kwargs,
        )

    async def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A streamed token: ``on_llm_new_token``."""
        bridge = self._bridge
        try:
            event = bridge.token(token, run_id, kwargs.get("chunk"))
        except Exception as exc:
            bridge.failed("on_llm_new_token", exc)
            return
        if event is not None:
            await bridge.manager.aon_llm_new_token(event[0], index=event[1], **event[2])

    async def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """The call returned: ``on_llm_end`` with an ``LLMResponse``."""
        await self._asend("on_llm_end", self._bridge.llm_end, response, run_id)

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """The call failed: ``on_llm_error``."""
        await self._asend(
            "on_llm_error", self._bridge.llm_error, error, run_id, kwargs.get("response")
        )

    async def on_retry(self, retry_state: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A call will be retried: ``on_retry``."""
        await self._asend("on_retry", self._bridge.retry, retry_state, run_id)

    async def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A tool began: ``on_tool_start``."""
        await self._asend(
            "on_tool_start",
            self._bridge.tool_start,
            serialized,
            input_str,
            (run_id, parent_run_id, tags, metadata),
            kwargs,
        )

    async def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A tool returned: ``on_tool_end``."""
        await self._asend("on_tool_end", self._bridge.tool_end, output, run_id)

    async def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """A tool raised: ``on_tool_error`` and ``on_error(stage="tool")``."""
        await self._asend("on_tool_error", self._bridge.tool_error, error, run_id)

    async def on_retriever_start(
        self,
        serialized: dict[str, Any],
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A retriever began (remembered until it returns)."""
        await self._asend(
            "on_retriever_start",
            self._bridge.retriever_start,
            serialized,
            query,
            (run_id, parent_run_id, tags, metadata),
            kwargs,
        )

    async def on_retriever_end(
        self, documents: Sequence[Any], *, run_id: UUID, **kwargs: Any
    ) -> None:
        """A retriever returned: ``on_memory_recall(query, [page contents])``."""
        await self._asend("on_retriever_end", self._bridge.retriever_end, documents, run_id)

    async def on_retriever_error(
        self, error: BaseException, *, run_id: UUID, **kwargs: Any
    ) -> None:
        """A retriever raised: ``on_error(stage="memory")`` (once, by the outermost run)."""
        await self._asend("on_retriever_error", self._bridge.retriever_error, error, run_id)
