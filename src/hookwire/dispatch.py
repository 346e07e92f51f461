"""``CallbackManager``: sends events to handlers, fast, in order, and never into the app.

A manager's hooks are methods of its class. A hook none of its handlers listens to is the
no-op inherited from ``CallbackManager``; the hooks they listen to are dispatch functions
written for the *shape* of the handler set (see ``callpath``). Managers of the same shape
share one class, made the first time the shape is seen and kept in a bounded cache, so a
manager built per request from handler classes seen before costs a few microseconds and a few
hundred bytes, and CPython specialises ``manager.on_<hook>(...)`` as a method call. ``add()``
and ``remove()`` move the manager to the class of its new shape.

Where handlers run:

- sync handlers run inline, in the caller's thread, also when dispatched from asyncio;
- async handlers are awaited inline by ``aon_*``; from sync code (``on_*``) they run on one
  shared background event loop and the caller waits for them, so order and errors are kept;
- a handler may offer both: a sync ``on_<hook>`` for ``on_*`` dispatch and an
  ``async def aon_<hook>`` that ``aon_*`` dispatch awaits instead;
- handlers with ``run_in_background = True`` (or a set of hook names) have those hooks run on
  a background worker behind a bounded queue: the caller only enqueues. ``flush()`` /
  ``close()`` and exit drain the queues. A full queue blocks (nothing is lost) unless the
  handler sets ``drop_when_full = True``, in which case the event is dropped and counted.

A built-in handler whose hook only queues the event (``FileLogCallback``) may mark it
``__hookwire_raw__`` and offer ``_hookwire_raw(hook, args, run_id, timestamp, ctx, kw, model,
provider)``: it is then handed the payload tuple, the ids, the run context and the extra
keywords as they are (to be read, never changed), so no keyword dict is built for it.

A handler's exception never reaches the caller: it is logged through the ``hookwire`` logger
(with its traceback the first time for each handler and hook, at debug level after that),
counted in ``stats()``, and dispatch goes on. A handler with ``raise_error = True`` asks for
its failures to reach the app as ``errors.HandlerError`` (``__cause__`` its own exception),
counted too: an inline hook's is raised to the caller of the hook (the event's remaining
handlers are not called); a background hook's, which has no caller, is raised by the
manager's next ``flush()`` or ``close()``, after the queues are drained (the first one
held; it is logged as it happens, too, as any background failure is). A ``CallbackAbort``
(such as ``BudgetExceeded``) always reaches the caller of an inline hook as itself.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Union

from ._workers import BackgroundQueue, in_background_loop, run_coroutine
from .callpath import (
    Entry,
    Plan,
    handler_name,
    no_op,
    overrides,
    write_dispatcher,
)
from .errors import CallbackAbort, ConfigurationError, HandlerError
from .events import HOOKS, HookSpec, on_hook_declared

__all__ = ["HELD_ERRORS", "CallbackManager", "Callbacks", "aflush_handler", "flush_handler"]

logger = logging.getLogger("hookwire")

#: What ``callbacks=`` accepts everywhere: a list of handlers, a manager, or nothing.
Callbacks = Union["CallbackManager", Sequence[Any], None]


#: Hook names a handler may set on its instance, and the attributes that say how it runs: a
#: handler whose instance sets none of them is called as its class says (the usual case).
def _hook_attrs() -> tuple[frozenset[str], frozenset[str]]:
    hooks = frozenset({*HOOKS, *("a" + h for h in HOOKS), "on_event", "aon_event"})
    return hooks, hooks | {"run_in_background", "raise_error"}


_HOOK_ATTRS, _INSTANCE_ATTRS = _hook_attrs()

#: Failures of background hooks of ``raise_error`` handlers a manager holds for its next
#: ``flush()`` / ``close()``, at most (it raises the first; all are logged and counted).
HELD_ERRORS = 100

#: Shapes kept: one class each, a few KiB. Past this the least recently built shape is
#: forgotten (its managers keep their class; a new manager of that shape makes it again).
_SHAPES_KEPT = 512

#: Guards the shape cache and error counts (rare paths: a new shape, a handler's failure).
_lock = threading.RLock()


def _run_async_handler(fn: Callable[..., Any], args: tuple[Any, ...], kw: Any) -> Any:
    """An async handler called from sync dispatch: run on the shared background loop, and
    waited for, so that order and errors are kept."""
    if in_background_loop():
        raise RuntimeError(
            "an async handler was dispatched synchronously from hookwire's own background loop; "
            "use the aon_* methods from async handlers"
        )
    try:
        return run_coroutine(fn(*args, **kw))
    except (SystemExit, KeyboardInterrupt) as exc:
        # Raised by the handler itself on the loop's thread (signals go to the main thread),
        # so it is the handler's failure, reported as any other, not the app's exit.
        raise RuntimeError(f"the async handler raised {exc!r}") from exc


#: Each handler's background queues (one per manager it is on), both weakly held: what
#: :func:`flush_handler` waits for. Changed under ``_lock``.
_HANDLER_QUEUES: weakref.WeakKeyDictionary[Any, weakref.WeakSet[BackgroundQueue[Any]]] = (
    weakref.WeakKeyDictionary()
)


def _handler_queues(handler: Any) -> list[BackgroundQueue[Any]]:
    try:
        with _lock:
            return list(_HANDLER_QUEUES.get(handler, ()))
    except TypeError:  # neither hashable nor weakly referable: it has no tracked queue
        return []


def flush_handler(handler: Any, timeout: float | None = None) -> bool:
    """Wait until the events queued for ``handler``'s background hooks, on every manager it
    is on, have been handled: what a handler calls before it reads what those hooks write,
    so that its reads see its own writes. ``False`` if ``timeout`` ran out first (or when
    called from the worker that handles them, which would wait for itself)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    ok = True
    for queue in _handler_queues(handler):
        ok = queue.flush(_left(deadline)) and ok
    return ok


