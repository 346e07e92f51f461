"""``BaseCallback`` and ``AsyncBaseCallback``: the hooks a handler may override.

Every hook in ``hookwire.events.HOOKS`` is a method of both classes (a coroutine on
``AsyncBaseCallback``), made from the table and documented from it; a hook declared later with
``hookwire.events.declare_hook`` is added to both. Every hook is a no-op until overridden, and
the dispatcher skips hooks a handler does not override, so a handler costs nothing for the
events it ignores.

Every hook receives, besides its own arguments, these keywords (those without a value are left
out, so read them with ``kwargs.get(...)``): ``run_id``, ``timestamp``, ``parent_run_id``,
``trace_id``, ``depth``, ``model``, ``provider``, ``tags``, ``metadata``, and the request
context ``correlation_id``, ``request_id``, ``user_id``, ``org_id``, ``conversation_id``,
``agent``. Events may add their own (``invocation_params`` on ``on_llm_start``,
``latency_ms`` on ``on_llm_end``, ...); docs/events.md lists them. The prompt, the
parameters, a tool's input and the metadata are read-only copies (``hookwire.frozen``):
change a copy of your own (``dict(...)``, ``list(...)``).

Class attributes tune how a handler is run:

``raise_error``       have the handler's exceptions reach the app as ``HandlerError`` (from the
                      caller of an inline hook; from the next ``flush()`` / ``close()`` of the
                      manager for a background hook) instead of only logging them (default
                      False)
``run_in_background`` run this handler on its own worker thread behind a bounded queue; for
                      handlers that do I/O (default False)
``queue_size``        the bound of that queue, in events (default 10,000)
``drop_when_full``    drop (and count) events when the queue is full instead of waiting
``background_worker`` the worker thread that queue is handled on (default the shared one);
                      a handler that may wait long (a database that is down) names its own
``name``              the name used in logs and ``CallbackManager.stats()``
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ..errors import ConfigurationError
from ..events import HOOKS, HookSpec, hook_methods

if TYPE_CHECKING:
    from ..events import Event, LLMResponse

__all__ = ["AsyncBaseCallback", "BaseCallback", "hook_signature"]

F = TypeVar("F", bound=Callable[..., Any])


def _noop(fn: F) -> F:
    # Marks the base implementation so the dispatcher can tell an override from the default.
    fn.__hookwire_noop__ = True  # type: ignore[attr-defined]
    return fn


def hook_signature(spec: HookSpec) -> inspect.Signature:
    """The signature of ``spec``'s method: ``(self, <args>, **kwargs)``, typed from its record."""
    types = {f.name: f.type for f in dataclasses.fields(spec.event)}
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [
        inspect.Parameter(a, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=types[a])
        for a in spec.args
    ]
    params.append(inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD, annotation="Any"))
    return inspect.Signature(params, return_annotation="None")


def _noop_hook(spec: HookSpec, is_async: bool) -> Callable[..., Any]:
    async def coroutine(self: Any, *args: Any, **kwargs: Any) -> None:
        return None

    def function(self: Any, *args: Any, **kwargs: Any) -> None:
        return None

    hook: Callable[..., Any] = coroutine if is_async else function
    hook.__signature__ = hook_signature(spec)  # type: ignore[attr-defined]
    return _noop(hook)


class _Handler:
    """What both base classes share: the settings of how a handler is run, and ``ignore_hooks``."""

    raise_error: ClassVar[bool] = False
    run_in_background: ClassVar[bool] = False
    queue_size: ClassVar[int] = 10_000
    drop_when_full: ClassVar[bool] = False
    background_worker: ClassVar[str] = "hookwire-worker"
    name: str | None = None

    def ignore_hooks(self, *hooks: str) -> None:
        """Make this handler skip ``hooks`` although its class overrides them.

        For settings that turn a hook off (``include_tokens=False``): call it in ``__init__``,
        before the handler is given to a manager, which then never calls those hooks.
        """
        base = AsyncBaseCallback if isinstance(self, AsyncBaseCallback) else BaseCallback
        for hook in hooks:
            if hook not in HOOKS:
                raise ConfigurationError(f"{hook} is not a hook; the hooks are {', '.join(HOOKS)}")
            setattr(self, hook, getattr(base, hook).__get__(self))

    @_noop
    def flush(self) -> None:
        """Write out anything buffered; called by ``CallbackManager.flush()``."""

    @_noop
    def close(self) -> None:
        """Release resources; called by ``CallbackManager.close()`` and at exit."""


