"""The LlamaIndex handlers (an event handler and a span handler, both feeding one ``Bridge``),
and ``instrument`` / ``uninstrument``, which put them on a LlamaIndex dispatcher."""

from __future__ import annotations

import inspect
from typing import Any

# re-exported from llama_index_instrumentation, which mypy does not take as an export
from llama_index.core.instrumentation import (  # type: ignore[attr-defined]
    Dispatcher,
    get_dispatcher,
)
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.span import BaseSpan
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler

from ...dispatch import CallbackManager, Callbacks
from .._common import send
from .bridge import Bridge

__all__ = ["LlamaIndexInstrumentation", "instrument", "uninstrument"]


def _bind(handler: object, bridge: Bridge) -> None:
    # In the instance's __dict__, past pydantic's __setattr__: a pydantic private attribute is
    # read through the model's __getattr__, a few µs on every event and span.
    object.__setattr__(handler, "_bridge", bridge)


class _EventHandler(BaseEventHandler):
    """Sends LlamaIndex's events to the bridge."""

    _bridge: Bridge

    def __init__(self, bridge: Bridge) -> None:
        super().__init__()
        _bind(self, bridge)

    @classmethod
    def class_name(cls) -> str:
        """LlamaIndex's name of the handler."""
        return "HookwireEventHandler"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        """One LlamaIndex event: its hook calls."""
        # Written out in each method (no shared helper taking a closure): LlamaIndex sends every
        # event and span through here, and a call frame and a lambda each are a fair share of
        # the bridge's cost. For the same reason the translating method is read from the
        # bridge's table here rather than through ``Bridge.event`` (a frame less per event,
        # and a stream sends two events per token). A failure to translate is logged
        # (LlamaIndex would swallow it).
        bridge = self._bridge
        try:
            handle = bridge.by_type.get(type(event)) or bridge.handler_of(type(event))
            emits = handle(event)
        except Exception as exc:
            bridge.failed(type(event).__name__, exc)
            return
        if emits:
            send(bridge.manager, emits, bridge.failed, type(event).__name__)


class _SpanHandler(BaseSpanHandler[BaseSpan]):
    """Sends LlamaIndex's spans to the bridge. It keeps none of LlamaIndex's own span records
    (``open_spans`` stays empty): the bridge keeps what it needs."""

    _bridge: Bridge

    def __init__(self, bridge: Bridge) -> None:
        super().__init__()
        _bind(self, bridge)

    @classmethod
    def class_name(cls) -> str:
        """LlamaIndex's name of the handler."""
        return "HookwireSpanHandler"

    def span_enter(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        parent_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A span began: a run or a tool, if it is one."""
        bridge = self._bridge
        try:
            emits = bridge.span_enter(id_, bound_args.arguments, instance, parent_id)
        except Exception as exc:
            bridge.failed("span_enter", exc)
            return
        if emits:
            send(bridge.manager, emits, bridge.failed, "span_enter")

    def span_exit(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        result: Any | None = None,
        **kwargs: Any,
    ) -> None:
        """A span returned."""
        bridge = self._bridge
        try:
            emits = bridge.span_exit(id_, result)
        except Exception as exc:
            bridge.failed("span_exit", exc)
            return
        if emits:
            send(bridge.manager, emits, bridge.failed, "span_exit")

    def span_drop(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        """A span raised."""
        bridge = self._bridge
        try:
            emits = bridge.span_drop(id_, err)
        except Exception as exc:
            bridge.failed("span_drop", exc)
            return
        if emits:
            send(bridge.manager, emits, bridge.failed, "span_drop")

    # LlamaIndex's abstract steps of its own span bookkeeping, which the methods above replace.
    def new_span(self, *args: Any, **kwargs: Any) -> BaseSpan | None:
        """Not used: ``span_enter`` is overridden."""
        return None

    def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> BaseSpan | None:
        """Not used: ``span_exit`` is overridden."""
        return None

    def prepare_to_drop_span(self, *args: Any, **kwargs: Any) -> BaseSpan | None:
        """Not used: ``span_drop`` is overridden."""
        return None


class LlamaIndexInstrumentation:
    """What ``instrument`` put on a LlamaIndex dispatcher: ``manager`` is the hookwire
    ``CallbackManager`` the events go to; ``uninstrument()`` takes the handlers off again."""

    __slots__ = ("_event_handler", "_span_handler", "dispatcher", "manager")

    def __init__(self, dispatcher: Dispatcher, bridge: Bridge) -> None:
        self.dispatcher = dispatcher
        self.manager: CallbackManager = bridge.manager
        self._event_handler = _EventHandler(bridge)
        self._span_handler = _SpanHandler(bridge)

    def uninstrument(self) -> None:
        """Take the handlers off the dispatcher (again: nothing)."""
        d = self.dispatcher
        d.event_handlers = [h for h in d.event_handlers if h is not self._event_handler]
        d.span_handlers = [h for h in d.span_handlers if h is not self._span_handler]

    def __enter__(self) -> LlamaIndexInstrumentation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.uninstrument()


def instrument(
    callbacks: Callbacks = None, *, dispatcher: Dispatcher | None = None, **context: Any
) -> LlamaIndexInstrumentation:
    """Send what LlamaIndex does (its instrumentation's spans and events) to hookwire handlers.

    ``callbacks``: hookwire handlers (or a ``CallbackManager``); ``dispatcher``: LlamaIndex's
    root dispatcher by default, which sees every module's spans and events; ``**context``:
    request context for every event (``user_id``, ``conversation_id``, ...). Returns the
    ``LlamaIndexInstrumentation``, whose ``uninstrument()`` (or a ``with`` block) ends it.
    """
    from ...context import check_request_context

    bridge = Bridge(callbacks, check_request_context(context))
    target = dispatcher if dispatcher is not None else get_dispatcher()
    made = LlamaIndexInstrumentation(target, bridge)
    target.add_event_handler(made._event_handler)
    target.add_span_handler(made._span_handler)
    return made


def uninstrument(instrumentation: LlamaIndexInstrumentation) -> None:
    """``instrumentation.uninstrument()``."""
    instrumentation.uninstrument()