async def aflush_handler(handler: Any, timeout: float | None = None) -> bool:
    """:func:`flush_handler` for asyncio: waits without blocking the event loop."""
    deadline = None if timeout is None else time.monotonic() + timeout
    ok = True
    for queue in _handler_queues(handler):
        ok = await queue.aflush(_left(deadline)) and ok
    return ok


def _queue_for(manager: CallbackManager, handler: Any) -> BackgroundQueue[_Queued]:
    """A background handler's queue: its events are handled in order on the shared worker
    (or the one its ``background_worker`` names: a handler that may wait long for a database
    must not hold up the others), and a failure is reported as an inline one is (never
    raised into the worker)."""
    name = handler_name(handler)
    size = getattr(handler, "queue_size", 10_000)
    if not isinstance(size, int) or size <= 0:
        raise ConfigurationError(
            f"{name}.queue_size must be a positive number of events, not {size!r}"
        )
    worker = getattr(handler, "background_worker", "hookwire-worker")
    if not isinstance(worker, str) or not worker:
        raise ConfigurationError(
            f"{name}.background_worker must be the name of a worker thread, not {worker!r}"
        )
    owner = weakref.ref(manager)

    def handle(batch: list[_Queued]) -> None:
        for entry, args, kw in batch:
            try:
                if entry.is_async:
                    run_coroutine(entry.call(handler, args, kw))
                else:
                    entry.call(handler, args, kw)
            except BaseException as exc:  # SystemExit too: the events behind it still run
                m = owner()
                if m is not None:
                    m._report(entry, exc, reraise=False, handler=handler)

    return BackgroundQueue(
        name,
        handle,
        maxsize=size,
        drop_when_full=bool(getattr(handler, "drop_when_full", False)),
        worker=worker,
    )


#: What a background handler's queue holds: the entry to call, its arguments and keywords.
_Queued = tuple[Entry, tuple[Any, ...], dict[str, Any]]