class BaseCallback(_Handler):
    """A synchronous event handler: subclass it and override the hooks you need.

    Its hooks are ``hookwire.events.HOOKS``: ``on_llm_start(prompt, **kwargs)``,
    ``on_llm_end(response, **kwargs)``, ``on_llm_new_token(token, **kwargs)``,
    ``on_tool_start(tool_name, tool_input, **kwargs)``, and so on (docs/events.md).
    """

    if TYPE_CHECKING:
        # The hooks, for type checkers and editors. At run time each is a no-op made from
        # events.HOOKS (hook_methods below); tests/callbacks/test_base_callbacks.py holds the
        # two alike. A hook declared with declare_hook exists at run time only.

        def on_run_start(self, input: Any, **kwargs: Any) -> None: ...
        def on_run_end(self, output: Any, **kwargs: Any) -> None: ...
        def on_llm_start(self, prompt: Any, **kwargs: Any) -> None: ...
        def on_llm_new_token(self, token: str, **kwargs: Any) -> None: ...
        def on_llm_end(self, response: LLMResponse, **kwargs: Any) -> None: ...
        def on_llm_error(self, error: BaseException, **kwargs: Any) -> None: ...
        def on_tool_start(self, tool_name: str, tool_input: Any, **kwargs: Any) -> None: ...
        def on_tool_end(self, tool_name: str, tool_output: Any, **kwargs: Any) -> None: ...
        def on_tool_error(self, tool_name: str, error: BaseException, **kwargs: Any) -> None: ...
        def on_memory_store(self, content: Any, **kwargs: Any) -> None: ...
        def on_memory_recall(self, query: Any, results: Any, **kwargs: Any) -> None: ...
        def on_retry(
            self, attempt: int, max_attempts: int, error: BaseException, **kwargs: Any
        ) -> None: ...
        def on_error(self, error: BaseException, **kwargs: Any) -> None: ...
        def on_budget_exceeded(self, error: BaseException, **kwargs: Any) -> None: ...

    @_noop
    def on_event(self, event: Event) -> None:
        """Every event, as a typed record (``hookwire.events``); for handlers that log all."""


class AsyncBaseCallback(_Handler):
    """An asyncio event handler: the same hooks as ``BaseCallback``, as coroutines.

    From async code they are awaited in order; from sync code they run on hookwire's
    background event loop and the caller waits for them.
    """

    if TYPE_CHECKING:
        # The hooks, for type checkers and editors. At run time each is a no-op made from
        # events.HOOKS (hook_methods below); tests/callbacks/test_base_callbacks.py holds the
        # two alike. A hook declared with declare_hook exists at run time only.

        async def on_run_start(self, input: Any, **kwargs: Any) -> None: ...
        async def on_run_end(self, output: Any, **kwargs: Any) -> None: ...
        async def on_llm_start(self, prompt: Any, **kwargs: Any) -> None: ...
        async def on_llm_new_token(self, token: str, **kwargs: Any) -> None: ...
        async def on_llm_end(self, response: LLMResponse, **kwargs: Any) -> None: ...
        async def on_llm_error(self, error: BaseException, **kwargs: Any) -> None: ...
        async def on_tool_start(self, tool_name: str, tool_input: Any, **kwargs: Any) -> None: ...
        async def on_tool_end(self, tool_name: str, tool_output: Any, **kwargs: Any) -> None: ...
        async def on_tool_error(
            self, tool_name: str, error: BaseException, **kwargs: Any
        ) -> None: ...
        async def on_memory_store(self, content: Any, **kwargs: Any) -> None: ...
        async def on_memory_recall(self, query: Any, results: Any, **kwargs: Any) -> None: ...
        async def on_retry(
            self, attempt: int, max_attempts: int, error: BaseException, **kwargs: Any
        ) -> None: ...
        async def on_error(self, error: BaseException, **kwargs: Any) -> None: ...
        async def on_budget_exceeded(self, error: BaseException, **kwargs: Any) -> None: ...

    @_noop
    async def on_event(self, event: Event) -> None:
        """Every event, as a typed record."""


hook_methods(BaseCallback, lambda spec: _noop_hook(spec, is_async=False))
hook_methods(AsyncBaseCallback, lambda spec: _noop_hook(spec, is_async=True))
