"""``BaseCallback`` and ``AsyncBaseCallback``: the hooks a handler may override.

Every hook is a no-op until overridden, and the dispatcher skips hooks a handler does not
override, so a handler costs nothing for the events it ignores.

Every hook receives, besides its own arguments, these keywords (those without a value are left
out, so read them with ``kwargs.get(...)``): ``run_id``, ``timestamp``, ``parent_run_id``,
``trace_id``, ``depth``, ``model``, ``provider``, ``tags``, ``metadata``, and the request
context ``correlation_id``, ``request_id``, ``user_id``, ``org_id``, ``conversation_id``,
``agent``. Events may add their own (``invocation_params`` on ``on_llm_start``,
``latency_ms`` on ``on_llm_end``, ...); the README lists them.

Class attributes tune how a handler is run:

``raise_error``       re-raise the handler's exceptions instead of logging them (default False)
``run_in_background`` run this handler on its own worker thread behind a bounded queue; for
                      handlers that do I/O (default False)
``queue_size``        the bound of that queue, in events (default 10,000)
``drop_when_full``    drop (and count) events when the queue is full instead of waiting
``name``              the name used in logs and ``CallbackManager.stats()``
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from ..events import Event, LLMResponse

__all__ = ["AsyncBaseCallback", "BaseCallback"]

F = TypeVar("F", bound=Callable[..., Any])


def _noop(fn: F) -> F:
    # Marks the base implementation so the dispatcher can tell an override from the default.
    fn.__hookwire_noop__ = True  # type: ignore[attr-defined]
    return fn


class BaseCallback:
    """A synchronous event handler: subclass it and override the hooks you need."""

    raise_error: ClassVar[bool] = False
    run_in_background: ClassVar[bool] = False
    queue_size: ClassVar[int] = 10_000
    drop_when_full: ClassVar[bool] = False
    name: str | None = None

    @_noop
    def on_run_start(self, input: Any, **kwargs: Any) -> None:
        """A run began; ``kwargs["name"]`` names it."""

    @_noop
    def on_run_end(self, output: Any, **kwargs: Any) -> None:
        """A run ended with ``output``; ``kwargs["error"]`` is set if it failed."""

    @_noop
    def on_llm_start(self, prompt: Any, **kwargs: Any) -> None:
        """An LLM call is about to be sent: ``prompt`` is the text or the list of messages."""

    @_noop
    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        """A streamed token of the answer arrived."""

    @_noop
    def on_llm_end(self, response: LLMResponse, **kwargs: Any) -> None:
        """An LLM call returned ``response`` (``.content``, ``.usage``, ``.model``, ...)."""

    @_noop
    def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        """An LLM call failed; it may be retried (``on_retry``) or reported (``on_error``)."""

    @_noop
    def on_tool_start(self, tool_name: str, tool_input: Any, **kwargs: Any) -> None:
        """A tool is about to run with ``tool_input``."""

    @_noop
    def on_tool_end(self, tool_name: str, tool_output: Any, **kwargs: Any) -> None:
        """A tool returned ``tool_output``."""

    @_noop
    def on_tool_error(self, tool_name: str, error: BaseException, **kwargs: Any) -> None:
        """A tool raised ``error``; the model gets the error as the tool's result."""

    @_noop
    def on_memory_store(self, content: Any, **kwargs: Any) -> None:
        """``content`` was stored in memory."""

    @_noop
    def on_memory_recall(self, query: Any, results: Any, **kwargs: Any) -> None:
        """Memory was searched for ``query`` and gave ``results``."""

    @_noop
    def on_retry(
        self, attempt: int, max_attempts: int, error: BaseException, **kwargs: Any
    ) -> None:
        """Attempt ``attempt`` of ``max_attempts`` failed with ``error`` and will be retried."""

    @_noop
    def on_error(self, error: BaseException, **kwargs: Any) -> None:
        """A failure the application should know about (reported once per failure)."""

    @_noop
    def on_budget_exceeded(self, error: BaseException, **kwargs: Any) -> None:
        """A usage budget refused an LLM call; ``error`` is the ``BudgetExceeded``."""

    @_noop
    def on_event(self, event: Event) -> None:
        """Every event, as a typed record (``hookwire.events``); for handlers that log all."""

    @_noop
    def flush(self) -> None:
        """Write out anything buffered; called by ``CallbackManager.flush()``."""

    @_noop
    def close(self) -> None:
        """Release resources; called by ``CallbackManager.close()`` and at exit."""


class AsyncBaseCallback:
    """An asyncio event handler: the same hooks as ``BaseCallback``, as coroutines.

    From async code they are awaited in order; from sync code they run on hookwire's
    background event loop and the caller waits for them.
    """

    raise_error: ClassVar[bool] = False
    run_in_background: ClassVar[bool] = False
    queue_size: ClassVar[int] = 10_000
    drop_when_full: ClassVar[bool] = False
    name: str | None = None

    @_noop
    async def on_run_start(self, input: Any, **kwargs: Any) -> None:
        """A run began; ``kwargs["name"]`` names it."""

    @_noop
    async def on_run_end(self, output: Any, **kwargs: Any) -> None:
        """A run ended with ``output``; ``kwargs["error"]`` is set if it failed."""

    @_noop
    async def on_llm_start(self, prompt: Any, **kwargs: Any) -> None:
        """An LLM call is about to be sent."""

    @_noop
    async def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        """A streamed token of the answer arrived."""

    @_noop
    async def on_llm_end(self, response: LLMResponse, **kwargs: Any) -> None:
        """An LLM call returned ``response``."""

    @_noop
    async def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        """An LLM call failed."""

    @_noop
    async def on_tool_start(self, tool_name: str, tool_input: Any, **kwargs: Any) -> None:
        """A tool is about to run."""

    @_noop
    async def on_tool_end(self, tool_name: str, tool_output: Any, **kwargs: Any) -> None:
        """A tool returned."""

    @_noop
    async def on_tool_error(self, tool_name: str, error: BaseException, **kwargs: Any) -> None:
        """A tool raised."""

    @_noop
    async def on_memory_store(self, content: Any, **kwargs: Any) -> None:
        """``content`` was stored in memory."""

    @_noop
    async def on_memory_recall(self, query: Any, results: Any, **kwargs: Any) -> None:
        """Memory was searched."""

    @_noop
    async def on_retry(
        self, attempt: int, max_attempts: int, error: BaseException, **kwargs: Any
    ) -> None:
        """A failed attempt will be retried."""

    @_noop
    async def on_error(self, error: BaseException, **kwargs: Any) -> None:
        """A failure happened."""

    @_noop
    async def on_budget_exceeded(self, error: BaseException, **kwargs: Any) -> None:
        """A usage budget refused an LLM call."""

    @_noop
    async def on_event(self, event: Event) -> None:
        """Every event, as a typed record."""

    @_noop
    def flush(self) -> None:
        """Write out anything buffered."""

    @_noop
    def close(self) -> None:
        """Release resources."""