def _shape_of(handler: Any) -> Any:
    """What decides how ``handler`` is called: its class, unless the instance itself sets a
    hook or how it runs (then those values too, since its class does not say)."""
    d = getattr(handler, "__dict__", None)
    if d is None or _INSTANCE_ATTRS.isdisjoint(d):
        return type(handler)
    rb = getattr(handler, "run_in_background", False)
    if not isinstance(rb, bool):
        rb = frozenset([rb] if isinstance(rb, str) else rb)
    own = frozenset(_HOOK_ATTRS.intersection(d))
    return (type(handler), rb, bool(getattr(handler, "raise_error", False)), own)


def _check(handler: Any) -> None:
    """Refuse a handler that cannot work, with what to do (once per shape)."""
    for h in (*HOOKS, "on_event"):
        twin = overrides(handler, "a" + h)
        if twin is not None and not inspect.iscoroutinefunction(twin):
            raise ConfigurationError(
                f"{type(handler).__name__}.a{h} must be a coroutine function (async def): "
                f"it is what aon_* dispatch awaits; put a sync implementation in {h}"
            )
    hooks = (*HOOKS, "on_event")
    if not any(overrides(handler, h) or overrides(handler, "a" + h) for h in hooks) and not (
        hasattr(handler, "on_event")
    ):
        raise ConfigurationError(
            f"{type(handler).__name__} has no hook methods; subclass "
            "hookwire.BaseCallback and override on_llm_start, on_llm_end, ..."
        )


_SHAPES: OrderedDict[tuple[Any, ...], type[CallbackManager]] = OrderedDict()


def _class_for(base: type[CallbackManager], handlers: tuple[Any, ...]) -> type[CallbackManager]:
    """The class of a ``base`` manager with these handlers: cached by the handlers' shape."""
    if not handlers:
        return base
    key = (base, *map(_shape_of, handlers))
    cls = _SHAPES.get(key)
    if cls is not None:
        return cls
    with _lock:
        cls = _SHAPES.get(key)
        if cls is None:
            for h in handlers:
                if isinstance(h, type):
                    raise ConfigurationError(
                        f"{h.__name__} is a class; pass an instance: {h.__name__}()"
                    )
                _check(h)
            cls = _make_class(base, handlers, key)
            _SHAPES[key] = cls
            while len(_SHAPES) > _SHAPES_KEPT:
                _SHAPES.popitem(last=False)
    return cls


def _make_class(
    base: type[CallbackManager], handlers: tuple[Any, ...], key: tuple[Any, ...]
) -> type[CallbackManager]:
    plan = Plan(handlers, [s[3] if isinstance(s, tuple) else frozenset() for s in key[1:]])
    ns: dict[str, Any] = {
        "__slots__": (),
        "__module__": base.__module__,
        "__qualname__": base.__qualname__,
        "__doc__": base.__doc__,
        "_hookwire_base": base,
        "_listening": plan.listening,
    }
    bg = _run_async_handler
    for hook, entries in plan.entries.items():
        ns[hook] = write_dispatcher(hook, entries, is_async=False, bg=bg)
        ns["a" + hook] = write_dispatcher(hook, plan.aentries[hook], is_async=True, bg=bg)
    return type(base.__name__, (base,), ns)


class CallbackManager:
    """Dispatches events to a list of handlers.

    ``manager.on_llm_start(prompt, **kw)`` and every other hook of ``BaseCallback`` dispatch
    synchronously; ``await manager.aon_llm_start(prompt, **kw)`` and so on dispatch from
    asyncio. Keywords the caller does not give are filled in: ``run_id`` (a new id),
    ``timestamp`` (``time.time()``), and the run and request context of ``hookwire.trace``
    (only the keys that have a value); keywords the caller gives win over the context and are
    passed on as given. Start hooks (``on_run_start``, ``on_llm_start``, ``on_tool_start``)
    return the run id they used; pass it as ``run_id=`` to the matching end hook.
    """

    # The machinery lives in slots, and a manager has no __dict__: CPython then looks a hook
    # method up without checking an instance dict first (measured: 5 % of a token's dispatch).
    # A subclass of yours gets a __dict__ for its own attributes, as any subclass does.
    __slots__ = ("__weakref__", "_errors", "_handlers", "_held", "_queues")

    # Set per shape (see _make_class): the hooks some handler listens to.
    _listening: frozenset[str] = frozenset()

    if TYPE_CHECKING:
        # The hooks, for type checkers and documentation. At run time each is a method made
        # from events.HOOKS (_install_no_ops below); tests/test_dispatch.py holds the two alike.

        def on_run_start(self, input: Any, **kwargs: Any) -> str:
            """A run began."""
            ...

        def on_run_end(self, output: Any, **kwargs: Any) -> None:
            """A run ended."""

        def on_llm_start(self, prompt: Any, **kwargs: Any) -> str:
            """An LLM call is about to be sent."""
            ...

        def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            """A streamed token arrived."""

        def on_llm_end(self, response: Any, **kwargs: Any) -> None:
            """An LLM call returned."""

        def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
            """An LLM call failed."""

        def on_embedding_start(self, input: Any, **kwargs: Any) -> str:
            """An embedding call is about to be sent."""
            ...

        def on_embedding_end(self, response: Any, **kwargs: Any) -> None:
            """An embedding call returned."""

        def on_embedding_error(self, error: BaseException, **kwargs: Any) -> None:
            """An embedding call failed."""

        def on_tool_start(self, tool_name: str, tool_input: Any, **kwargs: Any) -> str:
            """A tool is about to run."""
            ...

        def on_tool_end(self, tool_name: str, tool_output: Any, **kwargs: Any) -> None:
            """A tool returned."""

        def on_tool_error(self, tool_name: str, error: BaseException, **kwargs: Any) -> None:
            """A tool raised."""

        def on_memory_store(self, content: Any, **kwargs: Any) -> None:
            """Something was stored in memory."""

        def on_memory_recall(self, query: Any, results: Any, **kwargs: Any) -> None:
            """Memory was searched."""

        def on_retry(
            self, attempt: int, max_attempts: int, error: BaseException, **kwargs: Any
        ) -> None:
            """A failed call will be retried."""

        def on_error(self, error: BaseException, **kwargs: Any) -> None:
            """A failure happened."""

        def on_budget_exceeded(self, error: BaseException, **kwargs: Any) -> None:
            """A budget refused an LLM call."""

        async def aon_run_start(self, input: Any, **kwargs: Any) -> str:
            """A run began (async)."""
            ...

        async def aon_run_end(self, output: Any, **kwargs: Any) -> None:
            """A run ended (async)."""

        async def aon_llm_start(self, prompt: Any, **kwargs: Any) -> str:
            """An LLM call is about to be sent (async)."""
            ...

        async def aon_llm_new_token(self, token: str, **kwargs: Any) -> None:
            """A streamed token arrived (async)."""

        async def aon_llm_end(self, response: Any, **kwargs: Any) -> None:
            """An LLM call returned (async)."""

        async def aon_llm_error(self, error: BaseException, **kwargs: Any) -> None:
            """An LLM call failed (async)."""

        async def aon_embedding_start(self, input: Any, **kwargs: Any) -> str:
            """An embedding call is about to be sent (async)."""
            ...

        async def aon_embedding_end(self, response: Any, **kwargs: Any) -> None:
            """An embedding call returned (async)."""

        async def aon_embedding_error(self, error: BaseException, **kwargs: Any) -> None:
            """An embedding call failed (async)."""

        async def aon_tool_start(self, tool_name: str, tool_input: Any, **kwargs: Any) -> str:
            """A tool is about to run (async)."""
            ...

        async def aon_tool_end(self, tool_name: str, tool_output: Any, **kwargs: Any) -> None:
            """A tool returned (async)."""

        async def aon_tool_error(self, tool_name: str, error: BaseException, **kwargs: Any) -> None:
            """A tool raised (async)."""

        async def aon_memory_store(self, content: Any, **kwargs: Any) -> None:
            """Something was stored in memory (async)."""

        async def aon_memory_recall(self, query: Any, results: Any, **kwargs: Any) -> None:
            """Memory was searched (async)."""

        async def aon_retry(
            self, attempt: int, max_attempts: int, error: BaseException, **kwargs: Any
        ) -> None:
            """A failed call will be retried (async)."""

        async def aon_error(self, error: BaseException, **kwargs: Any) -> None:
            """A failure happened (async)."""

        async def aon_budget_exceeded(self, error: BaseException, **kwargs: Any) -> None:
            """A budget refused an LLM call (async)."""

    # -- construction -----------------------------------------------------------------------

    def __init__(self, handlers: Iterable[Any] = ()) -> None:
        self._errors: dict[tuple[str, str], int] | None = None
        self._held: list[HandlerError] | None = None
        self._queues: dict[int, BackgroundQueue[_Queued]] | None = None
        self._set(tuple(handlers))

    def _set(self, handlers: tuple[Any, ...]) -> None:
        """Take ``handlers`` and the class of their shape."""
        base = type(self).__dict__.get("_hookwire_base") or type(self)
        cls = _class_for(base, handlers)
        self._handlers = handlers
        if type(self) is not cls:
            self.__class__ = cls

    def __reduce__(self) -> tuple[Any, ...]:
        # A copy (copy, deepcopy, pickle) is a new manager of the same public class with the
        # same handlers and attributes (a subclass's own too), and its own queues and error
        # counts: nothing of this one's machinery is shared or copied.
        base = type(self).__dict__.get("_hookwire_base") or type(self)
        state = dict(getattr(self, "__dict__", {}))
        return (_restore, (base, list(self._handlers), state))

    @classmethod
    def ensure(cls, callbacks: Callbacks) -> CallbackManager:
        """``callbacks`` as a manager: a manager is returned as is, a list is wrapped."""
        if isinstance(callbacks, CallbackManager):
            return callbacks
        if callbacks is None:
            return cls()
        if isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, Iterable):
            raise ConfigurationError(
                f"callbacks must be a list of handlers or a CallbackManager, not "
                f"{type(callbacks).__name__}; wrap a single handler in a list: callbacks=[handler]"
            )
        return cls(callbacks)

    @property
    def handlers(self) -> tuple[Any, ...]:
        """The handlers, in dispatch order."""
        return self._handlers

    def add(self, handler: Any) -> Any:
        """Append ``handler`` (it is called after the others); returns it, so it can decorate."""
        with _lock:
            self._set((*self._handlers, handler))
        return handler

    def remove(self, handler: Any) -> None:
        """Remove ``handler`` after draining its background queue, if it has one."""
        with _lock:
            handlers = list(self._handlers)
            try:
                handlers.remove(handler)
            except ValueError:
                raise ConfigurationError(
                    f"{handler_name(handler)} is not one of this manager's handlers"
                ) from None
            self._set(tuple(handlers))
            queue = self._queues.pop(id(handler), None) if self._queues else None
        if queue is not None:
            queue.close(timeout=10.0)

    def copy(self) -> CallbackManager:
        """A new manager with the same handlers."""
        return type(self)(self._handlers)

    def merged(self, other: Callbacks) -> CallbackManager:
        """A new manager with this one's handlers followed by ``other``'s (no duplicates)."""
        extra = CallbackManager.ensure(other).handlers
        seen = {id(h) for h in self._handlers}
        return type(self)([*self._handlers, *(h for h in extra if id(h) not in seen)])

    def listens(self, hook: str) -> bool:
        """Whether some handler does something on ``hook`` (for example ``on_llm_new_token``)."""
        return hook in self._listening

    def __len__(self) -> int:
        return len(self._handlers)

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        names = ", ".join(handler_name(h) for h in self._handlers)
        return f"CallbackManager([{names}])"

    # -- background queues (called by the dispatchers) ---------------------------------------

    def _queue(self, handler: Any) -> BackgroundQueue[_Queued]:
        queues = self._queues
        if queues is None:
            queues = self._queues = {}
        queue = queues.get(id(handler))
        if queue is None:
            with _lock:
                queue = queues.get(id(handler))
                if queue is None:
                    queue = queues[id(handler)] = _queue_for(self, handler)
                    with contextlib.suppress(TypeError):  # not hashable or weakly referable
                        _HANDLER_QUEUES.setdefault(handler, weakref.WeakSet()).add(queue)
        return queue

    def _enqueue(self, entry: Entry, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        self._queue(self._handlers[entry.pos]).put((entry, args, kw))

    async def _aenqueue(self, entry: Entry, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        await self._queue(self._handlers[entry.pos]).aput((entry, args, kw))

    # -- errors -----------------------------------------------------------------------------

    def _report(
        self, entry: Entry, exc: BaseException, reraise: bool = True, handler: Any = None
    ) -> None:
        """Count a handler's failure, and log it, or for a handler that asks to raise, raise
        it as ``HandlerError`` (``reraise``: an inline hook's) or hold it for the next
        ``flush()`` / ``close()`` (a background hook's); a ``CallbackAbort`` of an inline hook
        is raised as it is."""
        if reraise and isinstance(exc, CallbackAbort):
            raise exc
        with _lock:
            if self._errors is None:
                self._errors = {}
            key = (entry.name, entry.hook)
            count = self._errors[key] = self._errors.get(key, 0) + 1
        if entry.raise_error:
            error = HandlerError(
                handler if handler is not None else self._handlers[entry.pos], entry.hook, exc
            )
            if reraise:
                raise error from exc
            error.__cause__ = exc
            # Logged too (below): a manager dropped without a flush() still tells.
            with _lock:
                held = self._held
                if held is None:
                    held = self._held = []
                if len(held) < HELD_ERRORS:
                    held.append(error)
        if count == 1:
            logger.error(
                "hookwire: handler %s failed in %s (further failures of this handler and hook "
                "are logged at debug level and counted in CallbackManager.stats())",
                entry.name,
                entry.hook,
                exc_info=exc,
            )
        else:
            logger.debug("hookwire: handler %s failed in %s: %r", entry.name, entry.hook, exc)

    def stats(self) -> dict[str, Any]:
        """Counters: handler errors by ``"Handler.hook"``; per handler name, the events
        ``queued`` now and the events ``dropped`` (lost): its background queue was full, or
        what the handler counts itself in its ``pending`` and ``dropped`` (a log line a full
        disk refused, a usage row or a chat turn beyond the bound kept during an outage);
        per sampling handler (``sample_rate=``), the events ``held`` now for traces not yet
        decided and those ``evicted`` past its bound (see ``hookwire.sampling``)."""
        with _lock:
            errors = {f"{n}.{h}": c for (n, h), c in (self._errors or {}).items()}
            queues = list((self._queues or {}).values())
        queued = {q.name: q.pending for q in queues}
        dropped = {q.name: q.dropped for q in queues}
        for handler in self._handlers:
            for key, table in (("pending", queued), ("dropped", dropped)):
                own = getattr(handler, key, None)
                if isinstance(own, int) and not isinstance(own, bool):
                    name = handler_name(handler)
                    table[name] = table.get(name, 0) + own
        sampling: dict[str, dict[str, int]] = {}
        for handler in self._handlers:
            sampler = getattr(handler, "sampler", None)
            held, evicted = getattr(sampler, "held", None), getattr(sampler, "evicted", None)
            if isinstance(held, int) and isinstance(evicted, int):
                row = sampling.setdefault(handler_name(handler), {"held": 0, "evicted": 0})
                row["held"] += held
                row["evicted"] += evicted
        return {
            "handlers": len(self._handlers),
            "errors": errors,
            "errors_total": sum(errors.values()),
            "queued": queued,
            "dropped": dropped,
            "sampling": sampling,
        }

    # -- draining ---------------------------------------------------------------------------

    def _queues_now(self) -> list[BackgroundQueue[_Queued]]:
        with _lock:
            return list(self._queues.values()) if self._queues else []

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every background handler has handled what was queued before this call.

        Returns ``False`` if ``timeout`` (seconds, for everything together) ran out first.
        Handlers with a ``flush()`` of their own (files, stores) are flushed after their queue
        is drained, and given what is left of the timeout. Raises ``HandlerError`` if a
        background hook of a handler with ``raise_error = True`` failed since the last
        ``flush()`` / ``close()`` (once drained; the first such failure).
        """
        done = self._drain("flush", timeout)
        self._raise_held()
        return done

    def close(self, timeout: float | None = 10.0) -> bool:
        """Drain the background queues and close handlers that have a ``close()``, within
        ``timeout`` seconds for everything together. The manager stays usable. Raises
        ``HandlerError`` as :meth:`flush` does."""
        done = self._drain("close", timeout)
        self._raise_held()
        return done

    def _raise_held(self) -> None:
        if self._held is None:
            return
        with _lock:
            held, self._held = self._held, None
        if held:
            raise held[0]  # the others were logged as they happened, as this one was

    def _drain(self, how: str, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        ok = True
        for queue in self._queues_now():
            ok = getattr(queue, how)(_left(deadline)) and ok
        for h in self._handlers:
            method = getattr(h, how, None)
            if not callable(method) or getattr(method, "__hookwire_noop__", False):
                continue
            try:
                done = method(timeout=_left(deadline)) if _takes_timeout(method) else method()
            except Exception as exc:
                logger.warning("hookwire: %s.%s() failed: %r", handler_name(h), how, exc)
                continue
            ok = done is not False and ok
        return ok


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _takes_timeout(method: Callable[..., Any]) -> bool:
    try:
        return "timeout" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def _restore(
    cls: type[CallbackManager], handlers: list[Any], state: dict[str, Any]
) -> CallbackManager:
    manager = object.__new__(cls)
    if state:  # a subclass's own attributes (CallbackManager itself has no __dict__)
        manager.__dict__.update(state)
    CallbackManager.__init__(manager, handlers)
    return manager


def _install_no_ops(hook: str) -> None:
    # Every hook of the table is a method of CallbackManager that does nothing (a start hook
    # returns a run id): what a manager answers for the hooks none of its handlers listens to.
    for name, is_async in ((hook, False), ("a" + hook, True)):
        fn = no_op(hook, is_async=is_async)
        fn.__qualname__ = f"CallbackManager.{name}"
        fn.__module__ = __name__
        fn.__doc__ = f"Dispatch ``{hook}`` to the handlers{' (async)' if is_async else ''}."
        setattr(CallbackManager, name, fn)


for _hook in HOOKS:
    _install_no_ops(_hook)


@on_hook_declared
def _follow_the_table(spec: HookSpec) -> None:
    # A hook declared (or removed) after import: the no-ops follow, and every cached shape is
    # forgotten, since its plan was made from the table as it was.
    global _HOOK_ATTRS, _INSTANCE_ATTRS
    with _lock:
        if spec.name in HOOKS:
            _install_no_ops(spec.name)
        else:
            for name in (spec.name, "a" + spec.name):
                if name in CallbackManager.__dict__:
                    delattr(CallbackManager, name)
        _HOOK_ATTRS, _INSTANCE_ATTRS = _hook_attrs()
        _SHAPES.clear()
